// SPDX-License-Identifier: MIT OR Apache-2.0
//! Frames lost, duplicated and reordered between a camera's `kafkasink` and this source
//! (`kafkavision::sequence` tells them apart per stream), and the latency from capture to
//! arrival, per camera.

use kafkavision::latency::{ByCamera, Histogram};
pub use kafkavision::sequence::{Arrival, Sequence};

/// One camera's figures since the source started.
#[derive(Debug, Clone, Default)]
pub struct CameraFigures {
    pub missing: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Capture (else the sink's time, else the Kafka timestamp) to arrival here.
    pub latency: Histogram,
}

/// Every camera's figures, by camera (the record key, else the stream id).
#[derive(Debug, Default)]
pub struct Cameras(ByCamera<CameraFigures>);

impl Cameras {
    /// The camera's figures, heard of now; cameras silent for ten minutes go.
    pub fn heard(&mut self, camera: &str) -> &mut CameraFigures {
        self.0.heard(camera)
    }

    /// Counts one arrival of `camera`'s stream.
    pub fn count(&mut self, camera: &str, arrival: &Arrival) {
        let figures = self.heard(camera);
        match arrival {
            Arrival::Next => {}
            Arrival::Unordered { retracted } => {
                figures.missing = figures.missing.saturating_sub(*retracted)
            }
            Arrival::After { missing } => figures.missing += missing,
            Arrival::Duplicate => figures.duplicated += 1,
            Arrival::Late => {
                figures.missing = figures.missing.saturating_sub(1);
                figures.out_of_order += 1;
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &CameraFigures)> {
        self.0.iter()
    }

    /// Frames missing over the cameras still known.
    pub fn missing(&self) -> u64 {
        self.0.iter().map(|(_, f)| f.missing).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cameras_count_apart_and_a_late_frame_is_no_longer_missing() {
        let mut cameras = Cameras::default();
        cameras.count("cam1", &Arrival::After { missing: 2 });
        cameras.count("cam1", &Arrival::Late);
        cameras.count("cam2", &Arrival::Duplicate);
        cameras.count("cam2", &Arrival::Next);
        let figures: Vec<_> = cameras
            .iter()
            .map(|(camera, f)| (camera.as_str(), f.missing, f.duplicated, f.out_of_order))
            .collect();
        assert_eq!(figures, [("cam1", 1, 0, 1), ("cam2", 0, 1, 0)]);
        assert_eq!(cameras.missing(), 1);
    }
}
