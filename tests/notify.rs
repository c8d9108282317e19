//! Notifications as a receiver sees them: a real HTTP server on loopback,
//! inside the test, receives the operator's CloudEvents for invitations and
//! transfers, checks their signature, answers 500 once to see the retry, and
//! watches that a restarted operator sends nothing twice and writes nothing.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::Api;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::kubectl::Kubectl;
use support::objects::{accept, apply, member, personal_workspace, user, wait_member_phase};
use support::operator::{OPERATOR_USER, Operator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use workspace_operator::api::WorkspaceMember;

const TIMEOUT: Duration = Duration::from_secs(60);

/// The signing key the operator is given.
const KEY: &[u8] = b"a shared secret for the receiver";

/// One request the receiver got, and how it answered.
#[derive(Clone, Debug)]
struct Received {
    event: Value,
    signature: String,
    content_type: String,
    body: Vec<u8>,
    answered: u16,
}

/// An HTTP/1.1 receiver on 127.0.0.1 that records every POST and answers
/// 500 to the first `failures` of them, 200 afterwards.
#[derive(Clone)]
struct Receiver {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(failures: usize) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = received.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let Some((headers, body)) = read_request(&mut stream).await else {
                        return;
                    };
                    let header = |name: &str| {
                        headers
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.trim()
                                    .eq_ignore_ascii_case(name)
                                    .then(|| v.trim().to_string())
                            })
                            .unwrap_or_default()
                    };
                    let answered = {
                        let mut log = log.lock().unwrap();
                        let answered = if log.len() < failures { 500 } else { 200 };
                        log.push(Received {
                            event: serde_json::from_slice(&body).unwrap_or(Value::Null),
                            signature: header("x-workspaces-signature"),
                            content_type: header("content-type"),
                            body: body.clone(),
                            answered,
                        });
                        answered
                    };
                    let reply = format!(
                        "HTTP/1.1 {answered} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Receiver { port, received }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/workspaces", self.port)
    }

    fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits for a delivered (200) event of `type_` about `subject`.
    async fn wait_event(&self, type_: &str, subject: &str) -> Received {
        let what = format!("a {type_} event about {subject}");
        support::wait_for(&what, TIMEOUT, || async {
            self.all().into_iter().find(|r| {
                r.answered == 200
                    && r.event["type"] == format!("dev.workspaces.{type_}")
                    && r.event["subject"] == subject
            })
        })
        .await
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let headers = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let length: usize = headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buffer.len() < end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some((headers, buffer[end..end + length].to_vec()))
}

/// Whether `signature` is `sha256=<hex HMAC-SHA256 of body under KEY>`.
fn signed(received: &Received) -> bool {
    let Some(hex) = received.signature.strip_prefix("sha256=") else {
        return false;
    };
    let Some(tag) = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, KEY);
    ring::hmac::verify(&key, &received.body, &tag).is_ok()
}

fn notifying_operator(receiver: &Receiver, ttl: &str) -> Operator {
    let dir = std::env::temp_dir().join(support::unique("notify-key"));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key");
    // Surrounding whitespace is not part of the key.
    std::fs::write(&key, [KEY, b"\n"].concat()).unwrap();
    let op = Operator::start(&[
        &format!("--invitation-ttl={ttl}"),
        &format!("--notify-url={}", receiver.url()),
        &format!("--notify-secret-file={}", key.display()),
    ]);
    op.wait_ready(TIMEOUT);
    op
}

/// A new personal workspace of `owner`, Ready.
async fn notes_workspace(admin: &Client, owner: &str) -> String {
    let ws = support::unique("notes");
    personal_workspace(admin, &ws, owner).await;
    ws
}

fn subject(ws: &str, name: &str) -> String {
    format!("namespaces/{ws}/workspacemembers/{name}")
}

#[tokio::test]
async fn people_are_told_what_waits_for_them_once_and_with_a_signature() {
    let plane = support::plane();
    let admin = plane.admin().await;
    // The first delivery fails with 500: it is retried.
    let receiver = Receiver::start(1).await;
    let first = notifying_operator(&receiver, "1h");
    let alice = format!("{}@example.com", support::unique("alice"));
    let ws = notes_workspace(&admin, &alice).await;
    let _dump = support::dump_on_failure(&[&ws]);

    // Invitation created: to the invitee, with the command that accepts.
    let dave = format!("dave-{ws}@example.com");
    apply(&admin, member(&ws, "dave", user(&dave), "Developer")).await;
    let invited = wait_member_phase(&admin, &ws, "dave", "Invited", TIMEOUT).await;
    let created = receiver
        .wait_event("invitation.created", &subject(&ws, "dave"))
        .await;
    let event = &created.event;
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(
        event["id"],
        format!("{}:invitation.created", invited.uid().unwrap())
    );
    assert_eq!(event["source"], "/apis/workspaces.dev/v1alpha1");
    assert!(event["time"].is_string());
    assert_eq!(event["data"]["workspace"], ws.as_str());
    assert_eq!(
        event["data"]["person"],
        json!({"kind": "User", "name": dave})
    );
    assert_eq!(event["data"]["role"], "Developer");
    let command = event["data"]["command"].as_str().unwrap();
    assert!(
        command.contains(&format!("kubectl -n {ws} patch workspacemember dave"))
            && command.contains("Accepted"),
        "{command}"
    );
    assert!(
        created
            .content_type
            .starts_with("application/cloudevents+json")
    );
    assert!(signed(&created), "signature {:?}", created.signature);
    // The receiver's 500 was retried under the same id.
    let attempts: Vec<u16> = receiver
        .all()
        .iter()
        .filter(|r| r.event["id"] == event["id"])
        .map(|r| r.answered)
        .collect();
    assert_eq!(
        attempts,
        [500, 200],
        "one failed attempt, then the delivery"
    );
    assert!(first.counter("workspace_operator_notifications", "outcome=\"retried\"") >= 1.0);

    // Accepted: to the owner.
    accept(&admin, &ws, "dave", &dave, TIMEOUT).await;
    let accepted = receiver
        .wait_event("invitation.accepted", &subject(&ws, "dave"))
        .await;
    assert_eq!(
        accepted.event["data"]["person"],
        json!({"kind": "User", "name": alice})
    );
    assert!(signed(&accepted));

    // Declined: to the owner, with how to invite again.
    let erin = format!("erin-{ws}@example.com");
    apply(&admin, member(&ws, "erin", user(&erin), "Viewer")).await;
    wait_member_phase(&admin, &ws, "erin", "Invited", TIMEOUT).await;
    Kubectl::as_user(&erin, &[])
        .run(&[
            "-n",
            &ws,
            "patch",
            "wsm",
            "erin",
            "--type=merge",
            "-p",
            &support::objects::response_patch("Declined"),
        ])
        .success();
    let declined = receiver
        .wait_event("invitation.declined", &subject(&ws, "erin"))
        .await;
    assert!(
        declined.event["data"]["command"]
            .as_str()
            .unwrap()
            .contains("delete workspacemember erin")
    );

    // A transfer waiting for the target's approval: to the target user,
    // with the command that approves; then its completion.
    let zed = format!("zed-{ws}@example.com");
    let moving = notes_workspace(&admin, &alice).await;
    let name = format!("{moving}-to-zed");
    let manifest = format!(
        "apiVersion: workspaces.dev/v1alpha1\nkind: WorkspaceTransfer\nmetadata:\n  name: {name}\n\
         spec:\n  workspace: {moving}\n  from: {{kind: User, name: \"{alice}\"}}\n  to: {{kind: User, name: \"{zed}\"}}\n  approvals:\n    source: {{approvedBy: \"{alice}\"}}\n"
    );
    Kubectl::as_user(&alice, &[]).create(&manifest).success();
    let transfer_subject = format!("workspacetransfers/{name}");
    let waiting = receiver
        .wait_event("transfer.approval.requested", &transfer_subject)
        .await;
    assert_eq!(waiting.event["data"]["side"], "target");
    assert_eq!(
        waiting.event["data"]["approvers"],
        json!([{"kind": "User", "name": zed}])
    );
    let approve = waiting.event["data"]["command"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        approve.contains(&zed) && approve.contains("\"target\""),
        "{approve}"
    );
    assert!(
        !receiver.all().iter().any(|r| r.event["type"]
            == "dev.workspaces.transfer.approval.requested"
            && r.event["data"]["side"] == "source"),
        "the source approved when it proposed: nobody is asked"
    );
    // zed types the command the notification gave him.
    let args: Vec<String> = vec![
        "patch".into(),
        "workspacetransfer".into(),
        name.clone(),
        "--type=merge".into(),
        "-p".into(),
        json!({"spec": {"approvals": {"target": {"approvedBy": zed}}}}).to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Kubectl::as_user(&zed, &[]).run(&args).success();
    receiver
        .wait_event("transfer.completed", &transfer_subject)
        .await;
    // A refused transfer is announced too.
    let kept = notes_workspace(&admin, &alice).await;
    let refused = format!("{kept}-to-zed");
    let manifest = manifest.replace(&name, &refused).replace(&moving, &kept);
    Kubectl::as_user(&alice, &[]).create(&manifest).success();
    let refused_subject = format!("workspacetransfers/{refused}");
    receiver
        .wait_event("transfer.approval.requested", &refused_subject)
        .await;
    let reject = json!({"spec": {"approvals": {"target": {"rejectedBy": zed}}}}).to_string();
    Kubectl::as_user(&zed, &[])
        .run(&[
            "patch",
            "workspacetransfer",
            &refused,
            "--type=merge",
            "-p",
            &reject,
        ])
        .success();
    receiver
        .wait_event("transfer.rejected", &refused_subject)
        .await;

    // An open invitation survives a restart, which sends and writes nothing.
    let gus = format!("gus-{ws}@example.com");
    apply(&admin, member(&ws, "gus", user(&gus), "Viewer")).await;
    receiver
        .wait_event("invitation.created", &subject(&ws, "gus"))
        .await;
    first.stop();
    drop(first);
    let sent_before = receiver.all().len();
    let mark = plane.audit_mark();
    let second = notifying_operator(&receiver, "3s");
    let members: Api<WorkspaceMember> = Api::namespaced(admin.clone(), &ws);
    for name in ["dave", "erin", "gus"] {
        let version = members.get(name).await.unwrap().resource_version().unwrap();
        second
            .wait_reconciled("member", &ws, name, &version, TIMEOUT)
            .await;
    }
    let writes: Vec<String> = plane
        .writes_since(mark, OPERATOR_USER)
        .into_iter()
        .filter(|w| w.namespace == ws || w.name == name)
        .map(|w| w.to_string())
        .collect();
    assert!(writes.is_empty(), "writes after the restart: {writes:#?}");
    assert_eq!(
        receiver.all().len(),
        sent_before,
        "nothing sent again after the restart"
    );
    wait_member_phase(&admin, &ws, "gus", "Invited", TIMEOUT).await;

    // Expiry (this operator's TTL is 3 s): to the owner, and the grant goes.
    let frank = format!("frank-{ws}@example.com");
    apply(&admin, member(&ws, "frank", user(&frank), "Viewer")).await;
    receiver
        .wait_event("invitation.created", &subject(&ws, "frank"))
        .await;
    let expired = wait_member_phase(&admin, &ws, "frank", "Expired", TIMEOUT).await;
    let ready = expired
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "InvitationExpired");
    receiver
        .wait_event("invitation.expired", &subject(&ws, "frank"))
        .await;
    support::wait_for("frank's answering grant to go", TIMEOUT, || async {
        let reads = support::objects::can(
            &frank,
            &[],
            "get",
            "workspacemembers.workspaces.dev",
            Some(&ws),
            Some("frank"),
        );
        (!reads.await).then_some(())
    })
    .await;

    // Every change was delivered exactly once.
    let mut delivered: Vec<String> = receiver
        .all()
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| r.event["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let count = delivered.len();
    let sent = delivered.clone();
    delivered.sort();
    delivered.dedup();
    assert_eq!(
        delivered.len(),
        count,
        "a notification was delivered twice: {sent:#?}"
    );
}
