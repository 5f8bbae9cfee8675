//! The relay past one machine (#18), first piece: the layout of sotto's data
//! on a NATS JetStream cluster, and the engine's permissions that draw the
//! warrant boundary a second time, below the relay's own code.
//!
//! Relay nodes connect as the `relay` user, which may do anything. The
//! warrant desk connects as the `warrant` user, which may read the normal
//! history ([`HIST`]) and write notices ([`NOTICES`]), and nothing else: the secret
//! queue ([`SECRET`]) is refused by the NATS server itself, whatever the
//! desk's code asks for (tested against a real cluster in
//! `tests/tests/cluster.rs`).
//!
//! Storage through this layout, one function at a time (each beside the
//! embedded store's, behind the same engine):
//! - `crate::prekeys::cluster`: published prekeys; one-time prekeys taken by delete.
//! - [`records`]: records created once (accounts, groups); the stream refuses a second.
//! - [`live`]: pushes to users connected to other relay nodes (core NATS).
//! - `crate::secret_queue::cluster`: secret envelopes; an acknowledgement deletes.
//! - `crate::archive::cluster`: the normal archive, one copy per participant, and inboxes.
//! - `crate::warrant::cluster`: the one node that is the warrant desk, and warrant notices.
//!
//! The relay stores through these with `store = "nats"` (`crate::relay` puts them together).

pub mod jetstream;
pub mod live;
pub mod records;

pub use jetstream::{Cluster, ClusterError, ClusterOptions};
pub use live::LiveLink;
pub use records::{ClusterRecords, Created, OnceRecords};

/// The normal archive and inboxes: `hist.<owner blind>.<conversation blind>`.
pub const HIST: &str = "HIST";
/// The secret queue: `secret.<recipient blind>`; an acknowledgement deletes.
pub const SECRET: &str = "SECRET";
/// One-time prekeys: `prekey.<user blind>.<id>`; a take deletes.
pub const PREKEYS: &str = "PREKEYS";
/// The accounts: `accounts.<blind(username)>` → sealed account, created once.
pub const ACCOUNTS: &str = "ACCOUNTS";
/// The normal groups: `groups.<blind(name)>` → sealed group, created once.
pub const GROUPS: &str = "GROUPS";
/// Which node is the cluster's warrant desk: `desk.<key>`, created once.
pub const DESK: &str = "DESK";
/// The warrant desk's fence: its process's session and its log's anchor.
pub const DESK_BUCKET: &str = "warrant_desk";
/// Notices to the people a warrant disclosed: `notice.<blind(person)>.<id>`,
/// written by the warrant desk, deleted when acknowledged.
pub const NOTICES: &str = "NOTICES";

/// Every stream the relay uses, with the subjects it holds.
pub const STREAMS: [(&str, &str); 4] = [
    (HIST, "hist.>"),
    (SECRET, "secret.>"),
    (PREKEYS, "prekey.>"),
    (NOTICES, "notice.>"),
];

/// The NATS user names.
pub const RELAY_USER: &str = "relay";
pub const WARRANT_USER: &str = "warrant";

/// Where `user`'s answers come back (request replies): a prefix of its own,
/// so that no user's permission to hear its own answers lets it hear
/// another's (all users share one NATS account, and `_INBOX.>` would catch
/// the relay's reads of the secret queue).
pub fn inbox_prefix(user: &str) -> String {
    format!("_INBOX_{user}")
}

/// The subjects the warrant desk may publish to: JetStream API requests
/// that read [`HIST`] (stream info, direct gets, message gets), the
/// notices it writes to [`NOTICES`] (publishing only: it cannot read, list
/// or delete one), its fence in the bucket [`DESK_BUCKET`], and nothing
/// that reads, lists or changes another stream.
pub fn warrant_publish_allowed() -> Vec<String> {
    vec![
        "$JS.API.INFO".to_owned(),
        format!("$JS.API.STREAM.INFO.{HIST}"),
        format!("$JS.API.STREAM.MSG.GET.{HIST}"),
        format!("$JS.API.DIRECT.GET.{HIST}"),
        format!("$JS.API.DIRECT.GET.{HIST}.>"),
        "notice.>".to_owned(),
        format!("$JS.API.STREAM.INFO.KV_{DESK_BUCKET}"),
        format!("$JS.API.STREAM.MSG.GET.KV_{DESK_BUCKET}"),
        format!("$KV.{DESK_BUCKET}.>"),
    ]
}

/// The `authorization` block of a NATS server's configuration: the relay's
/// user, and the warrant desk's read-only one. Passwords are written as
/// given (quoted); give each node the same block.
pub fn nats_authorization(relay_password: &str, warrant_password: &str) -> String {
    let quoted = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let list = |items: &[String]| {
        items
            .iter()
            .map(|s| quoted(s))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "authorization {{\n  users: [\n    {{ user: {}, password: {} }}\n    {{ user: {}, \
         password: {}, permissions: {{ publish: {{ allow: [{}] }}, subscribe: {{ allow: \
         [{}] }} }} }}\n  ]\n}}\n",
        quoted(RELAY_USER),
        quoted(relay_password),
        quoted(WARRANT_USER),
        quoted(warrant_password),
        list(&warrant_publish_allowed()),
        quoted(&format!("{}.>", inbox_prefix(WARRANT_USER)))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_shows_the_authorization_block_the_relay_writes() {
        let readme = include_str!("../../../README.md");
        for line in nats_authorization("RELAY-PASSWORD", "WARRANT-PASSWORD").lines() {
            assert!(
                readme.contains(&format!("   {line}\n")),
                "the README's \"Operating a cluster\" lacks: {line}"
            );
        }
    }

    #[test]
    fn the_warrant_desk_may_read_no_stream_but_the_history_and_write_only_notices() {
        for subject in warrant_publish_allowed() {
            assert!(!subject.contains(SECRET), "{subject}");
            assert!(!subject.contains(PREKEYS), "{subject}");
            assert!(
                !subject.contains('*'),
                "no wildcard over streams: {subject}"
            );
            let fence = format!("$KV.{DESK_BUCKET}");
            if let Some(rest) = subject.strip_suffix(".>") {
                assert!(
                    rest == format!("$JS.API.DIRECT.GET.{HIST}")
                        || rest == "notice"
                        || rest == fence,
                    "{subject}"
                );
            }
            if subject.starts_with("$JS.API.") && subject != "$JS.API.INFO" {
                assert!(
                    subject.ends_with(HIST)
                        || subject.contains(&format!("{HIST}."))
                        || subject.ends_with(&format!("KV_{DESK_BUCKET}")),
                    "{subject}"
                );
                assert!(!subject.contains(NOTICES), "{subject}");
            } else {
                assert!(
                    subject == "$JS.API.INFO"
                        || subject == "notice.>"
                        || subject == format!("{fence}.>"),
                    "{subject}"
                );
            }
        }
    }

    #[test]
    fn passwords_cannot_break_out_of_their_quotes() {
        let block = nats_authorization("a\"b", "c\\\"}, { user: x }");
        assert!(block.contains("\"a\\\"b\""));
        assert!(block.contains("\"c\\\\\\\"}, { user: x }\""));
    }
}
