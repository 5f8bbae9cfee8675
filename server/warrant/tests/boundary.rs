//! The privacy boundary as Cargo sees it: the warrant crate's whole dependency
//! closure (what it could ever call) holds no relay, no store and no engine,
//! so nothing in it can reach the secret queue.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Packages the warrant crate must never depend on, directly or through others.
const FORBIDDEN: &[&str] = &[
    "sotto-server",
    "sotto-client",
    "sotto-investigator",
    "sled",
    "fjall",
    "async-nats",
    "quinn",
    "rustls",
];

/// The platform this test runs on, as rustc names it.
fn host() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(rustc).arg("-vV").output().expect("rustc runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc -vV names the host")
}

fn metadata() -> Value {
    // Offline and for this platform only: everything it needs was fetched to
    // build this test, and the test must not reach the network.
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

/// Every package the warrant library is built with (normal dependencies,
/// transitively; dev- and build-dependencies of it are not part of the library).
fn closure(meta: &Value) -> BTreeSet<String> {
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: BTreeMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root = names
        .iter()
        .find(|(_, name)| **name == "sotto-warrant")
        .map(|(id, _)| *id)
        .expect("the warrant crate is in the workspace");
    let mut seen = BTreeSet::new();
    let mut todo = vec![root];
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            // Only the root's dev-dependencies could differ; below it, a
            // package's normal dependencies are what it is built with.
            if normal {
                todo.push(dep["pkg"].as_str().unwrap());
            }
        }
    }
    seen.into_iter().map(|id| names[id].to_owned()).collect()
}

#[test]
fn the_warrant_crate_cannot_reach_the_relay_or_any_store() {
    let closure = closure(&metadata());
    assert!(closure.contains("sotto-proto"), "{closure:?}");
    assert!(closure.contains("ed25519-dalek"), "{closure:?}");
    for name in FORBIDDEN {
        assert!(
            !closure.contains(*name),
            "sotto-warrant depends on {name}: the warrant crate must stay sans-IO and \
             unable to reach the relay's store (its closure: {closure:?})"
        );
    }
}

#[test]
fn the_relay_reaches_the_warrant_crate_not_the_other_way() {
    // The boundary is one-way: the relay uses the warrant crate, so a cycle
    // through it would be the only way back; Cargo forbids cycles, and this
    // pins that the relay really is built on this crate.
    let meta = metadata();
    let server = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "sotto-server")
        .expect("the relay is in the workspace");
    assert!(
        server["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "sotto-warrant")
    );
}
