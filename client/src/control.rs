//! The chat client's control socket. While `sotto chat` runs it holds the
//! profile, and with it the ratchets; another `sotto send` of the same user
//! hands it the message instead of opening the profile, and the chat client
//! sends it the way it sends a typed one. One process advances a ratchet.
//!
//! `<profile>/control.sock`: a Unix socket, mode 0600, in the profile folder
//! (0700); a connection from another user is refused. One request per
//! connection: a line of JSON in (at most [`MAX_REQUEST`] bytes), a line of
//! JSON out once the relay answered.
//!
//! Invariant: only the process holding the profile's lock serves the socket,
//! so a socket file found at start is stale and replaced.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::tui::app::ConvKey;

/// The socket's file name in the profile folder.
pub const SOCKET_NAME: &str = "control.sock";

/// The longest request line read, in bytes: a message of
/// [`sotto_proto::MAX_TEXT`] bytes, each escaped as JSON's `\u00XX` at worst.
pub const MAX_REQUEST: usize = 7 * sotto_proto::MAX_TEXT;

/// How long `sotto send` waits for the answer: longer than the chat client
/// takes to find the relay unreachable (its connect gives up after 10 s).
pub const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// How long the chat client waits for a request once connected.
const REQUEST_WAIT: Duration = Duration::from_secs(10);

/// Connections handled at once; more wait to be accepted.
const CONCURRENT: usize = 16;

/// Where the chat client serving the profile in `dir` listens.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join(SOCKET_NAME)
}

/// What another process asks the chat client to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Send(SendRequest),
}

/// `sotto send`: a normal message to a user or group, or a secret one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    pub to: ConvKey,
    pub text: String,
    /// Disappearing-message timer of a secret message, in seconds.
    #[serde(default)]
    pub expire_secs: Option<u32>,
}

impl SendRequest {
    /// Refuses what `sotto send` itself would never ask: the text comes from
    /// another process and is treated as untrusted.
    pub fn check(&self) -> Result<(), String> {
        let (ConvKey::Direct(name)
        | ConvKey::Group(name)
        | ConvKey::Secret(name)
        | ConvKey::SecretGroup(name)) = &self.to;
        sotto_proto::names::validate(name).map_err(|e| e.to_string())?;
        if let Some(reason) = crate::outbox::refusal(&self.text) {
            return Err(reason);
        }
        match (self.expire_secs, &self.to) {
            (Some(0), _) => Err("a timer must be at least one second".into()),
            (Some(_), ConvKey::Direct(_) | ConvKey::Group(_)) => {
                Err("only a secret message can disappear (--secret --expire)".into())
            }
            (Some(_), ConvKey::SecretGroup(_)) => {
                Err("a secret group's messages do not disappear yet".into())
            }
            _ => Ok(()),
        }
    }
}

/// The chat client's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Answer {
    /// The relay stored the message; the line `sotto send` prints.
    Stored(String),
    /// The relay has not stored it (refused, or not yet): one sentence why.
    NotStored(String),
}

/// What `sotto send` prints once the relay stored a message to `to`.
pub fn sent_line(to: &ConvKey) -> String {
    match to {
        ConvKey::Direct(user) => format!("sent to {user}"),
        ConvKey::Group(group) => format!("sent to group {group}"),
        ConvKey::Secret(user) => format!("sent to {user} (secret)"),
        ConvKey::SecretGroup(group) => format!("sent to the secret group {group}"),
    }
}

/// A request handed to the chat loop, with where its answer goes.
#[derive(Debug)]
pub struct Forwarded {
    pub request: SendRequest,
    pub answer: oneshot::Sender<Answer>,
}

/// The served socket; dropping it stops listening and removes the file.
pub struct ControlSocket {
    path: PathBuf,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.accepting.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listens on `<dir>/control.sock` and hands every valid request to
/// `requests`. Call it only while holding the profile (see the invariant).
pub fn serve(
    dir: &Path,
    requests: mpsc::UnboundedSender<Forwarded>,
) -> std::io::Result<ControlSocket> {
    // The folder is the first line of defence: nobody else may even reach the socket.
    let folder = std::fs::metadata(dir)?;
    if folder.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let path = socket_path(dir);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(&path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let owner = std::fs::metadata(&path)?.uid();
    let accepting = tokio::spawn(accept(listener, owner, requests));
    Ok(ControlSocket { path, accepting })
}

async fn accept(listener: UnixListener, owner: u32, requests: mpsc::UnboundedSender<Forwarded>) {
    let permits = Arc::new(Semaphore::new(CONCURRENT));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of descriptors, say: wait instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let requests = requests.clone();
        tokio::spawn(async move {
            handle(stream, owner, requests).await;
            drop(permit);
        });
    }
}

/// Reads one request, waits for the chat loop's answer, writes it.
async fn handle(mut stream: UnixStream, owner: u32, requests: mpsc::UnboundedSender<Forwarded>) {
    let peer = stream.peer_cred().ok();
    if peer.map(|p| p.uid()) != Some(owner) {
        let refusal = Answer::NotStored("this chat client serves only its own user".into());
        let _ = write_line(&mut stream, &refusal).await;
        return;
    }
    let answer = match tokio::time::timeout(REQUEST_WAIT, read_line(&mut stream)).await {
        Err(_) => Answer::NotStored("no request within 10 seconds".into()),
        Ok(Err(reason)) => Answer::NotStored(reason),
        Ok(Ok(line)) => match serde_json::from_slice::<Request>(&line) {
            Err(e) => Answer::NotStored(format!("the chat client cannot read the request: {e}")),
            Ok(Request::Send(request)) => match request.check() {
                Err(reason) => Answer::NotStored(reason),
                Ok(()) => {
                    let (answer, answered) = oneshot::channel();
                    match requests.send(Forwarded { request, answer }) {
                        Err(_) => Answer::NotStored("the chat client is quitting".into()),
                        Ok(()) => answered.await.unwrap_or_else(|_| {
                            Answer::NotStored(
                                "the chat client quit before the relay confirmed the message: \
                                 it may not have been sent (look in `sotto chat`)"
                                    .into(),
                            )
                        }),
                    }
                }
            },
        },
    };
    let _ = write_line(&mut stream, &answer).await;
}

/// One line of at most [`MAX_REQUEST`] bytes, without its newline.
async fn read_line(stream: &mut UnixStream) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let mut reader = BufReader::new(stream.take(MAX_REQUEST as u64 + 1));
    reader
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| format!("cannot read the request: {e}"))?;
    if line.pop() != Some(b'\n') {
        return Err(if line.len() >= MAX_REQUEST {
            format!("the request is longer than {MAX_REQUEST} bytes")
        } else {
            "the request ended early".into()
        });
    }
    Ok(line)
}

async fn write_line<T: Serialize>(stream: &mut UnixStream, value: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    stream.write_all(&line).await?;
    stream.shutdown().await
}

/// The chat client took the request but gave no answer: whether the message
/// went out is unknown, and the error says so.
#[derive(Debug, Error)]
#[error(
    "the running `sotto chat` took the message but {what}: it may or may not have been sent \
     (look in the chat before sending it again)"
)]
pub struct NoAnswer {
    what: String,
}

/// Hands `request` to the chat client serving the profile in `dir`.
/// `Ok(None)` when none serves it (no socket, or nobody listening on it):
/// then the caller opens the profile itself.
pub async fn forward(dir: &Path, request: &Request) -> Result<Option<Answer>, NoAnswer> {
    let Ok(mut stream) = UnixStream::connect(socket_path(dir)).await else {
        return Ok(None);
    };
    // The message goes only to a chat client of the user who owns the
    // profile, never to whoever managed to listen on its socket.
    let folder_owner = std::fs::metadata(dir).map(|m| m.uid()).ok();
    if folder_owner.is_none() || stream.peer_cred().ok().map(|p| p.uid()) != folder_owner {
        return Err(NoAnswer {
            what: "is run by another user than the profile's owner: nothing was handed to it"
                .to_owned(),
        });
    }
    let exchange = async {
        write_request(&mut stream, request)
            .await
            .map_err(|e| format!("the request could not be written ({e})"))?;
        let mut line = Vec::new();
        let mut reader = BufReader::new((&mut stream).take(MAX_REQUEST as u64));
        reader
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| format!("the answer could not be read ({e})"))?;
        if line.last() != Some(&b'\n') {
            return Err("it closed the connection without answering".to_owned());
        }
        serde_json::from_slice::<Answer>(&line)
            .map_err(|e| format!("its answer is not understood ({e})"))
    };
    match tokio::time::timeout(ANSWER_WAIT, exchange).await {
        Ok(Ok(answer)) => Ok(Some(answer.printable())),
        Ok(Err(what)) => Err(NoAnswer { what }),
        Err(_) => Err(NoAnswer {
            what: format!("did not answer within {} seconds", ANSWER_WAIT.as_secs()),
        }),
    }
}

async fn write_request(stream: &mut UnixStream, request: &Request) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line).await?;
    stream.flush().await
}

impl Answer {
    /// The answer with control characters taken out (it came from another
    /// process and is printed to a terminal), at most 1000 characters.
    fn printable(self) -> Self {
        let clean = |s: String| s.chars().filter(|c| !c.is_control()).take(1000).collect();
        match self {
            Answer::Stored(line) => Answer::Stored(clean(line)),
            Answer::NotStored(why) => Answer::NotStored(clean(why)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(to: ConvKey, text: &str) -> Request {
        Request::Send(SendRequest {
            to,
            text: text.into(),
            expire_secs: None,
        })
    }

    /// Serves `dir` with a chat loop stand-in that answers every request with `answer`.
    fn answering(dir: &Path, answer: fn(&SendRequest) -> Answer) -> ControlSocket {
        let (tx, mut rx) = mpsc::unbounded_channel::<Forwarded>();
        let socket = serve(dir, tx).unwrap();
        tokio::spawn(async move {
            while let Some(f) = rx.recv().await {
                let _ = f.answer.send(answer(&f.request));
            }
        });
        socket
    }

    #[tokio::test]
    async fn a_request_is_answered_through_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let _socket = answering(dir.path(), |r| Answer::Stored(sent_line(&r.to)));
        let answer = forward(dir.path(), &send(ConvKey::Secret("bob".into()), "hi"))
            .await
            .unwrap();
        assert_eq!(answer, Some(Answer::Stored("sent to bob (secret)".into())));
        let mode = std::fs::metadata(socket_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[tokio::test]
    async fn without_a_chat_client_nothing_answers_and_a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let request = send(ConvKey::Direct("bob".into()), "hi");
        assert_eq!(forward(dir.path(), &request).await.unwrap(), None);
        // A socket left by a chat client that died: nobody listens.
        drop(std::os::unix::net::UnixListener::bind(socket_path(dir.path())).unwrap());
        assert_eq!(forward(dir.path(), &request).await.unwrap(), None);
        let socket = answering(dir.path(), |_| Answer::NotStored("offline".into()));
        assert_eq!(
            forward(dir.path(), &request).await.unwrap(),
            Some(Answer::NotStored("offline".into()))
        );
        drop(socket);
        assert!(!socket_path(dir.path()).exists(), "removed on quit");
    }

    #[tokio::test]
    async fn hostile_requests_are_refused_before_the_chat_loop_sees_them() {
        let dir = tempfile::tempdir().unwrap();
        // Anything that reached the chat loop would be answered "stored".
        let _socket = answering(dir.path(), |_| {
            Answer::Stored("reached the chat loop".into())
        });
        let refused = |answer: Option<Answer>| match answer {
            Some(Answer::NotStored(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let long = "x".repeat(sotto_proto::MAX_TEXT + 1);
        let why = refused(
            forward(dir.path(), &send(ConvKey::Direct("bob".into()), &long))
                .await
                .unwrap(),
        );
        assert!(why.contains("at most"), "{why}");
        let why = refused(
            forward(
                dir.path(),
                &send(ConvKey::Direct("Bob\u{1b}[2J".into()), "hi"),
            )
            .await
            .unwrap(),
        );
        assert!(why.contains("may only hold"), "{why}");
        let timed = Request::Send(SendRequest {
            to: ConvKey::Direct("bob".into()),
            text: "hi".into(),
            expire_secs: Some(30),
        });
        let why = refused(forward(dir.path(), &timed).await.unwrap());
        assert!(why.contains("only a secret message"), "{why}");

        // Raw lines: not JSON, not UTF-8, an unknown field, and longer than the limit.
        let path = socket_path(dir.path());
        let raw_answer = |raw: Vec<u8>| {
            let path = path.clone();
            async move {
                let mut stream = UnixStream::connect(path).await.unwrap();
                let _ = stream.write_all(&raw).await;
                let mut answer = String::new();
                stream.read_to_string(&mut answer).await.map(|_| answer)
            }
        };
        for raw in [
            b"hello\n".to_vec(),
            b"{\"send\":{\"to\":{\"direct\":\"bob\"},\"text\":\"\xff\"}}\n".to_vec(),
            b"{\"send\":{\"to\":{\"direct\":\"bob\"},\"text\":\"hi\",\"as\":\"root\"}}\n".to_vec(),
        ] {
            let answer: Answer = serde_json::from_str(&raw_answer(raw).await.unwrap()).unwrap();
            assert!(matches!(answer, Answer::NotStored(_)), "{answer:?}");
        }
        // Refused after MAX_REQUEST bytes: the answer says so, or the rest
        // unread makes the close a reset; the chat loop never sees it.
        match raw_answer(vec![b'['; MAX_REQUEST + 10]).await {
            Ok(answer) => assert!(answer.contains("longer than"), "{answer}"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        }
    }
}
