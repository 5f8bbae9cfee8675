//! Request handlers, one file per request kind. Each takes the shared state, the
//! connection's session and its request, and returns a response or a
//! [`RequestError`] that names what was wrong.

mod ack;
mod audit_proof;
mod challenge;
pub(crate) mod collect;
mod create_group;
mod delivery_status;
mod fetch;
mod fetch_bundle;
mod fetch_identity;
mod login;
mod register;
mod send_normal;
mod send_secret;
mod send_secret_group;
pub(crate) mod submit_warrant;
pub mod subscribe;
mod upload_prekeys;

use sotto_proto::v1::{self, ErrorCode, Response, request, response};
use tracing::error;

use crate::RelayError;
use crate::records::NormalRecord;
use crate::session::Session;
use crate::state::RelayState;

/// A refusal: an error code, one line for a person, and for warrant and
/// unmask refusals the stable refusal code.
#[derive(Debug)]
pub(crate) struct RequestError {
    pub code: ErrorCode,
    pub message: String,
    pub refusal: &'static str,
    /// For a refusal by a limit: which one (a metrics label).
    pub limit: &'static str,
}

impl RequestError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RequestError {
            code,
            message: message.into(),
            refusal: "",
            limit: "",
        }
    }

    /// A refusal by the limit named `limit`.
    pub fn limited(limit: &'static str, message: impl Into<String>) -> Self {
        RequestError {
            limit,
            ..Self::new(ErrorCode::RateLimited, message)
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}

impl From<RelayError> for RequestError {
    fn from(e: RelayError) -> Self {
        // Not a failure: a request a cluster's node does not serve yet, said
        // as a relay says of any request it does not serve (a client leaves
        // it be, and does not ask again as it would after a failure).
        if let RelayError::NotOnCluster(_) = e {
            return RequestError::bad_request(e.to_string());
        }
        // The error names a store or sealing failure, never content.
        error!(error = %e, "request failed inside the relay");
        RequestError::new(
            ErrorCode::Internal,
            "the relay could not complete the request; try again",
        )
    }
}

impl From<crate::store::StoreError> for RequestError {
    fn from(e: crate::store::StoreError) -> Self {
        RelayError::from(e).into()
    }
}

impl From<RequestError> for Response {
    fn from(e: RequestError) -> Self {
        Response {
            kind: Some(response::Kind::Error(v1::Error {
                code: e.code as i32,
                message: e.message,
                refusal: e.refusal.to_owned(),
            })),
            receipt: None,
        }
    }
}

type Handled = Result<response::Kind, RequestError>;

/// A warrant desk's answer as a request error: a refusal keeps its stable
/// code in the `refusal` field; a failure inside says only a sentence.
pub(crate) fn desk_error(e: crate::warrant::DeskError, refused: ErrorCode) -> RequestError {
    match e {
        crate::warrant::DeskError::Refused(refusal) => RequestError {
            code: refused,
            message: refusal.to_string(),
            refusal: refusal.code(),
            limit: "",
        },
        crate::warrant::DeskError::Failed(why) => RequestError::new(ErrorCode::Internal, why),
    }
}

/// Whether `kind`'s handler writes the store itself (not through the writing
/// thread), and so may wait on the disk for as long as a flush takes.
fn writes_in_place(kind: &request::Kind) -> bool {
    use request::Kind;
    matches!(
        kind,
        Kind::Register(_)
            | Kind::UploadPrekeys(_)
            | Kind::FetchBundle(_)
            | Kind::CreateGroup(_)
            | Kind::SendSecretGroup(_)
            | Kind::Ack(_)
            | Kind::Unmask(_)
            | Kind::ExtendNotice(_)
    )
}

/// Routes one request to its handler. Only challenge, register, login and the
/// warrant requests are served before login.
///
/// A handler that writes the store itself runs off the connections' async
/// workers: behind a slow flush, two such requests would otherwise hold both
/// workers, and the relay would answer nobody, keep-alives included.
pub(crate) async fn dispatch(
    state: &std::sync::Arc<RelayState>,
    session: &Session,
    request: v1::Request,
) -> Response {
    let Some(kind) = request.kind else {
        return RequestError::bad_request("the request names no operation").into();
    };
    if writes_in_place(&kind) {
        return off_the_workers(Box::pin(route(state, session, kind))).await;
    }
    route(state, session, kind).await
}

/// Runs `work`, which may wait on the disk, off the connections' async
/// workers: the worker hands its other tasks on and waits here. Inline on a
/// single-threaded runtime (which has no other worker to hand them to).
pub(crate) async fn off_the_workers<T>(work: impl std::future::Future<Output = T>) -> T {
    let handle = tokio::runtime::Handle::current();
    if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(|| handle.block_on(work))
    } else {
        work.await
    }
}

/// Each request's task holds this future, as large as its largest arm: the
/// rarer handlers with large futures (fetches, prekeys, the warrant desk) are
/// boxed, so that a send does not allocate and copy kilobytes it never uses.
async fn route(
    state: &std::sync::Arc<RelayState>,
    session: &Session,
    kind: request::Kind,
) -> Response {
    use request::Kind;
    let result = match kind {
        Kind::Challenge(_) => challenge::handle(session),
        Kind::Register(r) => register::handle(state, session, r).await,
        Kind::Login(r) => login::handle(state, session, r),
        // Investigators have no account: their requests carry their own
        // signatures. A warrant's answer may take several frames: see
        // `submit_warrant::serve`, which the connection calls directly.
        Kind::SubmitWarrant(_) | Kind::Collect(_) => Err(RequestError::bad_request(
            "a warrant is served on a stream of its own",
        )),
        // Signed by the authority a warrant was granted to; the desk owns
        // every rule and the audit entry; granted or refused, the answer
        // carries the entry's receipt.
        Kind::Unmask(r) => {
            let answer = Box::pin(state.warrants.unmask(r.request)).await;
            return receipted(
                state,
                "unmask",
                answer,
                response::Kind::Unmasked,
                ErrorCode::UnmaskRefused,
            );
        }
        Kind::ExtendNotice(r) => {
            let answer = Box::pin(state.warrants.extend_notice(r.request)).await;
            return receipted(
                state,
                "extension",
                answer,
                response::Kind::NoticeExtended,
                ErrorCode::WarrantRefused,
            );
        }
        // Hashes only: anyone may check the log grew without being rewritten.
        Kind::AuditProof(r) => audit_proof::handle(state, session, r).await,
        kind => match session.user() {
            None => Err(RequestError::new(
                ErrorCode::NotLoggedIn,
                "log in first: this request needs an account",
            )),
            Some(user) => match kind {
                Kind::SendNormal(r) => send_normal::handle(state, &user, r).await,
                Kind::CreateGroup(r) => create_group::handle(state, &user, r).await,
                Kind::Fetch(r) => Box::pin(fetch::handle(state, &user, r)).await,
                Kind::Ack(r) => ack::handle(state, &user, r).await,
                Kind::UploadPrekeys(r) => Box::pin(upload_prekeys::handle(state, &user, r)).await,
                Kind::FetchBundle(r) => {
                    Box::pin(fetch_bundle::handle(state, session, &user, r)).await
                }
                Kind::FetchIdentity(r) => fetch_identity::handle(state, &user, r),
                Kind::SendSecret(r) => send_secret::handle(state, &user, r).await,
                Kind::SendSecretGroup(r) => send_secret_group::handle(state, &user, r).await,
                Kind::DeliveryStatus(r) => delivery_status::handle(state, &user, r),
                _ => Err(RequestError::bad_request(
                    "this relay does not serve that request yet",
                )),
            },
        },
    };
    count(state, &result);
    respond(result)
}

/// The response to a request the warrant desk answered, with its receipt.
fn receipted<T>(
    state: &RelayState,
    kind: &'static str,
    answer: crate::warrant::Answer<T>,
    granted: fn(T) -> response::Kind,
    refused: ErrorCode,
) -> Response {
    let decision = if answer.outcome.is_ok() {
        "granted"
    } else {
        "refused"
    };
    state.metrics.warrant_request(kind, decision);
    let result = answer
        .outcome
        .map(granted)
        .map_err(|e| desk_error(e, refused));
    count(state, &result);
    let mut response = respond(result);
    response.receipt = answer.receipt;
    response
}

fn respond(result: Handled) -> Response {
    match result {
        Ok(kind) => Response {
            kind: Some(kind),
            receipt: None,
        },
        Err(e) => e.into(),
    }
}

/// What an answer tells the metrics: messages stored, deliveries, logins, refusals.
fn count(state: &RelayState, result: &Handled) {
    use crate::metrics::Metrics;
    let m = &state.metrics;
    match result {
        Ok(response::Kind::Stored(s)) if !s.duplicate => {
            Metrics::count(&m.messages_stored, "mode", "normal")
        }
        Ok(response::Kind::SecretQueued(q)) if !q.duplicate => {
            Metrics::count(&m.messages_stored, "mode", "secret")
        }
        Ok(response::Kind::Batch(b)) => {
            let fetched = [("normal", b.normal.len()), ("secret", b.secret.len())];
            for (mode, n) in fetched {
                m.deliveries
                    .get_or_create(&vec![("mode", mode)])
                    .inc_by(n as u64);
            }
        }
        Ok(response::Kind::LoggedIn(_)) => Metrics::count(&m.logins, "result", "logged_in"),
        Ok(response::Kind::Registered(_)) => Metrics::count(&m.logins, "result", "registered"),
        Err(e) if e.code == ErrorCode::BadSignature => {
            Metrics::count(&m.logins, "result", "refused")
        }
        Err(e) if !e.limit.is_empty() => m.refused(e.limit),
        _ => {}
    }
}

/// A stored record as its recipient sees it.
pub(crate) fn normal_message(seq: u64, record: &NormalRecord) -> v1::NormalMessage {
    v1::NormalMessage {
        id: record.id,
        seq,
        from: record.from.clone(),
        to: record.to.clone(),
        group: record.group.clone(),
        text: record.text.clone(),
        sent_at: record.sent_at,
        client_id: record.client_id.clone().into(),
    }
}

/// `name`'s account, looked up for `requester` within their daily budget of
/// lookups: whether a name exists costs the same to learn as a key does.
pub(crate) fn lookup(
    state: &RelayState,
    requester: &str,
    name: &str,
) -> Result<crate::accounts::Account, RequestError> {
    if !state.quotas.lookup(requester) {
        return Err(RequestError::limited(
            "lookups",
            "you have looked up too many users today; try again tomorrow",
        ));
    }
    state.accounts.get(name)?.ok_or_else(|| {
        RequestError::new(ErrorCode::UnknownUser, format!("no account named {name}"))
    })
}

/// One message `user` sends, within their rate.
pub(crate) fn may_send(state: &RelayState, user: &str) -> Result<(), RequestError> {
    may_send_copies(state, user, 1)
}

/// [`may_send`] for a message stored `copies` times (each counts as a send).
pub(crate) fn may_send_copies(
    state: &RelayState,
    user: &str,
    copies: u32,
) -> Result<(), RequestError> {
    if state.quotas.send_copies(user, copies) {
        Ok(())
    } else {
        Err(RequestError::limited(
            "send_rate",
            format!(
                "you are sending too fast: at most {} messages a minute; wait a moment",
                state.config.limits.sends_per_minute
            ),
        ))
    }
}

/// A send's client id: the 16 bytes the sender made, so a retry is stored once.
pub(crate) fn client_id(id: &[u8]) -> Result<[u8; sotto_proto::CLIENT_ID_LEN], RequestError> {
    id.try_into()
        .map_err(|_| RequestError::bad_request("a message id is 16 bytes"))
}

/// Checks a secret envelope's ciphertext: there, and within the limit.
pub(crate) fn secret_ciphertext(ciphertext: &[u8], what: &str) -> Result<(), RequestError> {
    if ciphertext.is_empty() {
        return Err(RequestError::bad_request(format!(
            "{what} needs its ciphertext"
        )));
    }
    let max = sotto_proto::MAX_SECRET_CIPHERTEXT;
    if ciphertext.len() > max {
        return Err(RequestError::new(
            ErrorCode::TooLarge,
            format!("{what} may hold at most {max} bytes"),
        ));
    }
    Ok(())
}

/// Checks a name against the shared rules, as a request error.
pub(crate) fn valid_name(what: &str, name: &str) -> Result<(), RequestError> {
    sotto_proto::names::validate(name)
        .map_err(|e| RequestError::new(ErrorCode::InvalidUsername, format!("invalid {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use sotto_proto::v1::{self, request, response, send_normal};

    use crate::config::RelayConfig;
    use crate::session::Session;
    use crate::store::faulty::Faulty;

    /// A relay whose store writes can be held, its connections' workers two
    /// (as on the project's machine), and three accounts.
    fn relay(
        root: &std::path::Path,
    ) -> (
        Arc<crate::state::RelayState>,
        Arc<Faulty>,
        crate::datadir::DirLock,
    ) {
        let config = RelayConfig::default();
        let opened = crate::datadir::open(root, &config).unwrap();
        let disk = Arc::new(Faulty::new(opened.store));
        let (state, _writer) = crate::relay::assemble(
            root,
            config,
            &crate::Clock::system(),
            disk.clone(),
            &opened.sealer,
            &opened.disclosure_key,
            &opened.audit_key,
            None,
        )
        .unwrap();
        for (n, user) in ["ann", "bob", "cyd", "dee"].iter().enumerate() {
            let key = ed25519_dalek::SigningKey::from_bytes(&[n as u8 + 1; 32]);
            state.accounts.register(user, &key.verifying_key()).unwrap();
        }
        (state, disk, opened.lock)
    }

    fn session(state: &crate::state::RelayState, user: Option<&str>) -> Session {
        let remote = SocketAddr::from(([127, 0, 0, 1], 40_000));
        let session = Session::detached(state.next_connection_id(), remote, None);
        if let Some(user) = user {
            session.logged_in(user.to_owned(), &state.config);
        }
        session
    }

    async fn ask(
        state: &Arc<crate::state::RelayState>,
        user: Option<&str>,
        kind: request::Kind,
    ) -> response::Kind {
        let session = session(state, user);
        let answer =
            crate::handlers::dispatch(state, &session, v1::Request { kind: Some(kind) }).await;
        answer.kind.expect("an answer")
    }

    /// Four requests of one kind that write the store wait on a disk that
    /// holds every write, more than the relay has workers: someone else is
    /// still answered; once the disk lets go, each of the four is too.
    async fn held_on_a_slow_disk(
        state: &Arc<crate::state::RelayState>,
        disk: &Faulty,
        requests: Vec<(&'static str, request::Kind)>,
        answered: fn(&response::Kind) -> bool,
    ) {
        disk.hold_writes(true);
        let waiting: Vec<_> = requests
            .into_iter()
            .map(|(user, kind)| {
                let state = state.clone();
                tokio::spawn(async move { ask(&state, Some(user), kind).await })
            })
            .collect();
        // Opened again however the test ends: a held write would keep the
        // runtime from shutting down.
        struct Release<'a>(&'a Faulty);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.hold_writes(false);
            }
        }
        let release = Release(disk);
        // One at least waits on the disk (all four may: they no longer
        // wait for a worker to run on).
        assert!(disk.wait_for_held_writes(1, Duration::from_secs(30)) >= 1);
        // Someone else connects meanwhile: answered (waited for on this
        // thread, which is no worker, so a relay that answers nobody fails
        // the test instead of hanging it).
        let (told, answer) = std::sync::mpsc::channel();
        {
            let state = state.clone();
            tokio::spawn(async move {
                let _ = told.send(
                    ask(
                        &state,
                        None,
                        request::Kind::Challenge(v1::ChallengeRequest {}),
                    )
                    .await,
                );
            });
        }
        let challenge = answer.recv_timeout(Duration::from_secs(10));
        drop(release);
        assert!(
            matches!(challenge, Ok(response::Kind::Challenge(_))),
            "a newcomer was not answered while requests waited on the disk: {challenge:?}"
        );
        for request in waiting {
            let answer = request.await.unwrap();
            assert!(answered(&answer), "{answer:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledgements_waiting_on_a_slow_disk_leave_the_relay_answering_everyone_else() {
        let dir = tempfile::tempdir().unwrap();
        let (state, disk, _lock) = relay(&dir.path().join("relay"));
        let mut acks = Vec::new();
        for reader in ["ann", "bob", "cyd", "dee"] {
            let sent = ask(
                &state,
                Some("ann"),
                request::Kind::SendNormal(v1::SendNormal {
                    to: Some(send_normal::To::User(reader.to_owned())),
                    text: format!("hello {reader}"),
                    client_id: reader.as_bytes().repeat(16)[..16].to_vec().into(),
                }),
            )
            .await;
            let response::Kind::Stored(stored) = sent else {
                panic!("not stored: {sent:?}")
            };
            let ack = request::Kind::Ack(v1::Ack {
                normal_upto: stored.id,
                ..v1::Ack::default()
            });
            acks.push((reader, ack));
        }
        held_on_a_slow_disk(&state, &disk, acks, |a| {
            matches!(a, response::Kind::Acked(_))
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn groups_made_while_the_disk_is_slow_leave_the_relay_answering_everyone_else() {
        let dir = tempfile::tempdir().unwrap();
        let (state, disk, _lock) = relay(&dir.path().join("relay"));
        let groups = ["ann", "bob", "cyd", "dee"]
            .into_iter()
            .map(|user| {
                let group = request::Kind::CreateGroup(v1::CreateGroup {
                    name: format!("{user}-team"),
                    members: vec!["ann".into(), "bob".into()],
                });
                (user, group)
            })
            .collect();
        held_on_a_slow_disk(&state, &disk, groups, |a| {
            matches!(a, response::Kind::GroupCreated(_))
        })
        .await;
    }
}
