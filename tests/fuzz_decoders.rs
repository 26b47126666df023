// SPDX-License-Identifier: MIT OR Apache-2.0
//! Property fuzzing of everything that reads untrusted bytes: the envelope headers
//! (`Envelope::from_headers`), the detections JSON (`FrameDetections::from_json`) and the
//! `config` property (`ClientConfig::parse`). None may panic, every value they accept must
//! survive a round trip, and a secret must never come back out.
//!
//! `cargo test` runs each target for a fixed number of cases (`CI_CASES`); `scripts/fuzz
//! SECONDS` sets `KV_FUZZ_SECONDS` and runs them for a time budget instead, printing one
//! `fuzz-result` line per target. The last test feeds fuzzed records to a real `kafkasrc`.

use std::time::{Duration, Instant};

use gst::prelude::*;
use kafkavision::client_config::{ClientConfig, is_secret_key};
use kafkavision::detections::{self, Detection, FrameDetections, Rect};
use kafkavision::envelope::header;
use kafkavision::{Envelope, Flags, RecordKind};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

fn init() {
    testkit::init(&[
        gstkafka::plugin_register_static,
        gstyolo::plugin_register_static,
        gstgkvanalytics::plugin_register_static,
    ]);
}

/// Cases per target in a plain `cargo test`: all targets together stay well under 20 s.
const CI_CASES: u32 = 5000;
/// Cases per runner in the time-budgeted mode; each batch gets a fresh random seed.
const BATCH_CASES: u32 = 5000;

/// Runs `check` on values of `strategy`, `CI_CASES` times or for `KV_FUZZ_SECONDS`, and
/// fails with the minimal (shrunk) failing input.
fn fuzz<S: Strategy>(
    target: &str,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let budget = std::env::var("KV_FUZZ_SECONDS")
        .ok()
        .map(|s| Duration::from_secs_f64(s.parse().expect("KV_FUZZ_SECONDS is seconds")));
    let batch = if budget.is_some() {
        BATCH_CASES
    } else {
        CI_CASES
    };
    let started = Instant::now();
    let mut cases = 0u64;
    let mut failure = None;
    loop {
        let mut runner = TestRunner::new(Config {
            cases: batch,
            failure_persistence: None,
            ..Config::default()
        });
        match runner.run(&strategy, &check) {
            Ok(()) => cases += u64::from(batch),
            Err(err) => {
                failure = Some(err);
                break;
            }
        }
        match budget {
            Some(budget) if started.elapsed() < budget => {}
            _ => break,
        }
    }
    let minimal = match &failure {
        None => String::new(),
        Some(TestError::Fail(why, value)) => format!("{why}; input {value:?}"),
        Some(TestError::Abort(why)) => format!("aborted: {why}"),
    };
    // One line per target for scripts/fuzz; tabs and newlines would break its table.
    println!(
        "fuzz-result\t{target}\t{cases}\t{:.1}\t{}\t{}",
        started.elapsed().as_secs_f64(),
        usize::from(failure.is_some()),
        minimal.replace(['\t', '\n'], " ")
    );
    if let Some(err) = failure {
        panic!("{target}: {err}");
    }
}

// ---- envelope ---------------------------------------------------------------------------

const KNOWN_HEADERS: [&str; 12] = [
    header::VERSION,
    header::KIND,
    header::STREAM,
    header::SEQ,
    header::CAPS,
    header::PTS,
    header::DTS,
    header::DURATION,
    header::FLAGS,
    header::SINK_TIME,
    header::CAPTURE_TIME,
    // Not an envelope header: readers must carry it, not parse it.
    "gkv-detections",
];

const ALL_FLAGS: [Flags; 8] = [
    Flags::DISCONT,
    Flags::DELTA_UNIT,
    Flags::HEADER,
    Flags::GAP,
    Flags::DROPPABLE,
    Flags::MARKER,
    Flags::CORRUPTED,
    Flags::RESYNC,
];

type Headers = Vec<(String, Option<Vec<u8>>)>;

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(&KNOWN_HEADERS[..]).prop_map(String::from),
        1 => "gkv-[a-z-]{0,12}",
        1 => "[A-Z]{0,3}GKV-[A-Za-z]{0,8}",
        1 => any::<String>(),
    ]
}

/// Text that looks like a number to a careless parser: limits, one past, signs, spaces.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u128>().prop_map(|n| n.to_string()),
        (0u64..4).prop_map(|d| (u64::MAX - d).to_string()),
        (1u128..4).prop_map(|d| (u128::from(u64::MAX) + d).to_string()),
        (0u64..4).prop_map(|d| (u64::from(u32::MAX) + d).to_string()),
        "[ +-]{0,2}[0-9]{1,30}[ \t]{0,2}",
        prop_oneof![
            Just(""),
            Just("1e9"),
            Just("0x10"),
            Just("١٢"),
            Just("NaN"),
            Just("-0")
        ]
        .prop_map(String::from),
    ]
}

fn header_value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        5 => number_text().prop_map(|s| Some(s.into_bytes())),
        2 => proptest::sample::select(&[
            "buffer", "eos", "1", "2", "0", "", "delta-unit,discont", "header,,gap ,x",
            "image/jpeg", "video/x-raw, width=(int)64",
        ][..])
        .prop_map(|s| Some(s.as_bytes().to_vec())),
        2 => any::<String>().prop_map(|s| Some(s.into_bytes())),
        2 => vec(any::<u8>(), 0..48).prop_map(Some),
        1 => vec(any::<u8>(), 0..4096).prop_map(Some),
    ]
}

/// A time any writer could produce: GStreamer's "none" (u64::MAX) is not one.
fn time() -> impl Strategy<Value = Option<u64>> {
    option::of(prop_oneof![0..u64::MAX, Just(0), Just(u64::MAX - 1)])
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        any::<bool>(),
        any::<String>(),
        any::<u64>(),
        option::of(any::<String>()),
        (time(), time(), time()),
        any::<u8>(),
        time(),
        time(),
    )
        .prop_map(
            |(eos, stream_id, seq, caps, (pts, dts, duration), flag_bits, sink, capture)| {
                let mut flags = Flags::empty();
                for (i, flag) in ALL_FLAGS.iter().enumerate() {
                    flags.set(*flag, flag_bits & (1 << i) != 0);
                }
                Envelope {
                    kind: if eos {
                        RecordKind::EndOfStream
                    } else {
                        RecordKind::Buffer
                    },
                    stream_id,
                    seq,
                    caps,
                    pts,
                    dts,
                    duration,
                    flags,
                    sink_time_ns: sink,
                    capture_time_ns: capture,
                }
            },
        )
}

fn to_owned_headers(env: &Envelope) -> Headers {
    env.to_headers()
        .into_iter()
        .map(|(k, v)| (k.to_string(), Some(v.into_bytes())))
        .collect()
}

/// One edit of a header list: drop, duplicate, replace a value, insert, or swap.
#[derive(Clone, Debug)]
enum HeaderEdit {
    Drop(Index),
    Duplicate(Index),
    Replace(Index, Option<Vec<u8>>),
    Insert(Index, String, Option<Vec<u8>>),
    Swap(Index, Index),
}

fn header_edit() -> impl Strategy<Value = HeaderEdit> {
    prop_oneof![
        any::<Index>().prop_map(HeaderEdit::Drop),
        any::<Index>().prop_map(HeaderEdit::Duplicate),
        (any::<Index>(), header_value()).prop_map(|(i, v)| HeaderEdit::Replace(i, v)),
        (any::<Index>(), header_name(), header_value())
            .prop_map(|(i, k, v)| HeaderEdit::Insert(i, k, v)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| HeaderEdit::Swap(a, b)),
    ]
}

fn apply_edits(mut headers: Headers, edits: Vec<HeaderEdit>) -> Headers {
    for edit in edits {
        let len = headers.len();
        match edit {
            HeaderEdit::Insert(i, k, v) => headers.insert(i.index(len + 1), (k, v)),
            _ if len == 0 => {}
            HeaderEdit::Drop(i) => {
                headers.remove(i.index(len));
            }
            HeaderEdit::Duplicate(i) => {
                let h = headers[i.index(len)].clone();
                headers.insert(i.index(len + 1), h);
            }
            HeaderEdit::Replace(i, v) => headers[i.index(len)].1 = v,
            HeaderEdit::Swap(a, b) => headers.swap(a.index(len), b.index(len)),
        }
    }
    headers
}

/// Random header lists, and valid envelopes' headers with a few edits.
fn header_list() -> impl Strategy<Value = Headers> {
    prop_oneof![
        vec((header_name(), header_value()), 0..24),
        (envelope(), vec(header_edit(), 1..5))
            .prop_map(|(env, edits)| apply_edits(to_owned_headers(&env), edits)),
    ]
}

fn decode(headers: &Headers) -> Result<Option<Envelope>, kafkavision::EnvelopeError> {
    Envelope::from_headers(headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())))
}

/// What every reader relies on in a decoded envelope: it re-encodes to itself, and its
/// times are real GStreamer times (kafkasrc builds `ClockTime`s from them).
fn check_decoded(env: &Envelope) -> Result<(), TestCaseError> {
    let again = decode(&to_owned_headers(env));
    prop_assert_eq!(again, Ok(Some(env.clone())));
    for t in [
        env.pts,
        env.dts,
        env.duration,
        env.sink_time_ns,
        env.capture_time_ns,
    ]
    .into_iter()
    .flatten()
    {
        prop_assert!(
            gst::ClockTime::try_from(t).is_ok(),
            "time {} is not a ClockTime",
            t
        );
    }
    Ok(())
}

#[test]
fn fuzz_envelope_decoder_never_panics_and_what_it_accepts_round_trips() {
    fuzz("envelope-decode", header_list(), |headers| {
        if let Ok(Some(env)) = decode(&headers) {
            check_decoded(&env)?;
        }
        Ok(())
    });
}

#[test]
fn fuzz_envelope_round_trip() {
    fuzz("envelope-round-trip", envelope(), |env| {
        prop_assert_eq!(decode(&to_owned_headers(&env)), Ok(Some(env.clone())));
        check_decoded(&env)
    });
}

#[test]
fn envelope_times_that_are_not_gstreamer_times_are_refused() {
    // Found by the fuzzer: kafkasrc panicked in ClockTime::from_nseconds on these.
    for name in [
        header::PTS,
        header::DTS,
        header::DURATION,
        header::SINK_TIME,
        header::CAPTURE_TIME,
    ] {
        let max = u64::MAX.to_string();
        let headers = [
            (header::VERSION, Some(&b"1"[..])),
            (header::STREAM, Some(&b"s"[..])),
            (header::SEQ, Some(&b"0"[..])),
            (name, Some(max.as_bytes())),
        ];
        let err = Envelope::from_headers(headers).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
        let below = (u64::MAX - 1).to_string();
        let headers = [
            (header::VERSION, Some(&b"1"[..])),
            (header::STREAM, Some(&b"s"[..])),
            (header::SEQ, Some(&b"0"[..])),
            (name, Some(below.as_bytes())),
        ];
        assert!(Envelope::from_headers(headers).unwrap().is_some());
    }
}

// ---- detections -------------------------------------------------------------------------

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO,
        -1e4..1e4f64,
        (0u32..4096).prop_map(f64::from),
    ]
}

fn rect() -> impl Strategy<Value = Rect> {
    (finite(), finite(), finite(), finite()).prop_map(|(x, y, width, height)| Rect {
        x,
        y,
        width,
        height,
    })
}

fn detection() -> impl Strategy<Value = Detection> {
    (
        any::<String>(),
        any::<u32>(),
        finite(),
        any::<bool>(),
        rect(),
        rect(),
        option::of(any::<u64>()),
    )
        .prop_map(
            |(label, class_id, confidence, inferred, bbox, box_normalized, track_id)| Detection {
                label,
                class_id,
                confidence,
                inferred,
                bbox,
                box_normalized,
                track_id,
            },
        )
}

fn frame_detections() -> impl Strategy<Value = FrameDetections> {
    (
        0..=detections::SCHEMA_VERSION,
        any::<String>(),
        option::of(any::<String>()),
        any::<u64>(),
        option::of(any::<u64>()),
        option::of(any::<u64>()),
        any::<u32>(),
        any::<u32>(),
        vec(detection(), 0..6),
    )
        .prop_map(
            |(version, stream, camera, seq, pts_ns, capture_time_ns, width, height, dets)| {
                let mut frame: FrameDetections = serde_json::from_value(serde_json::json!({
                    "schema": detections::SCHEMA, "version": version, "stream": stream,
                    "camera": camera, "seq": seq, "pts_ns": pts_ns,
                    "capture_time_ns": capture_time_ns, "width": width, "height": height,
                    "detections": [],
                }))
                .expect("a minimal document");
                frame.detections = dets;
                frame
            },
        )
}

/// One edit of a JSON text: cut a range, insert text, or overwrite a number.
#[derive(Clone, Debug)]
enum JsonEdit {
    Cut(Index, u8),
    Insert(Index, String),
    Number(Index, String),
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        (any::<Index>(), 1u8..16).prop_map(|(i, n)| JsonEdit::Cut(i, n)),
        (
            any::<Index>(),
            prop_oneof![
                "[\\[\\]{}\",:0-9a-z\\\\ -]{1,6}",
                any::<String>(),
                Just("\"x\":".repeat(3)),
                (1usize..400).prop_map(|n| "[".repeat(n)),
                Just("\"\\ud800\"".to_string()),
            ]
        )
            .prop_map(|(i, s)| JsonEdit::Insert(i, s)),
        (any::<Index>(), number_text()).prop_map(|(i, s)| JsonEdit::Number(i, s)),
    ]
}

fn apply_json_edits(json: Vec<u8>, edits: &[JsonEdit]) -> Vec<u8> {
    let mut text = String::from_utf8(json).expect("to_json writes UTF-8");
    for edit in edits {
        let boundaries: Vec<usize> = (0..=text.len())
            .filter(|i| text.is_char_boundary(*i))
            .collect();
        match edit {
            JsonEdit::Cut(i, n) => {
                let start = i.index(boundaries.len());
                let end = (start + *n as usize).min(boundaries.len() - 1);
                text.replace_range(boundaries[start]..boundaries[end], "");
            }
            JsonEdit::Insert(i, s) => text.insert_str(boundaries[i.index(boundaries.len())], s),
            JsonEdit::Number(i, s) => {
                // Overwrite the digits at or after a random place with another number.
                let from = boundaries[i.index(boundaries.len())];
                if let Some(start) = text[from..].find(|c: char| c.is_ascii_digit()) {
                    let start = from + start;
                    let len = text[start..]
                        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                        .unwrap_or(text.len() - start);
                    text.replace_range(start..start + len, s);
                }
            }
        }
    }
    text.into_bytes()
}

fn check_detections(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(frame) = FrameDetections::from_json(bytes) {
        prop_assert_eq!(FrameDetections::from_json(&frame.to_json()), Ok(frame));
    }
    Ok(())
}

#[test]
fn fuzz_detections_decoder_on_random_bytes() {
    fuzz(
        "detections-random-bytes",
        prop_oneof![
            vec(any::<u8>(), 0..256),
            any::<String>().prop_map(String::into_bytes)
        ],
        |bytes| check_detections(&bytes),
    );
}

#[test]
fn fuzz_detections_decoder_on_mutated_documents() {
    fuzz(
        "detections-mutated-json",
        (frame_detections(), vec(json_edit(), 1..4)),
        |(frame, edits)| check_detections(&apply_json_edits(frame.to_json(), &edits)),
    );
}

#[test]
fn fuzz_detections_round_trip() {
    fuzz("detections-round-trip", frame_detections(), |frame| {
        prop_assert_eq!(FrameDetections::from_json(&frame.to_json()), Ok(frame));
        Ok(())
    });
}

#[test]
fn detections_with_non_finite_numbers_stay_readable() {
    // Found by the fuzzer: serde_json writes NaN and infinities as null, which the reader
    // then refused, so one bad confidence lost the frame's detections record.
    let frame = FrameDetections::from_json(
        br#"{"schema":"gkv.detections","version":1,"stream":"s","camera":null,"seq":0,
            "pts_ns":null,"capture_time_ns":null,"width":1,"height":1,"detections":[]}"#,
    )
    .unwrap();
    let mut frame = frame;
    frame.detections.push(Detection::new(
        "car",
        2,
        f64::NAN,
        true,
        Rect {
            x: f64::INFINITY,
            y: 1.0,
            width: 2.0,
            height: 3.0,
        },
        0,
        0,
    ));
    let read = FrameDetections::from_json(&frame.to_json()).expect("readable");
    assert!(read.detections[0].confidence.is_nan());
    assert_eq!(read.detections[0].bbox.y, 1.0);
}

// ---- config -----------------------------------------------------------------------------

fn config_key() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(
            &[
                "linger.ms",
                "acks",
                "security.protocol",
                "sasl.mechanism",
                "sasl.username",
                "ssl.ca.location",
                "client.id",
                "debug",
            ][..]
        )
        .prop_map(String::from),
        "[a-z]{1,8}(\\.[a-z]{1,8}){0,2}",
    ]
}

const SECRET_KEYS: [&str; 6] = [
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
    "ssl.key.pem",
    "SASL.PASSWORD",
];

/// Secret parts: uppercase letter + digits, which no other generated text contains.
fn secret_part() -> impl Strategy<Value = String> {
    "[QXZ][0-9]{6,9}"
}

#[test]
fn fuzz_config_parser_never_panics_and_redacted_reads_back() {
    fuzz("config-parse", any::<String>(), |text| {
        if let Ok(config) = ClientConfig::parse(&text) {
            let shown = ClientConfig::parse(&config.redacted()).expect("redacted parses");
            let keys =
                |c: &ClientConfig| c.entries().map(|(k, _)| k.to_string()).collect::<Vec<_>>();
            prop_assert_eq!(keys(&shown), keys(&config));
        }
        Ok(())
    });
}

#[test]
fn fuzz_config_redacted_keeps_plain_values() {
    fuzz(
        "config-redacted-round-trip",
        vec((config_key(), "[a-z0-9./:,= -]{0,12}"), 0..6),
        |entries| {
            let text = entries
                .iter()
                .map(|(k, v)| format!("{k}={}", v.replace(',', "\\,")))
                .collect::<Vec<_>>()
                .join(",");
            let config =
                ClientConfig::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let shown = ClientConfig::parse(&config.redacted()).expect("redacted parses");
            let expected: Vec<(&str, &str)> = entries
                .iter()
                .map(|(k, v)| (k.as_str(), if is_secret_key(k) { "***" } else { v.trim() }))
                .collect();
            let got: Vec<(&str, &str)> = shown.entries().collect();
            prop_assert_eq!(got, expected);
            Ok(())
        },
    );
}

#[test]
fn fuzz_config_never_shows_a_secret() {
    // A secret value as documented (commas escaped) or with the common mistake of a bare
    // comma; either way neither the redacted text nor a parse error may show any part.
    let config_text = (
        vec((config_key(), "[a-z0-9./ ]{0,8}"), 0..3),
        proptest::sample::select(&SECRET_KEYS[..]),
        vec(secret_part(), 1..4),
        prop_oneof![
            Just(",".to_string()),
            Just("\\,".to_string()),
            Just("=".to_string()),
            Just(",=".to_string()),
            Just(", ".to_string())
        ],
        vec((config_key(), "[a-z0-9./ ]{0,8}"), 0..3),
    );
    fuzz(
        "config-secrets",
        config_text,
        |(before, secret_key, parts, separator, after)| {
            let entry = |(k, v): &(String, String)| format!("{k}={v}");
            let mut items: Vec<String> = before.iter().map(entry).collect();
            items.push(format!("{secret_key}={}", parts.join(&separator)));
            items.extend(after.iter().map(entry));
            let text = items.join(",");
            let shown = match ClientConfig::parse(&text) {
                Ok(config) => config.redacted(),
                Err(err) => err.to_string(),
            };
            // ",=" makes "=Z123" an entry with an empty key, and ",k=v" a new entry by
            // design; the check covers what the parser can know to be secret.
            if separator != ",=" {
                for part in &parts {
                    prop_assert!(
                        !shown.contains(part.as_str()),
                        "'{}' shows '{}'",
                        shown,
                        part
                    );
                }
            }
            Ok(())
        },
    );
}

// ---- through the element ----------------------------------------------------------------

/// A valid buffer record of the stream `valid`.
fn valid_record(seq: u64) -> (Vec<u8>, Headers) {
    let env = Envelope {
        pts: Some(seq * 1_000_000),
        duration: Some(1_000_000),
        ..Envelope::buffer("valid", seq, Some("application/x-fuzz-check".into()))
    };
    (format!("valid-{seq}").into_bytes(), to_owned_headers(&env))
}

/// Records `kafkasrc` must count as bad: headers the decoder refuses or that carry no
/// envelope (the test sets no `caps`), plus well-formed envelopes with hostile times.
fn bad_records(count: usize) -> Vec<(Vec<u8>, Headers)> {
    let mut runner = TestRunner::new(Config::default());
    let strategy = (vec(any::<u8>(), 0..64), header_list());
    let mut records = Vec::new();
    for (i, name) in [
        header::PTS,
        header::DURATION,
        header::CAPTURE_TIME,
        header::SINK_TIME,
    ]
    .into_iter()
    .enumerate()
    {
        let (value, mut headers) = valid_record(i as u64);
        headers.retain(|(k, _)| k != name);
        headers.push((name.to_string(), Some(u64::MAX.to_string().into_bytes())));
        headers.iter_mut().for_each(|(k, v)| {
            if k == header::STREAM {
                *v = Some(b"hostile".to_vec());
            }
        });
        records.push((value, headers));
    }
    while records.len() < count {
        let (value, mut headers) = strategy.new_tree(&mut runner).unwrap().current();
        // librdkafka header names are C strings.
        headers.retain(|(k, _)| !k.contains('\0'));
        if matches!(decode(&headers), Err(_) | Ok(None)) {
            records.push((value, headers));
        }
    }
    records
}

#[test]
fn kafkasrc_skips_fuzzed_records_and_delivers_every_valid_one() {
    const VALID: u64 = 40;
    let topic = testkit::new_topic("fuzz-src", 1);
    let bad = bad_records(300);
    // Valid records spread among the bad ones, the stream's EOS record last.
    let mut records = Vec::new();
    let mut bad_iter = bad.iter().cloned();
    for seq in 0..VALID {
        records.push(valid_record(seq));
        records.extend(bad_iter.by_ref().take(bad.len() / VALID as usize + 1));
    }
    let eos = Envelope::end_of_stream("valid", VALID);
    records.push((Vec::new(), to_owned_headers(&eos)));
    let borrowed: Vec<testkit::ProducedRecord> = records
        .iter()
        .map(|(value, headers)| {
            let headers = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_deref().unwrap_or_default()))
                .collect();
            (value.clone(), headers)
        })
        .collect();
    testkit::produce_raw(&topic, Some(0), &borrowed);

    init();
    let pipeline = testkit::launch(&format!(
        "kafkasrc name=src brokers={} topic={topic} stop-on-eos=true ! appsink name=out sync=false",
        testkit::brokers()
    ));
    let samples = testkit::collect_samples(&pipeline, "out");
    let src = pipeline.by_name("src").unwrap();
    let ended = testkit::run_until_end(&pipeline, Duration::from_secs(60));
    assert!(matches!(ended, testkit::Ended::Eos), "{ended:?}");
    let payloads: Vec<Vec<u8>> = samples
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.buffer().unwrap().map_readable().unwrap().to_vec())
        .collect();
    let expected: Vec<Vec<u8>> = (0..VALID).map(|seq| valid_record(seq).0).collect();
    assert_eq!(payloads, expected);
    assert_eq!(testkit::stat_u64(&src, "bad-records"), bad.len() as u64);
}
