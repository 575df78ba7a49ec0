//! A set of latencies and its quantiles (nearest rank), added to a report as p50 to max.
//!
//! It summarises; what a latency spans (publish → delivery, request → answer) is the caller's.

use crate::report::Report;

/// Latencies in nanoseconds, sorted.
#[derive(Debug)]
pub(crate) struct Latencies {
    sorted_ns: Vec<u64>,
}

impl Latencies {
    pub(crate) fn from_unsorted(mut ns: Vec<u64>) -> Self {
        ns.sort_unstable();
        Self { sorted_ns: ns }
    }

    /// All the latencies of `parts` together.
    pub(crate) fn merge(parts: &[Latencies]) -> Self {
        let all = parts
            .iter()
            .flat_map(|part| part.sorted_ns.iter().copied())
            .collect();
        Self::from_unsorted(all)
    }

    /// The `q` quantile (nearest rank), in nanoseconds; 0 when empty.
    pub(crate) fn quantile_ns(&self, q: f64) -> u64 {
        if self.sorted_ns.is_empty() {
            return 0;
        }
        let len = self.sorted_ns.len();
        let rank = ((q * len as f64).ceil() as usize).clamp(1, len);
        self.sorted_ns[rank - 1]
    }

    /// Adds `latencyP50Ms`, `latencyP90Ms`, `latencyP99Ms`, `latencyP999Ms` and `latencyMaxMs`.
    pub(crate) fn add_to(&self, report: &mut Report) {
        let ms = |q: f64| self.quantile_ns(q) as f64 / 1e6;
        report.add("latencyP50Ms", "latency p50", ms(0.50), "ms");
        report.add("latencyP90Ms", "latency p90", ms(0.90), "ms");
        report.add("latencyP99Ms", "latency p99", ms(0.99), "ms");
        report.add("latencyP999Ms", "latency p99.9", ms(0.999), "ms");
        report.add("latencyMaxMs", "latency max", ms(1.0), "ms");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let latencies = Latencies::from_unsorted((1..=100).rev().collect());
        assert_eq!(latencies.quantile_ns(0.5), 50);
        assert_eq!(latencies.quantile_ns(0.99), 99);
        assert_eq!(latencies.quantile_ns(1.0), 100);
        assert_eq!(Latencies::from_unsorted(Vec::new()).quantile_ns(0.5), 0);
        let halves = [
            Latencies::from_unsorted((51..=100).collect()),
            Latencies::from_unsorted((1..=50).collect()),
        ];
        assert_eq!(Latencies::merge(&halves).quantile_ns(0.5), 50);
    }
}
