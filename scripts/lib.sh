# SPDX-License-Identifier: MIT OR Apache-2.0
# shellcheck shell=bash disable=SC2034
#
# Shared shell functions of gst-kafka-vision's scripts. Source it, don't run it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Every kv_ensure_* function checks first and returns at once when there is nothing to
# do, so the scripts can call them on every run.

# Guard against double sourcing (scripts/test sources it and calls scripts/broker).
if [[ -n "${KV_LIB_SOURCED:-}" ]]; then
    return 0
fi
KV_LIB_SOURCED=1

KV_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KV_VENV="${KV_VENV:-$KV_REPO/.venv}"

# Versions we tested against; bump deliberately.
# The broker we ship is nisshi (tansu's successor: it expires dead group members, so no
# partition stays with a killed worker). It needs rustc >= 1.96, so it is built with the
# nightly toolchain; where that cannot work, tansu is the explicit fallback (KV_BROKER=tansu
# asks for it).
KV_NISSHI_VERSION="0.8.1"
# The storage engines the scripts start: memory (benches, --storage memory), sqlite (the
# default) and postgres (--storage postgres). They are nisshi's default features; named
# here so that the build is exactly what we use. TLS and SASL are not features: always in.
KV_NISSHI_FEATURES="dynostore,libsql,postgres"
KV_TANSU_VERSION="0.6.0"
# How long the topics our scripts create keep records when the caller names no
# retention.ms: a day (nisshi keeps 7 days when a topic has none, ~1.8 TB for a 30
# frames/s camera at 100 KB a frame). A frames topic's retention is the longest clip
# pre-roll it can give.
KV_TOPIC_RETENTION_MS=86400000
KV_PY_PACKAGES=(
    "confluent-kafka==2.16.1" "kafka-python==3.0.12"
    # ONNX Runtime for yolodetect (the wheel ships libonnxruntime.so), and what
    # models/make_models.py and models/reference.py need.
    "onnxruntime==1.31.1" "onnx==1.23.2" "numpy==2.4.6" "opencv-python-headless==5.0.0.93"
    # yolodetect execution-provider=openvino: ONNX Runtime's OpenVINO plugin (self-contained).
    "onnxruntime-ep-openvino==1.8.1"
    # The metrics test reads /metrics with Prometheus' own parser.
    "prometheus-client==0.26.0"
)

KV_DEBS=(
    libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev
    gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp
    # gst-discoverer-1.0, which the clip tests ask what a clip holds.
    gstreamer1.0-plugins-base-apps
    meson ninja-build pkg-config libssl-dev libsasl2-dev zlib1g-dev libzstd-dev python3-venv
    # The web viewer's test runs the page in headless Chromium.
    chromium
    # The Python embedding example runs Debian's python3 with PyGObject (python3-gst-1.0
    # reads GstValueArray fields).
    python3 python3-gi gir1.2-gstreamer-1.0 python3-gst-1.0
    # The several-hosts test builds network namespaces (ip netns); the deploy test checks
    # the systemd units with systemd-analyze.
    iproute2 systemd
    # The TLS tests make their certificates with openssl; tests stop what they started in
    # network namespaces with kill, and the demo test checks with pkill.
    openssl procps
    # CI's gate (scripts/lint) checks the shell scripts.
    shellcheck
)
# Every program a test starts is listed, with what installs it, in testkit's PROGRAMS
# (tests/kit/src/programs.rs); tests/setup_guard.rs checks that list against this one.

# Messages go to stderr so that stdout stays machine-readable (scripts/broker start
# prints only the bootstrap address there).
kv_log() { printf '%s: %s\n' "${KV_LOG_TAG:-kv}" "$*" >&2; }
kv_die() { kv_log "error: $*"; exit 1; }

# Root can run apt-get directly; anybody else needs sudo.
kv_as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

kv_ensure_debs() {
    local missing=() p
    if ! command -v dpkg-query >/dev/null 2>&1; then
        kv_log "warning: not a Debian system; install the equivalents of: ${KV_DEBS[*]}"
        return 0
    fi
    for p in "${KV_DEBS[@]}"; do
        if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) != "install ok installed" ]]; then
            missing+=("$p")
        fi
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    kv_log "installing Debian packages: ${missing[*]}"
    # Only refresh the package lists when we actually install something: it is slow.
    kv_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    kv_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >&2
}

# Why nisshi is not used on this machine (written when its install failed).
KV_BROKER_FALLBACK_FILE="${XDG_CACHE_HOME:-$HOME/.cache}/gst-kafka-vision/broker-fallback"

# Prints the path of the nisshi binary, or nothing.
kv_nisshi_path() {
    if [[ -n "${NISSHI:-}" && -x "${NISSHI}" ]]; then
        echo "$NISSHI"
    elif command -v nisshi >/dev/null 2>&1; then
        command -v nisshi
    elif [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/nisshi" ]]; then
        echo "${CARGO_HOME:-$HOME/.cargo}/bin/nisshi"
    fi
}

kv_nisshi_install_running() {
    pgrep -f 'cargo( \+nightly)? install( .*)? nisshi' >/dev/null 2>&1
}

# Installs nisshi if it is missing; fails (writing why) when it cannot be built here.
kv_ensure_nisshi() {
    [[ -n "$(kv_nisshi_path)" ]] && return 0
    if kv_nisshi_install_running; then
        kv_log "another 'cargo install nisshi' is running; waiting for it to finish"
        while kv_nisshi_install_running; do sleep 5; done
        [[ -n "$(kv_nisshi_path)" ]] && return 0
    fi
    mkdir -p "$(dirname "$KV_BROKER_FALLBACK_FILE")"
    if ! cargo +nightly --version >/dev/null 2>&1; then
        echo "no nightly Rust toolchain (nisshi $KV_NISSHI_VERSION needs rustc >= 1.96)" \
            >"$KV_BROKER_FALLBACK_FILE"
        return 1
    fi
    kv_log "installing the nisshi broker $KV_NISSHI_VERSION with the nightly toolchain (cargo install, 15-25 min once)"
    if ! cargo +nightly install nisshi --locked --version "$KV_NISSHI_VERSION" \
        --no-default-features --features "$KV_NISSHI_FEATURES" >&2; then
        echo "'cargo +nightly install nisshi --version $KV_NISSHI_VERSION' failed" \
            >"$KV_BROKER_FALLBACK_FILE"
        return 1
    fi
    rm -f "$KV_BROKER_FALLBACK_FILE"
    [[ -n "$(kv_nisshi_path)" ]]
}

# The broker scripts start: nisshi, else (or with KV_BROKER=tansu) tansu.
kv_ensure_broker() {
    if [[ "${KV_BROKER:-nisshi}" == tansu ]]; then
        kv_ensure_tansu
    elif ! kv_ensure_nisshi; then
        kv_log "warning: using the fallback broker tansu $KV_TANSU_VERSION: $(cat "$KV_BROKER_FALLBACK_FILE" 2>/dev/null)"
        kv_ensure_tansu
    fi
}

# Prints "NAME PATH" of the broker to run (after kv_ensure_broker).
kv_broker() {
    if [[ "${KV_BROKER:-nisshi}" != tansu && -n "$(kv_nisshi_path)" ]]; then
        echo "nisshi $(kv_nisshi_path)"
    else
        echo "tansu $(kv_tansu_path)"
    fi
}

# Prints the path of the tansu binary, or nothing.
kv_tansu_path() {
    if [[ -n "${TANSU:-}" && -x "${TANSU}" ]]; then
        echo "$TANSU"
    elif command -v tansu >/dev/null 2>&1; then
        command -v tansu
    elif [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]]; then
        echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
    fi
}

# True while some other `cargo install tansu` runs (a second one would just compete for
# the 2 cores and then race on installing the binary).
kv_tansu_install_running() {
    pgrep -f 'cargo install( .*)? tansu' >/dev/null 2>&1
}

kv_ensure_tansu() {
    [[ -n "$(kv_tansu_path)" ]] && return 0
    if kv_tansu_install_running; then
        kv_log "another 'cargo install tansu' is running; waiting for it to finish"
        while kv_tansu_install_running; do sleep 5; done
        [[ -n "$(kv_tansu_path)" ]] && return 0
        kv_log "that install did not produce a tansu binary; installing it myself"
    fi
    # Default features have no storage engine at all; dynostore gives memory://, libsql
    # gives sqlite://. The first build takes ~14 minutes on 2 cores.
    kv_log "installing the tansu broker $KV_TANSU_VERSION (cargo install, takes ~15 min once)"
    cargo install tansu --locked --version "$KV_TANSU_VERSION" --features dynostore,libsql >&2
    [[ -n "$(kv_tansu_path)" ]] || kv_die "cargo install tansu finished but no tansu binary found"
}

kv_python() { echo "$KV_VENV/bin/python"; }

# The libonnxruntime.so that the onnxruntime wheel in the venv ships (for yolodetect).
kv_ort_library() {
    local libs=("$KV_VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*)
    local lib="${libs[0]}"
    [[ -e "$lib" ]] || kv_die "no libonnxruntime.so in $KV_VENV; run scripts/setup venv"
    echo "$lib"
}

kv_ensure_venv() {
    local py
    py="$(kv_python)"
    if [[ -x "$py" ]] && "$py" -c 'import confluent_kafka, kafka, onnxruntime, onnx, numpy, cv2, onnxruntime_ep_openvino, prometheus_client' >/dev/null 2>&1; then
        return 0
    fi
    if [[ ! -x "$py" ]]; then
        kv_log "creating the Python venv $KV_VENV"
        "${KV_BASE_PYTHON:-python3}" -m venv "$KV_VENV" >&2
    fi
    kv_log "installing ${KV_PY_PACKAGES[*]} into $KV_VENV"
    "$py" -m pip install -q --disable-pip-version-check "${KV_PY_PACKAGES[@]}" >&2
}

# Runs "$@" while holding an exclusive lock, so two scripts started at once (say two
# terminals running scripts/test) don't install the same things concurrently.
kv_with_setup_lock() {
    local lock="${XDG_RUNTIME_DIR:-/tmp}/gst-kafka-vision-setup.lock"
    (
        flock -x 9
        "$@"
    ) 9>"$lock"
}

kv_setup_all() {
    kv_with_setup_lock kv_ensure_debs
    kv_with_setup_lock kv_ensure_broker
    kv_with_setup_lock kv_ensure_venv
}
