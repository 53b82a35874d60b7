//! The workspace's dependency rules, checked on every test run (ARCHITECTURE.md explains
//! them):
//!
//! - the planner, the evaluation, the providers, the bridge and the crates under them never
//!   depend on the native engine (`tps-core`), so any TPS can stand in for it;
//! - HTTP is spoken only by `llm-providers` and `tps-utps-bridge` (dependencies and sources);
//! - `tps-api` depends on light crates only;
//! - no two sibling modules of a crate (or of the binary) import each other, directly or
//!   through others.
//!
//! Dependencies come from `cargo metadata`, modules from the sources' `crate::` and `super::`
//! paths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata gives JSON")
}

/// Package name -> names of its normal (not dev, not build) dependencies, as resolved.
fn normal_graph(meta: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let mut graph = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let name = names[node["id"].as_str().unwrap()].to_string();
        let deps: BTreeSet<String> = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| names[d["pkg"].as_str().unwrap()].to_string())
            .collect();
        graph.entry(name).or_insert_with(BTreeSet::new).extend(deps);
    }
    graph
}

fn closure(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(n) = todo.pop() {
        for d in graph.get(&n).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

/// Crates that speak HTTP (clients, servers, mocks).
const HTTP: [&str; 8] = [
    "reqwest",
    "hyper",
    "ureq",
    "axum",
    "wiremock",
    "tiny_http",
    "actix-web",
    "warp",
];
/// Where HTTP may be spoken.
const HTTP_CRATES: [&str; 2] = ["llm-providers", "tps-utps-bridge"];

#[test]
fn nothing_above_the_api_depends_on_the_native_engine() {
    let graph = normal_graph(&metadata());
    for krate in [
        "tps-api",
        "patient-model",
        "phantoms",
        "evaluation",
        "llm-providers",
        "planner",
        "tps-utps-bridge",
    ] {
        let deps = closure(&graph, krate);
        assert!(
            !deps.contains("tps-core"),
            "{krate} depends on tps-core (the native engine): {deps:?}"
        );
        assert!(
            deps.contains("tps-api") || krate == "tps-api",
            "{krate}: {deps:?}"
        );
    }
    // The bridge is a client of the API alone.
    let bridge = &graph["tps-utps-bridge"];
    assert!(
        bridge.iter().all(|d| d == "tps-api" || !d.contains("tps")),
        "{bridge:?}"
    );
}

#[test]
fn only_the_providers_and_the_bridge_speak_http() {
    let meta = metadata();
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for p in meta["packages"].as_array().unwrap() {
        if !members.contains(p["id"].as_str().unwrap()) {
            continue;
        }
        let name = p["name"].as_str().unwrap();
        for d in p["dependencies"].as_array().unwrap() {
            let dep = d["name"].as_str().unwrap();
            let normal = d["kind"].is_null();
            if HTTP.contains(&dep) && normal {
                assert!(
                    HTTP_CRATES.contains(&name),
                    "{name} depends on the HTTP crate {dep}"
                );
            }
        }
    }
    // No other crate's sources (tests aside) open sockets or name an HTTP crate.
    let mut dirs = vec![root().join("src")];
    for c in [
        "tps-api",
        "patient-model",
        "phantoms",
        "tps-core",
        "evaluation",
        "planner",
    ] {
        dirs.push(root().join("crates").join(c).join("src"));
    }
    for dir in dirs {
        for file in rust_files(&dir) {
            let text = non_test_source(&file);
            for word in [
                "TcpStream",
                "TcpListener",
                "UdpSocket",
                "reqwest::",
                "hyper::",
            ] {
                assert!(
                    !text.contains(word),
                    "{} mentions {word}: HTTP belongs in llm-providers or tps-utps-bridge",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn the_api_crate_stays_light() {
    let meta = metadata();
    let api = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tps-api")
        .unwrap();
    for d in api["dependencies"].as_array().unwrap() {
        if !d["kind"].is_null() {
            continue;
        }
        let name = d["name"].as_str().unwrap();
        let optional = d["optional"].as_bool().unwrap();
        assert!(
            ["serde", "thiserror", "toml"].contains(&name) || (name == "serde_json" && optional),
            "tps-api depends on {name}; it may use serde, thiserror and toml (serde_json for \
             its optional testing feature)"
        );
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A file's code before its `#[cfg(test)]` module, without comment lines (doc links are not
/// imports).
fn non_test_source(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module path of `file` under `src` (`[]` for lib.rs or main.rs).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !["lib", "main", "mod"].contains(&stem) {
        parts.push(stem.to_string());
    }
    parts
}

/// Module paths `text` (the source of module `me`) refers to through `crate::` and `super::`.
fn references(me: &[String], text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let ident = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|p| {
                p.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|p| !p.is_empty())
            .collect()
    };
    // `super` is the parent module, whether the module is a file or a directory's mod.rs.
    let parent = me[..me.len().saturating_sub(1)].to_vec();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent)] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a::b, c}`: the first segment of each item.
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let path = ident(item.trim());
                    if !path.is_empty() {
                        out.push([base.clone(), path].concat());
                    }
                }
            } else {
                let path = ident(rest);
                out.push([base.clone(), path].concat());
            }
        }
    }
    out
}

/// Sibling-module edges of one crate: for each reference from module A to module B, the
/// children of their common ancestor that hold A and B (none when one contains the other).
fn sibling_edges(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let files = rust_files(src);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(src, f)).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for f in &files {
        let me = module_of(src, f);
        for r in references(&me, &non_test_source(f)) {
            // The longest prefix of the path that is a module file.
            let Some(target) = (0..=r.len())
                .rev()
                .map(|n| r[..n].to_vec())
                .find(|p| modules.contains(p))
            else {
                continue;
            };
            let common = me.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common == me.len() || common == target.len() {
                continue; // one contains the other
            }
            edges
                .entry(me[..=common].to_vec())
                .or_default()
                .insert(target[..=common].to_vec());
        }
    }
    edges
}

/// A cycle in `edges`, if any, as the modules along it.
fn find_cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    fn visit(
        n: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        path: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle: Vec<String> = path[i..].iter().map(|m| m.join("::")).collect();
            cycle.push(n.join("::"));
            return Some(cycle);
        }
        if !done.insert(n.clone()) {
            return None;
        }
        path.push(n.clone());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_module_imports_a_sibling_that_imports_it_back() {
    let mut srcs = vec![("autoplan".to_string(), root().join("src"))];
    for e in std::fs::read_dir(root().join("crates")).unwrap() {
        let dir = e.unwrap().path();
        srcs.push((
            dir.file_name().unwrap().to_string_lossy().into_owned(),
            dir.join("src"),
        ));
    }
    for (name, src) in srcs {
        let edges = sibling_edges(&src);
        if let Some(cycle) = find_cycle(&edges) {
            panic!("{name}: modules import each other: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    // Two sibling modules that import each other, and a third that only imports one.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path();
    std::fs::write(src.join("lib.rs"), "mod a; mod b; mod c;\n").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::B;\npub struct A;\n").unwrap();
    std::fs::write(src.join("b.rs"), "use crate::{a::A, c};\npub struct B;\n").unwrap();
    std::fs::write(src.join("c.rs"), "use super::a::A;\n").unwrap();
    let edges = sibling_edges(src);
    let a = vec!["a".to_string()];
    assert!(edges[&a].contains(&vec!["b".to_string()]));
    assert!(edges[&vec!["c".to_string()]].contains(&a));
    let cycle = find_cycle(&edges).expect("a and b import each other");
    assert!(
        cycle.contains(&"a".to_string()) && cycle.contains(&"b".to_string()),
        "{cycle:?}"
    );
    // Comments are not imports, and a chain without a way back is no cycle.
    std::fs::write(src.join("b.rs"), "//! see [`crate::a::A`]\npub struct B;\n").unwrap();
    assert_eq!(find_cycle(&sibling_edges(src)), None);
}
