//! `cargo xtask layers`: the house plan, checked. It parses the sources with `syn` and
//! fails on
//! - an import loop: two modules (files) that reach each other through their `crate::` /
//!   `super::` paths, directly or through a chain (a module and its own submodules count as
//!   one room: `connection/input.rs` is `impl Connection` split across files);
//! - a layer reaching up: each top-level module of the library may import only the layers
//!   `LAYERS` lists for it (phy, wire and tcp never see socket, api, app or the binary);
//! - a room outgrown: a source file over `MAX_FILE_LINES` lines or a function over
//!   `MAX_FN_LINES`, tests aside.
//!
//! Test code (`#[cfg(test)]` items, `#[test]` functions, `tests.rs` files and `tests/`
//! folders) is left out of all three: a test may reach across layers to set a scene.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use quote::ToTokens;
use syn::{spanned::Spanned, visit::Visit};

const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 100;

/// Each top-level module of the `fastpath` library and the layers it may import. Reading
/// down the list is reading up the stack.
const LAYERS: &[(&str, &[&str])] = &[
    ("time", &[]),
    ("counters", &[]),
    ("wire", &[]),
    ("system", &[]),
    ("steer", &["system"]),
    ("tcp", &["wire", "time"]),
    ("phy", &["wire", "time", "counters", "steer", "system"]),
    // The demux dispatches up into sockets; sockets build frames with iface's builder on the
    // way down. Between the two, only the files decide: no file loop is allowed.
    (
        "iface",
        &["socket", "tcp", "phy", "wire", "time", "counters", "steer"],
    ),
    (
        "socket",
        &["iface", "tcp", "phy", "wire", "time", "counters", "steer"],
    ),
    (
        "api",
        &[
            "socket", "iface", "tcp", "phy", "wire", "time", "counters", "steer",
        ],
    ),
    // Applications stand on the API; blast (the test bed's line rate, no stack at all)
    // builds its one frame with iface's frame builder.
    (
        "app",
        &["api", "iface", "tcp", "phy", "wire", "time", "counters"],
    ),
    (
        "runtime",
        &[
            "api", "app", "control", "socket", "iface", "phy", "steer", "system", "time",
            "counters", "wire", "tcp",
        ],
    ),
    (
        "control",
        &[
            "api", "socket", "phy", "steer", "system", "time", "wire", "counters", "tcp",
        ],
    ),
    ("metrics", &["control", "socket", "counters"]),
];

/// One source file: its module path and what it refers to.
struct Module {
    file: PathBuf,
    path: Vec<String>,
    /// `crate::…` paths used outside test code, resolved against this module.
    uses: BTreeSet<Vec<String>>,
}

/// Finds the test-free paths and the long functions of one file.
struct Scan<'a> {
    here: &'a [String],
    uses: BTreeSet<Vec<String>>,
    long_fns: Vec<(String, usize, usize)>,
}

fn is_test_attr(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        let path = a.path();
        if path.is_ident("test") {
            return true;
        }
        if path.is_ident("cfg") {
            let text = a.meta.to_token_stream().to_string();
            return text.contains("test")
                && !text.contains("not (test")
                && !text.contains("not(test");
        }
        false
    })
}

impl Scan<'_> {
    /// Resolves `crate::`, `super::` and `self::` prefixes to a path from the crate root.
    fn absolute(&self, segments: &[String]) -> Option<Vec<String>> {
        let first = segments.first()?;
        match first.as_str() {
            "crate" => Some(segments[1..].to_vec()),
            "super" => {
                let mut base = self.here.to_vec();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
                base.extend(rest.iter().cloned());
                Some(base)
            }
            "self" => {
                let mut base = self.here.to_vec();
                base.extend(segments[1..].iter().cloned());
                Some(base)
            }
            _ => None,
        }
    }

    fn note(&mut self, segments: Vec<String>) {
        if let Some(p) = self.absolute(&segments) {
            self.uses.insert(p);
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut full = prefix.clone();
                if n.ident != "self" {
                    full.push(n.ident.to_string());
                }
                self.note(full);
            }
            syn::UseTree::Rename(r) => {
                let mut full = prefix.clone();
                full.push(r.ident.to_string());
                self.note(full);
            }
            syn::UseTree::Glob(_) => self.note(prefix.clone()),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    fn function(&mut self, name: String, span: proc_macro2::Span) {
        let (start, end) = (span.start().line, span.end().line);
        if end - start + 1 > MAX_FN_LINES {
            self.long_fns.push((name, start, end - start + 1));
        }
    }
}

impl<'ast> Visit<'ast> for Scan<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs: &[syn::Attribute] = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            syn::Item::Trait(t) => &t.attrs,
            _ => &[],
        };
        if is_test_attr(attrs) {
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.function(f.sig.ident.to_string(), f.span());
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if is_test_attr(&f.attrs) {
            return;
        }
        self.function(f.sig.ident.to_string(), f.span());
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.note(segments);
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        // Paths inside macro bodies (format strings aside) count too: `crate::x::y` tokens.
        let text = m.tokens.to_string();
        for (at, _) in text.match_indices("crate ::") {
            let segments: Vec<String> = text[at..]
                .split("::")
                .map(str::trim)
                .take_while(|s| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_'))
                .map(str::to_string)
                .collect();
            self.note(segments);
        }
        syn::visit::visit_macro(self, m);
    }
}

/// The module path of `file` under the crate's source `root` (None for test files).
fn module_path(root: &Path, file: &Path, crate_root: &str) -> Option<Vec<String>> {
    let rel = file.strip_prefix(root).ok()?;
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.iter().any(|p| p == "tests") || parts.last().is_some_and(|l| l == "tests.rs") {
        return None;
    }
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    if stem != "mod" && stem != crate_root {
        parts.push(stem.to_string());
    }
    Some(parts)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Scans one crate (files under `root`, reached from `crate_root`.rs, skipping `skip`).
fn scan_crate(
    root: &Path,
    crate_root: &str,
    skip: &[&str],
    only: Option<&[&str]>,
    problems: &mut Vec<String>,
) -> anyhow::Result<Vec<Module>> {
    let mut files = Vec::new();
    rust_files(root, &mut files)?;
    files.sort();
    let mut modules = Vec::new();
    for file in files {
        let rel = file.strip_prefix(root)?.to_string_lossy().into_owned();
        let under = |s: &&str| rel == *s || rel.starts_with(&format!("{s}/"));
        if skip.iter().any(under) || only.is_some_and(|o| !o.iter().any(under)) {
            continue;
        }
        let Some(path) = module_path(root, &file, crate_root) else {
            continue;
        };
        let text = std::fs::read_to_string(&file)?;
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            problems.push(format!(
                "{}: {lines} lines (at most {MAX_FILE_LINES}): split it by concern",
                file.display()
            ));
        }
        let ast = syn::parse_file(&text).with_context(|| format!("parsing {}", file.display()))?;
        let mut scan = Scan {
            here: &path,
            uses: BTreeSet::new(),
            long_fns: Vec::new(),
        };
        scan.visit_file(&ast);
        for (name, line, len) in &scan.long_fns {
            problems.push(format!(
                "{}:{line}: fn {name} is {len} lines (at most {MAX_FN_LINES}): split it into steps",
                file.display()
            ));
        }
        modules.push(Module {
            file,
            uses: scan.uses,
            path,
        });
    }
    Ok(modules)
}

/// The module (file) a path lands in: its longest prefix that is a module.
fn owner<'a>(known: &'a BTreeSet<Vec<String>>, path: &[String]) -> Option<&'a Vec<String>> {
    (1..=path.len()).rev().find_map(|n| known.get(&path[..n]))
}

fn related(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The import graph between files; edges between a module and its own ancestors or
/// descendants are left out (one room).
fn graph(modules: &[Module]) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let known: BTreeSet<Vec<String>> = modules.iter().map(|m| m.path.clone()).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for m in modules {
        let out = edges.entry(m.path.clone()).or_default();
        for used in &m.uses {
            if let Some(target) = owner(&known, used)
                && !related(&m.path, target)
            {
                out.insert(target.clone());
            }
        }
    }
    edges
}

/// Strongly connected components of more than one module (Tarjan), each a loop.
fn loops(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct State<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        next: usize,
        found: Vec<Vec<Vec<String>>>,
    }
    fn connect<'a>(s: &mut State<'a>, v: &'a Vec<String>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let edges = s.edges;
        for w in edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                connect(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            connect(&mut s, v);
        }
    }
    s.found
}

fn name(path: &[String]) -> String {
    if path.is_empty() {
        "crate".into()
    } else {
        path.join("::")
    }
}

/// Checks one crate's loops (and, for the library, its layers); returns its module count.
fn check_crate(
    label: &str,
    modules: &[Module],
    layers: Option<&[(&str, &[&str])]>,
    problems: &mut Vec<String>,
) -> usize {
    let edges = graph(modules);
    for component in loops(&edges) {
        let names: Vec<String> = component.iter().map(|p| name(p)).collect();
        problems.push(format!(
            "{label}: import loop between {} (each reaches the others)",
            names.join(", ")
        ));
    }
    if let Some(layers) = layers {
        let allowed: BTreeMap<&str, &[&str]> = layers.iter().copied().collect();
        for (from, targets) in &edges {
            let Some(top) = from.first() else { continue };
            let Some(ok) = allowed.get(top.as_str()) else {
                problems.push(format!(
                    "{label}: module {} is not in xtask's LAYERS: give it its place",
                    name(from)
                ));
                continue;
            };
            for to in targets {
                let Some(to_top) = to.first() else { continue };
                if to_top != top && !ok.contains(&to_top.as_str()) {
                    let file = modules
                        .iter()
                        .find(|m| &m.path == from)
                        .map(|m| m.file.display().to_string())
                        .unwrap_or_default();
                    problems.push(format!(
                        "{label}: {} ({file}) imports {}: {top} may import only {:?}",
                        name(from),
                        name(to),
                        ok
                    ));
                }
            }
        }
    }
    edges.len()
}

/// Runs every check over the workspace; fails with every problem found.
pub fn check(root: &Path) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let stack = root.join("stack/src");
    let lib = scan_crate(&stack, "lib", &["main.rs", "cli"], None, &mut problems)?;
    let lib_modules = check_crate("fastpath (library)", &lib, Some(LAYERS), &mut problems);
    let only_bin: &[&str] = &["main.rs", "cli"];
    let bin = scan_crate(&stack, "main", &[], Some(only_bin), &mut problems)?;
    check_crate("fastpath (binary)", &bin, None, &mut problems);
    let bench = scan_crate(
        &root.join("bench/src"),
        "lib",
        &["main.rs"],
        None,
        &mut problems,
    )?;
    let bench_modules = check_crate("fastpath-bench", &bench, None, &mut problems);
    for other in [
        "xtask/src",
        "ebpf/xdp/src",
        "ebpf/impair/src",
        "ebpf/common/src",
        "stack/fuzz/fuzz_targets",
    ] {
        scan_crate(&root.join(other), "main", &[], None, &mut problems)?;
    }
    if problems.is_empty() {
        eprintln!(
            "    no import loop among {lib_modules} library and {bench_modules} bench modules; \
             every layer imports only those below it; no file over {MAX_FILE_LINES} lines, \
             no function over {MAX_FN_LINES}"
        );
        return Ok(());
    }
    for p in &problems {
        eprintln!("    {p}");
    }
    bail!(
        "the house plan is broken in {} places (above)",
        problems.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(path: &str, uses: &[&str]) -> Module {
        let split = |p: &str| -> Vec<String> {
            if p.is_empty() {
                Vec::new()
            } else {
                p.split("::").map(str::to_string).collect()
            }
        };
        Module {
            file: PathBuf::from(path),
            path: split(path),
            uses: uses.iter().map(|u| split(u)).collect(),
        }
    }

    #[test]
    fn a_loop_through_three_files_is_found_and_a_parent_child_pair_is_not() {
        let modules = [
            module("api", &["socket::Host"]),
            module("socket", &["api::tcp::Op"]),
            module("api::tcp", &["api::Stack", "socket::Command"]),
            module("tcp::connection", &["tcp::connection::input::X"]),
            module("tcp::connection::input", &["tcp::connection::Connection"]),
        ];
        let found = loops(&graph(&modules));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].len(), 2, "api::tcp and socket: {found:?}");
        let mut problems = Vec::new();
        check_crate("t", &modules, None, &mut problems);
        assert!(problems[0].contains("api::tcp") && problems[0].contains("socket"));
    }

    #[test]
    fn a_lower_layer_reaching_up_is_reported() {
        let modules = [
            module("tcp", &["wire::tcp::TcpRepr"]),
            module("tcp::listener", &["socket::Host"]),
            module("socket", &[]),
            module("wire", &[]),
            module("wire::tcp", &[]),
        ];
        let mut problems = Vec::new();
        check_crate("t", &modules, Some(LAYERS), &mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("tcp::listener") && problems[0].contains("imports socket"));
    }

    #[test]
    fn paths_resolve_from_crate_super_and_self_and_test_code_is_skipped() {
        let here = vec!["socket".to_string(), "tcp".to_string(), "ops".to_string()];
        let file = syn::parse_file(
            "use super::{slots::Slot, TcpEngine};\n\
             use crate::iface::frame::FrameAddrs;\n\
             fn f() { let _ = crate::phy::TxResult::Sent; }\n\
             #[cfg(test)] mod tests { use crate::api::Stack; }\n\
             #[test] fn t() { crate::app::echo::x(); }",
        )
        .unwrap();
        let mut scan = Scan {
            here: &here,
            uses: BTreeSet::new(),
            long_fns: Vec::new(),
        };
        scan.visit_file(&file);
        let got: Vec<String> = scan.uses.iter().map(|p| p.join("::")).collect();
        assert!(
            got.contains(&"socket::tcp::slots::Slot".to_string()),
            "{got:?}"
        );
        assert!(
            got.contains(&"iface::frame::FrameAddrs".to_string()),
            "{got:?}"
        );
        assert!(got.contains(&"phy::TxResult::Sent".to_string()), "{got:?}");
        assert!(
            !got.iter()
                .any(|p| p.starts_with("api") || p.starts_with("app")),
            "{got:?}"
        );
    }
}
