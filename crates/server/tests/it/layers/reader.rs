//! Reading the workspace's modules and their `use` statements into a
//! graph of which file imports which.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// One crate (a library or a binary): its files by module path.
pub(super) struct Crate {
    pub(super) root: PathBuf,
    /// Module path (`["conn", "session"]`) to its file.
    pub(super) files: BTreeMap<Vec<String>, PathBuf>,
}

pub(super) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every crate root of the workspace: each `src/lib.rs` and `src/main.rs`,
/// and each `src/bin/NAME/main.rs` with the files beside it.
pub(super) fn crates() -> Vec<Crate> {
    let mut found = Vec::new();
    for entry in fs::read_dir(workspace().join("crates")).expect("crates/") {
        let src = entry.expect("entry").path().join("src");
        let bins = src.join("bin");
        if src.join("lib.rs").exists() {
            found.push(read_crate(&src, "lib.rs", Some(&bins)));
        }
        if src.join("main.rs").exists() {
            let mut program = read_crate(&src, "main.rs", Some(&bins));
            if src.join("lib.rs").exists() {
                // Beside a library, the program holds only what it declares.
                let text = fs::read_to_string(&program.root).expect("main.rs");
                program
                    .files
                    .retain(|module, _| module.first().is_some_and(|top| declares(&text, top)));
            }
            found.push(program);
        }
        if let Ok(dirs) = fs::read_dir(&bins) {
            for dir in dirs {
                let dir = dir.expect("entry").path();
                if dir.join("main.rs").exists() {
                    found.push(read_crate(&dir, "main.rs", None));
                }
            }
        }
    }
    found
}

/// Whether `text` declares the module `name` (`mod name;`).
pub(super) fn declares(text: &str, name: &str) -> bool {
    text.lines().any(|line| {
        let line = line
            .trim_start()
            .trim_start_matches("pub ")
            .trim_start_matches("pub(crate) ");
        line == format!("mod {name};")
    })
}

pub(super) fn read_crate(dir: &Path, root: &str, skip: Option<&Path>) -> Crate {
    let mut files = BTreeMap::new();
    files.insert(Vec::new(), dir.join(root));
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in fs::read_dir(&folder).expect("folder") {
            let path = entry.expect("entry").path();
            if Some(path.as_path()) == skip {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if let Some(module) = module_path(dir, &path) {
                files.insert(module, path);
            }
        }
    }
    Crate {
        root: dir.join(root),
        files,
    }
}

/// `a/b.rs` and `a/b/mod.rs` are `a::b`; crate roots and test files none.
pub(super) fn module_path(dir: &Path, file: &Path) -> Option<Vec<String>> {
    let relative = file.strip_prefix(dir).ok()?.with_extension("");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    let last = parts.last()?.clone();
    if file.extension()? != "rs"
        || last == "tests"
        || parts.len() == 1 && matches!(last.as_str(), "lib" | "main")
    {
        return None;
    }
    if last == "mod" {
        parts.pop();
    }
    Some(parts)
}

/// The source without `#[cfg(test)]` items (a test module may import
/// anything).
pub(super) fn without_tests(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        rest = skip_item(&rest[at..]);
    }
    out.push_str(rest);
    out
}

/// What follows the item that starts `text` (up to its `;` or its braces).
pub(super) fn skip_item(text: &str) -> &str {
    let mut depth = 0usize;
    for (at, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 1 => return &text[at + 1..],
            '}' => depth = depth.saturating_sub(1),
            ';' if depth == 0 => return &text[at + 1..],
            _ => {}
        }
    }
    ""
}

/// Every path a file's `use` statements name, whole (`crate::a::B`,
/// `super::c`, `child::D`), groups expanded.
pub(super) fn imports(text: &str) -> Vec<String> {
    statements(
        text,
        &["use ", "pub use ", "pub(crate) use ", "pub(super) use "],
    )
}

/// The paths of the `use` statements that start with one of `starts`.
pub(super) fn statements(text: &str, starts: &[&str]) -> Vec<String> {
    let mut paths = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim_start();
        let Some(tree) = starts.iter().find_map(|start| line.strip_prefix(start)) else {
            continue;
        };
        let mut statement = tree.to_string();
        while !statement.contains(';') {
            match lines.next() {
                Some(more) => statement.push_str(more.trim()),
                None => break,
            }
        }
        let statement = statement.split(';').next().unwrap_or_default();
        expand("", statement.trim(), &mut paths);
    }
    paths
}

pub(super) fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        out.push(format!("{prefix}{path}"));
        return;
    };
    let head = format!("{prefix}{}", &tree[..open]);
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut start) = (0usize, 0);
    for (at, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand_part(&head, &inner[start..at], out);
                start = at + 1;
            }
            _ => {}
        }
    }
    expand_part(&head, &inner[start..], out);
}

pub(super) fn expand_part(head: &str, part: &str, out: &mut Vec<String>) {
    let part = part.trim();
    if !part.is_empty() && part != "self" {
        expand(head, part, out);
    } else if part == "self" {
        out.push(head.trim_end_matches("::").to_string());
    }
}

/// The file an imported path lands in: the deepest module of the crate
/// that the path names, followed through re-exports (`pub use`), so that a
/// name taken from a face is charged to the file that defines it.
pub(super) fn resolve(krate: &Crate, from: &[String], path: &str) -> Option<PathBuf> {
    resolve_in(krate, from, path, 4)
}

pub(super) fn resolve_in(krate: &Crate, from: &[String], path: &str, hops: u8) -> Option<PathBuf> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let mut module: Vec<String> = match segments.first().copied()? {
        "crate" => {
            segments.remove(0);
            Vec::new()
        }
        "super" => {
            let mut base = from.to_vec();
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base.pop();
            }
            base
        }
        "self" => {
            segments.remove(0);
            from.to_vec()
        }
        child => {
            let mut inside = from.to_vec();
            inside.push(child.to_string());
            if !krate.files.contains_key(&inside) {
                return None;
            }
            from.to_vec()
        }
    };
    let mut rest = segments.into_iter();
    let mut landed = module.clone();
    let mut next = rest.next();
    while let Some(segment) = next {
        module.push(segment.to_string());
        if !krate.files.contains_key(&module) {
            break;
        }
        landed = module.clone();
        next = rest.next();
    }
    let file = match landed.is_empty() {
        true => krate.root.clone(),
        false => krate.files.get(&landed)?.clone(),
    };
    let handed_on = next
        .filter(|_| hops > 0)
        .and_then(|name| reexport(&file, name));
    match handed_on {
        Some(origin) => resolve_in(krate, &landed, &origin, hops - 1).or(Some(file)),
        None => Some(file),
    }
}

/// Where `file` re-exports `name` from, if it does (`pub use a::b::name`).
pub(super) fn reexport(file: &Path, name: &str) -> Option<String> {
    let text = without_tests(&fs::read_to_string(file).ok()?);
    let handed = statements(&text, &["pub use ", "pub(crate) use "]);
    let named = handed
        .iter()
        .find(|path| path.rsplit("::").next() == Some(name));
    let globbed = || {
        handed
            .iter()
            .filter_map(|path| path.strip_suffix("::*"))
            .map(|base| format!("{base}::{name}"))
            .find(|path| defined_at(file, path, name))
    };
    named.cloned().or_else(globbed)
}

/// Whether the module `path` names (relative to `file`'s folder) defines
/// `name`: for a glob re-export (`pub use client::*`).
pub(super) fn defined_at(file: &Path, path: &str, name: &str) -> bool {
    let folder = file.parent().unwrap_or(Path::new("."));
    let module = path.rsplit_once("::").map_or(path, |(module, _)| module);
    let module = module.trim_start_matches("self::").replace("::", "/");
    let candidates = [
        folder.join(format!("{module}.rs")),
        folder.join(&module).join("mod.rs"),
    ];
    candidates
        .iter()
        .filter_map(|candidate| fs::read_to_string(candidate).ok())
        .any(|text| {
            [
                "fn ", "struct ", "enum ", "const ", "static ", "trait ", "type ", "mod ",
            ]
            .iter()
            .any(|kind| text.contains(&format!("{kind}{name}")))
        })
}

pub(super) type Graph = BTreeMap<PathBuf, BTreeSet<PathBuf>>;

/// Which file imports which. A folder's `mod.rs` and the files inside it
/// are one part seen from outside: imports between a module and its own
/// ancestors or descendants are not edges here, except imports of the
/// crate root, which [`imports_of_the_root`] refuses.
pub(super) fn graph(krate: &Crate) -> Graph {
    let module_of: BTreeMap<PathBuf, Vec<String>> = krate
        .files
        .iter()
        .map(|(module, file)| (file.clone(), module.clone()))
        .collect();
    let mut modules: Vec<(Vec<String>, PathBuf)> = krate.files.clone().into_iter().collect();
    modules.push((Vec::new(), krate.root.clone()));
    let mut edges = Graph::new();
    for (module, file) in modules {
        let text = without_tests(&fs::read_to_string(&file).expect("source"));
        let targets = edges.entry(file.clone()).or_default();
        for path in imports(&text) {
            let Some(target) = resolve(krate, &module, &path).filter(|t| *t != file) else {
                continue;
            };
            let nested = module_of
                .get(&target)
                .is_some_and(|other| other.starts_with(&module) || module.starts_with(other));
            if !nested || target == krate.root {
                targets.insert(target);
            }
        }
    }
    edges
}

/// The files that import their crate's root (`lib.rs`, `main.rs`).
pub(super) fn imports_of_the_root(krate: &Crate) -> Vec<String> {
    graph(krate)
        .into_iter()
        .filter(|(file, targets)| *file != krate.root && targets.contains(&krate.root))
        .map(|(file, _)| format!("{} -> {}", shown(&file), shown(&krate.root)))
        .collect()
}

/// A loop of imports through `start`, if there is one.
pub(super) fn cycle_through(graph: &Graph, start: &PathBuf) -> Option<Vec<PathBuf>> {
    let mut stack = vec![(start.clone(), vec![start.clone()])];
    let mut seen = BTreeSet::new();
    while let Some((at, trail)) = stack.pop() {
        for next in graph.get(&at).into_iter().flatten() {
            if next == start {
                return Some(trail);
            }
            if seen.insert(next.clone()) {
                let mut longer = trail.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

pub(super) fn shown(path: &Path) -> String {
    let base = workspace().canonicalize().unwrap_or_else(|_| workspace());
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    path.strip_prefix(base)
        .unwrap_or(&path)
        .display()
        .to_string()
}
