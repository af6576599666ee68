//! Latency histograms for the per-minute rollup: log-scale bins, eight per doubling, so a
//! percentile read from them is within ±4.5 % of the exact one. A minute's histogram is stored
//! sparse (only its non-empty bins) and merged densely when a report adds minutes up.

/// Bins per doubling of the duration.
const PER_DOUBLING: f64 = 8.0;
/// Bins in all: durations up to 2^40 µs (12.7 days); longer ones share the last bin.
pub(crate) const BINS: usize = 8 * 40 + 1;
/// Bytes per stored bin: the bin (u16) and its count (u32), little-endian.
const ENTRY: usize = 6;

/// The bin of a duration in microseconds.
pub(crate) fn bin(micros: i64) -> usize {
    if micros <= 1 {
        return 0;
    }
    let bin = ((micros as f64).log2() * PER_DOUBLING).floor();
    (bin as usize).min(BINS - 1)
}

/// The duration a bin stands for, in microseconds: the geometric middle of its bounds.
fn value(bin: usize) -> f64 {
    ((bin as f64 + 0.5) / PER_DOUBLING).exp2()
}

/// Counts per bin.
#[derive(Clone)]
pub(crate) struct Histogram {
    counts: Box<[u64; BINS]>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: Box::new([0; BINS]),
            total: 0,
        }
    }
}

impl Histogram {
    #[cfg(test)]
    pub(crate) fn record(&mut self, micros: i64) {
        self.counts[bin(micros)] += 1;
        self.total += 1;
    }

    #[cfg(test)]
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Adds a stored histogram ([`Histogram::encode`]); bytes that are not one are skipped.
    pub(crate) fn merge_encoded(&mut self, bytes: &[u8]) {
        for entry in bytes.chunks_exact(ENTRY) {
            let bin = usize::from(u16::from_le_bytes([entry[0], entry[1]]));
            let count = u64::from(u32::from_le_bytes([entry[2], entry[3], entry[4], entry[5]]));
            if let Some(slot) = self.counts.get_mut(bin) {
                *slot += count;
                self.total += count;
            }
        }
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (slot, count) in self.counts.iter_mut().zip(other.counts.iter()) {
            *slot += count;
        }
        self.total += other.total;
    }

    /// The non-empty bins, as stored (counts above u32::MAX saturate: never seen in a minute).
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (bin, &count) in self.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            out.extend_from_slice(&(bin as u16).to_le_bytes());
            out.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
        }
        out
    }

    /// The `q` quantile (0 to 1) in milliseconds; `None` when empty.
    pub(crate) fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        // The rank of the quantile, 1-based: the smallest value with at least q of all at or
        // below it.
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bin, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(value(bin).round() / 1000.0);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_five_percent() {
        let mut hist = Histogram::default();
        for micros in 1..=100_000 {
            hist.record(micros);
        }
        let p50 = hist.quantile_ms(0.5).unwrap();
        let p95 = hist.quantile_ms(0.95).unwrap();
        assert!((p50 / 50.0 - 1.0).abs() < 0.05, "{p50}");
        assert!((p95 / 95.0 - 1.0).abs() < 0.05, "{p95}");
        let one = {
            let mut h = Histogram::default();
            h.record(1_500);
            h
        };
        let p = one.quantile_ms(0.95).unwrap();
        assert!((p / 1.5 - 1.0).abs() < 0.05, "{p}");
        assert_eq!(Histogram::default().quantile_ms(0.5), None);
    }

    #[test]
    fn encoding_round_trips_and_merges() {
        let mut a = Histogram::default();
        for micros in [0, 1, 900, 1_000, 1_000, 3_000_000, i64::MAX] {
            a.record(micros);
        }
        let mut b = Histogram::default();
        b.merge_encoded(&a.encode());
        b.merge_encoded(&a.encode());
        assert_eq!(b.total(), 14);
        let mut c = Histogram::default();
        c.merge(&a);
        c.merge(&a);
        assert_eq!(c.encode(), b.encode());
        assert_eq!(
            a.encode().len(),
            5 * ENTRY,
            "0 and 1 share a bin, so do the 1000s"
        );
    }
}

/// A histogram being built by the writer: only the bins in use, so a rollup of many minutes
/// costs memory by what they hold.
#[derive(Default, Clone)]
pub(crate) struct Sparse(std::collections::BTreeMap<u16, u64>);

impl Sparse {
    pub(crate) fn record(&mut self, micros: i64) {
        *self.0.entry(bin(micros) as u16).or_default() += 1;
    }

    /// Adds a stored histogram.
    pub(crate) fn merge_encoded(&mut self, bytes: &[u8]) {
        for entry in bytes.chunks_exact(ENTRY) {
            let bin = u16::from_le_bytes([entry[0], entry[1]]);
            let count = u64::from(u32::from_le_bytes([entry[2], entry[3], entry[4], entry[5]]));
            if usize::from(bin) < BINS {
                *self.0.entry(bin).or_default() += count;
            }
        }
    }

    /// As [`Histogram::encode`] stores it.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.len() * ENTRY);
        for (&bin, &count) in &self.0 {
            out.extend_from_slice(&bin.to_le_bytes());
            out.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
        }
        out
    }
}
