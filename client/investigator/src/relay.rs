//! The investigator's connection to a relay: QUIC with ALPN `sotto/1`, and a
//! certificate verifier that trusts exactly the pinned SHA-256 fingerprint of
//! the relay's certificate (an investigator always pins: there is no first
//! use to trust). One bidirectional stream per request, one answer each.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use sotto_proto::Fingerprint;
use sotto_proto::frame;
use sotto_proto::v1::{self, ErrorCode, Request, Response, request, response};

use crate::error::InvestigatorError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts the one certificate whose fingerprint is pinned, and remembers
/// what was presented so a mismatch can be reported.
#[derive(Debug)]
struct PinnedCertificate {
    pin: Fingerprint,
    seen: Mutex<Option<Fingerprint>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = Fingerprint::from_digest(Sha256::digest(end_entity.as_ref()).into());
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(actual);
        // A certificate is public: no need for a constant-time comparison.
        if actual == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A connection to one relay, whose certificate matched the pin.
pub struct RelayConnection {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    /// Every receipt an answer carried, refusals' too, until taken.
    receipts: Mutex<Vec<v1::Receipt>>,
}

impl RelayConnection {
    /// Connects to `addr` (`host:port`) and checks the relay's certificate is the pinned one.
    pub async fn connect(addr: &str, pin: Fingerprint) -> Result<Self, InvestigatorError> {
        let failed = |reason: &dyn std::fmt::Display| InvestigatorError::Connect {
            addr: addr.to_owned(),
            reason: reason.to_string(),
        };
        let remote: SocketAddr = tokio::net::lookup_host(addr)
            .await
            .ok()
            .and_then(|mut all| all.next())
            .ok_or_else(|| InvestigatorError::Address(addr.to_owned()))?;
        let provider = rustls::crypto::ring::default_provider();
        let verifier = Arc::new(PinnedCertificate {
            pin,
            seen: Mutex::new(None),
            algorithms: provider.signature_verification_algorithms,
        });
        let provider = Arc::new(provider);
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| failed(&e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        tls.alpn_protocols = vec![sotto_proto::ALPN.to_vec()];
        let crypto =
            quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| failed(&e))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        // A disclosure may take the relay a while to gather; keep the line up meanwhile.
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(10)));
        config.transport_config(Arc::new(transport));

        let local: SocketAddr = if remote.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = quinn::Endpoint::client(local).map_err(|e| failed(&e))?;
        let connecting = endpoint
            .connect_with(config, remote, "sotto-relay")
            .map_err(|e| failed(&e))?;
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                let seen = *verifier.seen.lock().unwrap_or_else(|p| p.into_inner());
                return Err(match seen {
                    Some(actual) if actual != pin => InvestigatorError::PinMismatch {
                        addr: addr.to_owned(),
                        expected: pin,
                        actual,
                    },
                    _ => failed(&e),
                });
            }
            Err(_) => return Err(failed(&"no answer within 10 seconds")),
        };
        Ok(RelayConnection {
            endpoint,
            conn,
            receipts: Mutex::new(Vec::new()),
        })
    }

    /// Sends one request on a fresh stream and reads its one answer. An
    /// error answer becomes [`InvestigatorError::Refused`] (a refusal of a
    /// warrant or unmask request) or [`InvestigatorError::Failed`].
    pub async fn request(&self, kind: request::Kind) -> Result<response::Kind, InvestigatorError> {
        let (mut send, mut recv) = self.conn.open_bi().await?;
        frame::write_frame(&mut send, &Request { kind: Some(kind) }).await?;
        send.finish()
            .map_err(|e| InvestigatorError::Stream(e.to_string()))?;
        let body = frame::read_frame(&mut recv, sotto_proto::DEFAULT_MAX_FRAME)
            .await?
            .ok_or_else(|| {
                InvestigatorError::Stream("the relay closed the stream without answering".into())
            })?;
        let response: Response = frame::decode(&body)?;
        self.keep_receipt(&response);
        match response.kind {
            Some(response::Kind::Error(e)) => Err(error_answer(e)),
            Some(kind) => Ok(kind),
            None => Err(InvestigatorError::Protocol("an empty response".into())),
        }
    }

    /// Sends one request and reads every answer frame until the relay
    /// finishes the stream (a disclosure comes in parts). An error answer, as
    /// the first frame, is returned as with [`RelayConnection::request`].
    pub async fn request_all(
        &self,
        kind: request::Kind,
    ) -> Result<Vec<response::Kind>, InvestigatorError> {
        let (mut send, mut recv) = self.conn.open_bi().await?;
        frame::write_frame(&mut send, &Request { kind: Some(kind) }).await?;
        send.finish()
            .map_err(|e| InvestigatorError::Stream(e.to_string()))?;
        let mut answers = Vec::new();
        while let Some(body) = frame::read_frame(&mut recv, sotto_proto::DEFAULT_MAX_FRAME).await? {
            if answers.len() >= MAX_ANSWERS {
                return Err(InvestigatorError::Protocol(format!(
                    "more than {MAX_ANSWERS} answer frames"
                )));
            }
            let response: Response = frame::decode(&body)?;
            self.keep_receipt(&response);
            match response.kind {
                Some(response::Kind::Error(e)) => return Err(error_answer(e)),
                Some(kind) => answers.push(kind),
                None => return Err(InvestigatorError::Protocol("an empty response".into())),
            }
        }
        if answers.is_empty() {
            return Err(InvestigatorError::Stream(
                "the relay closed the stream without answering".into(),
            ));
        }
        Ok(answers)
    }

    fn keep_receipt(&self, response: &Response) {
        if let Some(receipt) = &response.receipt {
            self.receipts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(receipt.clone());
        }
    }

    /// The receipts the answers so far carried (checked by [`crate::receipts`]).
    pub fn take_receipts(&self) -> Vec<v1::Receipt> {
        std::mem::take(&mut *self.receipts.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Closes the connection and waits until the relay has been told.
    pub async fn close(self) {
        self.conn.close(0u32.into(), b"bye");
        self.endpoint.wait_idle().await;
    }
}

/// The most answer frames one request may bring (parts of a disclosure, each
/// at most a frame: 16 GiB in all).
const MAX_ANSWERS: usize = 16 * 1024;

/// An error answer as an [`InvestigatorError`]. The refusal code comes from
/// `Error.refusal`; from a relay that predates it, out of the sentence's
/// leading `refused (code): `, which is dropped from the message either way.
fn error_answer(e: v1::Error) -> InvestigatorError {
    let code = ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unspecified);
    if !matches!(code, ErrorCode::WarrantRefused | ErrorCode::UnmaskRefused) {
        return InvestigatorError::Failed {
            code,
            message: e.message,
        };
    }
    let prefixed = e
        .message
        .strip_prefix("refused (")
        .and_then(|rest| rest.split_once("): "))
        .filter(|(code, _)| e.refusal.is_empty() || *code == e.refusal);
    let (refusal, message) = match prefixed {
        Some((code, sentence)) => (code.to_owned(), sentence.to_owned()),
        None if e.refusal.is_empty() => ("unspecified".to_owned(), e.message),
        None => (e.refusal, e.message),
    };
    InvestigatorError::Refused { refusal, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: ErrorCode, refusal: &str, message: &str) -> v1::Error {
        v1::Error {
            code: code as i32,
            message: message.into(),
            refusal: refusal.into(),
        }
    }

    #[test]
    fn a_refusal_carries_its_code_once() {
        let e = error_answer(error(
            ErrorCode::WarrantRefused,
            "wrong_relay",
            "refused (wrong_relay): the warrant is for another relay",
        ));
        assert_eq!(e.refusal(), Some("wrong_relay"));
        assert_eq!(
            e.to_string(),
            "the relay refused (wrong_relay): the warrant is for another relay"
        );
        let plain = error_answer(error(ErrorCode::UnmaskRefused, "stale", "not fresh"));
        assert_eq!(plain.to_string(), "the relay refused (stale): not fresh");
        let older = error_answer(error(
            ErrorCode::UnmaskRefused,
            "",
            "refused (not_disclosed): a pseudonym did not appear",
        ));
        assert_eq!(older.refusal(), Some("not_disclosed"));
    }

    #[test]
    fn other_errors_are_failures_not_refusals() {
        let e = error_answer(error(ErrorCode::Internal, "", "cannot write its audit log"));
        assert!(matches!(
            e,
            InvestigatorError::Failed {
                code: ErrorCode::Internal,
                ..
            }
        ));
        assert!(e.refusal().is_none());
    }
}
