//! docs/PROTECTIONS.md names, for every protection, the code that decides it ("enforced in")
//! and the tests that provoke it ("tested by"). This keeps those names true: every backquoted
//! `path.rs` in the two columns must exist, and every name that follows it must be a function
//! of that file (`fn NAME`; for `Type::method`, `fn method` and `Type`). In those two columns
//! only paths and function names are backquoted; a "tested by" cell without a path says
//! "none yet".
#![allow(clippy::unwrap_used, reason = "tests")]

use std::fs;
use std::path::Path;

/// The columns whose references are checked.
const CHECKED: [&str; 2] = ["enforced in", "tested by"];

/// Splits a table row into its cells; `\|` inside a cell is not a separator.
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().unwrap().push('|');
                chars.next();
            }
            '|' => out.push(String::new()),
            _ => out.last_mut().unwrap().push(c),
        }
    }
    out.into_iter().map(|cell| cell.trim().to_owned()).collect()
}

/// The backquoted spans of a cell, in order.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// Whether `text` declares a function `name` (`fn name` followed by `(` or `<`).
fn declares_fn(text: &str, name: &str) -> bool {
    let needle = format!("fn {name}");
    text.match_indices(&needle).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + needle.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && matches!(after, Some('(' | '<'))
    })
}

/// Whether `text` holds `word` as a whole identifier.
fn mentions(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !ident(before) && !ident(after)
    })
}

/// The problems of one checked cell (`where` names it in the messages).
fn check_cell(root: &Path, cell: &str, at: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut file: Option<(String, String)> = None;
    for span in code_spans(cell) {
        if span.ends_with(".rs") {
            match fs::read_to_string(root.join(span)) {
                Ok(text) => file = Some((span.to_owned(), text)),
                Err(e) => {
                    problems.push(format!("{at}: `{span}`: {e}"));
                    file = None;
                }
            }
            continue;
        }
        let Some((path, text)) = &file else {
            // After a missing file (already reported), or a name without a file before it.
            if !problems.iter().any(|p| p.starts_with(at)) {
                problems.push(format!("{at}: `{span}` follows no `path.rs`"));
            }
            continue;
        };
        let (owner, function) = match span.rsplit_once("::") {
            Some((owner, function)) => (Some(owner), function),
            None => (None, span),
        };
        if !declares_fn(text, function) {
            problems.push(format!("{at}: `{path}` has no `fn {function}`"));
        }
        if let Some(owner) = owner
            && !mentions(text, owner)
        {
            problems.push(format!("{at}: `{path}` never names `{owner}`"));
        }
    }
    problems
}

#[test]
fn every_protection_names_code_and_tests_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = fs::read_to_string(root.join("docs/PROTECTIONS.md")).unwrap();
    let lines: Vec<&str> = doc.lines().collect();
    let mut problems = Vec::new();
    let mut tables = 0;
    let mut rows = 0;
    let mut i = 0;
    while i < lines.len() {
        let is_table =
            lines[i].starts_with('|') && lines.get(i + 1).is_some_and(|l| l.starts_with("|---"));
        if !is_table {
            i += 1;
            continue;
        }
        tables += 1;
        let header = cells(lines[i]);
        let columns: Vec<(usize, &str)> = CHECKED
            .iter()
            .filter_map(|&name| header.iter().position(|h| h == name).map(|c| (c, name)))
            .collect();
        if columns.len() != CHECKED.len() {
            problems.push(format!(
                "line {}: a table without the {CHECKED:?} columns",
                i + 1
            ));
        }
        i += 2;
        while i < lines.len() && lines[i].starts_with('|') {
            rows += 1;
            let row = cells(lines[i]);
            if row.len() != header.len() {
                problems.push(format!(
                    "line {}: {} cells under {} headers",
                    i + 1,
                    row.len(),
                    header.len()
                ));
            }
            for &(column, name) in &columns {
                let cell = row.get(column).map_or("", String::as_str);
                let at = format!("line {} ({name})", i + 1);
                let has_file = code_spans(cell).iter().any(|s| s.ends_with(".rs"));
                if name == "enforced in" && !has_file {
                    problems.push(format!("{at}: names no `path.rs`"));
                }
                if name == "tested by" && !has_file && cell != "none yet" {
                    problems.push(format!("{at}: names no test and does not say \"none yet\""));
                }
                problems.extend(check_cell(root, cell, &at));
            }
            i += 1;
        }
    }
    assert!(tables >= 5 && rows >= 40, "{tables} tables, {rows} rows");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checks_catch_what_they_must() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        cells(r#"| a | `x = "1" \| "2"` | c |"#),
        ["a", r#"`x = "1" | "2"`"#, "c"]
    );
    assert!(declares_fn("pub fn admit(x: u8)", "admit"));
    assert!(!declares_fn("pub fn admit_connection(x: u8)", "admit"));
    assert!(!declares_fn("fn refn admit(", "admit"));
    let ok = "`tests/docs.rs` `cells`, `declares_fn`";
    assert!(check_cell(root, ok, "ok").is_empty());
    // Built, so that this file does not name the type itself.
    let unknown_type = format!("`tests/docs.rs` `{}Type::cells`", "NoSuch");
    for bad in [
        "`tests/no_such_file.rs` `cells`",
        "`tests/docs.rs` `no_such_function`",
        unknown_type.as_str(),
        "`cells` before any file",
    ] {
        assert!(!check_cell(root, bad, "bad").is_empty(), "{bad}");
    }
}
