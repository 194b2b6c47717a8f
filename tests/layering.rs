//! The broker's top-level modules import each other without circles (the layers of
//! `docs/architecture.md`), and the library crates depend on nothing of the broker's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `crate::<module>` references outside comments, per top-level module of `src/`.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("component");
        let top = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if top == "main" || top == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read file");
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let name: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    graph.entry(top.clone()).or_default().insert(name);
                }
            }
        }
    }
    graph
}

#[test]
fn top_level_modules_import_each_other_without_circles() {
    let graph = import_graph();
    assert!(
        graph.contains_key("kafka"),
        "the scan found the modules: {graph:?}"
    );
    // Depth-first search for a back edge.
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(n) {
            return;
        }
        if let Some(at) = path.iter().position(|p| p == n) {
            panic!("import circle: {:?} -> {n}", &path[at..]);
        }
        path.push(n.to_owned());
        for m in graph.get(n).into_iter().flatten() {
            visit(m, graph, path, done);
        }
        path.pop();
        done.insert(n.to_owned());
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        visit(n, &graph, &mut Vec::new(), &mut done);
    }
    // The pure state machines and the leaves stay free of the shard.
    for pure in [
        "controller",
        "coordinator",
        "cluster",
        "quorum",
        "partition",
        "metrics",
        "util",
    ] {
        let deps = graph.get(pure).cloned().unwrap_or_default();
        for forbidden in ["shard", "kafka", "server"] {
            assert!(!deps.contains(forbidden), "{pure} imports {forbidden}");
        }
    }
}

#[test]
fn handlers_reach_partitions_only_through_the_shard() {
    let graph = import_graph();
    let kafka = graph.get("kafka").cloned().unwrap_or_default();
    assert!(
        !kafka.contains("partition"),
        "kafka imports partition: {kafka:?}"
    );
}

#[test]
fn library_crates_depend_on_nothing_of_the_broker() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (krate, allowed) in [
        ("base", &[][..]),
        ("storage", &["sluice-base"][..]),
        ("net", &["sluice-base"][..]),
        ("cli", &["sluice-net"][..]),
    ] {
        let manifest =
            std::fs::read_to_string(root.join(krate).join("Cargo.toml")).expect("manifest");
        for line in manifest
            .lines()
            .filter(|l| l.trim_start().starts_with("sluice"))
        {
            let dep = line.split(['=', ' ', '.']).next().unwrap_or_default();
            assert!(allowed.contains(&dep), "{krate} depends on {dep}");
        }
    }
}

#[test]
fn only_the_runtime_modules_name_compio() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (dir, seam) in [
        ("src", "src/runtime"),
        ("storage/src", "storage/src/runtime.rs"),
    ] {
        let mut files = Vec::new();
        rust_files(&root.join(dir), &mut files);
        assert!(!files.is_empty(), "{dir} has sources");
        for file in files {
            if file.starts_with(root.join(seam)) {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("read file");
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                assert!(
                    !code.contains("compio::"),
                    "{}:{}: names compio outside {seam}",
                    file.display(),
                    n + 1
                );
            }
        }
    }
}
