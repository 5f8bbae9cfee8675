//! Failures inside the relay that are not the requester's fault.

use thiserror::Error;

use crate::{seal, store};

#[derive(Debug, Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Seal(#[from] seal::SealError),
    #[error("a stored record does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("stored data is damaged: {0}")]
    Corrupt(&'static str),
    /// What a relay node on a cluster does not serve yet.
    #[error("{0} is not served by a relay on a cluster yet")]
    NotOnCluster(&'static str),
}

/// The answers of requests whose staged writes failed to apply: every request
/// that staged something fails with the store's error (duplicates found while
/// staging keep their answer: they wrote nothing).
pub(crate) fn failed_with<T>(
    results: Vec<Result<T, RelayError>>,
    error: &store::StoreError,
) -> Vec<Result<T, RelayError>> {
    results
        .into_iter()
        .map(|r| r.and(Err(RelayError::Store(error.clone()))))
        .collect()
}
