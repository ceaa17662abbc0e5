//! Config errors as `file:line: key: message`, including the rewording of toml's own errors.

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::raw::SERVER_WIDE_LIMITS;
use super::routes::kind_named;

/// What is wrong with a config file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as named on the command line.
    file: String,
    /// 1-based line of the offending key or value; `None` when the fault is an absence.
    line: Option<usize>,
    /// Dotted key path (`routes[1].limits.max_headers`), if the message is about one key.
    key: Option<String>,
    /// What is wrong, and where possible what to write instead.
    message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The text being loaded and its name, to turn byte spans into lines.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// File name for messages.
    pub name: &'a str,
    /// The whole file.
    pub text: &'a str,
}

/// Longest value quoted back in a message; longer ones are cut.
const MAX_QUOTED: usize = 40;

impl Source<'_> {
    /// An error about `key` at the value or key spanning `span`.
    pub fn error_at(&self, span: Range<usize>, key: &str, message: String) -> ConfigError {
        ConfigError {
            file: self.name.to_owned(),
            line: Some(self.line_of(span.start)),
            key: Some(key.to_owned()),
            message,
        }
    }

    /// An error about something missing from the file as a whole.
    pub fn error_in_file(&self, key: &str, message: String) -> ConfigError {
        ConfigError {
            file: self.name.to_owned(),
            line: None,
            key: Some(key.to_owned()),
            message,
        }
    }

    /// The text of `span` as the user wrote it (`300`, `"2MiB"`), cut if long.
    pub fn written(&self, span: Range<usize>) -> String {
        let text = self.text.get(span).unwrap_or_default();
        let first_line = text.lines().next().unwrap_or_default();
        if first_line.len() < text.len() || text.chars().count() > MAX_QUOTED {
            let cut: String = first_line.chars().take(MAX_QUOTED).collect();
            format!("{cut}...")
        } else {
            text.to_owned()
        }
    }

    /// 1-based line holding byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        let before = &self.text.as_bytes()[..offset.min(self.text.len())];
        before.iter().filter(|&&b| b == b'\n').count() + 1
    }

    /// Rewords an error from `toml::from_str` on this text.
    pub fn toml_error(&self, error: &toml::de::Error) -> ConfigError {
        let line = error.span().map(|span| self.line_of(span.start));
        let mut out = ConfigError {
            file: self.name.to_owned(),
            line,
            key: None,
            message: error.message().trim_end().to_owned(),
        };
        let Ok(root) = DeTable::parse(self.text) else {
            out.message = format!("invalid TOML: {}", out.message);
            if let Some(span) = error.span().filter(|span| !span.is_empty()) {
                out.message = format!("{} (at `{}`)", out.message, self.written(span));
            }
            return out;
        };
        let path = error
            .span()
            .and_then(|span| key_path(root.get_ref(), "", &span));
        if let Some(kind_error) = path
            .as_deref()
            .and_then(|p| self.route_kind_error(root.get_ref(), p))
        {
            return kind_error;
        }
        let message = error.message();
        if message.starts_with("unknown field ") {
            let names = backquoted(message);
            let (unknown, expected) = names.split_first().map_or(("", &[][..]), |(u, e)| (*u, e));
            let route_limits = path
                .as_deref()
                .is_some_and(|p| p.starts_with("routes[") && p.contains(".limits."));
            let expected: Vec<&str> = expected
                .iter()
                .copied()
                .filter(|name| !(route_limits && SERVER_WIDE_LIMITS.contains(name)))
                .collect();
            out.message = format!(
                "unknown key '{}' (expected one of: {})",
                path.as_deref().unwrap_or(unknown),
                expected.join(", ")
            );
        } else if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            out.key = path;
            out.message = format!("missing key '{field}'");
        } else {
            if path.as_deref() == Some("routes") && message.contains("expected a sequence") {
                out.message = "each route is a [[routes]] table (double brackets), or \
                               routes = [{ path = ..., kind = ... }]"
                    .to_owned();
            }
            out.key = path;
        }
        out
    }

    /// When an error lies inside `routes[i]` and that route's kind is not one this build
    /// serves, the kind is the real problem (its other keys belong to that kind).
    fn route_kind_error(&self, root: &DeTable<'_>, path: &str) -> Option<ConfigError> {
        let index: usize = path
            .strip_prefix("routes[")?
            .split_once(']')?
            .0
            .parse()
            .ok()?;
        let route = root
            .get("routes")?
            .get_ref()
            .get(index)?
            .get_ref()
            .as_table()?;
        let kind = route.get("kind")?;
        let name = kind.get_ref().as_str()?;
        let message = kind_named(name).err()?;
        Some(self.error_at(kind.span(), &format!("routes[{index}].kind"), message))
    }
}

/// The dotted path of the key or value whose span contains `span`, searching every table:
/// toml spans a `[table]` by its header only, so containment cannot prune the search.
fn key_path(table: &DeTable<'_>, prefix: &str, span: &Range<usize>) -> Option<String> {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        if contains(&key.span(), span) {
            return Some(path);
        }
        if let Some(found) = value_path(value.get_ref(), &path, span) {
            return Some(found);
        }
        if contains(&value.span(), span) {
            return Some(path);
        }
    }
    None
}

fn value_path(value: &DeValue<'_>, path: &str, span: &Range<usize>) -> Option<String> {
    match value {
        DeValue::Table(table) => key_path(table, path, span),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let item_path = format!("{path}[{i}]");
            value_path(item.get_ref(), &item_path, span)
                .or_else(|| contains(&item.span(), span).then_some(item_path))
        }),
        _ => None,
    }
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// The `` `names` `` of a serde message, in order.
fn backquoted(message: &str) -> Vec<&str> {
    message.split('`').skip(1).step_by(2).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shapes() {
        let source = Source {
            name: "c.toml",
            text: "a = 1\nb = 2\n",
        };
        assert_eq!(
            source.error_at(6..7, "b", "bad".into()).to_string(),
            "c.toml:2: b: bad"
        );
        assert_eq!(
            source.error_in_file("routes", "none".into()).to_string(),
            "c.toml: routes: none"
        );
    }

    #[test]
    fn written_values_are_cut() {
        let text = format!("a = \"{}\"\nb = \"\"\"x\ny\"\"\"\n", "z".repeat(60));
        let source = Source {
            name: "c.toml",
            text: &text,
        };
        assert!(source.written(4..66).ends_with("..."));
        let b = text.find("\"\"\"").unwrap_or_default();
        assert_eq!(source.written(b..text.len() - 1), "\"\"\"x...");
    }

    #[test]
    fn names_in_backquotes() {
        assert_eq!(
            backquoted("unknown field `a`, expected one of `b`, `c`"),
            ["a", "b", "c"]
        );
        assert_eq!(
            backquoted("unknown field `a`, expected `b` or `c`"),
            ["a", "b", "c"]
        );
    }
}
