//! Each route's traffic counters, kept by the route's path for the server's life: a route a
//! reloaded configuration keeps keeps its counters, and one it drops stays in the totals, so
//! every counter only ever grows. Each worker writes a block of its own per route (one cache
//! line apart from the others' blocks); readers sum them.

use std::sync::{Arc, Mutex, PoisonError};

use crate::server::metrics::{Traffic, TrafficTotals};

/// One worker's counters of one route, on a cache line pair of their own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct WorkerTraffic(Traffic);

/// One route's counters, one block per worker.
#[derive(Debug)]
pub struct RouteTraffic {
    workers: Box<[WorkerTraffic]>,
}

impl RouteTraffic {
    fn new(workers: usize) -> Self {
        Self {
            workers: (0..workers.max(1))
                .map(|_| WorkerTraffic::default())
                .collect(),
        }
    }

    /// The block worker `index` writes.
    pub fn worker(&self, index: usize) -> &Traffic {
        &self.workers[index.min(self.workers.len() - 1)].0
    }

    /// Sums over every worker.
    pub fn totals(&self) -> TrafficTotals {
        let mut totals = TrafficTotals::default();
        for worker in self.workers.iter() {
            totals.add(&worker.0);
        }
        totals
    }
}

/// The counters of every route the server has had, by path, and of requests no route matched.
#[derive(Debug)]
pub struct RouteCounters {
    workers: usize,
    by_path: Mutex<Vec<(String, Arc<RouteTraffic>)>>,
    unmatched: Arc<RouteTraffic>,
}

impl RouteCounters {
    /// No route counted yet, for `workers` workers.
    pub fn new(workers: usize) -> Self {
        Self {
            workers,
            by_path: Mutex::default(),
            unmatched: Arc::new(RouteTraffic::new(workers)),
        }
    }

    /// The counters of the routes at `paths`, by route index: a path counted before keeps its
    /// counters.
    pub fn for_routes<'a>(&self, paths: impl IntoIterator<Item = &'a str>) -> RouteSlots {
        let mut by_path = self.by_path.lock().unwrap_or_else(PoisonError::into_inner);
        let mut slots = Vec::new();
        for route in paths {
            let found = by_path.iter().find(|(path, _)| path == route);
            let traffic = match found {
                Some((_, traffic)) => Arc::clone(traffic),
                None => {
                    let traffic = Arc::new(RouteTraffic::new(self.workers));
                    by_path.push((route.to_owned(), Arc::clone(&traffic)));
                    traffic
                }
            };
            slots.push(traffic);
        }
        slots.push(Arc::clone(&self.unmatched));
        RouteSlots(slots.into_boxed_slice())
    }

    /// Totals of the route at `path` (zero for a path never configured).
    pub fn totals_of(&self, path: &str) -> TrafficTotals {
        let by_path = self.by_path.lock().unwrap_or_else(PoisonError::into_inner);
        by_path
            .iter()
            .find(|(known, _)| known == path)
            .map(|(_, traffic)| traffic.totals())
            .unwrap_or_default()
    }

    /// Totals over every route the server has had, and unmatched requests.
    pub fn totals(&self) -> TrafficTotals {
        let mut totals = self.unmatched.totals();
        let by_path = self.by_path.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, traffic) in by_path.iter() {
            totals.merge(&traffic.totals());
        }
        totals
    }
}

/// The counters of one configuration's routes, by route index, then unmatched requests.
#[derive(Debug)]
pub struct RouteSlots(Box<[Arc<RouteTraffic>]>);

impl RouteSlots {
    /// The counters of route `index` (`None`: no route matched).
    pub fn get(&self, index: Option<usize>) -> &RouteTraffic {
        let unmatched = self.0.len() - 1;
        &self.0[index.unwrap_or(unmatched).min(unmatched)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_keeps_its_counters_and_a_dropped_one_stays_in_the_totals() {
        let counters = RouteCounters::new(2);
        let first = counters.for_routes(["/a", "/b"]);
        first.get(Some(0)).worker(0).requests.add(2);
        first.get(Some(1)).worker(1).requests.add(3);
        first.get(None).worker(1).requests.add(1);
        let second = counters.for_routes(["/c", "/a"]);
        assert_eq!(
            second.get(Some(1)).totals().requests,
            2,
            "/a kept its counters"
        );
        assert_eq!(second.get(Some(0)).totals().requests, 0);
        assert_eq!(second.get(None).totals().requests, 1);
        second.get(Some(1)).worker(0).requests.add(1);
        assert_eq!(counters.totals().requests, 7, "/b's 3 stay in the totals");
    }
}
