//! The relay's modules form no import circle: `relay` → `connection` →
//! `handlers` → `state` → the components, each pointing one way. Cargo checks
//! this between crates; inside one crate, this test does, from the `crate::`
//! paths each top-level module's code (not its comments or tests) names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The top-level modules a `crate::` path (without the prefix) names.
fn named_modules<'a>(rest: &'a str) -> Vec<&'a str> {
    let first = |path: &'a str| {
        path.trim()
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .next()
            .unwrap_or("")
    };
    match rest.strip_prefix('{') {
        Some(group) => group
            .split('}')
            .next()
            .unwrap_or("")
            .split(',')
            .map(first)
            .collect(),
        None => vec![first(rest)],
    }
}

/// Top-level module → the top-level modules its code names.
fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let is_module = |name: &str| {
        !name.is_empty()
            && (src.join(format!("{name}.rs")).exists() || src.join(name).join("mod.rs").exists())
    };
    let mut graph = Graph::new();
    let mut paths = vec![src.clone()];
    while let Some(path) = paths.pop() {
        if path.is_dir() {
            paths.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let rel = path.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if path.extension().is_none_or(|e| e != "rs")
            || top == "lib"
            || top == "main"
            || rel.file_name().is_some_and(|f| f == "tests.rs")
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let named = graph.entry(top.clone()).or_default();
        // The file's code up to its test module, comments left out.
        for line in text
            .lines()
            .take_while(|l| l.trim() != "#[cfg(test)]")
            .filter(|l| !l.trim_start().starts_with("//"))
        {
            for (at, _) in line.match_indices("crate::") {
                for name in named_modules(&line[at + "crate::".len()..]) {
                    if is_module(name) && name != top {
                        named.insert(name.to_owned());
                    }
                }
            }
        }
    }
    graph
}

fn visit(
    node: &str,
    graph: &Graph,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(at) = path.iter().position(|n| n == node) {
        let mut circle = path[at..].to_vec();
        circle.push(node.to_owned());
        return Some(circle);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node.to_owned());
    for next in graph.get(node).into_iter().flatten() {
        if let Some(circle) = visit(next, graph, path, done) {
            return Some(circle);
        }
    }
    path.pop();
    done.insert(node.to_owned());
    None
}

fn circle(graph: &Graph) -> Option<Vec<String>> {
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_relays_modules_form_no_import_circle() {
    let graph = graph();
    assert!(graph["relay"].contains("connection"), "{graph:?}");
    assert!(graph["connection"].contains("handlers"), "{graph:?}");
    assert!(graph["handlers"].contains("state"), "{graph:?}");
    if let Some(circle) = circle(&graph) {
        panic!("an import circle: {}", circle.join(" → "));
    }
}

#[test]
fn a_circle_would_be_found() {
    let mut graph = Graph::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    assert_eq!(circle(&graph), None);
    graph.entry("c".into()).or_default().insert("a".into());
    assert!(circle(&graph).is_some());
}

#[test]
fn the_warrant_desk_names_nothing_that_holds_secret_envelopes() {
    // Beside the crate boundary: the desk's own code names neither the
    // secret queue nor the shared state, handlers or connections.
    let graph = graph();
    for forbidden in ["secret_queue", "state", "handlers", "connection"] {
        assert!(
            !graph["warrant"].contains(forbidden),
            "the warrant desk names crate::{forbidden}: {:?}",
            graph["warrant"]
        );
    }
}
