#!/usr/bin/env python3
"""Does batching frames of several cameras into one run pay on this CPU?

Usage::

    python models/batching.py [--models models/generated] [--batches 1,2,4] [--seconds 4]

For each YOLOv8n-sized bench model (``yolov8n-random-<size>.onnx``, from
``make_models.py --bench``) it writes batch-N copies into a temporary folder (input, output
and the leading 1 of every Reshape shape set to N), then times ms per frame on the CPU
provider and on OpenVINO f32 (the ``onnxruntime-ep-openvino`` plugin), 2 threads, three
rounds, and prints a Markdown table with each batch's frames/s against batch 1.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

OPENVINO = "OpenVINOExecutionProvider"


def with_batch(src, n, out_dir):
    """A copy of the model at `src` that takes and returns `n` frames at once."""
    model = onnx.load(src)
    graph = model.graph
    shapes = {node.input[1] for node in graph.node if node.op_type == "Reshape"}

    def rebatched(array):
        if array.ndim == 1 and array.size >= 2 and array[0] == 1:
            array = array.copy()
            array[0] = n
        return array

    for init in graph.initializer:
        if init.name in shapes:
            init.CopyFrom(numpy_helper.from_array(rebatched(numpy_helper.to_array(init)), init.name))
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] in shapes:
            for attr in node.attribute:
                if attr.name == "value":
                    attr.t.CopyFrom(numpy_helper.from_array(rebatched(numpy_helper.to_array(attr.t))))
    for value in list(graph.input) + list(graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = n
    del graph.value_info[:]
    path = os.path.join(out_dir, os.path.basename(src).replace(".onnx", f"-b{n}.onnx"))
    onnx.save(model, path)
    return path


def machine_line():
    """The CPU model, cores and the instruction sets that decide speeds here."""
    fields = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    flags = fields.get("flags", "").split()
    sets = ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"]
    has = " ".join(s for s in sets if s in flags) or "none"
    lacks = " ".join(s for s in sets if s not in flags) or "none"
    return (f"machine: {fields.get('model name', 'unknown CPU')}, {os.cpu_count()} cores; "
            f"has {has}; lacks {lacks}")


def openvino_cpu_devices():
    return [d for d in ort.get_ep_devices()
            if d.ep_name == OPENVINO and d.ep_metadata.get("ov_device") == "CPU"]


def session(path, openvino, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not openvino:
        return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    devices = openvino_cpu_devices()
    config = ('{"CPU": {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", '
              f'"INFERENCE_NUM_THREADS": {threads}}}}}')
    options.add_provider_for_devices(devices, {"load_config": config})
    return ort.InferenceSession(path, sess_options=options)


def ms_per_frame(path, openvino, threads, seconds):
    s = session(path, openvino, threads)
    shape = s.get_inputs()[0].shape
    frames = np.full(shape, 0.5, np.float32)
    s.run(None, {s.get_inputs()[0].name: frames})
    started, runs = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        s.run(None, {s.get_inputs()[0].name: frames})
        runs += 1
    return (time.perf_counter() - started) / runs / shape[0] * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "generated"))
    ap.add_argument("--batches", default="1,2,4")
    ap.add_argument("--sizes", default="320,640")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(machine_line())
    batches = [int(b) for b in args.batches.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    try:
        import onnxruntime_ep_openvino
        ort.register_execution_provider_library(OPENVINO, onnxruntime_ep_openvino.get_library_path())
        providers = [False, True]
        if not openvino_cpu_devices():
            print("not run: OpenVINO rows: its plugin offers no device on this CPU", file=sys.stderr)
            providers = [False]
    except ImportError:
        print("onnxruntime-ep-openvino is not installed: CPU provider only", file=sys.stderr)
        providers = [False]
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for size in sizes:
            src = os.path.join(args.models, f"yolov8n-random-{size}.onnx")
            if not os.path.isfile(src):
                sys.exit(f"batching.py: error: no {src} (python models/make_models.py --bench)")
            for n in batches:
                paths[(size, n)] = src if n == 1 else with_batch(src, n, tmp)
        times = {}
        for _ in range(args.rounds):
            for openvino in providers:
                for key, path in paths.items():
                    times.setdefault((openvino, key), []).append(
                        ms_per_frame(path, openvino, args.threads, args.seconds))
    print(f"\nBatch of N frames per run, YOLOv8n-sized model, {args.threads} threads, "
          f"median of {args.rounds} rounds\n")
    print("| provider | size | batch | ms per frame | frames/s | vs batch 1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for openvino in providers:
        for size in sizes:
            single = statistics.median(times[(openvino, (size, batches[0]))])
            for n in batches:
                ms = statistics.median(times[(openvino, (size, n))])
                name = "OpenVINO f32" if openvino else "CPU fp32"
                print(f"| {name} | {size} | {n} | {ms:.1f} | {1000 / ms:.1f} | {single / ms:.2f} |")


if __name__ == "__main__":
    main()
