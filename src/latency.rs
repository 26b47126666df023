// SPDX-License-Identifier: MIT OR Apache-2.0
//! Latency from a frame's capture to a point of the pipeline, as a histogram with fixed
//! bounds (milliseconds), so that histograms of every element and camera add up and a
//! Prometheus server computes quantiles from them. In `stats` (feature `gst`) a histogram
//! is a structure named [`STRUCTURE_NAME`]: cumulative counts in fields `le-<bound>` and
//! `le-inf`, and `sum` (ms) and `count`.

/// Upper bounds of the buckets, in ms: from the hop a loopback broker allows to the
/// backlog of a stalled worker.
pub const BOUNDS_MS: [f64; 16] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 35.0, 50.0, 75.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
    10000.0, 30000.0,
];

/// The name of a histogram's structure in `stats`.
pub const STRUCTURE_NAME: &str = "histogram";

/// Counts of latencies per bucket, and their sum.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Per bucket of [`BOUNDS_MS`], not cumulative; the last one is above every bound.
    counts: [u64; BOUNDS_MS.len() + 1],
    sum_ms: f64,
}

impl Histogram {
    /// One latency; a negative one (clocks of two hosts apart) counts as 0.
    pub fn observe(&mut self, ms: f64) {
        let ms = if ms.is_finite() { ms.max(0.0) } else { 0.0 };
        let bucket = BOUNDS_MS
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(BOUNDS_MS.len());
        self.counts[bucket] += 1;
        self.sum_ms += ms;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn sum_ms(&self) -> f64 {
        self.sum_ms
    }

    /// (upper bound, cumulative count) per bucket, the last bound infinite: Prometheus'
    /// buckets.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        BOUNDS_MS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts)
            .map(|(bound, count)| {
                total += count;
                (bound, total)
            })
            .collect()
    }

    /// The `q` quantile (0..=1) as Prometheus' `histogram_quantile` estimates it: linear
    /// within the bucket it falls in; the highest finite bound when it falls above them.
    /// `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        quantile_of(&self.cumulative(), q)
    }

    /// Adds another histogram's counts (several streams of one camera).
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.sum_ms += other.sum_ms;
    }

    #[cfg(feature = "gst")]
    pub fn to_structure(&self) -> gst::Structure {
        let mut builder = gst::Structure::builder(STRUCTURE_NAME);
        for (bound, count) in self.cumulative() {
            builder = builder.field(bucket_field(bound), count);
        }
        builder
            .field("sum", self.sum_ms)
            .field("count", self.count())
            .build()
    }
}

/// A camera not heard of for this long is forgotten by [`ByCamera`], so that the series of
/// cameras that retired go away.
pub const CAMERA_RETIREMENT: std::time::Duration = std::time::Duration::from_secs(600);

/// Figures per camera (a record key), bounded: cameras silent for [`CAMERA_RETIREMENT`] go.
#[derive(Debug)]
pub struct ByCamera<T>(std::collections::BTreeMap<String, (T, std::time::Instant)>);

impl<T> Default for ByCamera<T> {
    fn default() -> Self {
        ByCamera(std::collections::BTreeMap::new())
    }
}

impl<T: Default> ByCamera<T> {
    /// The camera's figures, heard of now.
    pub fn heard(&mut self, camera: &str) -> &mut T {
        let now = std::time::Instant::now();
        if !self.0.contains_key(camera) {
            self.0
                .retain(|_, (_, heard)| now.duration_since(*heard) < CAMERA_RETIREMENT);
        }
        let entry = self
            .0
            .entry(camera.to_string())
            .or_insert_with(|| (T::default(), now));
        entry.1 = now;
        &mut entry.0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &T)> {
        self.0
            .iter()
            .map(|(camera, (figures, _))| (camera, figures))
    }
}

impl ByCamera<Histogram> {
    /// For `stats`: an array of structures named `camera`, each with `camera` and the
    /// histogram in `field`.
    #[cfg(feature = "gst")]
    pub fn to_stats(&self, field: &str) -> gst::Array {
        use gst::prelude::ToSendValue;
        self.iter()
            .map(|(camera, histogram)| {
                gst::Structure::builder("camera")
                    .field("camera", camera)
                    .field(field, histogram.to_structure())
                    .build()
                    .to_send_value()
            })
            .collect()
    }
}

/// The field of a bucket in a histogram's structure: `le-<bound>` or `le-inf`.
pub fn bucket_field(bound: f64) -> String {
    if bound.is_infinite() {
        "le-inf".into()
    } else {
        format!("le-{bound}")
    }
}

/// A quantile from cumulative buckets ((upper bound, count), the last bound infinite), as
/// Prometheus estimates it: also for buckets read back from `stats` or `/metrics`.
pub fn quantile_of(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let (mut lower, mut below) = (0.0, 0);
    for &(bound, count) in buckets {
        if count as f64 >= rank && count > below {
            if bound.is_infinite() {
                return Some(lower);
            }
            let within = (rank - below as f64) / (count - below) as f64;
            return Some(lower + (bound - lower) * within.clamp(0.0, 1.0));
        }
        (lower, below) = (bound, count);
    }
    Some(lower)
}

/// Cumulative buckets read back from a histogram's structure in `stats`.
#[cfg(feature = "gst")]
pub fn buckets_of(structure: &gst::StructureRef) -> Vec<(f64, u64)> {
    let mut buckets: Vec<(f64, u64)> = structure
        .iter()
        .filter_map(|(field, value)| {
            let bound = field.strip_prefix("le-")?;
            let bound = if bound == "inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, value.get::<u64>().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_buckets_and_quantiles_interpolate() {
        let mut histogram = Histogram::default();
        assert_eq!(histogram.quantile(0.5), None);
        for ms in [3.0, 4.0, 30.0, 40.0, 45.0, 60_000.0, -2.0] {
            histogram.observe(ms);
        }
        assert_eq!(histogram.count(), 7);
        let buckets = histogram.cumulative();
        assert_eq!(buckets.len(), BOUNDS_MS.len() + 1);
        let at = |bound: f64| buckets.iter().find(|b| b.0 == bound).unwrap().1;
        assert_eq!(at(1.0), 1, "the negative one counts as 0");
        assert_eq!(at(5.0), 3);
        assert_eq!(at(35.0), 4);
        assert_eq!(at(50.0), 6);
        assert_eq!(at(30000.0), 6);
        assert_eq!(at(f64::INFINITY), 7);
        // Rank 3.5 of 7 falls in (20, 35], which holds rank 4 alone: 20 + 15 * 0.5.
        assert_eq!(histogram.quantile(0.5), Some(27.5));
        assert_eq!(histogram.quantile(1.0), Some(30000.0), "above every bound");
        let mut twice = histogram.clone();
        twice.merge(&histogram);
        assert_eq!(twice.count(), 14);
        assert_eq!(twice.quantile(0.5), histogram.quantile(0.5));
    }

    #[cfg(feature = "gst")]
    #[test]
    fn a_histogram_goes_through_stats_and_back() {
        gst::init().unwrap();
        let mut histogram = Histogram::default();
        for ms in [0.5, 12.0, 12.0, 700.0] {
            histogram.observe(ms);
        }
        let structure = histogram.to_structure();
        assert_eq!(structure.name(), STRUCTURE_NAME);
        assert_eq!(structure.get::<u64>("count").unwrap(), 4);
        assert_eq!(structure.get::<f64>("sum").unwrap(), 724.5);
        assert_eq!(buckets_of(&structure), histogram.cumulative());
    }
}
