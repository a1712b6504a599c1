//! Straggler analysis on rank 0, from the time every rank spent inside the same collectives.
//!
//! The k-th synchronising collective on `MPI_COMM_WORLD` (Allreduce, Barrier, Allgather, …;
//! not rooted ones, whose root may return at once) is the same call on every rank (MPI orders
//! the collectives of a communicator), and a rank waits inside it until the last arrives. So
//! the rank with the shortest time inside call k arrived last, and the longest time minus the
//! shortest is how long the earliest rank waited for it. Only durations are compared, never
//! clocks, so hosts need no clock synchronisation.

/// Per-rank totals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RankTotals {
    /// Collectives in which this rank arrived last (by more than the noise floor).
    pub last: u64,
    /// Time the earliest rank waited for it, summed over those collectives (ns).
    pub delay_ns: u64,
}

/// Below this spread a collective has no meaningful last arrival (ns).
pub const NOISE_FLOOR_NS: u64 = 1_000;

/// Rank 0's running totals over the whole job.
#[derive(Clone, Debug)]
pub struct Stragglers {
    /// Host of each rank.
    pub hosts: Vec<String>,
    /// Totals of each rank.
    pub ranks: Vec<RankTotals>,
    /// Collectives compared so far.
    pub analyzed: u64,
    /// Collectives compared at the last summary.
    pub reported: u64,
}

/// One line of a summary.
#[derive(Clone, Debug, PartialEq)]
pub struct Straggler {
    /// The rank.
    pub rank: usize,
    /// Its host.
    pub host: String,
    /// Collectives in which it arrived last.
    pub last: u64,
    /// Total time others waited for it (ns).
    pub delay_ns: u64,
}

impl Stragglers {
    /// Totals for `hosts.len()` ranks.
    pub fn new(hosts: Vec<String>) -> Stragglers {
        let ranks = vec![RankTotals::default(); hosts.len()];
        Stragglers {
            hosts,
            ranks,
            analyzed: 0,
            reported: 0,
        }
    }

    /// Adds one reduced window (what the wrappers compute with `MPI_MINLOC` and `MPI_MAX`):
    /// per call, the shortest time inside, the rank that had it, and the longest.
    pub fn add_reduced(&mut self, min_ns: &[f64], min_rank: &[i32], max_ns: &[f64]) {
        if self.ranks.len() < 2 {
            return;
        }
        for ((min, rank), max) in min_ns.iter().zip(min_rank).zip(max_ns) {
            let spread = (max - min).max(0.0) as u64;
            self.add_call(usize::try_from(*rank).unwrap_or(usize::MAX), spread);
        }
    }

    /// One compared call: `last` arrived last, the earliest rank waited `spread_ns` for it.
    pub fn add_call(&mut self, last: usize, spread_ns: u64) {
        self.analyzed += 1;
        if spread_ns >= NOISE_FLOOR_NS
            && let Some(t) = self.ranks.get_mut(last)
        {
            t.last += 1;
            t.delay_ns += spread_ns;
        }
    }

    /// The ranks that kept the others waiting, most total delay first, at most `top`.
    pub fn top(&self, top: usize) -> Vec<Straggler> {
        let mut v: Vec<Straggler> = self
            .ranks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.last > 0)
            .map(|(rank, t)| Straggler {
                rank,
                host: self.hosts.get(rank).cloned().unwrap_or_default(),
                last: t.last,
                delay_ns: t.delay_ns,
            })
            .collect();
        v.sort_by(|a, b| b.delay_ns.cmp(&a.delay_ns).then(a.rank.cmp(&b.rank)));
        v.truncate(top);
        v
    }
}

impl Straggler {
    /// `rank 2 on node-a: last in 12 of 40, kept the others waiting 601.2 ms`.
    pub fn describe(&self, analyzed: u64) -> String {
        format!(
            "rank {} on {}: last in {} of {}, kept the others waiting {:.1} ms",
            self.rank,
            self.host,
            self.last,
            analyzed,
            self.delay_ns as f64 / 1e6
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The analysis from raw per-rank durations (`blocks[r]`), as `MPI_MINLOC`/`MPI_MAX`
    /// reduce them in the wrappers: the reference the reduced form is checked against.
    fn add(s: &mut Stragglers, blocks: &[&[u64]]) {
        let Some(n) = blocks.iter().map(|b| b.len()).min() else {
            return;
        };
        if blocks.len() < 2 {
            return;
        }
        for k in 0..n {
            let (mut min, mut min_rank, mut max) = (u64::MAX, 0, 0);
            for (r, b) in blocks.iter().enumerate() {
                let d = b[k];
                if d < min {
                    min = d;
                    min_rank = r;
                }
                max = max.max(d);
            }
            s.add_call(min_rank, max - min);
        }
    }

    fn hosts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{}", i / 2)).collect()
    }

    #[test]
    fn the_rank_with_the_shortest_wait_is_the_one_that_arrived_last() {
        let mut s = Stragglers::new(hosts(4));
        // Call 0: rank 2 late by 50 ms; call 1: everyone together (below the noise floor);
        // call 2: rank 1 late by 2 ms.
        let r0 = [50_000_000, 500, 2_000_100];
        let r1 = [50_000_300, 400, 100];
        let r2 = [200, 450, 2_000_000];
        let r3 = [49_999_000, 600, 2_000_050];
        add(&mut s, &[&r0, &r1, &r2, &r3]);
        assert_eq!(s.analyzed, 3);
        let top = s.top(3);
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].rank, 2);
        assert_eq!(top[0].host, "node-1");
        assert_eq!(top[0].last, 1);
        assert_eq!(top[0].delay_ns, 50_000_300 - 200);
        assert_eq!(top[1].rank, 1);
        assert_eq!(
            top[0].describe(s.analyzed),
            "rank 2 on node-1: last in 1 of 3, kept the others waiting 50.0 ms"
        );
    }

    #[test]
    fn windows_accumulate_and_a_short_rank_limits_the_comparison() {
        let mut s = Stragglers::new(hosts(2));
        add(&mut s, &[&[10_000, 10_000], &[5, 5]]);
        add(&mut s, &[&[10_000, 10_000, 10_000], &[5]]);
        assert_eq!(s.analyzed, 3);
        assert_eq!(s.ranks[1].last, 3);
        assert_eq!(s.ranks[0].last, 0);
        // One rank alone has nobody to wait for.
        let mut one = Stragglers::new(hosts(1));
        add(&mut one, &[&[1, 2, 3]]);
        assert_eq!(one.analyzed, 0);
        assert!(one.top(3).is_empty());
    }

    #[test]
    fn a_reduced_window_gives_the_same_answer_as_the_raw_durations() {
        let r0 = [50_000_000, 500, 2_000_100];
        let r1 = [50_000_300, 400, 100];
        let r2 = [200, 450, 2_000_000];
        let mut raw = Stragglers::new(hosts(3));
        add(&mut raw, &[&r0, &r1, &r2]);
        let mut reduced = Stragglers::new(hosts(3));
        reduced.add_reduced(
            &[200.0, 400.0, 100.0],
            &[2, 1, 1],
            &[50_000_300.0, 500.0, 2_000_100.0],
        );
        assert_eq!(raw.ranks, reduced.ranks);
        assert_eq!(raw.analyzed, reduced.analyzed);
    }
}
