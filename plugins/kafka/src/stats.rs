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
    /// Records handed downstream and not released yet.
    pub const RECORDS_IN_FLIGHT: &str = "records-in-flight";
    /// A structure: per partition (fields `partition-N`, `i64`), newest minus committed
    /// offset.
    pub const CONSUMER_LAG: &str = "consumer-lag";
}

/// `kafkasink`'s `stats`.
pub mod kafkasink {
    pub use super::BROKER_DOWN_MS;

    /// The name of the structure.
    pub const NAME: &str = "kafkasink-stats";
    /// Records the broker acknowledged so far: the sink's progress.
    pub const RECORDS_SENT: &str = "records-sent";
}
