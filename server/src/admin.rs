//! The admin socket: how `sotto-relay warrant list|show|approve|reject`
//! reaches the running relay. A Unix socket `admin.sock` in the data
//! directory, mode 0600 from the moment it is there (made in a private
//! directory beside it, then moved in): whoever may open it is the relay's
//! operator. One JSON request a connection, one JSON answer.
//!
//! `serve` makes it once the relay holds the data directory (so a socket
//! left there is a stale one, from a relay that was killed: it is replaced);
//! a clean stop removes it. Without a relay, there is no socket to answer:
//! [`ask`] says so.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info};

use crate::state::RelayState;
use crate::warrant::{HeldView, Reviewed};

/// The admin socket of the data directory at `root`.
pub fn socket_path(root: &Path) -> PathBuf {
    root.join("admin.sock")
}

/// What an operator asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum AdminRequest {
    List {
        pending: bool,
    },
    Show {
        id: String,
        authority: Option<String>,
    },
    Approve {
        id: String,
        authority: Option<String>,
        by: String,
    },
    Reject {
        id: String,
        authority: Option<String>,
        by: String,
        reason: String,
    },
}

/// What the relay answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminAnswer {
    Held(Vec<HeldView>),
    Approved { approvals: u32, needed: u32 },
    Disclosed { records: u64 },
    Rejected,
    Refused(String),
}

/// The longest request line the socket reads.
const MAX_REQUEST: u64 = 64 * 1024;
/// How long a request line may take to arrive.
const REQUEST_TIME: Duration = Duration::from_secs(10);
/// How long an answer may take (a large disclosure is made at the last approval).
const ANSWER_TIME: Duration = Duration::from_secs(600);

/// The socket, while the relay serves it.
pub(crate) struct AdminSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl AdminSocket {
    /// Makes the socket at `path` (replacing a stale one) and answers on it.
    pub fn serve(path: &Path, state: Weak<RelayState>) -> Result<Self> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                // The data directory is ours (locked): no relay answers there.
                debug!(path = %path.display(), "replacing a stale admin socket");
                std::fs::remove_file(path)
                    .with_context(|| format!("cannot remove the stale {}", path.display()))?;
            }
            Ok(_) => bail!(
                "{} exists and is not a socket: move it away so the relay can make its admin socket",
                path.display()
            ),
            Err(_) => {}
        }
        let listener = bind_private(path)?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, state).await {
                        debug!(error = %format!("{e:#}"), "an admin request failed");
                    }
                });
            }
        });
        Ok(AdminSocket {
            path: path.to_owned(),
            task,
        })
    }

    /// Stops answering and removes the socket.
    pub async fn close(self) {
        self.task.abort();
        let _ = self.task.await;
        if std::fs::remove_file(&self.path).is_ok() {
            info!(path = %self.path.display(), "admin socket removed");
        }
    }
}

/// Binds the socket at `path`, never reachable there with a mode other
/// than 0600: it is made (with the process's umask) and made private in a
/// fresh 0700 directory beside it, then renamed into place. Made at `path`
/// directly, it could be connected to between `bind` and `chmod` under a lax
/// umask, and a connection made then stays open.
fn bind_private(path: &Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    // Short names: a socket's path is at most 107 bytes, and this one is
    // only a byte longer than `path`.
    let staging = path.with_extension("new");
    match std::fs::symlink_metadata(&staging) {
        // Left by a relay killed while it made its socket (the directory is ours: locked).
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&staging),
        Ok(_) => std::fs::remove_file(&staging),
        Err(_) => Ok(()),
    }
    .with_context(|| format!("cannot remove the stale {}", staging.display()))?;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .with_context(|| format!("cannot make {}", staging.display()))?;
    let made = staging.join("s");
    let bound = tokio::net::UnixListener::bind(&made)
        .with_context(|| format!("cannot make the admin socket {}", made.display()))
        .and_then(|listener| {
            std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot make {} private", made.display()))?;
            std::fs::rename(&made, path)
                .with_context(|| format!("cannot move the admin socket to {}", path.display()))?;
            Ok(listener)
        });
    let _ = std::fs::remove_dir_all(&staging);
    bound
}

async fn answer(stream: tokio::net::UnixStream, state: Weak<RelayState>) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    // A client that connects and says nothing is not waited for.
    tokio::time::timeout(
        REQUEST_TIME,
        tokio::io::BufReader::new(read.take(MAX_REQUEST)).read_line(&mut line),
    )
    .await
    .context("no request line within the time allowed")??;
    let answer = match serde_json::from_str::<AdminRequest>(&line) {
        Ok(request) => match state.upgrade() {
            Some(state) => decide(&state, request).await,
            None => AdminAnswer::Refused("the relay is stopping".into()),
        },
        Err(e) => AdminAnswer::Refused(format!("not an admin request: {e}")),
    };
    let mut text = serde_json::to_string(&answer)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await?;
    Ok(())
}

async fn decide(state: &Arc<RelayState>, request: AdminRequest) -> AdminAnswer {
    let desk = &state.warrants;
    let reviewed = |r: Result<Reviewed, crate::warrant::ReviewError>| match r {
        Ok(Reviewed::Approved { approvals, needed }) => AdminAnswer::Approved { approvals, needed },
        Ok(Reviewed::Disclosed { records }) => AdminAnswer::Disclosed { records },
        Ok(Reviewed::Rejected) => AdminAnswer::Rejected,
        Err(e) => AdminAnswer::Refused(e.to_string()),
    };
    // Listing reads every held warrant, and showing one makes its disclosure
    // to count it: on a blocking thread, off the connections' workers.
    let looked_up = |look: Box<dyn FnOnce(&RelayState) -> AdminAnswer + Send>| {
        let state = state.clone();
        async move {
            tokio::task::spawn_blocking(move || look(&state))
                .await
                .unwrap_or_else(|_| AdminAnswer::Refused("the relay could not answer".into()))
        }
    };
    match request {
        AdminRequest::List { pending } => {
            looked_up(Box::new(move |state| {
                match state.warrants.held_list(pending) {
                    Ok(held) => AdminAnswer::Held(held),
                    Err(e) => AdminAnswer::Refused(e.to_string()),
                }
            }))
            .await
        }
        AdminRequest::Show { id, authority } => {
            looked_up(Box::new(move |state| {
                match state.warrants.held_show(&id, authority.as_deref()) {
                    Ok(view) => AdminAnswer::Held(vec![view]),
                    Err(e) => AdminAnswer::Refused(e.to_string()),
                }
            }))
            .await
        }
        AdminRequest::Approve { id, authority, by } => {
            reviewed(desk.approve(&id, authority.as_deref(), &by).await)
        }
        AdminRequest::Reject {
            id,
            authority,
            by,
            reason,
        } => reviewed(desk.reject(&id, authority.as_deref(), &by, &reason).await),
    }
}

/// Asks the relay running on the data directory at `root`.
pub fn ask(root: &Path, request: &AdminRequest) -> Result<AdminAnswer> {
    let path = socket_path(root);
    let not_running = || {
        format!(
            "no relay is running on {} (nothing answers at {}): start it with `sotto-relay --data {} serve`; \
             warrants are decided by the running relay",
            root.display(),
            path.display(),
            root.display()
        )
    };
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            bail!("{}", not_running())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot reach {}", path.display())),
    };
    stream.set_read_timeout(Some(ANSWER_TIME))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream.take(16 << 20))
        .read_line(&mut answer)
        .with_context(|| format!("no answer from the relay at {}", path.display()))?;
    if answer.is_empty() {
        bail!("the relay at {} closed without answering", path.display());
    }
    serde_json::from_str(&answer).context("the relay's answer is not one this tool reads")
}
