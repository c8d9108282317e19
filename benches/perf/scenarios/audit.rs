//! Counting what the operator asked of the API server, from the audit log.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::support::AuditedRequest;

/// The operator's requests in one window, by kind.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Requests {
    /// Writes other than events and the leader Lease, by `verb resource[/subresource]`.
    pub writes_by_kind: BTreeMap<String, u64>,
    /// Sum of `writes_by_kind`.
    pub writes: u64,
    /// Writes that the API server refused (code >= 400), included above.
    pub failed_writes: u64,
    /// Event writes (reported apart from the object writes).
    pub events: u64,
    /// Leader-election Lease requests (renewals are writes; reported apart).
    pub lease_writes: u64,
    pub lease_reads: u64,
    /// Reads other than the Lease, by verb.
    pub gets: u64,
    pub lists: u64,
    /// Watch requests that ended in the window (re-established watches).
    pub watches: u64,
    /// Everything else (e.g. SelfSubjectAccessReviews), by `verb resource`.
    pub other: BTreeMap<String, u64>,
}

fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

impl Requests {
    pub fn from_audit(requests: &[AuditedRequest]) -> Requests {
        let mut out = Requests::default();
        for r in requests {
            let write = is_write(&r.verb);
            match (r.resource.as_str(), r.verb.as_str()) {
                // Reviews (the start-up SelfSubjectReview) are questions,
                // not stored objects: counted with everything else.
                (resource, verb) if resource.ends_with("reviews") => {
                    *out.other.entry(format!("{verb} {resource}")).or_default() += 1;
                }
                ("leases", _) if write => out.lease_writes += 1,
                ("leases", _) => out.lease_reads += 1,
                ("events", _) if write => out.events += 1,
                (_, _) if write => {
                    let kind = if r.subresource.is_empty() {
                        format!("{} {}", r.verb, r.resource)
                    } else {
                        format!("{} {}/{}", r.verb, r.resource, r.subresource)
                    };
                    *out.writes_by_kind.entry(kind).or_default() += 1;
                    out.writes += 1;
                    if r.code >= 400 {
                        out.failed_writes += 1;
                    }
                }
                (_, "get") => out.gets += 1,
                (_, "list") => out.lists += 1,
                (_, "watch") => out.watches += 1,
                (resource, verb) => {
                    *out.other.entry(format!("{verb} {resource}")).or_default() += 1;
                }
            }
        }
        out
    }

    /// `writes_by_kind` divided by `n`, for a per-workspace or per-change view.
    pub fn per(&self, n: usize) -> BTreeMap<String, f64> {
        self.writes_by_kind
            .iter()
            .map(|(k, v)| (k.clone(), *v as f64 / n.max(1) as f64))
            .collect()
    }

    /// A one-line summary of the writes, e.g. `patch namespaces 1.00, …`.
    pub fn describe_per(&self, n: usize) -> String {
        self.per(n)
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Where the time of one apply-to-Ready goes, from the audit log's clock.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stage {
    pub stage: String,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// One timed create: the object's name, when the client sent the create and
/// when it saw the object Ready (wall clock, like the audit log's).
pub struct Sample {
    pub name: String,
    pub sent: std::time::SystemTime,
    pub seen: std::time::SystemTime,
}

fn millis(a: k8s_openapi::jiff::Timestamp, b: k8s_openapi::jiff::Timestamp) -> f64 {
    (b.as_microsecond() - a.as_microsecond()) as f64 / 1000.0
}

/// Splits each sample's apply-to-Ready time at what the API server saw: the
/// create answered, the operator's first request about the object, its status
/// write answered; and counts the operator's requests in between and the time
/// the API server spent on them. Reads the audit log from byte `from`.
pub fn breakdown(log: &std::path::Path, from: u64, user: &str, samples: &[Sample]) -> Vec<Stage> {
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Seek, SeekFrom};

    use k8s_openapi::jiff::Timestamp;

    #[derive(Default)]
    struct Seen {
        created: Option<Timestamp>,
        first: Option<Timestamp>,
        status: Option<Timestamp>,
        requests: u32,
        server_ms: f64,
    }
    let mut seen: HashMap<&str, Seen> = samples
        .iter()
        .map(|s| (s.name.as_str(), Seen::default()))
        .collect();
    let Ok(mut file) = std::fs::File::open(log) else {
        return Vec::new();
    };
    if file.seek(SeekFrom::Start(from)).is_err() {
        return Vec::new();
    }
    let ts = |v: &serde_json::Value| v.as_str()?.parse::<Timestamp>().ok();
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        if !line.contains("lat-") || !line.contains("\"ResponseComplete\"") {
            continue;
        }
        let Ok(e) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let o = &e["objectRef"];
        let text = |k: &str| o[k].as_str().unwrap_or_default().to_string();
        let (name, namespace) = (text("name"), text("namespace"));
        let Some(key) = seen
            .keys()
            .find(|k| {
                name == **k
                    || namespace == **k
                    || name.contains(&format!("{k}:"))
                    || name.starts_with(&format!("{k}."))
            })
            .copied()
        else {
            continue;
        };
        let entry = seen.get_mut(key).expect("known sample");
        let (received, done) = (ts(&e["requestReceivedTimestamp"]), ts(&e["stageTimestamp"]));
        if e["user"]["username"] != user {
            if e["verb"] == "create" && o["resource"] == "workspaces" {
                entry.created = done;
            }
            continue;
        }
        if entry.status.is_some() {
            continue;
        }
        entry.first = entry.first.or(received);
        entry.requests += 1;
        if let (Some(r), Some(d)) = (received, done) {
            entry.server_ms += millis(r, d);
        }
        if o["resource"] == "workspaces" && o["subresource"] == "status" {
            entry.status = done;
        }
    }
    let wall = |t: std::time::SystemTime| Timestamp::try_from(t).ok();
    let mut stages: Vec<(&str, Vec<f64>)> = vec![
        ("client: create answered", Vec::new()),
        ("watch event to the operator's first request", Vec::new()),
        ("operator: first request to status written", Vec::new()),
        ("  of which in the API server", Vec::new()),
        ("  requests until Ready", Vec::new()),
        ("status written to the client's watch", Vec::new()),
    ];
    for s in samples {
        let Some(x) = seen.get(s.name.as_str()) else {
            continue;
        };
        let (Some(sent), Some(seen_at), Some(created), Some(first), Some(status)) =
            (wall(s.sent), wall(s.seen), x.created, x.first, x.status)
        else {
            continue;
        };
        stages[0].1.push(millis(sent, created));
        stages[1].1.push(millis(created, first));
        stages[2].1.push(millis(first, status));
        stages[3].1.push(x.server_ms);
        stages[4].1.push(x.requests as f64);
        stages[5].1.push(millis(status, seen_at));
    }
    stages
        .into_iter()
        .map(|(stage, values)| Stage {
            stage: stage.to_string(),
            p50_ms: super::report::percentile(&values, 50.0),
            p99_ms: super::report::percentile(&values, 99.0),
        })
        .collect()
}
