//! A member's device in a secret group, on what other members, outsiders
//! and the relay hand it: arbitrary bytes as a group message (a
//! `SenderKeyMessage`) from a member or not, and as a control message (a
//! `GroupControl`) from the admin, a member or an outsider. Nothing may
//! panic, and the device reads the admin's next message as before.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sotto_client::secret_group::{GroupId, Outgoing, SecretGroups};
use sotto_proto::v1;

struct Setup {
    /// carol's device (serialized: each run starts from it afresh), alice's,
    /// and the group.
    carol: String,
    alice: String,
    group: GroupId,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let mut devices: Vec<SecretGroups> =
            ["alice", "bob", "carol"].iter().map(|u| SecretGroups::new(u)).collect();
        let (group, sent) = devices[0]
            .create("fuzzers", &["bob".to_owned(), "carol".to_owned()])
            .unwrap();
        // In order, as the pairwise sessions deliver them.
        let mut queue: std::collections::VecDeque<(String, Outgoing)> =
            sent.into_iter().map(|o| ("alice".to_owned(), o)).collect();
        while let Some((from, out)) = queue.pop_front() {
            let to = devices.iter().position(|d| d.me() == out.to).unwrap();
            let outcome = devices[to].receive_control(&from, &out.control).unwrap();
            let me = devices[to].me().to_owned();
            queue.extend(outcome.send.into_iter().map(|o| (me.clone(), o)));
        }
        Setup {
            carol: serde_json::to_string(&devices[2]).unwrap(),
            alice: serde_json::to_string(&devices[0]).unwrap(),
            group,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let s = setup();
    let mut carol: SecretGroups = serde_json::from_str(&s.carol).unwrap();
    let from = ["alice", "bob", "mallory"][usize::from(mode % 3)];
    match mode / 3 % 2 {
        0 => {
            let _ = carol.receive_message(from, &s.group, bytes);
        }
        _ => {
            if let Ok(control) = v1::GroupControl::decode(bytes) {
                let _ = carol.receive_control(from, &control);
            }
        }
    }
    // Unless carol was told, truly, of a change, she reads alice on.
    if carol.info(&s.group).is_some_and(|i| i.members.contains("alice")) {
        let mut alice: SecretGroups = serde_json::from_str(&s.alice).unwrap();
        let send = alice.encrypt(&s.group, b"next").unwrap();
        let read = carol.receive_message("alice", &s.group, &send.ciphertext);
        assert!(read.is_ok(), "{read:?}");
    }
});
