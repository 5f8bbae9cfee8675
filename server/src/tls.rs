//! The relay's TLS identity: a self-signed certificate made at `init`, pinned by
//! clients through the SHA-256 fingerprint of its DER encoding.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

pub struct TlsIdentity {
    pub cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl TlsIdentity {
    pub fn generate() -> Result<Self> {
        let certified = rcgen::generate_simple_self_signed(vec![
            "sotto-relay".to_owned(),
            "localhost".to_owned(),
        ])
        .context("cannot make the relay's TLS certificate")?;
        Ok(TlsIdentity {
            cert: certified.cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()),
        })
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        crate::files::write_private(&dir.join("cert.der"), self.cert.as_ref())?;
        crate::files::write_private(&dir.join("key.der"), self.key.secret_pkcs8_der())?;
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let cert = std::fs::read(dir.join("cert.der"))
            .with_context(|| format!("cannot read {}", dir.join("cert.der").display()))?;
        let key = std::fs::read(dir.join("key.der"))
            .with_context(|| format!("cannot read {}", dir.join("key.der").display()))?;
        Ok(TlsIdentity {
            cert: CertificateDer::from(cert),
            key: PrivatePkcs8KeyDer::from(key),
        })
    }

    /// `sha256:<64 hex>` of the certificate, the form clients pin.
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(self.cert.as_ref())))
    }

    /// The QUIC server configuration: TLS 1.3 with this certificate, and the
    /// transport limits of a connection nobody has logged in on yet.
    pub fn server_config(
        &self,
        idle_timeout_secs: u64,
        limits: &crate::config::Limits,
    ) -> Result<quinn::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("TLS 1.3 is not available")?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .context("the relay's TLS key does not match its certificate")?;
        tls.alpn_protocols = vec![sotto_proto::ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .context("the TLS configuration cannot carry QUIC")?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport
            // Until login: see `Session::logged_in`, which raises both.
            .max_concurrent_bidi_streams(limits.streams_before_login.into())
            .receive_window(limits.bytes_before_login.into())
            .max_concurrent_uni_streams(0u32.into())
            .max_idle_timeout(Some(
                std::time::Duration::from_secs(idle_timeout_secs)
                    .try_into()
                    .context("idle_timeout_secs is too large")?,
            ));
        config.transport_config(Arc::new(transport));
        Ok(config)
    }
}

/// Lifts a connection's pre-login limits once someone logged in on it: the
/// streams `max_concurrent_requests` allows, and room for four full-size
/// frames in flight.
pub fn lift_pre_login_limits(conn: &quinn::Connection, config: &crate::config::RelayConfig) {
    let frame = u64::try_from(config.max_frame_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(64 * 1024);
    let window = quinn::VarInt::from_u64(frame.saturating_mul(4)).unwrap_or(quinn::VarInt::MAX);
    conn.set_receive_window(window);
    conn.set_max_concurrent_bi_streams(config.max_concurrent_requests.into());
}
