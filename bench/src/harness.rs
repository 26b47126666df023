// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the benches share beyond the test kit (which gives them topics, unique names,
//! client configurations and programs): the machine line each prints first, the clients'
//! settings, pipelines with typed properties, and the resident memory of a process.

// Each bench uses only part of it.
#![allow(dead_code)]

/// Instruction sets that decide speeds here, as /proc/cpuinfo flags and as people name them.
const INSTRUCTION_SETS: [(&str, &str); 9] = [
    ("avx2", "AVX2"),
    ("fma", "FMA"),
    ("avx512f", "AVX-512F"),
    ("avx512bw", "AVX-512BW"),
    ("avx512_vnni", "AVX512-VNNI"),
    ("avx512_bf16", "AVX512-BF16"),
    ("amx_bf16", "AMX-BF16"),
    ("amx_int8", "AMX-INT8"),
    ("avx_vnni", "AVX-VNNI"),
];

/// The first line of every bench: the CPU model, its cores, and which of the instruction
/// sets that decide our speeds it has and lacks (machines here change between runs: AMD
/// EPYCs with AVX2 only, Intel Xeons with AVX-512 and AMX).
pub fn machine_line() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    let model = field("model name").unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let Some(flags) = field("flags") else {
        return format!("machine: {model}, {cores} cores, instruction sets unknown");
    };
    let flags: Vec<&str> = flags.split_whitespace().collect();
    let (has, lacks): (Vec<_>, Vec<_>) = INSTRUCTION_SETS
        .iter()
        .partition(|(flag, _)| flags.contains(flag));
    let names = |sets: Vec<&(&str, &str)>| {
        let names: Vec<&str> = sets.iter().map(|(_, name)| *name).collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(" ")
        }
    };
    format!(
        "machine: {model}, {cores} cores; has {}; lacks {}",
        names(has),
        names(lacks)
    )
}

/// kafkasink's producer defaults, stated for the bench's own producer too.
pub const PRODUCER_CONFIG: &str =
    "acks=all,enable.idempotence=true,linger.ms=0,message.max.bytes=4000000";

/// A reader that assigns partitions itself (librdkafka wants a group id for assign()
/// even when nothing is committed).
pub const READER_CONFIG: &str =
    "fetch.wait.max.ms=20,group.id=bench-reader,enable.auto.commit=false";

/// VmRSS of a process in kB, from /proc; None once it has exited.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A pipeline from a constant description, with properties set on its named elements:
/// `(element name, property, value)`. Values that come from the command line (brokers,
/// topics, paths, counts) are set as typed properties, never formatted into a description.
pub fn pipeline(
    description: &'static str,
    properties: &[(&str, &str, &dyn gst::prelude::ToValue)],
) -> Result<gst::Pipeline, String> {
    use gst::prelude::*;
    let pipeline = gst::parse::launch(description)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    for (element, property, value) in properties {
        pipeline
            .by_name(element)
            .ok_or_else(|| format!("no element named {element}"))?
            .set_property(property, value.to_value());
    }
    Ok(pipeline)
}

/// Waits up to `seconds` for the pipeline's end of stream; its error message if one comes
/// first.
pub fn wait_eos(pipeline: &gst::Pipeline, seconds: u64) -> Result<(), String> {
    use gst::prelude::*;
    let message = pipeline
        .bus()
        .ok_or("a pipeline without a bus")?
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(seconds),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .ok_or(format!("no end of stream within {seconds} s"))?;
    match message.view() {
        gst::MessageView::Error(e) => Err(format!("{} {:?}", e.error(), e.debug())),
        _ => Ok(()),
    }
}

/// A value that goes into a `gst-launch-1.0` command line (soak-bench runs gst-launch
/// processes, as users do, and gst-launch joins its arguments into one description): only
/// plain tokens pass, so a value cannot add elements or properties.
pub fn launch_token<'a>(what: &str, value: &'a str) -> Result<&'a str, String> {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:/,+@".contains(c));
    if plain {
        Ok(value)
    } else {
        Err(format!(
            "{what} '{value}' has characters a gst-launch line would read as syntax; use \
             letters, digits and . _ - : / , + @ only"
        ))
    }
}
