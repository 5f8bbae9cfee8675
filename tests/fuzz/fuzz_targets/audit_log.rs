//! The audit log reader, `audit verify` and the transparency report, over a
//! file anyone with the disk could have written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_server::warrant::audit;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    std::fs::write(&path, data).unwrap();
    let _ = audit::verify(&path);
    if let Ok(entries) = audit::entries(&path) {
        let _ = audit::transparency(&entries);
    }
});
