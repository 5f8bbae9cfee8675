//! The relay's receipts: with every answer (a disclosure, a refusal, an
//! unmask answer) the relay hands over the audit entry it logged, a tree head
//! signed by its audit key, and the inclusion proof. They are checked on
//! arrival and kept in the key folder (`receipts/`), so the relay can later be
//! held to them: [`check_against`] shows each is still in a head published
//! since (a consistency proof from the receipt's head to it).
//!
//! Invariant: a receipt is kept only once it checked ([`Receipt::verify`]:
//! its head, the disclosure key's binding of the audit key, the inclusion
//! proof) and its entry says what the answer said (this warrant, this
//! decision, this bundle's hash). Whether that disclosure key is the one the
//! warrant names is reported ([`Kept::warrants_relay`]): a relay that refused
//! a warrant as `wrong_relay` is, by definition, another one.

use std::path::{Path, PathBuf};

use prost::Message;
use sha2::{Digest, Sha256};
use sotto_proto::v1;
use sotto_warrant::transparency::{Hash, Receipt, SignedTreeHead};

use crate::error::InvestigatorError;
use crate::files;

/// The folder, inside the key folder, where receipts are kept.
pub const FOLDER: &str = "receipts";

/// What the answer was, that the logged entry must say too.
pub struct Expected<'a> {
    /// The relay the warrant names (its disclosure key).
    pub relay_key: &'a [u8; 32],
    /// "warrant" or "unmask".
    pub kind: &'a str,
    /// The signed request as sent (encoded): the entry must name its hash.
    pub request: &'a [u8],
    pub warrant_id: &'a str,
    /// "granted" or "refused".
    pub decision: &'a str,
    /// For a disclosure: the hash of the bundle file as saved.
    pub bundle: Option<&'a [u8]>,
}

fn bad(why: impl Into<String>) -> InvestigatorError {
    InvestigatorError::Receipt(why.into())
}

/// A receipt that checked and was kept.
pub struct Kept {
    pub receipt: Receipt,
    pub path: PathBuf,
    /// Its audit key is vouched for by the disclosure key the warrant names.
    pub warrants_relay: bool,
}

/// Checks a receipt against what was answered, then keeps it in `key_dir`.
pub fn keep(
    key_dir: &Path,
    receipt: &v1::Receipt,
    expected: &Expected<'_>,
) -> Result<Kept, InvestigatorError> {
    let checked = Receipt::verify(receipt).map_err(|e| bad(e.to_string()))?;
    let warrants_relay = checked.disclosure_key().as_bytes() == expected.relay_key;
    let entry: serde_json::Value = serde_json::from_slice(checked.entry())
        .map_err(|_| bad("its entry is not an audit entry"))?;
    let field = |name: &str| entry[name].as_str().unwrap_or_default().to_owned();
    // The entry must be of this very request: its kind, and the hash of
    // what was sent (a relay may not answer with another request's entry).
    let kind_logged = match field("kind").as_str() {
        "unverifiable" => field("request"),
        kind => kind.to_owned(),
    };
    if kind_logged != expected.kind {
        return Err(bad(format!(
            "it logs a {kind_logged:?} request, not this {:?} request",
            expected.kind
        )));
    }
    if field("request_sha256") != hex::encode(Sha256::digest(expected.request)) {
        return Err(bad(
            "it logs another request than the one sent (its hash differs): this answer was not logged",
        ));
    }
    // Only the relay the warrant names can vouch for its log; a refusal as
    // `wrong_relay` comes, by definition, from another one.
    if !warrants_relay && field("reason") != "wrong_relay" {
        return Err(bad(
            "its log is vouched for by another disclosure key than the one the warrant names",
        ));
    }
    if field("decision") != expected.decision {
        return Err(bad(format!(
            "it logs the request as {:?}, but the answer was {:?}",
            field("decision"),
            expected.decision
        )));
    }
    // An unverifiable request's entry keeps no warrant id (nothing vouched for it).
    if field("kind") != "unverifiable" && field("warrant_id") != expected.warrant_id {
        return Err(bad(format!(
            "it logs warrant {:?}, not {:?}",
            field("warrant_id"),
            expected.warrant_id
        )));
    }
    if let Some(bundle) = expected.bundle
        && field("bundle_sha256") != hex::encode(Sha256::digest(bundle))
    {
        return Err(bad(
            "it logs another bundle than the one delivered (its hash differs)",
        ));
    }
    let dir = key_dir.join(FOLDER);
    std::fs::create_dir_all(&dir).map_err(|e| InvestigatorError::Io {
        path: dir.clone(),
        reason: e,
    })?;
    // Never overwritten: a receipt for the same place in the same log with
    // another entry is proof that the log was rewritten (both are kept).
    let prefix = format!(
        "{}-{}-",
        hex::encode(&checked.head().key().as_bytes()[..8]),
        checked.index()
    );
    let entry_hash = hex::encode(&Sha256::digest(checked.entry())[..8]);
    for (other, earlier) in kept(key_dir)? {
        let name = other
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with(&prefix)
            && earlier.head().key() == checked.head().key()
            && earlier.entry() != checked.entry()
        {
            let path = dir.join(format!("{prefix}{entry_hash}.receipt"));
            files::write_new(&path, &receipt.encode_to_vec())?;
            return Err(bad(format!(
                "the relay's log was rewritten: entry {} differs from the receipt kept in {} (both kept, as evidence)",
                checked.index() + 1,
                other.display()
            )));
        }
    }
    let path = dir.join(format!("{prefix}{entry_hash}.receipt"));
    if !path.exists() {
        files::write_new(&path, &receipt.encode_to_vec())?;
    }
    Ok(Kept {
        receipt: checked,
        path,
        warrants_relay,
    })
}

/// Every receipt kept in `key_dir`, each checked again as it was on arrival.
pub fn kept(key_dir: &Path) -> Result<Vec<(PathBuf, Receipt)>, InvestigatorError> {
    let dir = key_dir.join(FOLDER);
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(found);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "receipt") {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| InvestigatorError::Io {
            path: path.clone(),
            reason: e,
        })?;
        let receipt = v1::Receipt::decode(bytes.as_slice())
            .ok()
            .and_then(|r| Receipt::verify(&r).ok())
            .ok_or_else(|| InvestigatorError::Damaged {
                path: path.clone(),
                what: "not a receipt that checks".into(),
            })?;
        found.push((path, receipt));
    }
    found.sort_by_key(|(_, r)| r.index());
    Ok(found)
}

/// How one kept receipt fared against a published head.
#[derive(Debug, PartialEq, Eq)]
pub enum Against {
    /// Still in the published head's log.
    Included,
    /// The head is another relay's (another audit key): not checked.
    OtherRelay,
    /// The relay's log no longer holds what the receipt proves: why.
    Broken(String),
}

/// Checks `receipt` against `head`, with the relay's consistency proof from
/// the receipt's head to it (`None` when the relay gave none).
pub fn check_against(receipt: &Receipt, head: &SignedTreeHead, proof: Option<&[Hash]>) -> Against {
    if receipt.head().key() != head.key() {
        return Against::OtherRelay;
    }
    let Some(proof) = proof else {
        return Against::Broken(
            "the relay gave no proof that its log since extends the receipt's".into(),
        );
    };
    match receipt.check_later_head(head, proof) {
        Ok(()) => Against::Included,
        Err(e) => Against::Broken(e.to_string()),
    }
}
