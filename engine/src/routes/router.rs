//! Matching a request path to a configured route.

use crate::config::Route;

/// The route table of one server; longest matching prefix wins.
#[derive(Debug, Clone)]
pub struct Router {
    /// Indices into `routes`, longest path first, so the first match is the most specific.
    order: Vec<usize>,
    routes: Vec<Route>,
}

impl Router {
    /// Builds the table from the configured routes.
    pub fn new(routes: Vec<Route>) -> Self {
        let mut order: Vec<usize> = (0..routes.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(routes[i].path.len()));
        Self { order, routes }
    }

    /// The route serving `path` (the request-target without its query), as an index into
    /// [`Router::routes`].
    pub fn find_index(&self, path: &str) -> Option<usize> {
        self.order
            .iter()
            .copied()
            .find(|&i| prefix_matches(&self.routes[i].path, path))
    }

    /// Every route, in configuration order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// `/health` matches `/health` and `/health/x` but not `/healthz`; `/files/` matches anything
/// below it.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HttpLimits, RouteKind, WsLimits};

    fn route(path: &str) -> Route {
        Route {
            path: path.into(),
            kind: RouteKind::Health,
            limits: HttpLimits::default(),
            ws: WsLimits::default(),
            auth: None,
        }
    }

    #[test]
    fn matches_on_segment_boundaries_longest_first() {
        let router = Router::new(vec![route("/"), route("/health"), route("/files/")]);
        let found = |p: &str| {
            router
                .find_index(p)
                .map(|i| router.routes()[i].path.as_str())
        };
        assert_eq!(found("/health"), Some("/health"));
        assert_eq!(found("/health/deep"), Some("/health"));
        assert_eq!(found("/healthz"), Some("/"));
        assert_eq!(found("/files/a/b"), Some("/files/"));
        assert_eq!(found("/files"), Some("/"));
        assert_eq!(found("/"), Some("/"));
    }

    #[test]
    fn no_route_means_none() {
        let router = Router::new(vec![route("/health")]);
        assert!(router.find_index("/other").is_none());
        assert!(router.find_index("/").is_none());
    }
}
