//! `SubmitWarrant`: an investigator's signed warrant in, a signed and encrypted
//! disclosure out; every request, granted or refused, is in the audit log
//! (synced to disk) before the answer leaves.

use prost::Message;
use sha2::{Digest, Sha256};
use sotto_proto::v1::{ErrorCode, SealedDisclosure, SubmitWarrant, response};

use super::{Handled, RequestError, Served, audited};
use crate::audit::AuditEntry;
use crate::records::GrantRecord;
use crate::relay::RelayState;
use crate::warrant::{self, AuthorityFile, Limits, Refusal, disclosure};
use crate::{datadir, now_ms};

pub async fn handle(state: &RelayState, submit: SubmitWarrant) -> Handled {
    let mut entry = AuditEntry::new("warrant", "refused");
    let outcome = serve(state, submit, &mut entry).await;
    let granted = |entry: &mut AuditEntry, sealed: &SealedDisclosure| {
        entry.bundle_sha256 = hex::encode(Sha256::digest(sealed.encode_to_vec()));
    };
    audited(
        state,
        entry,
        outcome,
        granted,
        ErrorCode::WarrantRefused,
        "discloses",
    )
    .map(response::Kind::Disclosure)
}

async fn serve(
    state: &RelayState,
    submit: SubmitWarrant,
    entry: &mut AuditEntry,
) -> Result<SealedDisclosure, Served> {
    if !state.warrant_limiter.allow() {
        return Err(Refusal::RateLimited.into());
    }
    let signed = submit.warrant.ok_or(Refusal::Malformed)?;
    // Re-read at every request: the operator may have changed it while we run.
    let authorities = AuthorityFile::load(&datadir::authorities_path(&state.data_dir))
        .map_err(|e| Served::Failed(RequestError::new(ErrorCode::Internal, format!("{e:#}"))))?
        .parsed();
    let limits = Limits {
        max_window_secs: i64::from(state.config.warrant.max_window_days) * 86_400,
        max_targets: state.config.warrant.max_targets as usize,
    };
    let now = now_ms();
    let checked = warrant::check_warrant(&signed, &authorities, now / 1000, &limits);
    if let Ok(c) = &checked {
        entry.warrant_id = c.warrant.id.clone();
        entry.case = c.warrant.case_reference.clone();
        entry.authority = c.authority.clone();
        entry.targets = c.warrant.targets.clone();
    } else if let Ok(w) = <sotto_proto::v1::Warrant as Message>::decode(signed.warrant.as_ref()) {
        // Refused: log what it claimed to be, never what it asked for.
        entry.warrant_id = w.id.chars().take(128).collect();
        entry.case = w.case_reference.chars().take(128).collect();
    }
    let checked = checked?;
    for target in &checked.warrant.targets {
        if !state.accounts.exists(target)? {
            return Err(Refusal::UnknownTarget.into());
        }
    }
    if state.grants.get(&checked.warrant.id)?.is_some() {
        return Err(Refusal::Replayed.into());
    }
    let outcome = disclosure::disclose(
        &state.archive.reader(),
        &checked,
        state.sealer.pseudonym_key(),
        now,
    )?;
    let grant = GrantRecord {
        warrant_id: checked.warrant.id.clone(),
        case_reference: checked.warrant.case_reference.clone(),
        authority: checked.authority.clone(),
        expires: checked.warrant.expires,
        granted_at: now,
    };
    if !state.grants.record(&grant, &outcome.pseudonyms)? {
        return Err(Refusal::Replayed.into());
    }
    state
        .writer
        .durable()
        .await
        .map_err(|e| Served::Failed(e.into()))?;
    entry.records = outcome.disclosure.records.len() as u64;
    entry.conversations = outcome.conversations as u64;
    entry.pseudonyms = outcome.pseudonyms.len() as u64;
    Ok(disclosure::seal(
        &outcome.disclosure,
        &state.disclosure_key,
        &checked.delivery_key,
    ))
}
