#!/usr/bin/env python3
"""Static INT8 (QDQ) quantization of a YOLO ONNX export, calibrated on real frames.

Usage::

    python models/quantize.py MODEL.onnx OUT.onnx --images DIR [options]
    python models/quantize.py MODEL.onnx OUT.onnx --brokers HOST:PORT --topic T \\
        [--frames 100] [--every 1] [--timeout 10] [options]

Input: an ONNX YOLO model with the Ultralytics input convention (one input, float32
``[1, 3, H, W]``, RGB 0..1, letterboxed with 114 padding). Calibration frames are
letterboxed exactly as ``reference.py`` (and the ``yolodetect`` element) does. A dynamic
input (symbolic H/W) is calibrated at ``--imgsz`` or, failing that, the model's ``imgsz``
metadata; the output keeps the dynamic input.

Frames come from EITHER
    ``--images DIR``: the ``.jpg``/``.jpeg``/``.png`` files of DIR (not recursive), read
    with OpenCV; at most ``--frames`` of them, evenly spread over the sorted file names;
OR a Kafka topic (``--brokers``, ``--topic``): records written by ``kafkasink``, read
    from the beginning of every partition without joining a consumer group or committing
    anything. ``kafka_frames.py`` reads them through the elements themselves (``kafkasrc !
    kafkadecodebin ! videoconvert``), so every format the pipeline decodes is a frame (JPEG,
    raw video, H.264, ...); records without an envelope are read as JPEG. It runs under
    ``--gst-python`` (default ``/usr/bin/python3``: Debian's, with PyGObject from
    ``python3-gi`` and ``gir1.2-gstreamer-1.0``) and finds ``kafkasrc`` through
    ``GST_PLUGIN_PATH``. Reading stops after ``--frames`` frames (every ``--every``-th
    decoded frame), once every stream read has sent its end-of-stream record, or when no
    frame arrives for ``--timeout`` seconds.

Quantization: ``onnxruntime.quantization.quantize_static``, QDQ format, weights QInt8
(symmetric; ``--per-channel`` for per-output-channel scales), activations QUInt8 by
default (``--activations qint8`` for S8S8). U8S8 is the pair ONNX Runtime's x86 integer
kernels are built around (VPMADDUBSW, and VPDPBUSD on AVX512-VNNI / AVX-VNNI, which also
removes the U8S8 saturation issue); measured here (ORT 1.31.1, AVX512-VNNI Xeon, 2
threads) the YOLOv8n-sized network runs 1.75x faster than float with U8S8 and 2.2x
SLOWER than float with S8S8. Calibration ``--method minmax`` (default), ``entropy`` or
``percentile`` (``--percentile 99.999``); frames are fed in chunks of up to 8, so the
intermediate tensors of only one chunk are held at a time. The model first goes through
``quant_pre_process`` (symbolic shape inference + ORT's basic graph optimizations; on
failure with fewer steps, then not at all), unless ``--no-preprocess``.

What stays float: ``--keep-float auto`` (the default) applies four rules, ``none`` none
(everything ONNX Runtime can quantize is quantized), or name a subset, e.g.
``--keep-float threshold,index``:
  tail       the decode tail: every node from which no weighted Conv/ConvTranspose/MatMul/
             Gemm (weights a constant initializer) can be reached. In a YOLO export that
             is the DFL softmax, anchor/stride arithmetic, sigmoid and the final Concat that
             puts box coordinates (0..640) and class scores (0..1) into one tensor: one
             8-bit scale for both leaves the scores a single step (~2.5) wide. Cheap and
             precision critical, so float32;
  dfl        a weighted op fed by a Softmax (Ultralytics' DFL: a fixed 1x1 Conv taking the
             expectation of 16 distance bins; its output is a box side in stride units),
             and the tail rule then starts before it;
  threshold  a weighted op whose output reaches a comparison (Greater, Less, Equal, ...,
             Where's condition) through shape-only ops: an 8-bit value moves inputs within
             half a step of the threshold to the other side (in the bright-blob models the
             brightness MatMul: box edges move by one model pixel, 4 px in a 1280x720
             frame, on about 1% of frames);
  index      nodes computing on float tensors made from integers in the graph (Cast from
             an integer type, Range): pixel coordinates and indices, which need more than 8
             bits (0..319 in 8 bits is a 1.25 px step). Found in the original graph too,
             since the pre-processing folds a static model's Range/Cast into constants.
For a real YOLO export ``auto`` quantizes the backbone, neck and head convolutions and
keeps the decode float. In the bright-blob models everything after the first MatMul is
decode, so ``auto`` quantizes nothing (and says so); ``--keep-float threshold,index``
quantizes their score path (cell brightness -> sigmoid -> score) and nothing that
touches a box. ``--exclude-nodes A,B`` and ``--exclude-op-types T,U`` keep more float;
the names are checked against the model.

The output carries the input model's ``metadata_props`` unchanged (``names``, ``imgsz``,
``stride``, ``task``, ...) plus a ``quantization`` entry saying how it was made.

Errors in what the user gave (missing or empty folder, unreadable model, unreachable
broker, empty topic, bad option) print one line ``quantize.py: error: ...`` and exit with
status 2; nothing is written then.
"""

import argparse
import contextlib
import logging
import math
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import reference as R  # noqa: E402  (the letterbox the element uses)

PROG = "quantize.py"
EXIT_USER_ERROR = 2
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
WEIGHTED_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
COMPARISON_OPS = {"Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Equal"}
# Ops that only move or select values: a threshold after them is a threshold on their input.
SHAPE_ONLY_OPS = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity",
                  "Slice", "Gather", "Split", "Concat", "Expand", "Tile", "Pad", "Resize"}
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
                 "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}
CALIBRATION_CHUNK = 8   # frames per calibration pass (bounds the memory of intermediate tensors)


class UserError(Exception):
    """Something wrong with what the user asked for: reported without a traceback."""


def info(msg):
    print(f"{PROG}: {msg}", file=sys.stderr)


# ------------------------------------------------------------------------- frames ---

def read_image_rgb(path):
    """RGB uint8 [H, W, 3], or None when OpenCV cannot read it."""
    import cv2
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        return None
    return np.ascontiguousarray(img[:, :, ::-1])


def list_images(folder):
    if not os.path.exists(folder):
        raise UserError(f"image folder {folder!r} does not exist")
    if not os.path.isdir(folder):
        raise UserError(f"{folder!r} is not a folder")
    try:
        names = os.listdir(folder)
    except OSError as e:
        raise UserError(f"cannot list {folder!r}: {e.strerror}") from None
    paths = sorted(os.path.join(folder, n) for n in names
                   if n.lower().endswith(IMAGE_EXTENSIONS)
                   and os.path.isfile(os.path.join(folder, n)))
    if not paths:
        raise UserError(f"no .jpg/.jpeg/.png images in {folder!r}")
    return paths


def spread(items, n):
    """At most n items, evenly spread (first and last kept)."""
    if len(items) <= n:
        return list(items)
    if n == 1:
        return [items[0]]
    idx = np.round(np.linspace(0, len(items) - 1, n)).astype(int)
    return [items[i] for i in idx]


def folder_frames(folder, limit, what="calibration frame(s)"):
    paths = spread(list_images(folder), limit)
    frames, bad = [], []
    for p in paths:
        img = read_image_rgb(p)
        if img is None:
            bad.append(os.path.basename(p))
        else:
            frames.append(img)
    if bad:
        info(f"skipped {len(bad)} unreadable image(s): {', '.join(bad[:5])}"
             f"{' ...' if len(bad) > 5 else ''}")
    if not frames:
        raise UserError(f"none of the {len(paths)} image file(s) in {folder!r} could be read")
    info(f"{len(frames)} {what} from {folder}")
    return frames


# --- frames of a Kafka topic, decoded by the elements --------------------------------

FRAME_READER = os.path.join(HERE, "kafka_frames.py")
GST_PYTHON = "/usr/bin/python3"        # Debian's, where python3-gi puts PyGObject
FRAME_HEADER = struct.Struct("<4sII")   # kafka_frames.py's framing: b"GKVF", width, height


def read_exactly(stream, n):
    data = stream.read(n)
    return data if len(data) == n else None


def kafka_frames(brokers, topic, limit, every, timeout, python=GST_PYTHON):
    """Up to `limit` RGB frames of `topic`, from the start of every partition, read by
    kafka_frames.py (kafkasrc ! kafkadecodebin ! videoconvert) under `python`, a Python
    with PyGObject."""
    if not os.path.isfile(python):
        raise UserError(f"no Python at {python!r} to read Kafka with: give one with "
                        "PyGObject (Debian's python3-gi) as --gst-python")
    argv = [python, FRAME_READER, "--brokers", brokers, "--topic", topic,
            "--frames", str(limit), "--every", str(every), "--timeout", f"{timeout:g}"]
    frames = []
    with tempfile.TemporaryFile() as errors:
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors) as reader:
            while True:
                header = read_exactly(reader.stdout, FRAME_HEADER.size)
                if header is None:
                    break
                magic, width, height = FRAME_HEADER.unpack(header)
                rows = read_exactly(reader.stdout, width * height * 3) if magic == b"GKVF" \
                    else None
                if rows is None:
                    reader.kill()
                    raise UserError(f"{FRAME_READER} wrote a broken frame")
                frames.append(np.frombuffer(rows, np.uint8).reshape(height, width, 3))
        errors.seek(0)
        said = errors.read().decode("utf-8", "replace").strip().splitlines()
    if reader.returncode != 0:
        why = said[-1].removeprefix("kafka_frames.py: error: ") if said else \
            f"exit status {reader.returncode}"
        raise UserError(f"{why} (quantize.py sets kafkasrc's 'brokers', 'topic' and "
                        "'connect-timeout' from --brokers, --topic and --timeout, and runs "
                        "the pipeline under --gst-python)")
    if not frames:
        raise UserError(f"no frames in topic {topic!r} on {brokers} within {timeout:g} s "
                        "(records written by kafkasink, or plain JPEG values, are read)")
    info(f"{len(frames)} calibration frame(s) from topic {topic} (every {every})")
    return frames


# -------------------------------------------------------------------------- model ---

def load_model(path):
    import onnx
    if not os.path.isfile(path):
        raise UserError(f"model {path!r} does not exist")
    try:
        model = onnx.load(path)
    except Exception as e:  # noqa: BLE001  (protobuf raises various types)
        raise UserError(f"cannot read {path!r} as an ONNX model: {type(e).__name__}: {e}") from None
    if not model.graph.node:
        raise UserError(f"{path!r} has no graph nodes: not an ONNX model?")
    done = {n.op_type for n in model.graph.node} & QUANTIZED_OPS
    if done:
        raise UserError(f"{path!r} is already quantized (it has {', '.join(sorted(done))} "
                        f"nodes); give the float model")
    return model


def model_input(model, imgsz_arg):
    """(input name, (Hm, Wm) for calibration, dynamic?) after checking the convention."""
    from onnx import TensorProto
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise UserError(f"the model has {len(inputs)} inputs; a YOLO export has exactly one")
    inp = inputs[0]
    tt = inp.type.tensor_type
    if tt.elem_type != TensorProto.FLOAT:
        raise UserError(f"input {inp.name!r} is not float32 (already quantized, or float16?)")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    if len(dims) != 4 or dims[1] not in (3, None) or dims[0] not in (1, None):
        raise UserError(f"input {inp.name!r} has shape {dims}; expected [1, 3, H, W]")
    meta = {p.key: p.value for p in model.metadata_props}
    meta_sz = R.parse_imgsz(meta["imgsz"]) if "imgsz" in meta else None
    static = dims[2] is not None and dims[3] is not None and dims[2] > 0 and dims[3] > 0
    if static:
        size = (dims[2], dims[3])
        if imgsz_arg is not None and imgsz_arg != size:
            raise UserError(f"--imgsz {imgsz_arg[0]}x{imgsz_arg[1]} but the model input is fixed "
                            f"at {size[0]}x{size[1]}")
    elif imgsz_arg is not None:
        size = imgsz_arg
    elif meta_sz is not None:
        size = meta_sz
    else:
        raise UserError("the model input has a dynamic size and no imgsz metadata: pass --imgsz")
    return inp.name, size, not static


def parse_rules(text):
    t = text.strip().lower()
    if t == "auto":
        return RULES
    if t == "none":
        return ()
    rules = tuple(r.strip() for r in t.split(",") if r.strip())
    bad = [r for r in rules if r not in RULES]
    if bad or not rules:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected auto, none or a comma-separated subset of {','.join(RULES)}")
    return rules


def parse_imgsz_arg(text):
    m = re.fullmatch(r"\s*(\d+)\s*(?:[x,]\s*(\d+)\s*)?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: expected N or HxW, e.g. 640 or 384x640")
    h = int(m.group(1))
    w = int(m.group(2)) if m.group(2) else h
    if not (32 <= h <= 8192 and 32 <= w <= 8192):
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be 32..8192")
    return h, w


# --------------------------------------------------------------- what stays float ---

def _consumers(model):
    cons = {}
    for n in model.graph.node:
        for i in n.input:
            if i:
                cons.setdefault(i, []).append(n)
    return cons


def _is_weighted(node, inits):
    """Conv/Gemm with constant weights, MatMul with a constant on either side."""
    if node.op_type not in WEIGHTED_OPS or len(node.input) < 2:
        return False
    if node.op_type == "MatMul":
        return node.input[0] in inits or node.input[1] in inits
    return node.input[1] in inits


RULES = ("tail", "dfl", "threshold", "index")
INT_TYPES = None   # filled lazily: onnx integer element types
# Inputs that are parameters (shapes, pads, indices, scales), not data, per op type.
DATA_INPUTS = {"Resize": {0}, "Pad": {0}, "Slice": {0}, "Reshape": {0}, "Expand": {0},
               "Tile": {0}, "TopK": {0}, "Gather": {0}, "GatherElements": {0}, "Split": {0},
               "Squeeze": {0}, "Unsqueeze": {0}, "Clip": {0}, "ConstantOfShape": set()}


def _int_types():
    global INT_TYPES
    if INT_TYPES is None:
        from onnx import TensorProto as T
        INT_TYPES = {T.INT8, T.INT16, T.INT32, T.INT64, T.UINT8, T.UINT16, T.UINT32, T.UINT64}
    return INT_TYPES


def _reaches_through_shape_ops(start_outputs, cons, hit):
    """First consumer c (BFS through SHAPE_ONLY_OPS) with hit(c, tensor) true, or None."""
    stack, seen = list(start_outputs), set()
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        for c in cons.get(t, []):
            if hit(c, t):
                return c
            if c.op_type in SHAPE_ONLY_OPS:
                stack.extend(c.output)
    return None


def auto_float_nodes(model, rules=RULES):
    """{node name: reason} for the nodes the chosen rules keep float (module docstring)."""
    inits = {t.name for t in model.graph.initializer}
    cons = _consumers(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    nodes = list(model.graph.node)
    out = {}
    weighted = {n.name for n in nodes if _is_weighted(n, inits)}

    # dfl: a weighted op fed by a Softmax (through shape ops): Ultralytics' DFL, the
    # expectation over 16 distance bins; its output is a box distance
    dfl = set()
    for n in nodes:
        if n.name not in weighted:
            continue
        stack, seen = [i for i in n.input if i not in inits], set()
        while stack:
            t = stack.pop()
            p = producer.get(t)
            if p is None or t in seen:
                continue
            seen.add(t)
            if p.op_type == "Softmax":
                dfl.add(n.name)
                break
            if p.op_type in SHAPE_ONLY_OPS:
                stack.extend(i for i in p.input[:1] if i)
    if "dfl" in rules:
        for name in dfl:
            out[name] = "DFL (weighted op on a Softmax: box distances)"

    # tail: nodes from which no (non-DFL) weighted op is reachable; reverse topological
    # sweep (ONNX graphs list nodes in topological order)
    if "tail" in rules:
        learned = weighted - dfl if "dfl" in rules else weighted
        reaches = {}
        for n in reversed(nodes):
            reaches[n.name] = any(c.name in learned or reaches.get(c.name, False)
                                  for o in n.output for c in cons.get(o, []))
        for n in nodes:
            if not reaches[n.name] and n.name not in learned:
                out.setdefault(n.name, "decode tail (no Conv/MatMul/Gemm after it)")

    # threshold: a weighted op whose output is compared (through shape-only ops)
    if "threshold" in rules:
        for n in nodes:
            if n.name not in weighted:
                continue
            c = _reaches_through_shape_ops(
                n.output, cons,
                lambda c, t: (c.op_type in COMPARISON_OPS
                              or (c.op_type == "Where" and c.input[0] == t)))
            if c is not None:
                out.setdefault(n.name, f"output thresholded by {c.op_type} {c.name}")

    # index: float tensors made from integers in the graph (Cast from an integer type,
    # Range) are pixel coordinates or indices; every node computing on them, through data
    # inputs, stays float (not past a weighted op)
    if "index" in rules:
        import onnx
        int_types = _int_types()
        try:
            typed = onnx.shape_inference.infer_shapes(model)
        except Exception:  # noqa: BLE001  (then only the types already recorded)
            typed = model
        elem = {}
        for vi in list(typed.graph.value_info) + list(typed.graph.input) + list(typed.graph.output):
            elem[vi.name] = vi.type.tensor_type.elem_type
        for t in model.graph.initializer:
            elem[t.name] = t.data_type
        derived = set()
        for n in nodes:
            if n.op_type == "Cast" and elem.get(n.input[0]) in int_types:
                derived.update(n.output)
                continue
            if n.op_type == "Range" and elem.get(n.output[0]) not in int_types:
                derived.update(n.output)
                continue
            data = DATA_INPUTS.get(n.op_type)
            ins = [i for k, i in enumerate(n.input) if i and (data is None or k in data)]
            if n.name not in weighted and any(i in derived for i in ins):
                derived.update(n.output)
                out.setdefault(n.name, "computes on in-graph coordinates/indices")
    return out


# ------------------------------------------------------------------- quantization ---

def make_reader(frames, input_name, size):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        """Letterboxes frames on demand (reference.py's letterbox); supports the chunked
        ('strided') calibration of quantize_static."""

        def __init__(self):
            self.start, self.end = 0, len(frames)
            self.i = 0

        def __len__(self):
            return len(frames)

        def set_range(self, start_index, end_index):
            self.start, self.end = start_index, min(end_index, len(frames))
            self.i = self.start

        def get_next(self):
            if self.i >= self.end:
                return None
            x = R.letterbox(frames[self.i], size[0], size[1])[0]
            self.i += 1
            return {input_name: x}

        def rewind(self):
            self.i = self.start

    return Reader()


def chunk_size(n, target=CALIBRATION_CHUNK):
    """quantize_static wants a chunk size that divides the frame count."""
    return max(d for d in range(1, min(n, target) + 1) if n % d == 0)


def preprocess(src_path, dst_path):
    """quant_pre_process (symbolic shape inference + basic optimizations); falls back to
    fewer steps, then to the model itself, when a step fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process
    for kwargs in ({}, {"skip_symbolic_shape": True}):
        try:
            quant_pre_process(src_path, dst_path, **kwargs)
            return dst_path, ("pre-processed" if not kwargs else
                              "pre-processed without symbolic shape inference")
        except Exception as e:  # noqa: BLE001
            reason = f"{type(e).__name__}: {e}"
    info(f"quant_pre_process failed ({reason[:200]}); quantizing the model as it is")
    return src_path, "not pre-processed"


def quantize(args, frames):
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = load_model(args.model)
    input_name, size, dynamic = model_input(model, args.imgsz)
    info(f"model {args.model}: input {input_name!r} "
         f"{'dynamic, calibrated at' if dynamic else 'fixed'} {size[0]}x{size[1]}")

    with tempfile.TemporaryDirectory(prefix="gkv-quantize-") as tmp:
        src = args.model
        how = "not pre-processed"
        if args.preprocess:
            src, how = preprocess(args.model, os.path.join(tmp, "pre.onnx"))
        work = onnx.load(src)
        names = {n.name for n in work.graph.node}
        orig_names = {n.name for n in model.graph.node}
        op_types = {n.op_type for n in work.graph.node}

        float_nodes = {}
        if args.keep_float:
            float_nodes.update(auto_float_nodes(work, args.keep_float))
            if "index" in args.keep_float and src != args.model:
                # the pre-processing folds a static model's Range/Cast into constants:
                # find the coordinate computations in the original graph too
                for name, why in auto_float_nodes(model, ("index",)).items():
                    if name in names:
                        float_nodes.setdefault(name, why)
        for name in args.exclude_nodes:
            if name in names:
                float_nodes[name] = "--exclude-nodes"
            elif name in orig_names:
                info(f"--exclude-nodes {name}: folded away by the pre-processing "
                     f"(try --no-preprocess)")
            else:
                raise UserError(f"--exclude-nodes {name}: no node of that name in the model")
        for t in args.exclude_op_types:
            if t not in op_types and t not in {n.op_type for n in model.graph.node}:
                raise UserError(f"--exclude-op-types {t}: no {t} node in the model")
            for n in work.graph.node:
                if n.op_type == t:
                    float_nodes[n.name] = "--exclude-op-types"

        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[args.method]
        act = QuantType.QUInt8 if args.activations == "quint8" else QuantType.QInt8
        extra = {"CalibStridedMinMax": chunk_size(len(frames))}
        if args.method == "percentile":
            extra["CalibPercentile"] = args.percentile
        out_tmp = os.path.join(tmp, "int8.onnx")
        t0 = time.perf_counter()
        # onnxruntime.quantization logs its advice through the root logger; keep stderr to ours
        root = logging.getLogger()
        old_level = root.level
        root.setLevel(logging.ERROR)
        try:
            # the histogram calibrators print progress on stdout: keep stdout for our result
            with contextlib.redirect_stdout(sys.stderr):
                quantize_static(src, out_tmp, make_reader(frames, input_name, size),
                                quant_format=QuantFormat.QDQ, per_channel=args.per_channel,
                                activation_type=act, weight_type=QuantType.QInt8,
                                nodes_to_exclude=sorted(float_nodes), calibrate_method=method,
                                extra_options=extra)
        finally:
            root.setLevel(old_level)
        secs = time.perf_counter() - t0

        q = onnx.load(out_tmp)
        counts = Counter(n.op_type for n in q.graph.node)
        n_q = counts.get("QuantizeLinear", 0)
        # ops fed by a DequantizeLinear (what ORT can turn into integer kernels)
        dq_out = {n.output[0] for n in q.graph.node if n.op_type == "DequantizeLinear"}
        int_ops = Counter(n.op_type for n in q.graph.node
                          if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                          and any(i in dq_out for i in n.input))
        del q.metadata_props[:]
        for p in model.metadata_props:
            if p.key != "quantization":
                q.metadata_props.add(key=p.key, value=p.value)
        excluded_types = Counter(n.op_type for n in work.graph.node if n.name in float_nodes)
        kept_types = ", ".join(f"{k} {v}" for k, v in sorted(excluded_types.items()))
        desc = (f"static INT8 QDQ by models/quantize.py from {os.path.basename(args.model)}: "
                f"weights int8{' per-channel' if args.per_channel else ''}, activations "
                f"{'uint8' if act == QuantType.QUInt8 else 'int8'}, {args.method} calibration on "
                f"{len(frames)} frame(s) letterboxed to {size[0]}x{size[1]}; {len(float_nodes)} "
                f"node(s) kept float ({kept_types or 'none'}); "
                f"{how}")
        q.metadata_props.add(key="quantization", value=desc)
        out_dir = os.path.dirname(os.path.abspath(args.output))
        os.makedirs(out_dir, exist_ok=True)
        data = q.SerializeToString()
        tmp_out = os.path.join(out_dir, f".{os.path.basename(args.output)}.tmp{os.getpid()}")
        with open(tmp_out, "wb") as f:
            f.write(data)

    # the result must load and produce the float model's output shapes
    try:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.log_severity_level = 3
        fs = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
        qs = ort.InferenceSession(tmp_out, so, providers=["CPUExecutionProvider"])
        x = R.letterbox(frames[0], size[0], size[1])[0]
        fo = [o.shape for o in fs.run(None, {input_name: x})]
        qo = [o.shape for o in qs.run(None, {input_name: x})]
        if fo != qo:
            raise RuntimeError(f"output shapes differ: float {fo}, int8 {qo}")
    except Exception:
        os.unlink(tmp_out)
        raise
    os.replace(tmp_out, args.output)

    info(f"calibration + quantization {secs:.1f} s ({args.method}, {len(frames)} frame(s))")
    info(f"kept float: {len(float_nodes)} node(s)"
         + (": " + ", ".join(f"{n} {t}" for t, n in sorted(excluded_types.items()))
            if float_nodes else ""))
    if args.verbose:
        by_reason = {}
        for name, why in float_nodes.items():
            by_reason.setdefault(why, []).append(name)
        for why, ns in sorted(by_reason.items()):
            info(f"  {why}: {', '.join(sorted(ns))}")
    if n_q == 0:
        info("warning: nothing was quantized (every quantizable node is kept float); "
             "the output computes what the float model does")
    else:
        info(f"quantized: {n_q} QuantizeLinear, {counts.get('DequantizeLinear', 0)} "
             f"DequantizeLinear; ops on dequantized inputs: "
             + ", ".join(f"{n} {t}" for t, n in sorted(int_ops.items())))
    print(f"wrote {args.output} ({len(data)} bytes)")
    return 0


# --------------------------------------------------------------------------- main ---

def build_parser():
    ap = argparse.ArgumentParser(
        prog=PROG, description="Static INT8 QDQ quantization of a YOLO ONNX model, calibrated "
        "on frames from an image folder or a Kafka topic.",
        epilog="See the module docstring (head of models/quantize.py) for the details.")
    ap.add_argument("model", help="float ONNX model (Ultralytics input convention)")
    ap.add_argument("output", help="where to write the INT8 QDQ model")
    src = ap.add_argument_group("calibration frames (one source)")
    src.add_argument("--images", metavar="DIR", help="folder of .jpg/.jpeg/.png frames")
    src.add_argument("--brokers", metavar="HOST:PORT[,...]", help="Kafka bootstrap servers")
    src.add_argument("--topic", help="Kafka topic with frames (kafkasink records)")
    src.add_argument("--frames", type=int, default=100, metavar="N",
                     help="use at most N frames (default 100)")
    src.add_argument("--every", type=int, default=1, metavar="K",
                     help="Kafka: take every K-th decoded frame (default 1)")
    src.add_argument("--timeout", type=float, default=10.0, metavar="S",
                     help="Kafka: give up after S seconds without a frame (default 10)")
    src.add_argument("--gst-python", default=GST_PYTHON, metavar="PATH",
                     help="Kafka: a Python with PyGObject and GStreamer to read the topic "
                     f"(default {GST_PYTHON})")
    q = ap.add_argument_group("quantization")
    q.add_argument("--imgsz", type=parse_imgsz_arg, metavar="N|HxW",
                   help="calibration input size of a dynamic-input model "
                   "(default: its imgsz metadata)")
    q.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax",
                   help="calibration method (default minmax)")
    q.add_argument("--percentile", type=float, default=99.999,
                   help="percentile of --method percentile (default 99.999)")
    q.add_argument("--activations", choices=("quint8", "qint8"), default="quint8",
                   help="activation type (default quint8: U8S8, ORT's native x86 pair)")
    q.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    q.add_argument("--keep-float", type=parse_rules, default=RULES, metavar="RULES",
                   help="automatic rules for nodes kept float: auto (= tail,dfl,threshold,"
                   "index; the default), none, or a comma-separated subset")
    q.add_argument("--exclude-nodes", default="", metavar="A,B",
                   help="comma-separated node names to keep float")
    q.add_argument("--exclude-op-types", default="", metavar="T,U",
                   help="comma-separated op types to keep float, e.g. Concat,Sigmoid")
    q.add_argument("--no-preprocess", dest="preprocess", action="store_false",
                   help="skip onnxruntime's quant_pre_process")
    q.add_argument("-v", "--verbose", action="store_true", help="list the float nodes")
    return ap


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    if (args.images is None) == (args.brokers is None and args.topic is None):
        ap.error("give exactly one frame source: --images DIR, or --brokers and --topic")
    if args.images is None and (not args.brokers or not args.topic):
        ap.error("Kafka needs both --brokers and --topic")
    if args.frames < 1 or args.every < 1:
        ap.error("--frames and --every must be at least 1")
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        ap.error("--timeout must be a positive number of seconds")
    if not 0 < args.percentile <= 100:
        ap.error("--percentile must be in (0, 100]")
    args.exclude_nodes = [s.strip() for s in args.exclude_nodes.split(",") if s.strip()]
    args.exclude_op_types = [s.strip() for s in args.exclude_op_types.split(",") if s.strip()]
    try:
        if os.path.abspath(args.output) == os.path.abspath(args.model):
            raise UserError("the output would overwrite the input model")
        load_model(args.model)                      # fail early, before reading frames
        if args.images is not None:
            frames = folder_frames(args.images, args.frames)
        else:
            frames = kafka_frames(args.brokers, args.topic, args.frames, args.every, args.timeout,
                                  args.gst_python)
        return quantize(args, frames)
    except UserError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
