// SPDX-License-Identifier: MIT OR Apache-2.0
//! Names of the `stats` fields that programs act on (the health rules of
//! `gst-kafka-vision-monitor` among them), so that renaming one is a compile error there
//! rather than a check that silently never fires. The elements build their `stats` with
//! these names.

/// Milliseconds since no broker has been reachable (0 while one is), in both elements'
/// `stats`.
pub const BROKER_DOWN_MS: &str = "broker-down-ms";

/// `kafkasrc`'s `stats`.
pub mod kafkasrc {
    pub use super::BROKER_DOWN_MS;

    /// The name of the structure.
    pub const NAME: &str = "kafkasrc-stats";
    /// Buffers handed downstream so far: the source's progress.
    pub const BUFFERS_PUSHED: &str = "buffers-pushed";
    /// Partitions this source reads now (its share of the group).
    pub const PARTITIONS_ASSIGNED: &str = "partitions-assigned";
    /// Records handed downstream and not released yet.
    pub const RECORDS_IN_FLIGHT: &str = "records-in-flight";
    /// A structure: per partition (fields `partition-N`, `i64`), newest minus committed
    /// offset.
    pub const CONSUMER_LAG: &str = "consumer-lag";
    /// Frames that have not arrived (yet) in their stream's sequence, over the cameras heard
    /// of in the last ten minutes: a gauge (a frame that arrives late is no longer missing).
    pub const FRAMES_MISSING: &str = "frames-missing";
    /// Frames that arrived again, and frames that arrived after later ones: counters.
    pub const FRAMES_DUPLICATED: &str = "frames-duplicated";
    pub const FRAMES_OUT_OF_ORDER: &str = "frames-out-of-order";
    /// An array of structures named [`CAMERA`], one per camera (record key) heard of in the
    /// last ten minutes: `camera` (its name), the three figures above, and [`LATENCY_MS`].
    pub const CAMERAS: &str = "cameras";
    pub const CAMERA: &str = "camera";
    /// Capture to arrival, a histogram structure (`kafkavision::latency`).
    pub const LATENCY_MS: &str = "latency-ms";
}

/// `kafkasink`'s `stats`.
pub mod kafkasink {
    pub use super::BROKER_DOWN_MS;

    /// The name of the structure.
    pub const NAME: &str = "kafkasink-stats";
    /// Records the broker acknowledged so far: the sink's progress.
    pub const RECORDS_SENT: &str = "records-sent";
    /// An array of structures named `camera`, one per record key heard of in the last ten
    /// minutes: `camera` and [`LATENCY_MS`].
    pub use super::kafkasrc::CAMERAS;
    /// Capture to the broker's acknowledgement of the record, a histogram structure
    /// (`kafkavision::latency`), for records that carry a capture time.
    pub use super::kafkasrc::LATENCY_MS;
}
