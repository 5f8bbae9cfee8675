//! The relay's stored records (protobuf via prost derives). Each is sealed with
//! [`crate::seal::Sealer`] before it reaches the store; none is ever sent as-is.

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct AccountRecord {
    #[prost(string, tag = "1")]
    pub username: String,
    #[prost(bytes = "vec", tag = "2")]
    pub identity_key: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub created_at: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct GroupRecord {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, repeated, tag = "2")]
    pub members: Vec<String>,
    #[prost(string, tag = "3")]
    pub created_by: String,
    #[prost(int64, tag = "4")]
    pub created_at: i64,
}

/// One normal-mode message as the archive keeps it.
#[derive(Clone, PartialEq, Message)]
pub struct NormalRecord {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub conversation: Vec<u8>,
    #[prost(string, tag = "3")]
    pub from: String,
    /// The recipient of a 1:1 message; empty for a group message.
    #[prost(string, tag = "4")]
    pub to: String,
    /// The group of a group message; empty for a 1:1 message.
    #[prost(string, tag = "5")]
    pub group: String,
    /// Everyone in the conversation when it was sent, sender included.
    #[prost(string, repeated, tag = "6")]
    pub participants: Vec<String>,
    #[prost(string, tag = "7")]
    pub text: String,
    #[prost(int64, tag = "8")]
    pub sent_at: i64,
    #[prost(bytes = "vec", tag = "9")]
    pub client_id: Vec<u8>,
}

/// One write batch of the normal archive: its records, each sealed on its own
/// (associated data: the segment's key and the record's index in it).
#[derive(Clone, PartialEq, Message)]
pub struct SegmentRecord {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub sealed: Vec<Vec<u8>>,
}

/// What the first store of a client id answered, so a retry gets the same answer.
#[derive(Clone, PartialEq, Message)]
pub struct StoredReceipt {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub sent_at: i64,
}

/// A user's published prekeys, as uploaded (the private halves never leave the device).
#[derive(Clone, PartialEq, Message)]
pub struct PrekeySetRecord {
    #[prost(bytes = "vec", tag = "1")]
    pub identity_dh_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub identity_dh_signature: Vec<u8>,
    #[prost(message, optional, tag = "3")]
    pub signed_prekey: Option<sotto_proto::v1::SignedPrekey>,
    #[prost(message, repeated, tag = "4")]
    pub one_time: Vec<sotto_proto::v1::OneTimePrekey>,
    /// The signed last-resort ML-KEM-1024 prekey.
    #[prost(message, optional, tag = "5")]
    pub pq_last_resort: Option<sotto_proto::v1::PqPrekey>,
    /// The ids of the one-time ML-KEM-1024 prekeys left, oldest first; each
    /// key (1.6 KiB) is a record of its own, so handing one out rewrites
    /// this small set and deletes that record, never all of them.
    #[prost(uint32, repeated, tag = "6")]
    pub pq_one_time: Vec<u32>,
}

/// A queued secret envelope: who sent it, and ciphertext the relay cannot read.
#[derive(Clone, PartialEq, Message)]
pub struct SecretEnvelopeRecord {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(string, tag = "2")]
    pub from: String,
    #[prost(bytes = "vec", tag = "3")]
    pub ciphertext: Vec<u8>,
    #[prost(int64, tag = "4")]
    pub queued_at: i64,
    #[prost(int64, tag = "5")]
    pub expires_at: i64,
    /// blind(sender) ‖ client id: a retry while it waits is not queued twice.
    #[prost(bytes = "vec", tag = "6")]
    pub dedup_key: Vec<u8>,
    /// blind(recipient): the store's key for the envelope does not say whose it is.
    #[prost(bytes = "vec", tag = "7")]
    pub recipient: Vec<u8>,
    /// A secret group message's: the id of the body its ciphertext is kept
    /// in, once for every recipient (`ciphertext` is then empty), and the
    /// group's opaque id.
    #[prost(bytes = "vec", tag = "8")]
    pub body: Vec<u8>,
    #[prost(bytes = "vec", tag = "9")]
    pub group: Vec<u8>,
}

/// A secret group message's ciphertext, kept once for all its recipients.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SecretBodyRecord {
    #[prost(bytes = "vec", tag = "1")]
    pub ciphertext: Vec<u8>,
}

/// A stored big-endian `u64` (a cursor, a counter); `what` names it when damaged.
pub(crate) fn read_u64(bytes: &[u8], what: &'static str) -> Result<u64, crate::RelayError> {
    Ok(u64::from_be_bytes(
        bytes
            .try_into()
            .map_err(|_| crate::RelayError::Corrupt(what))?,
    ))
}
