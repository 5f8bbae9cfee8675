//! `relay.toml`: parsed and validated; whatever validates is within the
//! ranges the relay can honour, and `with_store` keeps it valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_server::RelayConfig;
use sotto_server::config::StoreKind;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = toml::from_str::<RelayConfig>(text) else {
        return;
    };
    if config.validate().is_ok() {
        assert!(config.limits.connections_per_address <= config.limits.connections);
        let moved = RelayConfig::with_store(text, StoreKind::Sled);
        if let Ok(moved) = toml::from_str::<RelayConfig>(&moved) {
            assert_eq!(moved.store, StoreKind::Sled);
        }
    }
});
