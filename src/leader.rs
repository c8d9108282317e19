//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! kube-runtime 5 ships no leader-election helper, so this module implements
//! the algorithm client-go uses:
//!
//! - A candidate reads the Lease every [`LeaseSettings::retry_interval`]. It
//!   takes the Lease when none exists, when its holder is empty (released), or
//!   when the Lease has not changed for `leaseDurationSeconds` *as measured on
//!   the candidate's own clock* since it first saw that version (so clock
//!   skew between replicas does not matter).
//! - Every write is a create or a `replace` carrying the `resourceVersion`
//!   that was read, so of two replicas racing for the Lease exactly one wins;
//!   the other gets `409 Conflict` and keeps waiting.
//! - The leader renews every [`LeaseSettings::renew_interval`]. If it cannot
//!   renew within [`LeaseSettings::renew_deadline`] (shorter than the lease
//!   duration), or finds the Lease held by someone else or deleted, it has
//!   lost leadership: [`Leadership::hold`] returns and the operator stops
//!   reconciling and exits, so the Deployment restarts it as a candidate.
//! - On graceful shutdown the leader releases the Lease (empty holder,
//!   1 s duration) so a standby takes over at its next poll.
//!
//! Lease renewals are the only periodic writes the operator makes: one
//! `update` of one Lease in the operator's namespace every 5 s by the leader.
//! Standbys only read. `--leader-election=false` turns all of this off for
//! single-replica installs, and then a converged cluster sees no writes at all.
//!
//! The operator needs `get`, `create` and `update` on `leases` in the lease
//! namespace.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// Timing of the election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSettings {
    /// `leaseDurationSeconds` written to the Lease: how long a standby waits
    /// without seeing a renewal before taking over.
    pub lease_duration: Duration,
    /// How often the leader renews.
    pub renew_interval: Duration,
    /// The leader gives up when it has not renewed for this long; must be
    /// shorter than `lease_duration`.
    pub renew_deadline: Duration,
    /// How often a standby polls, and how soon a failed renewal is retried.
    pub retry_interval: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
            renew_deadline: Duration::from_secs(10),
            retry_interval: Duration::from_secs(2),
        }
    }
}

/// Why leader election failed or leadership was lost.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the Lease failed: {0}")]
    Read(#[source] kube::Error),
    #[error("creating the Lease failed: {0}")]
    Create(#[source] kube::Error),
    #[error("updating the Lease failed: {0}")]
    Update(#[source] kube::Error),
    #[error("the Lease request timed out")]
    Timeout,
    #[error("the Lease is now held by {holder:?}")]
    TakenOver { holder: String },
    #[error("the Lease was deleted")]
    Deleted,
    #[error("could not renew the Lease for {0:?}")]
    RenewDeadlineExceeded(Duration),
}

impl Error {
    /// A bounded, machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Read(_) => "ReadFailed",
            Error::Create(_) => "CreateFailed",
            Error::Update(_) => "UpdateFailed",
            Error::Timeout => "Timeout",
            Error::TakenOver { .. } => "TakenOver",
            Error::Deleted => "Deleted",
            Error::RenewDeadlineExceeded(_) => "RenewDeadlineExceeded",
        }
    }
}

/// A unique identity for this process: the pod name (`POD_NAME`, else the
/// host name) plus a random suffix, so a restarted container never mistakes
/// its predecessor's Lease for its own.
pub fn default_identity() -> String {
    let base = ["POD_NAME", "HOSTNAME"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .chain(std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|value| value.trim().to_owned())
        .find(|value| !value.is_empty())
        .unwrap_or_else(|| "workspace-operator".to_owned());
    format!("{base}-{:08x}", random_u32())
}

fn random_u32() -> u32 {
    // RandomState is seeded from the OS; good enough for a unique suffix.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(since_epoch) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since_epoch.as_nanos());
    }
    // Truncation intended: only the low bits are used.
    hasher.finish() as u32
}

/// What a candidate should do with the Lease it just read.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// No Lease exists: create it.
    Create,
    /// Take (or keep) the Lease by replacing it.
    Take,
    /// Someone else holds a live Lease.
    Wait { holder: String },
}

fn holder_of(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()
        .and_then(|spec| spec.holder_identity.as_deref())
        .filter(|holder| !holder.is_empty())
}

fn lease_duration_of(lease: &Lease, fallback: Duration) -> Duration {
    lease
        .spec
        .as_ref()
        .and_then(|spec| spec.lease_duration_seconds)
        .and_then(|seconds| u64::try_from(seconds).ok())
        .map_or(fallback, Duration::from_secs)
}

/// Decides from the Lease as read and how long it has gone unchanged on our clock.
fn decide(
    lease: Option<&Lease>,
    identity: &str,
    unchanged_for: Duration,
    fallback_duration: Duration,
) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    match holder_of(lease) {
        None => Decision::Take,
        Some(holder) if holder == identity => Decision::Take,
        Some(_) if unchanged_for >= lease_duration_of(lease, fallback_duration) => Decision::Take,
        Some(holder) => Decision::Wait {
            holder: holder.to_owned(),
        },
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

/// The Lease as written when `identity` takes it over from `previous`.
fn taken(
    previous: Option<&Lease>,
    namespace: &str,
    name: &str,
    identity: &str,
    duration: Duration,
) -> Lease {
    let mut lease = previous.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        spec: None,
    });
    lease.metadata.managed_fields = None;
    let already_ours = previous.and_then(holder_of) == Some(identity);
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let transitions = spec.lease_transitions.unwrap_or(0);
    let at = now();
    if !already_ours {
        spec.acquire_time = Some(at.clone());
        if previous.is_some() {
            spec.lease_transitions = Some(transitions.saturating_add(1));
        }
    }
    spec.lease_transitions.get_or_insert(0);
    spec.holder_identity = Some(identity.to_owned());
    spec.lease_duration_seconds = Some(seconds(duration));
    spec.renew_time = Some(at);
    lease
}

/// Competes for one Lease.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    namespace: String,
    identity: String,
    settings: LeaseSettings,
}

impl LeaderElector {
    /// An elector for Lease `namespace/name` under `identity`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: String,
        settings: LeaseSettings,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            identity,
            settings,
        }
    }

    /// This candidate's holder identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    async fn timed<T>(&self, request: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        tokio::time::timeout(self.settings.renew_interval, request)
            .await
            .unwrap_or(Err(Error::Timeout))
    }

    async fn read(&self) -> Result<Option<Lease>, Error> {
        self.timed(async { self.api.get_opt(&self.name).await.map_err(Error::Read) })
            .await
    }

    /// Waits until this candidate holds the Lease, polling every
    /// `retry_interval`. Cancel by dropping the future.
    pub async fn acquire(&self) -> Leadership {
        tracing::info!(
            lease = %self.name, namespace = %self.namespace, identity = %self.identity,
            "waiting to become leader"
        );
        let mut observed: Option<Observed> = None;
        let mut last_holder: Option<String> = None;
        loop {
            match self.try_acquire(&mut observed).await {
                Ok(Attempt::Acquired(leadership)) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                    return *leadership;
                }
                Ok(Attempt::Held { holder }) => {
                    if last_holder.as_deref() != Some(holder.as_str()) {
                        tracing::info!(lease = %self.name, %holder, "another replica leads; standing by");
                        last_holder = Some(holder);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, reason = error.reason(), lease = %self.name, "leader election attempt failed");
                }
            }
            tokio::time::sleep(self.settings.retry_interval).await;
        }
    }

    /// One read and, when the Lease is free or expired, one write.
    async fn try_acquire(&self, observed: &mut Option<Observed>) -> Result<Attempt, Error> {
        let current = self.read().await?;
        let version = current
            .as_ref()
            .and_then(|lease| lease.metadata.resource_version.clone());
        let unchanged_for = Observed::unchanged_for(observed, version);
        let decision = decide(
            current.as_ref(),
            &self.identity,
            unchanged_for,
            self.settings.lease_duration,
        );
        let holder = match decision {
            Decision::Wait { holder } => return Ok(Attempt::Held { holder }),
            Decision::Create | Decision::Take => {
                current.as_ref().and_then(holder_of).map(str::to_owned)
            }
        };
        let desired = taken(
            current.as_ref(),
            &self.namespace,
            &self.name,
            &self.identity,
            self.settings.lease_duration,
        );
        let started = Instant::now();
        match self.write(current.is_none(), &desired).await {
            Ok(lease) => {
                if let Some(previous) = holder.filter(|previous| *previous != self.identity) {
                    tracing::info!(lease = %self.name, %previous, "took over the Lease");
                }
                Ok(Attempt::Acquired(Box::new(Leadership {
                    elector: self.clone(),
                    lease,
                    renewed_at: started,
                })))
            }
            // Another candidate won the race: keep waiting on the new version.
            Err(
                Error::Create(kube::Error::Api(status)) | Error::Update(kube::Error::Api(status)),
            ) if status.is_conflict() || status.is_already_exists() => {
                *observed = None;
                let holder = self
                    .read()
                    .await?
                    .as_ref()
                    .and_then(holder_of)
                    .unwrap_or_default()
                    .to_owned();
                Ok(Attempt::Held { holder })
            }
            Err(error) => Err(error),
        }
    }
}

impl LeaderElector {
    /// Creates the Lease (when there is none) or replaces it with `desired`.
    async fn write(&self, create: bool, desired: &Lease) -> Result<Lease, Error> {
        if create {
            self.timed(async {
                self.api
                    .create(&PostParams::default(), desired)
                    .await
                    .map_err(Error::Create)
            })
            .await
        } else {
            self.timed(async {
                self.api
                    .replace(&self.name, &PostParams::default(), desired)
                    .await
                    .map_err(Error::Update)
            })
            .await
        }
    }
}

impl Observed {
    /// How long the Lease at `version` has been seen unchanged; a new
    /// version (or none) starts the count again.
    fn unchanged_for(observed: &mut Option<Observed>, version: Option<String>) -> Duration {
        match (observed.as_ref(), &version) {
            (Some(seen), Some(version)) if seen.resource_version == *version => {
                seen.since.elapsed()
            }
            _ => {
                *observed = version.map(|resource_version| Observed {
                    resource_version,
                    since: Instant::now(),
                });
                Duration::ZERO
            }
        }
    }
}

/// A Lease version and when this process first saw it.
struct Observed {
    resource_version: String,
    since: Instant,
}

enum Attempt {
    Acquired(Box<Leadership>),
    Held { holder: String },
}

/// Held leadership: renew it with [`Leadership::hold`], give it up with
/// [`Leadership::release`].
pub struct Leadership {
    elector: LeaderElector,
    /// The Lease as last written by us (its resourceVersion guards the next write).
    lease: Lease,
    /// When the last successful write was sent.
    renewed_at: Instant,
}

impl Leadership {
    /// Renews the Lease until leadership is lost, then returns why. Never
    /// returns while leadership is held; cancel by dropping the future.
    pub async fn hold(&mut self) -> Error {
        let settings = self.elector.settings.clone();
        let mut wait = settings.renew_interval;
        loop {
            tokio::time::sleep(wait).await;
            let started = Instant::now();
            // Bound the whole attempt (a conflict costs a read and a second
            // write) so a hung API server cannot keep us past the deadline.
            let budget = settings
                .renew_deadline
                .saturating_sub(self.renewed_at.elapsed());
            let attempt = tokio::time::timeout(budget, self.renew()).await;
            match attempt.unwrap_or(Err(Error::Timeout)) {
                Ok(()) => {
                    self.renewed_at = started;
                    wait = settings.renew_interval;
                }
                Err(error @ (Error::TakenOver { .. } | Error::Deleted)) => {
                    tracing::error!(%error, lease = %self.elector.name, "lost leadership");
                    return error;
                }
                Err(error) => {
                    let since = self.renewed_at.elapsed();
                    if since >= settings.renew_deadline {
                        tracing::error!(%error, lease = %self.elector.name, "lost leadership: cannot renew the Lease");
                        return Error::RenewDeadlineExceeded(since);
                    }
                    tracing::warn!(%error, reason = error.reason(), lease = %self.elector.name, "renewing the Lease failed; retrying");
                    wait = settings
                        .retry_interval
                        .min(settings.renew_deadline.saturating_sub(since));
                }
            }
        }
    }

    /// One renewal; on a conflict, re-reads and retries once if still ours.
    async fn renew(&mut self) -> Result<(), Error> {
        match self.write(|spec| spec.renew_time = Some(now())).await {
            Err(Error::Update(kube::Error::Api(status))) if status.is_conflict() => {
                // Someone changed the Lease: still ours (e.g. a label edit)?
                let current = self.elector.read().await?.ok_or(Error::Deleted)?;
                match holder_of(&current) {
                    Some(holder) if holder == self.elector.identity => {
                        self.lease = current;
                        self.write(|spec| spec.renew_time = Some(now())).await
                    }
                    holder => Err(Error::TakenOver {
                        holder: holder.unwrap_or_default().to_owned(),
                    }),
                }
            }
            Err(Error::Update(kube::Error::Api(status))) if status.is_not_found() => {
                Err(Error::Deleted)
            }
            other => other,
        }
    }

    async fn write(&mut self, change: impl FnOnce(&mut LeaseSpec)) -> Result<(), Error> {
        let mut desired = self.lease.clone();
        desired.metadata.managed_fields = None;
        change(desired.spec.get_or_insert_with(LeaseSpec::default));
        let elector = &self.elector;
        let written = elector
            .timed(async {
                elector
                    .api
                    .replace(&elector.name, &PostParams::default(), &desired)
                    .await
                    .map_err(Error::Update)
            })
            .await?;
        self.lease = written;
        Ok(())
    }

    /// Gives the Lease up so a standby takes over at once: empty holder and a
    /// 1 s duration. A conflict means someone else already holds it, which is
    /// fine.
    pub async fn release(mut self) -> Result<(), Error> {
        let result = self
            .write(|spec| {
                spec.holder_identity = None;
                spec.lease_duration_seconds = Some(1);
                spec.renew_time = Some(now());
            })
            .await;
        match result {
            Ok(()) => {
                tracing::info!(lease = %self.elector.name, "released the Lease");
                Ok(())
            }
            Err(Error::Update(kube::Error::Api(status)))
                if status.is_conflict() || status.is_not_found() =>
            {
                tracing::info!(lease = %self.elector.name, "Lease already changed by another replica; nothing to release");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests;
