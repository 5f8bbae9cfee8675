//! A secret group's membership as its members hold it, and the one check
//! every membership that arrives from the wire goes through.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sotto_proto::{names, v1};

use super::{MAX_MEMBERS, SecretGroupError};

/// The group's name, members (us included) and admins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Roster {
    pub(super) name: String,
    pub(super) members: BTreeSet<String>,
    pub(super) admins: BTreeSet<String>,
}

impl Roster {
    /// A roster from a `GroupState`: a valid name, 1 to [`MAX_MEMBERS`]
    /// valid and distinct usernames, and a non-empty set of admins among them.
    pub(super) fn from_wire(state: &v1::GroupState) -> Result<Self, SecretGroupError> {
        if state.members.len() > MAX_MEMBERS || state.admins.len() > MAX_MEMBERS {
            return Err(SecretGroupError::TooManyMembers);
        }
        names::validate(&state.name)?;
        let members = distinct_names(&state.members)?;
        let admins = distinct_names(&state.admins)?;
        let roster = Roster {
            name: state.name.clone(),
            members,
            admins,
        };
        roster.check()?;
        Ok(roster)
    }

    /// What a `GroupState` carries of it.
    pub(super) fn to_wire(&self, last_removal: u64, timer: Option<u32>) -> v1::GroupState {
        v1::GroupState {
            name: self.name.clone(),
            members: self.members.iter().cloned().collect(),
            admins: self.admins.iter().cloned().collect(),
            last_removal,
            timer_secs: timer.unwrap_or(0),
        }
    }

    /// The rules every roster keeps, made here or received.
    pub(super) fn check(&self) -> Result<(), SecretGroupError> {
        if self.members.is_empty() || self.members.len() > MAX_MEMBERS {
            return Err(SecretGroupError::TooManyMembers);
        }
        if self.admins.is_empty() {
            return Err(SecretGroupError::NoAdmin);
        }
        if let Some(stranger) = self.admins.difference(&self.members).next() {
            return Err(SecretGroupError::AdminNotMember(stranger.clone()));
        }
        Ok(())
    }

    /// The roster without `gone`; when no admin is left, the first
    /// remaining member by name becomes one, the same on every device.
    pub(super) fn without(&self, gone: &BTreeSet<String>) -> Roster {
        let members: BTreeSet<String> = self.members.difference(gone).cloned().collect();
        let mut admins: BTreeSet<String> = self.admins.difference(gone).cloned().collect();
        if admins.is_empty()
            && let Some(first) = members.first()
        {
            admins.insert(first.clone());
        }
        Roster {
            name: self.name.clone(),
            members,
            admins,
        }
    }
}

/// Valid usernames, each once.
pub(super) fn distinct_names(names: &[String]) -> Result<BTreeSet<String>, SecretGroupError> {
    let mut set = BTreeSet::new();
    for name in names {
        names::validate(name)?;
        if !set.insert(name.clone()) {
            return Err(SecretGroupError::DuplicateMember(name.clone()));
        }
    }
    Ok(set)
}
