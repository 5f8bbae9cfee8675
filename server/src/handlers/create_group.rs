//! `CreateGroup`: a normal-mode group of existing accounts; the creator is a member.

use sotto_proto::v1::{CreateGroup, ErrorCode, GroupCreated, response};

use super::{Handled, RequestError, lookup, valid_name};
use crate::state::RelayState;

/// The most members a group may have.
const MAX_MEMBERS: usize = 256;

pub async fn handle(state: &RelayState, user: &str, create: CreateGroup) -> Handled {
    valid_name("group name", &create.name)?;
    if create.members.len() >= MAX_MEMBERS {
        return Err(RequestError::new(
            ErrorCode::TooLarge,
            format!("a group may have at most {MAX_MEMBERS} members"),
        ));
    }
    // Each member is looked up within the creator's daily budget: a group
    // is no way around it to learn who exists.
    for member in &create.members {
        valid_name("username", member)?;
        lookup(state, user, member)?;
    }
    let group = state
        .groups
        .create(&create.name, user, &create.members)?
        .ok_or_else(|| {
            RequestError::new(
                ErrorCode::GroupExists,
                format!("a group named {} exists already", create.name),
            )
        })?;
    state.writer.durable().await?;
    Ok(response::Kind::GroupCreated(GroupCreated {
        name: group.name,
        members: group.members,
    }))
}
