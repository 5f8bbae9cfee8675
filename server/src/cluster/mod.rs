//! The relay past one machine (#18), first piece: the layout of sotto's data
//! on a NATS JetStream cluster, and the engine's permissions that draw the
//! warrant boundary a second time, below the relay's own code.
//!
//! Relay nodes connect as the `relay` user, which may do anything. The
//! warrant desk connects as the `warrant` user, which may read the normal
//! history ([`HIST`]) and the warrant buckets, and nothing else: the secret
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
//!
//! Not yet here: the rest of the relay storing through it (`store = "nats"`).

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
/// The transparency log, appended with an expected last sequence.
pub const AUDIT: &str = "AUDIT";
/// The accounts: `accounts.<blind(username)>` → sealed account, created once.
pub const ACCOUNTS: &str = "ACCOUNTS";
/// The normal groups: `groups.<blind(name)>` → sealed group, created once.
pub const GROUPS: &str = "GROUPS";
/// The key-value buckets the warrant desk keeps its state in.
pub const WARRANT_BUCKETS: [&str; 2] = ["warrants", "warrant_grants"];

/// Every stream the relay uses, with the subjects it holds.
pub const STREAMS: [(&str, &str); 4] = [
    (HIST, "hist.>"),
    (SECRET, "secret.>"),
    (PREKEYS, "prekey.>"),
    (AUDIT, "audit"),
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
/// that read [`HIST`] and the warrant buckets (stream info, direct gets,
/// message gets), and nothing that reads, lists or changes another stream.
pub fn warrant_publish_allowed() -> Vec<String> {
    let mut readable: Vec<String> = vec![HIST.to_owned()];
    readable.extend(WARRANT_BUCKETS.iter().map(|b| format!("KV_{b}")));
    let mut allowed = vec!["$JS.API.INFO".to_owned()];
    for stream in readable {
        allowed.push(format!("$JS.API.STREAM.INFO.{stream}"));
        allowed.push(format!("$JS.API.STREAM.MSG.GET.{stream}"));
        allowed.push(format!("$JS.API.DIRECT.GET.{stream}"));
        allowed.push(format!("$JS.API.DIRECT.GET.{stream}.>"));
    }
    allowed
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
    fn the_warrant_desk_may_name_no_stream_but_the_history_and_its_buckets() {
        for subject in warrant_publish_allowed() {
            assert!(!subject.contains(SECRET), "{subject}");
            assert!(!subject.contains(PREKEYS), "{subject}");
            assert!(!subject.contains(AUDIT), "{subject}");
            assert!(
                !subject.contains('*'),
                "no wildcard over streams: {subject}"
            );
            if let Some(rest) = subject.strip_suffix(".>") {
                assert!(rest.starts_with("$JS.API.DIRECT.GET."), "{subject}");
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
