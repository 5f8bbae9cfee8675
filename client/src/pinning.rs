//! Certificate pinning: the client trusts exactly one relay certificate, named
//! by the SHA-256 of its DER encoding, instead of a CA. Without a pin (first
//! use) any certificate is accepted and its fingerprint recorded, so it can be
//! pinned from then on.

use std::fmt;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The fingerprint type is shared with the investigator's tool (see
/// [`sotto_proto::fingerprint`]); it is re-exported here for this crate's users.
pub use sotto_proto::fingerprint::{Fingerprint, FingerprintError};

/// The fingerprint of a certificate: SHA-256 of its DER bytes.
pub fn of_certificate(der: &[u8]) -> Fingerprint {
    Fingerprint::from_digest(Sha256::digest(der).into())
}

/// A rustls verifier that accepts only the pinned certificate (or, without a
/// pin, any certificate, remembering which).
pub struct PinnedVerifier {
    pin: Option<Fingerprint>,
    seen: Mutex<Option<Fingerprint>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for PinnedVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedVerifier")
            .field("pin", &self.pin)
            .finish()
    }
}

impl PinnedVerifier {
    pub fn new(pin: Option<Fingerprint>) -> Arc<Self> {
        Arc::new(PinnedVerifier {
            pin,
            seen: Mutex::new(None),
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        })
    }

    /// The fingerprint the relay presented, once a handshake got that far.
    pub fn seen(&self) -> Option<Fingerprint> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = of_certificate(end_entity.as_ref());
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(actual);
        match self.pin {
            None => Ok(ServerCertVerified::assertion()),
            Some(pin) if bool::from(pin.as_bytes().ct_eq(actual.as_bytes())) => {
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_fingerprint_is_the_sha256_of_its_der_bytes() {
        // SHA-256 of the empty string.
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(of_certificate(b"").to_string(), format!("sha256:{empty}"));
    }
}
