//! Opening the vault as someone who can edit the profile folder finds it:
//! the stored key parameters (never any work outside their bounds), the old
//! one-file format up to the key derivation, and sealed values that were
//! replaced or changed (refused as damaged, never a panic, never another
//! value). A real vault (Argon2id once, at start) answers the value cases.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sotto_client::vault::kdf::KdfParams;
use sotto_client::vault::{Table, Vault, VaultError, legacy};

struct Fixture {
    vault: Vault,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::create(&dir.path().join("vault"), "fuzz passphrase").unwrap();
        Fixture { vault, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    match op % 5 {
        0 => {
            if let Ok(params) = KdfParams::check_stored(rest) {
                assert!(params.m_kib <= 256 * 1024 && params.t <= 10 && params.p <= 8);
            }
        }
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = legacy::check(text);
            }
        }
        2 => {
            // Any bytes in place of a sealed value: refused as damaged.
            let vault = &fixture().vault;
            vault.put_raw(Table::History, b"raw", rest).unwrap();
            assert!(matches!(
                vault.get(Table::History, b"raw"),
                Err(VaultError::Damaged(_))
            ));
        }
        3 => {
            // A real value, then bytes of it changed as the input says.
            let Some((&value_len, edits)) = rest.split_first() else {
                return;
            };
            let vault = &fixture().vault;
            let value = vec![0x5a; usize::from(value_len) * 3];
            vault.put(Table::State, b"edited", &value).unwrap();
            let mut sealed = vault.get_raw(Table::State, b"edited").unwrap().unwrap();
            let original = sealed.clone();
            for pair in edits.chunks_exact(2) {
                let at = usize::from(pair[0]) * sealed.len() / 256;
                sealed[at] ^= pair[1];
            }
            vault.put_raw(Table::State, b"edited", &sealed).unwrap();
            let got = vault.get(Table::State, b"edited");
            if sealed == original {
                assert_eq!(got.unwrap().unwrap().as_slice(), value.as_slice());
            } else {
                assert!(matches!(got, Err(VaultError::Damaged(_))), "a changed value opened");
            }
            // Moved to another key: refused too.
            vault.put_raw(Table::State, b"moved", &original).unwrap();
            assert!(vault.get(Table::State, b"moved").is_err());
        }
        _ => {
            // Any value goes in and comes out whole.
            let vault = &fixture().vault;
            vault.put(Table::History, b"round", rest).unwrap();
            assert_eq!(
                vault.get(Table::History, b"round").unwrap().unwrap().as_slice(),
                rest
            );
        }
    }
});
