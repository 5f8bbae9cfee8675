//! What a relay remembers of a granted warrant, and the checks an unmask
//! request must pass against it. The relay stores a [`Grant`] sealed, keyed by
//! (authority, warrant id): ids are one namespace per authority, and only the
//! authority a warrant was granted to can find it again.

use prost::Message;

use crate::bundle::DeliveryKey;
use crate::check::{CheckedUnmask, CheckedWarrant};
use crate::refusal::Refusal;

/// A granted warrant, as the relay keeps it (protobuf, sealed at rest).
#[derive(Clone, PartialEq, Message)]
pub struct Grant {
    #[prost(string, tag = "1")]
    pub warrant_id: String,
    #[prost(string, tag = "2")]
    pub case_reference: String,
    #[prost(string, tag = "3")]
    pub authority: String,
    /// Seconds since the epoch; unmask requests are refused from then on.
    #[prost(int64, tag = "4")]
    pub expires: i64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "5")]
    pub granted_at: i64,
    /// Where unmask answers are encrypted to: the warrant's delivery key.
    #[prost(bytes = "vec", tag = "6")]
    pub delivery_key: Vec<u8>,
    /// The Ed25519 key that signed the warrant: only it may unmask under it,
    /// even if the authority's name is later registered with another key.
    #[prost(bytes = "vec", tag = "7")]
    pub authority_key: Vec<u8>,
}

impl Grant {
    pub fn new(checked: &CheckedWarrant, now_ms: i64) -> Self {
        Grant {
            warrant_id: checked.warrant.id.clone(),
            case_reference: checked.warrant.case_reference.clone(),
            authority: checked.authority.clone(),
            expires: checked.warrant.expires,
            granted_at: now_ms,
            delivery_key: checked.delivery_key.as_bytes().to_vec(),
            authority_key: checked.authority_key.to_bytes().to_vec(),
        }
    }

    /// Whether `unmask` may be served under this grant at `now_secs`: by the
    /// authority (name and key) it was granted to, before the warrant expires. Returns the key
    /// the answer is to be encrypted to.
    pub fn admits(&self, unmask: &CheckedUnmask, now_secs: i64) -> Result<DeliveryKey, Refusal> {
        if self.authority != unmask.authority
            || self.authority_key != unmask.authority_key.as_bytes()
            || self.warrant_id != unmask.request.warrant_id
        {
            return Err(Refusal::UnknownWarrant);
        }
        if now_secs >= self.expires {
            return Err(Refusal::Expired);
        }
        DeliveryKey::from_bytes(&self.delivery_key)
    }
}
