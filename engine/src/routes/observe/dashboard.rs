//! The dashboard: one self-contained HTML page (its CSS and script inline, nothing from other
//! hosts) that reads the `/stats` document below its own route every second and shows it live.
//!
//! Its `Content-Security-Policy` allows nothing but what the page is: the one inline script
//! and the one inline style, named by their SHA-256 (so no other inline code, injected or not,
//! runs), and requests to the page's own origin. The hashes are computed from the page itself
//! once, so the page can change without the policy going stale.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

use super::View;
use crate::routes::plain::Page;

/// The page, built into the binary.
const PAGE: &str = include_str!("dashboard.html");

const HTML: &[u8] = b"text/html; charset=utf-8";

/// The page's `Content-Security-Policy`.
static POLICY: LazyLock<String> = LazyLock::new(|| policy(PAGE));

/// What `path` asks of a dashboard route at `route`: the page at the route's own path (with
/// or without a final `/`), its data at `stats` below it, nothing else.
pub fn view(route: &str, path: &str) -> View {
    let base = route.trim_end_matches('/');
    match path.strip_prefix(base) {
        Some("" | "/") => View::Own,
        Some("/stats") => View::Stats,
        _ => View::Missing,
    }
}

/// Appends the page (405 to methods other than `GET` and `HEAD`).
pub fn write_page(page: Page<'_>, out: &mut Vec<u8>) {
    let extra = [
        ("Cache-Control", b"no-store".as_slice()),
        ("Content-Security-Policy", POLICY.as_bytes()),
        ("X-Content-Type-Options", b"nosniff".as_slice()),
    ];
    let page = Page {
        extra: &extra,
        ..page
    };
    page.read_only(PAGE.as_bytes(), HTML, out);
}

/// The policy for `page`: its inline `<script>` and `<style>` by hash, connections to its own
/// origin only, and nothing else.
fn policy(page: &str) -> String {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash_of(page, "script"),
        hash_of(page, "style")
    )
}

/// `'sha256-...'` of the text of the first `<tag>` element of `page` (`'none'` when there is
/// none), as CSP Level 3 §8.4 hashes an inline element's text.
fn hash_of(page: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let text = page
        .split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map(|(text, _)| text);
    match text {
        Some(text) => format!(
            "'sha256-{}'",
            BASE64.encode(Sha256::digest(text.as_bytes()))
        ),
        None => "'none'".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_its_route_and_its_data_is_stats_below_it() {
        for route in ["/dashboard", "/dashboard/"] {
            assert_eq!(view(route, "/dashboard"), View::Own);
            assert_eq!(view(route, "/dashboard/"), View::Own);
            assert_eq!(view(route, "/dashboard/stats"), View::Stats);
            assert_eq!(view(route, "/dashboard/stats/x"), View::Missing);
            assert_eq!(view(route, "/dashboard/other"), View::Missing);
        }
        assert_eq!(view("/", "/"), View::Own);
        assert_eq!(view("/", "/stats"), View::Stats);
    }

    #[test]
    fn the_policy_names_the_pages_one_script_and_one_style() {
        let page = "<style>a{}</style><script>go()</script>";
        let policy = policy(page);
        let script = BASE64.encode(Sha256::digest(b"go()"));
        let style = BASE64.encode(Sha256::digest(b"a{}"));
        assert!(policy.contains(&format!("script-src 'sha256-{script}';")));
        assert!(policy.contains(&format!("style-src 'sha256-{style}';")));
        assert!(policy.starts_with("default-src 'none';"));
        assert!(policy.contains("connect-src 'self';"));
        assert_eq!(hash_of("<p>no script</p>", "script"), "'none'");
    }

    #[test]
    fn the_page_is_self_contained() {
        // One inline script and one inline style, which the policy hashes; no element that
        // loads anything (but the empty `data:` icon that keeps browsers from asking for
        // /favicon.ico), no inline handler (the policy would block it), no other host.
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert_eq!(PAGE.matches("<style").count(), 1);
        assert!(PAGE.contains("<script>") && PAGE.contains("<style>"));
        for banned in [
            "http://", "https://", "//cdn", " src=", " onclick", " onload", " style=",
        ] {
            assert!(!PAGE.contains(banned), "the page holds {banned:?}");
        }
        assert_eq!(PAGE.matches(" href=").count(), 1);
        assert!(PAGE.contains("<link rel=\"icon\" href=\"data:,\">"));
        assert_ne!(hash_of(PAGE, "script"), "'none'");
        assert_ne!(hash_of(PAGE, "style"), "'none'");
    }
}
