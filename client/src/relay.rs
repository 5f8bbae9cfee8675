//! The connection to a relay: QUIC with the relay's certificate pinned, one
//! bidirectional stream per request, and an optional push stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sotto_proto::frame::{self, FrameError};
use sotto_proto::v1::{
    self, Ack, Batch, ChallengeRequest, CreateGroup, Delivered, DeliveryStatus, ErrorCode, Fetch,
    GroupCreated, Login, Push, Register, Request, Response, SendNormal, Stored, request, response,
    send_normal,
};
use thiserror::Error;

use crate::identity::Identity;
use crate::pinning::{Fingerprint, PinnedVerifier};

/// How long one connection attempt may take: a relay that is there answers
/// in milliseconds, and a person waits for a client that is not.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot resolve relay address {0:?}")]
    Address(String),
    #[error(
        "the relay at {addr} presented certificate {actual}, but this profile pinned {expected}: \
         refusing to connect (the relay may be an impostor, or its certificate was replaced)"
    )]
    PinMismatch {
        addr: String,
        expected: Fingerprint,
        actual: Fingerprint,
    },
    #[error("cannot connect to the relay at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("the relay refused: {message}")]
    Refused { code: ErrorCode, message: String },
    #[error("connection to the relay lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("cannot talk to the relay: {0}")]
    Stream(String),
    #[error("the relay sent something unexpected: {0}")]
    Protocol(String),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl ClientError {
    /// True when the request may have been lost in transit, so a retry may help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::Connection(_)
                | ClientError::Stream(_)
                | ClientError::Connect { .. }
                | ClientError::Frame(_)
        )
    }

    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// True when a retry may mend the failure behind `e` (the connection dropped).
pub fn transient(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<ClientError>()
            .is_some_and(ClientError::is_transient)
    })
}

/// Where a normal message goes.
#[derive(Debug, Clone, Copy)]
pub enum Recipient<'a> {
    User(&'a str),
    Group(&'a str),
}

pub struct RelayClient {
    /// The endpoint this client made for itself (none when it shares one).
    owned_endpoint: Option<quinn::Endpoint>,
    conn: quinn::Connection,
    fingerprint: Fingerprint,
    max_frame: usize,
}

impl RelayClient {
    /// Connects to `addr` and checks the relay's certificate against `pin`
    /// (any certificate when `pin` is `None`; see [`RelayClient::fingerprint`]).
    pub async fn connect(addr: &str, pin: Option<Fingerprint>) -> Result<Self, ClientError> {
        let remote = resolve(addr).await?;
        let endpoint = client_endpoint(remote.is_ipv6()).map_err(|e| connect_error(addr, e))?;
        let mut client = Self::connect_on(&endpoint, addr, pin).await?;
        client.owned_endpoint = Some(endpoint);
        Ok(client)
    }

    /// Like [`RelayClient::connect`], on an endpoint many connections share
    /// (one UDP socket for all of them, as a load generator wants).
    pub async fn connect_on(
        endpoint: &quinn::Endpoint,
        addr: &str,
        pin: Option<Fingerprint>,
    ) -> Result<Self, ClientError> {
        let remote = resolve(addr).await?;
        let verifier = PinnedVerifier::new(pin);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| connect_error(addr, e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        tls.alpn_protocols = vec![sotto_proto::ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| connect_error(addr, e))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(10)));
        config.transport_config(Arc::new(transport));
        let connecting = endpoint
            .connect_with(config, remote, "sotto-relay")
            .map_err(|e| connect_error(addr, e))?;
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Err(_) => {
                return Err(connect_error(
                    addr,
                    format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                ));
            }
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(match (pin, verifier.seen()) {
                    (Some(expected), Some(actual)) if expected != actual => {
                        ClientError::PinMismatch {
                            addr: addr.to_owned(),
                            expected,
                            actual,
                        }
                    }
                    _ => connect_error(addr, e),
                });
            }
        };
        let fingerprint = verifier
            .seen()
            .ok_or_else(|| connect_error(addr, "the relay presented no certificate"))?;
        Ok(RelayClient {
            owned_endpoint: None,
            conn,
            fingerprint,
            max_frame: sotto_proto::DEFAULT_MAX_FRAME,
        })
    }

    /// The fingerprint of the certificate this relay presented.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Sends one request on a fresh stream and reads its answer; the stream's
    /// receiving side is handed back (a subscription's pushes follow on it).
    async fn exchange(
        &self,
        kind: request::Kind,
        what: &str,
    ) -> Result<(Response, quinn::RecvStream), ClientError> {
        let (mut send, mut recv) = self.conn.open_bi().await?;
        frame::write_frame(&mut send, &Request { kind: Some(kind) }).await?;
        send.finish()
            .map_err(|e| ClientError::Stream(e.to_string()))?;
        let response: Response = frame::read_message(&mut recv, self.max_frame)
            .await?
            .ok_or_else(|| {
                ClientError::Stream(format!("the relay closed the {what} without answering"))
            })?;
        Ok((response, recv))
    }

    /// Sends one request on a fresh stream and reads its answer. A relay error
    /// becomes [`ClientError::Refused`].
    pub async fn request(&self, kind: request::Kind) -> Result<response::Kind, ClientError> {
        let (response, _) = self.exchange(kind, "request").await?;
        match response.kind {
            Some(response::Kind::Error(e)) => Err(refusal(e)),
            Some(kind) => Ok(kind),
            None => Err(ClientError::Protocol("an empty response".into())),
        }
    }

    async fn challenge(&self) -> Result<Vec<u8>, ClientError> {
        match self
            .request(request::Kind::Challenge(ChallengeRequest {}))
            .await?
        {
            response::Kind::Challenge(c) => Ok(c.nonce.to_vec()),
            other => Err(unexpected("a challenge", &other)),
        }
    }

    fn login_signature(
        &self,
        username: &str,
        identity: &Identity,
        nonce: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let mut exporter = [0u8; sotto_proto::LOGIN_EXPORTER_LEN];
        self.conn
            .export_keying_material(&mut exporter, sotto_proto::LOGIN_EXPORTER_LABEL, b"")
            .map_err(|_| {
                ClientError::Protocol("this connection cannot export keying material".into())
            })?;
        let transcript = sotto_proto::transcript::login(username, nonce, &exporter);
        Ok(identity.sign(&transcript).to_bytes().to_vec())
    }

    /// Registers `username` for `identity`; on success this connection is logged in.
    pub async fn register(&self, username: &str, identity: &Identity) -> Result<(), ClientError> {
        let nonce = self.challenge().await?;
        let signature = self.login_signature(username, identity, &nonce)?;
        match self
            .request(request::Kind::Register(Register {
                username: username.to_owned(),
                identity_key: identity.public_key().to_bytes().to_vec().into(),
                signature: signature.into(),
            }))
            .await?
        {
            response::Kind::Registered(_) => Ok(()),
            other => Err(unexpected("a registration", &other)),
        }
    }

    pub async fn login(&self, username: &str, identity: &Identity) -> Result<(), ClientError> {
        let nonce = self.challenge().await?;
        let signature = self.login_signature(username, identity, &nonce)?;
        match self
            .request(request::Kind::Login(Login {
                username: username.to_owned(),
                signature: signature.into(),
            }))
            .await?
        {
            response::Kind::LoggedIn(_) => Ok(()),
            other => Err(unexpected("a login", &other)),
        }
    }

    /// Asks for live pushes; they arrive on the returned stream.
    pub async fn subscribe(&self) -> Result<Pushes, ClientError> {
        let subscribe = request::Kind::Subscribe(Default::default());
        let (answer, recv) = self.exchange(subscribe, "subscription").await?;
        match answer.kind {
            Some(response::Kind::Subscribed(_)) => Ok(Pushes {
                recv,
                max_frame: self.max_frame,
            }),
            Some(response::Kind::Error(e)) => Err(refusal(e)),
            Some(other) => Err(unexpected("a subscription", &other)),
            None => Err(ClientError::Protocol("an empty response".into())),
        }
    }

    pub async fn send_normal(
        &self,
        to: Recipient<'_>,
        text: &str,
        client_id: [u8; sotto_proto::CLIENT_ID_LEN],
    ) -> Result<Stored, ClientError> {
        let to = match to {
            Recipient::User(u) => send_normal::To::User(u.to_owned()),
            Recipient::Group(g) => send_normal::To::Group(g.to_owned()),
        };
        match self
            .request(request::Kind::SendNormal(SendNormal {
                client_id: client_id.to_vec().into(),
                to: Some(to),
                text: text.to_owned(),
            }))
            .await?
        {
            response::Kind::Stored(stored) => Ok(stored),
            other => Err(unexpected("a stored receipt", &other)),
        }
    }

    pub async fn create_group(
        &self,
        name: &str,
        members: &[String],
    ) -> Result<GroupCreated, ClientError> {
        match self
            .request(request::Kind::CreateGroup(CreateGroup {
                name: name.to_owned(),
                members: members.to_vec(),
            }))
            .await?
        {
            response::Kind::GroupCreated(created) => Ok(created),
            other => Err(unexpected("a created group", &other)),
        }
    }

    pub async fn fetch(&self, limit: u32) -> Result<Batch, ClientError> {
        match self.request(request::Kind::Fetch(Fetch { limit })).await? {
            response::Kind::Batch(batch) => Ok(batch),
            other => Err(unexpected("a batch", &other)),
        }
    }

    pub async fn ack(&self, normal_upto: u64, secret_ids: Vec<u64>) -> Result<(), ClientError> {
        match self
            .request(request::Kind::Ack(Ack {
                normal_upto,
                secret_ids,
                notice_ids: Vec::new(),
            }))
            .await?
        {
            response::Kind::Acked(_) => Ok(()),
            other => Err(unexpected("an acknowledgement", &other)),
        }
    }

    /// Tells the relay the warrant notices `ids` are kept: it deletes them.
    pub async fn ack_notices(&self, notice_ids: Vec<u64>) -> Result<(), ClientError> {
        match self
            .request(request::Kind::Ack(Ack {
                notice_ids,
                ..Ack::default()
            }))
            .await?
        {
            response::Kind::Acked(_) => Ok(()),
            other => Err(unexpected("an acknowledgement", &other)),
        }
    }

    /// Which of our normal messages (by the relay's ids) are delivered: for
    /// each conversation with one among `ids`, the newest.
    pub async fn delivery_status(&self, ids: Vec<u64>) -> Result<Vec<Delivered>, ClientError> {
        match self
            .request(request::Kind::DeliveryStatus(DeliveryStatus { ids }))
            .await?
        {
            response::Kind::DeliveryReport(report) => Ok(report.delivered),
            other => Err(unexpected("a delivery report", &other)),
        }
    }

    pub async fn upload_prekeys(&self, upload: v1::UploadPrekeys) -> Result<u32, ClientError> {
        match self.request(request::Kind::UploadPrekeys(upload)).await? {
            response::Kind::PrekeysStored(stored) => Ok(stored.one_time_count),
            other => Err(unexpected("stored prekeys", &other)),
        }
    }

    /// The relay's prekey bundle for `user` (not yet verified: see `e2e::verify_bundle`).
    pub async fn fetch_bundle(&self, user: &str) -> Result<v1::PrekeyBundle, ClientError> {
        match self
            .request(request::Kind::FetchBundle(v1::FetchBundle {
                user: user.to_owned(),
            }))
            .await?
        {
            response::Kind::PrekeyBundle(bundle) => Ok(bundle),
            other => Err(unexpected("a prekey bundle", &other)),
        }
    }

    /// `user`'s registered Ed25519 identity key.
    pub async fn fetch_identity(&self, user: &str) -> Result<[u8; 32], ClientError> {
        match self
            .request(request::Kind::FetchIdentity(v1::FetchIdentity {
                user: user.to_owned(),
            }))
            .await?
        {
            response::Kind::IdentityKey(key) => key
                .identity_key
                .as_ref()
                .try_into()
                .map_err(|_| ClientError::Protocol("an identity key is 32 bytes".into())),
            other => Err(unexpected("an identity key", &other)),
        }
    }

    pub async fn send_secret(
        &self,
        to: &str,
        ciphertext: Vec<u8>,
        client_id: [u8; sotto_proto::CLIENT_ID_LEN],
    ) -> Result<v1::SecretQueued, ClientError> {
        match self
            .request(request::Kind::SendSecret(v1::SendSecret {
                client_id: client_id.to_vec().into(),
                to: to.to_owned(),
                ciphertext: ciphertext.into(),
            }))
            .await?
        {
            response::Kind::SecretQueued(queued) => Ok(queued),
            other => Err(unexpected("a queued envelope", &other)),
        }
    }

    /// Queues one secret group message (a `SenderKeyMessage`) for each of
    /// `recipients`: the relay keeps the ciphertext once.
    pub async fn send_secret_group(
        &self,
        group_id: &[u8],
        recipients: &[String],
        ciphertext: Vec<u8>,
        client_id: [u8; sotto_proto::CLIENT_ID_LEN],
    ) -> Result<v1::SecretGroupQueued, ClientError> {
        match self
            .request(request::Kind::SendSecretGroup(v1::SendSecretGroup {
                client_id: client_id.to_vec().into(),
                group_id: group_id.to_vec().into(),
                recipients: recipients.to_vec(),
                ciphertext: ciphertext.into(),
            }))
            .await?
        {
            response::Kind::SecretGroupQueued(queued) => Ok(queued),
            other => Err(unexpected("a queued group message", &other)),
        }
    }

    /// The underlying QUIC connection (for tests that misbehave on purpose).
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Closes the connection and, on its own endpoint, waits until the relay has been told.
    pub async fn close(self) {
        self.conn.close(0u32.into(), b"bye");
        if let Some(endpoint) = self.owned_endpoint {
            endpoint.wait_idle().await;
        }
    }
}

/// Deliveries the relay pushes after [`RelayClient::subscribe`].
pub struct Pushes {
    recv: quinn::RecvStream,
    max_frame: usize,
}

impl Pushes {
    /// The next push; `None` once the relay closed the stream.
    pub async fn next(&mut self) -> Result<Option<Push>, ClientError> {
        Ok(frame::read_message(&mut self.recv, self.max_frame).await?)
    }
}

async fn resolve(addr: &str) -> Result<SocketAddr, ClientError> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|_| ClientError::Address(addr.to_owned()))?
        .next()
        .ok_or_else(|| ClientError::Address(addr.to_owned()))
}

/// A client endpoint on an ephemeral local port, for IPv6 or IPv4 relays.
pub fn client_endpoint(ipv6: bool) -> std::io::Result<quinn::Endpoint> {
    let bind: SocketAddr = if ipv6 {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    quinn::Endpoint::client(bind)
}

fn refusal(e: v1::Error) -> ClientError {
    ClientError::Refused {
        code: ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unspecified),
        message: e.message,
    }
}

fn connect_error(addr: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Connect {
        addr: addr.to_owned(),
        reason: e.to_string(),
    }
}

fn unexpected(wanted: &str, got: &response::Kind) -> ClientError {
    let name = format!("{got:?}");
    let name = name.split('(').next().unwrap_or("something else");
    ClientError::Protocol(format!("expected {wanted}, got {name}"))
}
