//! The workspace's modules import each other in one direction only: no two
//! modules import each other (directly or around a loop), and in the server
//! crate every import between its top-level parts goes down the layers that
//! `docs/ARCHITECTURE.md` draws. Read from the source: `use` statements
//! (`crate::`, `super::` and a file's own child modules), tests left out.

mod reader;

use std::{fs, path::Path};

use reader::{
    crates, cycle_through, graph, imports, imports_of_the_root, read_crate, shown, workspace,
};

/// The server crate's top-level parts, lowest first: a part may import
/// only the parts before it.
const SERVER_LAYERS: &[&str] = &[
    "sys", "ops", "store", "live", "auth", "config", "conn", "admin", "server",
];

#[test]
fn no_two_modules_import_each_other() {
    let mut loops = Vec::new();
    for krate in crates() {
        let graph = graph(&krate);
        for file in graph.keys() {
            if let Some(trail) = cycle_through(&graph, file) {
                let names: Vec<String> = trail.iter().map(|f| shown(f)).collect();
                loops.push(names.join(" -> "));
            }
        }
    }
    assert!(loops.is_empty(), "import loops:\n{}", loops.join("\n"));
}

#[test]
fn nothing_imports_its_crate_root() {
    // The root is the top: the facade (`lib.rs`) or the program
    // (`main.rs`); a module that imports it imports everything.
    let found: Vec<String> = crates().iter().flat_map(imports_of_the_root).collect();
    assert!(
        found.is_empty(),
        "imports of a crate root:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_server_parts_import_only_the_layers_below() {
    let src = workspace().join("crates/server/src");
    let krate = read_crate(&src, "lib.rs", Some(&src.join("bin")));
    let layer = |file: &Path| {
        let first = file
            .strip_prefix(&src)
            .ok()?
            .iter()
            .next()?
            .to_string_lossy()
            .into_owned();
        let name = first.trim_end_matches(".rs").to_string();
        SERVER_LAYERS.iter().position(|known| *known == name)
    };
    let mut upward = Vec::new();
    for (file, targets) in graph(&krate) {
        let Some(from) = layer(&file) else { continue };
        for target in targets {
            match layer(&target) {
                Some(to) if to > from => {
                    upward.push(format!("{} -> {}", shown(&file), shown(&target)))
                }
                None if target != krate.root => {
                    upward.push(format!("{} -> {} (no layer)", shown(&file), shown(&target)))
                }
                None => upward.push(format!("{} -> the crate root", shown(&file))),
                _ => {}
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that go up the layers {SERVER_LAYERS:?}:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_reader_sees_a_known_loop() {
    // The check itself: a crate whose two modules import each other fails.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    fs::write(
        dir.path().join("a.rs"),
        "use crate::{b::B, other};\npub struct A;\n",
    )
    .unwrap();
    fs::write(dir.path().join("b.rs"), "pub(crate) use super::a::A;\npub struct B;\n#[cfg(test)]\nmod tests { use crate::nothing; }\n").unwrap();
    let krate = read_crate(dir.path(), "lib.rs", None);
    let graph = graph(&krate);
    let a = dir.path().join("a.rs");
    let trail = cycle_through(&graph, &a).expect("a ⇄ b is a loop");
    assert_eq!(trail, vec![a, dir.path().join("b.rs")]);
    assert_eq!(
        imports("use x::{y::{Z, self}, w as v};"),
        ["x::y::Z", "x::y", "x::w"]
    );
}
