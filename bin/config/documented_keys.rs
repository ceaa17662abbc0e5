//! Every configuration key the documentation names is a key the loader knows: the keys of
//! `bin/default.toml` (written or commented out), of the TOML examples in the README and
//! docs/DESIGN.md, and of the "config key" column of docs/PROTECTIONS.md.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::collections::BTreeSet;

use super::{DEFAULT_TOML, parse};

/// A key name: lowercase ASCII letters, digits and `_`, starting with a letter.
fn is_key(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_lowercase())
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The key of a `key = value` line, commented out or not.
fn assigned_key(line: &str) -> Option<&str> {
    let line = line.trim_start().trim_start_matches('#').trim_start();
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    is_key(key).then_some(key)
}

/// Keys assigned inside the ```toml blocks of a Markdown text.
fn keys_in_toml_blocks(markdown: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut in_block = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_block = line.trim() == "```toml";
            continue;
        }
        if in_block && !line.trim_start().starts_with('#') {
            keys.extend(assigned_key(line).map(str::to_owned));
        }
    }
    keys
}

/// The backquoted key names of the "config key" column of every table that has one.
fn keys_in_protection_tables(markdown: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut column = None;
    for line in markdown.lines() {
        if !line.starts_with('|') {
            column = None;
            continue;
        }
        let cells: Vec<&str> = line.split(" | ").collect();
        if column.is_none() {
            column = cells.iter().position(|cell| cell.contains("config key"));
            continue;
        }
        let Some(cell) = column.and_then(|i| cells.get(i)) else {
            continue;
        };
        for quoted in cell.split('`').skip(1).step_by(2) {
            let name = quoted.split([' ', '=']).next().unwrap_or_default();
            if is_key(name) {
                keys.push(name.to_owned());
            }
        }
    }
    keys
}

/// Whether the loader knows `key` in the top level, `[limits]`, `[cluster]`, `[tls]`,
/// `[[tls.sni]]`, a route or its limits: any answer but "unknown field" means it does (the value
/// may still be of the wrong type).
fn is_known(key: &str) -> bool {
    let route = "[[routes]]\npath = \"/x\"\nkind = \"health\"\n";
    let places = [
        format!("{key} = 1\n{route}"),
        format!("[limits]\n{key} = 1\n{route}"),
        format!("[cluster]\n{key} = 1\n{route}"),
        format!("[tls]\n{key} = 1\n{route}"),
        format!("[[tls.sni]]\n{key} = 1\n{route}"),
        format!("{route}{key} = 1\n"),
        format!("{route}[routes.limits]\n{key} = 1\n"),
    ];
    places.iter().any(|text| match parse(text, "doc.toml") {
        Ok(_) => true,
        Err(error) => !error.to_string().contains("unknown"),
    })
}

#[test]
fn every_documented_key_is_known_to_the_loader() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/");
    let read = |path: &str| std::fs::read_to_string(format!("{root}{path}")).unwrap();
    let mut documented = BTreeSet::new();
    documented.extend(
        DEFAULT_TOML
            .lines()
            .filter_map(assigned_key)
            .map(str::to_owned),
    );
    documented.extend(keys_in_toml_blocks(&read("README.md")));
    documented.extend(keys_in_toml_blocks(&read("docs/DESIGN.md")));
    documented.extend(keys_in_protection_tables(&read("docs/PROTECTIONS.md")));
    assert!(documented.len() > 50, "too few keys found: {documented:?}");
    let unknown: Vec<&String> = documented.iter().filter(|key| !is_known(key)).collect();
    assert!(
        unknown.is_empty(),
        "keys the documentation names but the loader rejects: {unknown:?}"
    );
}

#[test]
fn a_made_up_key_is_unknown() {
    assert!(!is_known("no_such_key"));
    assert!(!is_known("on_store_error"));
    assert!(is_known("max_body_size"));
    assert!(is_known("listen"));
    assert!(is_known("root"));
}
