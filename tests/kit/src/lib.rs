// SPDX-License-Identifier: MIT OR Apache-2.0
//! The test kit every crate's tests share: the broker `scripts/test` starts, topics with
//! unique names, records read and written with bare rdkafka clients, pipelines run to
//! their end, programs run as child processes, HTTP GETs to their servers, what tests
//! that start a broker of their own need (nisshi, TLS certificates, a broker to kill, a
//! proxy for network faults), and the table of every program tests start with what
//! installs it.
//!
//! It depends on no plugin crate (a plugin's own tests depend on the kit), so each test
//! file registers the plugins it uses: `testkit::init(&[gstkafka::plugin_register_static])`.

mod broker;
mod cameras;
mod http;
mod own_broker;
mod pipelines;
mod process;
mod programs;
mod proxy;
mod records;

pub use broker::*;
pub use cameras::*;
pub use http::*;
pub use own_broker::*;
pub use pipelines::*;
pub use process::*;
pub use programs::*;
pub use proxy::*;
pub use records::*;

/// The repository root, for models, the README and the programs' working directory.
pub fn repo() -> &'static std::path::Path {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}
