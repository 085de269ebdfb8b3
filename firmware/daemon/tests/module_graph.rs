//! The daemon's modules form no import cycle (issue 21 removed `config -> tensorrt -> demo ->
//! config` and `pipeline <-> systemd`; this keeps them out). Reads `src/`, takes every
//! `crate::...` and `super::...` path, and checks the graph of file modules, and of the top-level
//! modules it collapses to, for cycles. A module's use of its ancestors (the `mqtt` facade's
//! re-exports) and a parent's `pub use` of its children are not dependencies between peers.
//!
//! `cargo test -p vigil-daemon --test integration module_graph -- --nocapture` prints the
//! top-level graph (docs/architecture.md draws it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `a/b.rs` and `a/b/mod.rs` -> `a::b`; `lib.rs` -> `` (the crate root).
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).expect("file under src/");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Paths like `crate::a::b::Thing` or `super::x` in code (comments dropped), as absolute
/// segment lists.
fn references(module: &str, text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for start in ["crate::", "super::"] {
            let mut rest = code;
            while let Some(i) = rest.find(start) {
                let preceded = rest[..i]
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_');
                let path: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                rest = &rest[i + start.len()..];
                if preceded {
                    continue;
                }
                let mut segs: Vec<String> = path
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                let mut base: Vec<String> = if module.is_empty() {
                    Vec::new()
                } else {
                    module.split("::").map(str::to_owned).collect()
                };
                // In `a/b.rs` and in `a/b/mod.rs` alike (module `a::b`), `super` is `a`.
                while segs.first().map(String::as_str) == Some("super") {
                    segs.remove(0);
                    base.pop();
                }
                if segs.first().map(String::as_str) == Some("crate") {
                    segs.remove(0);
                    base.clear();
                }
                base.extend(segs);
                out.push(base);
            }
        }
    }
    out
}

fn is_ancestor(a: &str, b: &str) -> bool {
    a.is_empty() || b.starts_with(&format!("{a}::"))
}

fn graph() -> Graph {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let mut g = Graph::new();
    for f in &files {
        let from = module_of(f);
        if from.is_empty() {
            continue; // lib.rs only declares and re-exports
        }
        let text = std::fs::read_to_string(f).expect("readable source");
        let entry = g.entry(from.clone()).or_default();
        for path in references(&from, &text) {
            // The longest prefix that is a module: `crate::mqtt::EventMessage` -> `mqtt`.
            let to = (1..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|m| modules.contains(m));
            let Some(to) = to else { continue };
            if to == from || is_ancestor(&to, &from) || is_ancestor(&from, &to) {
                continue;
            }
            entry.insert(to);
        }
    }
    g
}

fn top_level(g: &Graph) -> Graph {
    let top = |m: &str| m.split("::").next().unwrap_or(m).to_owned();
    let mut t = Graph::new();
    for (from, tos) in g {
        let e = t.entry(top(from)).or_default();
        for to in tos {
            if top(to) != top(from) {
                e.insert(top(to));
            }
        }
    }
    t
}

/// A cycle as a path `a -> b -> ... -> a`, if there is one.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &Graph,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_owned(), 1);
        stack.push(n.to_owned());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m).copied().unwrap_or(0) {
                1 => {
                    let i = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut c = stack[i..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(m, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_daemon_modules_have_no_import_cycle() {
    let g = graph();
    // The graph must be the real one: these edges exist in the code, so an empty or broken
    // parse cannot pass as "acyclic".
    for (from, to) in [
        ("pipeline", "stats"),
        ("systemd", "stats"),
        ("service", "pipeline"),
    ] {
        assert!(
            g.get(from).is_some_and(|t| t.contains(to)),
            "expected {from} -> {to} in {g:#?}"
        );
    }
    let top = top_level(&g);
    for (from, tos) in &top {
        println!(
            "{from} -> {}",
            tos.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    if let Some(c) = find_cycle(&g) {
        panic!("import cycle among file modules: {}", c.join(" -> "));
    }
    if let Some(c) = find_cycle(&top) {
        panic!("import cycle among top-level modules: {}", c.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&g).map(|c| c.len()), Some(4));
    g.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&g), None);
}
