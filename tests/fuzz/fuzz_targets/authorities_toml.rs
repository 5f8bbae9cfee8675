//! `authorities.toml` as an operator (or anyone who can write the file) left
//! it: parsed, turned into a registry, written back and parsed again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_warrant::AuthorityFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = AuthorityFile::parse(text) else {
        return;
    };
    if file.registry().is_ok() {
        // What is accepted survives its own round trip.
        let again = AuthorityFile::parse(&file.to_toml()).expect("its own output parses");
        assert!(again.registry().is_ok());
    }
});
