//! Distributions and time series of a run.
//!
//! * [`Dist`]: count, min, mean, p50/p90/p99 and max of a set of per-call
//!   values (nearest-rank percentiles over the exact values: a run keeps one
//!   small record per call anyway).
//! * [`Latency`]: the setup latency INVITE→200 in an HdrHistogram
//!   (microsecond resolution, 3 significant figures, up to an hour).
//! * [`Timeline`]: per-second counters (attempted, answered, failed, ended,
//!   active) for the calls-per-second plot and the JSON.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// A summary of values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Dist {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Dist {
    /// The summary of `values`; `None` when there are none. NaNs are
    /// ignored.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Dist> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let sum: f64 = v.iter().sum();
        Some(Dist {
            count: v.len() as u64,
            min: v[0],
            mean: sum / v.len() as f64,
            p50: percentile(&v, 50.0),
            p90: percentile(&v, 90.0),
            p99: percentile(&v, 99.0),
            max: v[v.len() - 1],
        })
    }
}

/// Nearest-rank percentile `p` (0..=100) of sorted, non-empty `sorted`: the
/// smallest value with at least p % of the values at or below it.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// The empirical CDF of `values` as `(value, fraction ≤ value)` steps,
/// thinned to at most `max_points` points (the last point is always
/// kept).
pub fn cdf(values: impl IntoIterator<Item = f64>, max_points: usize) -> Vec<(f64, f64)> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let step = n.div_ceil(max_points.max(1)).max(1);
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (i, &x) in v.iter().enumerate() {
        if (i + 1) % step != 0 && i + 1 != n {
            continue;
        }
        let fraction = (i + 1) as f64 / n as f64;
        match out.last_mut() {
            Some(last) if last.0 == x => last.1 = fraction,
            _ => out.push((x, fraction)),
        }
    }
    out
}

/// Setup latency histogram.
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    pub fn new() -> Latency {
        Latency {
            hist: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("static histogram bounds are valid"),
        }
    }

    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.hist.saturating_record(us.max(1));
    }

    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// The summary in milliseconds (values as the histogram holds them:
    /// within 0.1 %).
    pub fn dist_ms(&self) -> Option<Dist> {
        if self.hist.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Dist {
            count: self.hist.len(),
            min: ms(self.hist.min()),
            mean: self.hist.mean() / 1000.0,
            p50: ms(self.hist.value_at_quantile(0.50)),
            p90: ms(self.hist.value_at_quantile(0.90)),
            p99: ms(self.hist.value_at_quantile(0.99)),
            max: ms(self.hist.max()),
        })
    }

    /// The CDF as `(milliseconds, fraction ≤)` over the recorded values.
    pub fn cdf_ms(&self) -> Vec<(f64, f64)> {
        let total = self.hist.len() as f64;
        let mut seen = 0u64;
        let mut out = Vec::new();
        for v in self.hist.iter_recorded() {
            seen += v.count_at_value();
            out.push((
                self.hist.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0,
                seen as f64 / total,
            ));
        }
        out
    }
}

/// Counters of one second of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Second {
    /// Seconds since the start of the run (this bucket covers t..t+1).
    pub t: u64,
    pub attempted: u64,
    pub answered: u64,
    pub failed: u64,
    /// Calls that ended (completed, dropped) in this second.
    pub ended: u64,
    /// Calls in progress at the end of the second (last sample).
    pub active: u64,
}

/// Per-second counters, indexed by whole seconds since the start.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    seconds: Vec<Second>,
}

impl Timeline {
    fn at(&mut self, since_start: Duration) -> &mut Second {
        let t = since_start.as_secs();
        let i = usize::try_from(t).unwrap_or(usize::MAX).min(1 << 24);
        while self.seconds.len() <= i {
            let t = self.seconds.len() as u64;
            let active = self.seconds.last().map_or(0, |s| s.active);
            self.seconds.push(Second {
                t,
                active,
                ..Second::default()
            });
        }
        &mut self.seconds[i]
    }

    pub fn attempted(&mut self, at: Duration) {
        self.at(at).attempted += 1;
    }
    pub fn answered(&mut self, at: Duration) {
        self.at(at).answered += 1;
    }
    pub fn failed(&mut self, at: Duration) {
        self.at(at).failed += 1;
    }
    pub fn ended(&mut self, at: Duration) {
        self.at(at).ended += 1;
    }
    pub fn active(&mut self, at: Duration, active: u64) {
        self.at(at).active = active;
    }

    pub fn seconds(&self) -> &[Second] {
        &self.seconds
    }

    /// The highest number of calls answered in one second.
    pub fn peak_answered(&self) -> u64 {
        self.seconds.iter().map(|s| s.answered).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
