//! The maps of the code list every module: the crate map in `lib.rs`
//! every top-level module, README's "Code map" every top-level module and
//! every file of a module directory (tests aside).

use std::path::Path;

fn read(relative: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)).unwrap()
}

/// The `pub mod` names of lib.rs.
fn modules(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect()
}

#[test]
fn the_crate_map_names_every_module() {
    let lib = read("src/lib.rs");
    let map: String = lib
        .lines()
        .filter(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let modules = modules(&lib);
    assert!(modules.len() > 20, "{modules:?}");
    for module in modules {
        assert!(
            map.contains(&format!("[`{module}`]")),
            "lib.rs's crate map does not name {module}"
        );
    }
}

#[test]
fn readme_code_map_names_every_module_and_file() {
    let readme = read("README.md");
    let start = readme.find("## Code map").expect("README has a code map");
    let end = readme[start + 3..]
        .find("\n## ")
        .map_or(readme.len(), |e| start + 3 + e);
    let map = &readme[start..end];
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for module in modules(&read("src/lib.rs")) {
        if src.join(&module).is_dir() {
            let row = map
                .lines()
                .find(|l| l.starts_with('|') && l.contains(&format!("`src/{module}/`")))
                .unwrap_or_else(|| panic!("README's code map has no row for src/{module}/"));
            for entry in std::fs::read_dir(src.join(&module)).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                let stem = name.trim_end_matches(".rs");
                if name == "mod.rs" || stem.ends_with("tests") {
                    continue;
                }
                assert!(
                    row.contains(&format!("`{stem}.rs`")) || row.contains(&format!("`{stem}/`")),
                    "README's code map row of src/{module}/ does not name {name}"
                );
            }
        } else {
            assert!(
                map.contains(&format!("`src/{module}.rs`")),
                "README's code map does not name src/{module}.rs"
            );
        }
    }
}
