//! `Unmask`: reveal pseudonyms of a granted warrant's disclosure, on a request
//! signed by the authority the warrant was granted to. Only pseudonyms that
//! disclosure issued are revealed; a request naming any other is refused
//! whole. Logged (without the names revealed) before the answer leaves.

use sotto_proto::v1::{ErrorCode, Unmask, Unmasked, Unmasking, response};

use super::{Handled, RequestError, Served, audited};
use crate::audit::AuditEntry;
use crate::relay::RelayState;
use crate::warrant::{self, AuthorityFile, Refusal};
use crate::{datadir, now_ms};

pub async fn handle(state: &RelayState, unmask: Unmask) -> Handled {
    let mut entry = AuditEntry::new("unmask", "refused");
    let outcome = serve(state, unmask, &mut entry);
    let granted = |entry: &mut AuditEntry, revealed: &Vec<Unmasking>| {
        entry.unmask_revealed = revealed.len() as u64;
    };
    audited(
        state,
        entry,
        outcome,
        granted,
        ErrorCode::UnmaskRefused,
        "reveals",
    )
    .map(|unmasked| response::Kind::Unmasked(Unmasked { unmasked }))
}

fn serve(
    state: &RelayState,
    unmask: Unmask,
    entry: &mut AuditEntry,
) -> Result<Vec<Unmasking>, Served> {
    if !state.warrant_limiter.allow() {
        return Err(Refusal::RateLimited.into());
    }
    let signed = unmask.request.ok_or(Refusal::Malformed)?;
    let authorities = AuthorityFile::load(&datadir::authorities_path(&state.data_dir))
        .map_err(|e| Served::Failed(RequestError::new(ErrorCode::Internal, format!("{e:#}"))))?
        .parsed();
    let checked = warrant::check_unmask(&signed, &authorities, now_ms() / 1000)?;
    entry.warrant_id = checked.request.warrant_id.chars().take(128).collect();
    entry.authority = checked.authority.clone();
    entry.unmask_requested = checked.request.pseudonyms.len() as u64;
    let grant = state
        .grants
        .get(&checked.request.warrant_id)?
        .ok_or(Refusal::UnknownWarrant)?;
    entry.case = grant.case_reference.clone();
    if grant.authority != checked.authority {
        return Err(Refusal::OtherAuthority.into());
    }
    let mut revealed = Vec::with_capacity(checked.request.pseudonyms.len());
    for pseudonym in &checked.request.pseudonyms {
        let username = state
            .grants
            .reveal(&grant.warrant_id, pseudonym)?
            .ok_or(Refusal::NotDisclosed)?;
        revealed.push(Unmasking {
            pseudonym: pseudonym.clone(),
            username,
        });
    }
    Ok(revealed)
}
