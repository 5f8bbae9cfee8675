//! The load generator's ceiling: a bare quinn server with the relay's own TLS
//! and transport settings and the same frame codec and messages, that forwards
//! each message to its recipient's subscription, with no accounts, no storage
//! and no flush. Whatever the relay does beyond this costs its difference.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use sotto_proto::frame;
use sotto_proto::v1::{self, Push, Request, Response, push, request, response, send_normal};
use sotto_server::tls::TlsIdentity;
use tokio::sync::mpsc;

#[derive(Default)]
struct Echo {
    subscribers: Mutex<HashMap<String, mpsc::Sender<Push>>>,
    next_id: AtomicU64,
}

/// Starts the echo server on `listen`; returns the bound address and the
/// certificate fingerprint, and serves until the process ends.
pub async fn start(listen: std::net::SocketAddr) -> Result<(std::net::SocketAddr, String)> {
    let tls = TlsIdentity::generate()?;
    let defaults = sotto_server::RelayConfig::default();
    let config = tls.server_config(defaults.idle_timeout_secs, &defaults.limits)?;
    let endpoint = quinn::Endpoint::server(config, listen)?;
    let addr = endpoint.local_addr()?;
    let echo = Arc::new(Echo::default());
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(serve(echo.clone(), incoming));
        }
    });
    Ok((addr, tls.fingerprint()))
}

async fn serve(echo: Arc<Echo>, incoming: quinn::Incoming) {
    let Ok(conn) = incoming.await else { return };
    // The echo has no login: its connections get the relay's after-login limits at once.
    sotto_server::tls::lift_pre_login_limits(&conn, &sotto_server::RelayConfig::default());
    let name: Arc<Mutex<String>> = Arc::default();
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(request(echo.clone(), name.clone(), send, recv));
    }
}

async fn request(
    echo: Arc<Echo>,
    name: Arc<Mutex<String>>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let Ok(Some(req)) =
        frame::read_message::<Request, _>(&mut recv, sotto_proto::DEFAULT_MAX_FRAME).await
    else {
        return;
    };
    let kind = match req.kind {
        Some(request::Kind::Challenge(_)) => response::Kind::Challenge(v1::Challenge {
            nonce: vec![0u8; 32].into(),
        }),
        Some(request::Kind::Register(r)) => {
            *name.lock().unwrap() = r.username;
            response::Kind::Registered(v1::Registered {})
        }
        Some(request::Kind::Login(r)) => {
            *name.lock().unwrap() = r.username;
            response::Kind::LoggedIn(v1::LoggedIn {})
        }
        Some(request::Kind::Subscribe(_)) => {
            let (tx, mut rx) = mpsc::channel(256);
            let me = name.lock().unwrap().clone();
            echo.subscribers.lock().unwrap().insert(me, tx);
            let ok = Response {
                kind: Some(response::Kind::Subscribed(v1::Subscribed {})),
                receipt: None,
            };
            if frame::write_frame(&mut send, &ok).await.is_err() {
                return;
            }
            while let Some(p) = rx.recv().await {
                if frame::write_frame(&mut send, &p).await.is_err() {
                    return;
                }
            }
            return;
        }
        Some(request::Kind::SendNormal(s)) => {
            let id = echo.next_id.fetch_add(1, Ordering::Relaxed) + 1;
            let from = name.lock().unwrap().clone();
            let to = match s.to {
                Some(send_normal::To::User(u)) => u,
                _ => String::new(),
            };
            let message = v1::NormalMessage {
                id,
                seq: id,
                from,
                to: to.clone(),
                group: String::new(),
                text: s.text,
                sent_at: 0,
                client_id: s.client_id,
            };
            let target = echo.subscribers.lock().unwrap().get(&to).cloned();
            if let Some(tx) = target {
                let _ = tx.try_send(Push {
                    kind: Some(push::Kind::Normal(message)),
                });
            }
            response::Kind::Stored(v1::Stored {
                id,
                sent_at: 0,
                duplicate: false,
            })
        }
        Some(request::Kind::Ack(_)) => response::Kind::Acked(v1::Acked {}),
        Some(request::Kind::Fetch(_)) => response::Kind::Batch(v1::Batch::default()),
        _ => response::Kind::Error(v1::Error {
            code: v1::ErrorCode::BadRequest as i32,
            message: "the echo server does not serve that".into(),
            ..Default::default()
        }),
    };
    let _ = frame::write_frame(
        &mut send,
        &Response {
            kind: Some(kind),
            receipt: None,
        },
    )
    .await;
    let _ = send.finish();
}
