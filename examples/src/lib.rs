// SPDX-License-Identifier: MIT OR Apache-2.0
//! Shared bits of the example programs in `src/bin/`: GStreamer set-up with our plugins
//! registered statically, and small command-line parsing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub mod scene;

/// Initialises GStreamer and registers the kafka, yolo and analytics plugins.
pub fn init() -> Result<(), String> {
    gst::init().map_err(|e| e.to_string())?;
    gstkafka::plugin_register_static().map_err(|e| e.to_string())?;
    gstyolo::plugin_register_static().map_err(|e| e.to_string())?;
    gstgkvanalytics::plugin_register_static().map_err(|e| e.to_string())?;
    Ok(())
}

/// A flag that Ctrl-C or SIGTERM sets, so the program can stop cleanly (flush, commit);
/// a second signal ends the process at once (exit status 130).
pub fn stop_on_signal() -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .map_err(|e| format!("installing the signal handler: {e}"))?;
    Ok(stop)
}

/// `--metrics HOST:PORT`: serves the pipeline's `/metrics` (Prometheus) and `/healthz`
/// there; nothing without the option. Returns the monitor, for reporting a failure.
pub fn serve_metrics(
    args: &Args,
    pipeline: &gst::Pipeline,
    limits: kafkavision::monitor::HealthLimits,
) -> Result<std::sync::Arc<kafkavision::monitor::Monitor>, String> {
    let monitor = kafkavision::monitor::Monitor::new(pipeline, limits);
    let address = args.get("metrics", "");
    if !address.is_empty() {
        let address: std::net::SocketAddr = address.parse().map_err(|_| {
            format!("--metrics '{address}': expected HOST:PORT, e.g. 127.0.0.1:9464")
        })?;
        let bound = monitor
            .serve(address)
            .map_err(|e| format!("--metrics {address}: {e}"))?;
        println!("metrics at http://{bound}/metrics, health at http://{bound}/healthz");
    }
    Ok(monitor)
}

/// `--name value` pairs and bare `--flag`s; `usage` is printed for `--help` or a stray word.
pub struct Args {
    values: HashMap<String, String>,
}

impl Args {
    pub fn parse(usage: &str) -> Args {
        let mut values = HashMap::new();
        let mut args = std::env::args().skip(1).peekable();
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" || !arg.starts_with("--") {
                eprintln!("{usage}");
                std::process::exit(if arg.starts_with("--") || arg == "-h" {
                    0
                } else {
                    2
                });
            }
            let name = arg.trim_start_matches("--").to_string();
            match args.next_if(|next| !next.starts_with("--")) {
                Some(value) => values.insert(name, value),
                None => values.insert(name, "true".into()),
            };
        }
        Args { values }
    }

    pub fn get(&self, name: &str, default: &str) -> String {
        self.values
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    pub fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.values.get(name) {
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("--{name} {v}: not a number");
                std::process::exit(2)
            }),
            None => default,
        }
    }

    pub fn flag(&self, name: &str) -> bool {
        self.values.get(name).is_some_and(|v| v == "true")
    }
}
