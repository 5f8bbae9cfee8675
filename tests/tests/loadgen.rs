//! The load generator itself: each mode delivers every message and reports
//! what the contract says (small numbers: this checks the tool, it measures nothing).

use serde_json::Value;
use sotto_tests::bin;

fn run(args: &[&str]) -> Value {
    let _heavy = sotto_tests::one_at_a_time_blocking();
    let out = std::process::Command::new(bin("sotto-loadgen"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sotto-loadgen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap()
}

#[test]
fn every_mode_delivers_every_message_and_reports_it() {
    for mode in ["echo", "normal", "secret"] {
        let report = run(&[
            "--mode",
            mode,
            "--clients",
            "3",
            "--messages",
            "30",
            "--size",
            "64",
            "--json",
        ]);
        assert_eq!(report["mode"], mode);
        assert_eq!(report["messages"], 30, "{mode}: every message arrived");
        assert_eq!(report["clients"], 3);
        assert_eq!(report["size"], 64);
        for field in [
            "seconds",
            "msgs_per_sec",
            "p50_us",
            "p99_us",
            "relay_rss_mib",
        ] {
            assert!(report[field].is_number(), "{mode}: {field} in {report}");
        }
        assert!(report["p50_us"].as_u64() <= report["p99_us"].as_u64());
        let store = if mode == "echo" {
            Value::Null
        } else {
            "fjall".into()
        };
        assert_eq!(report["store"], store, "{mode}");
    }
}

#[test]
fn the_relay_it_starts_runs_on_the_store_asked_for() {
    let report = run(&[
        "--mode",
        "normal",
        "--store",
        "sled",
        "--clients",
        "2",
        "--messages",
        "10",
        "--json",
    ]);
    assert_eq!(report["store"], "sled");
    assert_eq!(report["messages"], 10);
}

#[test]
fn idle_clients_are_held_and_measured() {
    let report = run(&[
        "--mode",
        "normal",
        "--clients",
        "2",
        "--messages",
        "10",
        "--idle-clients",
        "20",
        "--json",
    ]);
    assert_eq!(report["idle_clients"], 20);
    assert!(report["idle_kib_per_conn"].is_number());
}

#[test]
fn it_starts_relay_nodes_on_a_local_cluster_and_spreads_the_clients_over_them() {
    for mode in ["normal", "secret"] {
        let report = run(&[
            "--mode",
            mode,
            "--cluster",
            "2",
            "--clients",
            "4",
            "--messages",
            "40",
            "--size",
            "64",
            "--json",
        ]);
        assert_eq!(report["store"], "nats", "{mode}");
        assert_eq!(report["relays"], 2, "{mode}");
        assert_eq!(report["messages"], 40, "{mode}: every message arrived");
    }
}
