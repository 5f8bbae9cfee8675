//! The warrant module: lawful access whose limits are part of the protocol.
//!
//! - [`authorities`]: the registered authorities (`authorities.toml`);
//! - [`check`]: sans-IO checks of warrants and unmask requests (signature by a
//!   registered authority, validity, window, scope, sizes);
//! - [`disclosure`]: the disclosure of the targets' normal records with every
//!   other person pseudonymized, signed and encrypted to the investigator;
//! - [`refusal`]: the reasons a request is refused.
//!
//! Invariant: this module reads only the normal archive, through the read-only
//! [`crate::archive::ArchiveReader`] it is handed. The secret queue is private to
//! the crate and its envelopes are never part of a disclosure, not even as
//! ciphertext or as a count. Outside the crate it cannot even be named:
//!
//! ```compile_fail
//! use sotto_server::secret_queue::SecretQueue;
//! ```
//!
//! and inside it, a test (`the_warrant_module_cannot_name_what_holds_secret_envelopes`)
//! fails if any file of this module names the secret queue, the store or the
//! relay's shared state.

pub mod authorities;
pub mod check;
pub mod disclosure;
pub mod refusal;

pub use authorities::{Authority, AuthorityFile};
pub use check::{CheckedUnmask, CheckedWarrant, Limits, check_unmask, check_warrant};
pub use refusal::Refusal;

#[cfg(test)]
mod tests {
    /// The module boundary, checked on the source: nothing here names the
    /// secret queue, the raw store, or the shared relay state.
    #[test]
    fn the_warrant_module_cannot_name_what_holds_secret_envelopes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/warrant");
        // Spelled in pieces, so this test does not trip over itself.
        let forbidden = [
            concat!("secret", "_queue"),
            concat!("Secret", "Queue"),
            concat!("Secret", "Envelope"),
            concat!("crate::", "store"),
            concat!("Tree", "::"),
            concat!("Relay", "State"),
        ];
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            // Doc comments may describe the boundary; code may not cross it.
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for name in forbidden {
                assert!(!code.contains(name), "{} names {name}", path.display());
            }
            checked += 1;
        }
        assert!(checked >= 4);
    }
}
