#!/usr/bin/env python3
"""Build the project's own small YOLO-format ONNX models (no downloaded weights).

Usage::

    python models/make_models.py [--out-dir models] [--bench]

Without ``--bench`` this (re)writes the four small "bright blob" detectors below. They
are built only from ``onnx.helper``/``numpy_helper`` calls, have no random parts and
are written byte-identically on every run, so they are committed. With ``--bench`` it
*also* writes ``<out-dir>/generated/yolov8n-random-640.onnx`` (gitignored, ~15 MB): a
network with the layer shapes and compute of YOLOv8n at 640 and random weights, and
``yolov8n-random-320.onnx``, the same network at input 320 (a quarter of the compute).

All models: ONNX opset 17, IR version 8 (loads in onnxruntime >= 1.13, incl. 1.31).

Input convention (Ultralytics): one input ``images``, float32 ``[1, 3, H, W]``, RGB,
values 0..1 (pixel / 255), letterboxed with padding 114/255. Metadata in
``metadata_props`` like an Ultralytics export: ``description``, ``author``, ``task``
(``detect``), ``batch`` (``1``), ``stride`` (``32``), ``imgsz`` (``[H, W]``) and,
except for ``blob-yolo26.onnx``, ``names`` as a Python dict literal
(``{0: 'person', 1: 'bicycle', ...}``).

The bright-blob detectors (input 320x320)
=========================================

Every blob model computes the same per-cell quantities (all in INPUT pixels of the
letterboxed image, pixel ``x`` covering ``[x, x+1)``):

1. brightness ``B = mean(R, G, B)`` (a ``MatMul`` of [1/3, 1/3, 1/3] with the image as
   [3, H*W]), ``bright = B > 0.5`` (so the letterbox grey 114/255 = 0.447 counts as dark);
2. run extents, only along the rows and columns that hold cell centres (step 3; 70 rows
   and 70 columns at 320): ``L[y,x]`` = index of the last dark pixel at or left of ``x``
   in row ``y`` (-1 if none), ``R[y,x]`` = first dark pixel at or right of ``x`` (``W`` if
   none), ``T``/``D`` the same upwards/downwards in column ``x`` (-1 / ``H`` if none).
   Computed as running maxima of ``where(bright, -1, index)`` (``R``/``D`` on the flipped
   map, as a second channel of the same scan) by log2 doubling: ``Max(v, v shifted by
   d)`` for d = 1, 2, 4, ..., shifts by ``Pad`` + ``Slice``; 9 steps for a fixed 320 input,
   12 for the dynamic model (runs up to 4096 px);
3. cells: for each head stride ``s`` (8, 16, 32 -> 40x40 + 20x20 + 10x10 = 2100 cells at
   320) the cell ``(i, j)`` samples its centre pixel ``(py, px) = (s*i + s/2, s*j + s/2)``;
   its box is the bright run through that pixel along its row and along its column:
   ``x1 = L[py,px] + 1, x2 = R[py,px], y1 = T[py,px] + 1, y2 = D[py,px]``.
   For an axis-aligned uniform bright rectangle every cell whose centre pixel lies inside
   it gets exactly the rectangle's edges (to the pixel; within 1 px where a letterbox
   resize leaves a partially covered edge row/column);
4. score: ``sigmoid(12 * (avg - 0.5)) * bright[py,px] * sqrt(ctr_x * ctr_y)`` with
   ``avg`` = mean brightness of the cell (``AveragePool`` s x s, stride s; the coarser
   heads pool the finer map) and the FCOS centerness ``ctr_x = min(l, r) / max(l, r)``,
   ``l = px + 0.5 - x1``, ``r = x2 - (px + 0.5)`` (``ctr_y`` likewise), so cells whose
   centre pixel is dark score exactly 0 and the most central cell of a blob scores
   highest. A white square >= 48 px scores >= 0.70 at its best stride-8 cell (x 0.9 in
   the YOLOv5 model); a black frame scores 0 everywhere.

``blob-yolov8.onnx`` (YOLOv8/v9/v11 layout)
    output ``output0`` float32 ``[1, 84, 2100]`` channel-major: rows 0..3 = cx, cy, w, h
    (``w = max(x2 - x1, 0)``), rows 4..83 = the 80 COCO class scores: class 32
    ('sports ball') = score, all others exactly 0. ``names`` = the 80 COCO names.
``blob-yolov8-dynamic.onnx``
    the same graph with input ``[1, 3, 'height', 'width']`` and output
    ``[1, 84, 'anchors']``; works for any height/width that is a multiple of 32
    (anchors = (H*W/64) * (1 + 1/4 + 1/16)); ``imgsz`` metadata ``[320, 320]``.
``blob-yolov5.onnx`` (YOLOv5 layout)
    output ``output0`` float32 ``[1, 2100, 8]``: cx, cy, w, h, objectness (= score),
    then 3 class probabilities that are constants: ball 0.9, dark 0.0, other 0.05. The
    final YOLOv5 score is therefore 0.9 * objectness (class 0 'ball'); objectness alone or
    the class probability alone are both wrong answers. ``names`` =
    ``{0: 'ball', 1: 'dark', 2: 'other'}``.
``blob-yolo26.onnx`` (end-to-end YOLOv10/YOLO26 layout, no NMS needed)
    output ``output0`` float32 ``[1, 300, 6]``: x1, y1, x2, y2, score, class id (32.0).
    Only the stride-8 head (1600 cells). A cell is kept only if its score is a local
    maximum of the 40x40 score map: strictly greater than its 4 neighbours that come
    before it in raster order (up-left, up, up-right, left) and >= its 4 later neighbours
    (the exact tie-break replaces "equals its 3x3 max-pool", which would keep every cell of
    a plateau). Kept scores -> ``TopK(300)``; rows that are not kept have score 0 and box
    0,0,0,0. No ``names`` metadata (a consumer falls back to COCO: class 32 is
    'sports ball'); ``end2end`` = ``True``.

Design limits: boxes are exact for axis-aligned rectangles; for a disc they are the
chords through the cell centre (the most central cell gives the diameter); concave or
touching blobs may give extra boxes. Two blobs with dark pixels between them along the
rows and columns are separate.

The bench model (``--bench``)
=============================

``generated/yolov8n-random-640.onnx``: YOLOv8n's architecture (width 0.25, depth 0.33)
with BatchNorm folded into the convolutions and random weights (numpy seed 8):
Conv(k3,s2) stem 16 -> 32, C2f(32, n=1), Conv -> 64, C2f(64, n=2), Conv -> 128,
C2f(128, n=2), Conv -> 256, C2f(256, n=1), SPPF(256, k=5), a PAN neck (2x nearest
upsample + concat + C2f without shortcut; stride-2 convs back down) and the decoupled
Detect head (per level: box branch 3x3 conv -> 3x3 conv -> 1x1 conv to 64 = 4 x 16 DFL
bins; class branch 3x3 -> 3x3 -> 1x1 conv to 80), DFL softmax + expectation, distances
-> cx, cy, w, h in input pixels using the 8400 anchor centres, sigmoid class scores.
Activations are SiLU (``x * Sigmoid(x)``, as Ultralytics exports it). Output
``output0`` ``[1, 84, 8400]``; 3,151,888 parameters (YOLOv8n fused: 3,151,904, the 16
more being its fixed DFL conv).

Random weights: N(0, 1/fan_in), then a BatchNorm-like calibration run with onnxruntime
(each conv rescaled so its output channels have mean 0 / std 1 over six deterministic
synthetic 640x640 images; the DFL logits std 2, the class-conv outputs std 0.3), so all
activations stay finite. A random deep network barely depends on its input, so the class
logits also get a fixed additive prior (``class_prior`` initializer, [1, 80, 8400]): 0 on
140 (anchor, class) pairs forming 10 clusters of 14 overlapping anchors, -10 elsewhere.
Every frame therefore yields about 140 candidates above conf 0.25 and ~30 boxes after
per-class NMS 0.45: a realistic, nearly frame-independent NMS load, never thousands.
The 320 variant is built the same way at 320 (same seed, so the same weights before the
calibration, which then runs on 320x320 images; its class prior is laid on the 40x40 /
20x20 / 10x10 grids: output ``[1, 84, 2100]``, same parameter count, 2.2 GFLOPs).
Building both takes ~15 s (calibration). The script prints their FLOP estimates (2 x
multiply-accumulates of all Conv layers, the way Ultralytics counts: YOLOv8n is reported
as 8.7 GFLOPs at 640).
"""

import argparse
import math
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8

COCO80 = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
]
assert len(COCO80) == 80 and COCO80[32] == "sports ball"

BALL_CLASS = 32          # COCO 'sports ball'
BRIGHT_THRESHOLD = 0.5   # mean(R,G,B) in 0..1
SCORE_SLOPE = 12.0       # sigmoid(SCORE_SLOPE * (cell mean brightness - 0.5))
V5_CLASS_PROBS = [0.9, 0.0, 0.05]  # ball, dark, other
E2E_MAX_DET = 300
INT64_MAX = np.iinfo(np.int64).max
DFL_LOGITS = (0.0, 2.0)       # bench model: target mean/std of the 64 DFL logits
CLASS_LOGITS = (0.0, 0.3)     # bench model: target mean/std of the 80 class-conv outputs
BENCH_CLUSTERS = 10           # bench model: fake objects in the class-logit prior
BENCH_SIZES = (640, 320)      # --bench writes generated/yolov8n-random-<size>.onnx for each


def names_literal(names):
    """Ultralytics writes ``str(dict)``: ``{0: 'person', 1: 'bicycle', ...}``."""
    return str({i: n for i, n in enumerate(names)})


class G:
    """Tiny graph builder: unique names, initialisers for constants."""

    def __init__(self, prefix=""):
        self.nodes = []
        self.inits = []
        self.n = 0
        self.prefix = prefix
        self._consts = {}

    def name(self, base):
        self.n += 1
        return f"{self.prefix}{base}_{self.n}"

    def const(self, value, dtype=np.float32, name=None):
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if name is None else None
        if key is not None and key in self._consts:
            return self._consts[key]
        nm = name or self.name("c")
        self.inits.append(numpy_helper.from_array(arr, nm))
        if key is not None:
            self._consts[key] = nm
        return nm

    def op(self, op_type, inputs, n_out=1, out=None, **attrs):
        outs = out if out is not None else [self.name(op_type.lower()) for _ in range(n_out)]
        if isinstance(outs, str):
            outs = [outs]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs,
                                           name=self.name(op_type), **attrs))
        return outs[0] if len(outs) == 1 else outs


def make_model(g, inputs, outputs, metadata, doc):
    graph = helper.make_graph(g.nodes, "main", inputs, outputs, initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="gst-kafka-vision models/make_models.py",
                              producer_version="1", doc_string=doc)
    model.ir_version = IR_VERSION
    for k, v in metadata.items():
        p = model.metadata_props.add()
        p.key, p.value = k, str(v)
    onnx.checker.check_model(model, full_check=True)
    return model


def base_metadata(description, imgsz, names=None, **extra):
    md = {
        "description": description,
        "author": "gst-kafka-vision (models/make_models.py)",
        "license": "same as the gst-kafka-vision repository",
        "task": "detect",
        "batch": 1,
        "stride": 32,
        "imgsz": list(imgsz),
    }
    if names is not None:
        md["names"] = names_literal(names)
    md.update(extra)
    return md


# --------------------------------------------------------------------------------------
# bright-blob detectors
# --------------------------------------------------------------------------------------

def flip(g, x, axis):
    return g.op("Slice", [x, g.const([-1], np.int64), g.const([np.iinfo(np.int64).min], np.int64),
                          g.const([axis], np.int64), g.const([-1], np.int64)])


def prefix_max(g, x, axis, steps):
    """Running max along axis 3 (W) or 2 (H) of a [1,C,H,W] tensor:
    out[i] = max(x[i-k] for 0 <= k < 2**steps, i-k >= 0).

    Each doubling step is Max(x, x shifted by d), the shift done by Pad (value -1e9) +
    Slice. (onnxruntime's MaxPool rejects pads >= kernel, so no dilated-MaxPool trick.)
    """
    c = g.const
    axes = c([axis], np.int64)
    for k in range(steps):
        d = 1 << k
        pads = [0] * 8
        pads[axis] = d                       # pad at the beginning, drop the last d
        padded = g.op("Pad", [x, c(pads, np.int64), c(-1e9)], mode="constant")
        shifted = g.op("Slice", [padded, c([0], np.int64), c([-d], np.int64), axes])
        x = g.op("Max", [x, shifted])
    return x


def last_dark(g, bright, idx, axis, n_f, steps):
    """For a bool [1,1,A,B] map: (index of the last dark at/before i along `axis`, -1 if
    none; index of the first dark at/after i, n if none). The second is the first computed
    on the flipped map; both run as the two channels of one scan."""
    cond = g.op("Concat", [bright, flip(g, bright, axis)], axis=1)       # [1,2,A,B]
    scan = prefix_max(g, g.op("Where", [cond, g.const(-1.0), idx]), axis, steps)
    before, after_flipped = g.op("Split", [scan, g.const([1, 1], np.int64)], n_out=2, axis=1)
    n_minus_1 = g.op("Sub", [n_f, g.const(1.0)])
    after = g.op("Sub", [n_minus_1, flip(g, after_flipped, axis)])
    return before, after


def blob_core(g, steps, strides):
    """Shared part. Returns per-head dicts of [1,1,h*w]-shaped flattened tensors."""
    c = g.const
    shape = g.op("Shape", ["images"])                                     # [4] int64
    # mean(R, G, B) = [1/3, 1/3, 1/3] x images as [3, H*W] (MatMul: much faster in
    # onnxruntime than ReduceMean or a 1x1 Conv)
    lum = g.op("MatMul", [c(np.full((1, 3), 1.0 / 3.0)),
                          g.op("Reshape", ["images", c([3, -1], np.int64)])])  # [1, H*W]
    hw_shape = g.op("Slice", [shape, c([2], np.int64), c([4], np.int64), c([0], np.int64)])
    bright_lum = g.op("Reshape", [lum, g.op("Concat", [c([1, 1], np.int64), hw_shape],
                                            axis=0)])                     # [1,1,H,W]
    brightf = g.op("Cast", [g.op("Greater", [bright_lum, c(BRIGHT_THRESHOLD)])],
                   to=TensorProto.FLOAT)                                  # 1 bright, 0 dark

    h_i = g.op("Gather", [shape, c(2, np.int64)], axis=0)                 # scalar
    w_i = g.op("Gather", [shape, c(3, np.int64)], axis=0)
    h_f = g.op("Cast", [h_i], to=TensorProto.FLOAT)
    w_f = g.op("Cast", [w_i], to=TensorProto.FLOAT)
    zero, one = c(0, np.int64), c(1, np.int64)
    xs = g.op("Cast", [g.op("Range", [zero, w_i, one])], to=TensorProto.FLOAT)   # [W]
    ys = g.op("Cast", [g.op("Range", [zero, h_i, one])], to=TensorProto.FLOAT)   # [H]
    xs4 = g.op("Reshape", [xs, c([1, 1, 1, -1], np.int64)])
    ys4 = g.op("Reshape", [ys, c([1, 1, -1, 1], np.int64)])
    minus1 = c(-1.0)

    # Cell centre rows/columns of every head. Only these rows are scanned horizontally and
    # only these columns vertically (70 of 320 at 320x320).
    rows = [g.op("Range", [c(s // 2, np.int64), h_i, c(s, np.int64)]) for s in strides]
    cols = [g.op("Range", [c(s // 2, np.int64), w_i, c(s, np.int64)]) for s in strides]

    def cat(ts):
        return ts[0] if len(ts) == 1 else g.op("Concat", ts, axis=0)

    def split(t, parts, axis):
        if len(parts) == 1:
            return [t]
        sizes = g.op("Concat", [g.op("Shape", [p]) for p in parts], axis=0)
        return g.op("Split", [t, sizes], n_out=len(parts), axis=axis)

    h_bright = g.op("Greater", [g.op("Gather", [brightf, cat(rows)], axis=2), c(0.5)])
    v_bright = g.op("Greater", [g.op("Gather", [brightf, cat(cols)], axis=3), c(0.5)])
    # last dark at/left of x (-1 if none); first dark at/right of x (W if none); same
    # upwards (-1) / downwards (H) in the sampled columns
    left, right = last_dark(g, h_bright, xs4, 3, w_f, steps)
    top, bottom = last_dark(g, v_bright, ys4, 2, h_f, steps)
    lefts, rights = split(left, rows, 2), split(right, rows, 2)
    tops, bottoms = split(top, cols, 3), split(bottom, cols, 3)

    heads = []
    for k, s in enumerate(strides):
        def at_cols(t):
            return g.op("Gather", [t, cols[k]], axis=3)

        def at_rows(t):
            return g.op("Gather", [t, rows[k]], axis=2)

        x1 = g.op("Add", [at_cols(lefts[k]), c(1.0)])
        x2 = at_cols(rights[k])
        y1 = g.op("Add", [at_rows(tops[k]), c(1.0)])
        y2 = at_rows(bottoms[k])
        centre_bright = at_cols(at_rows(brightf))
        pcx = g.op("Reshape", [g.op("Add", [g.op("Cast", [cols[k]], to=TensorProto.FLOAT),
                                            c(0.5)]), c([1, 1, 1, -1], np.int64)])
        pcy = g.op("Reshape", [g.op("Add", [g.op("Cast", [rows[k]], to=TensorProto.FLOAT),
                                            c(0.5)]), c([1, 1, -1, 1], np.int64)])
        dl = g.op("Relu", [g.op("Sub", [pcx, x1])])
        dr = g.op("Relu", [g.op("Sub", [x2, pcx])])
        dt = g.op("Relu", [g.op("Sub", [pcy, y1])])
        db = g.op("Relu", [g.op("Sub", [y2, pcy])])
        eps = c(1e-6)
        ctr_x = g.op("Div", [g.op("Min", [dl, dr]), g.op("Max", [g.op("Max", [dl, dr]), eps])])
        ctr_y = g.op("Div", [g.op("Min", [dt, db]), g.op("Max", [g.op("Max", [dt, db]), eps])])
        centerness = g.op("Sqrt", [g.op("Mul", [ctr_x, ctr_y])])
        # cell mean brightness; coarser heads pool the previous head's map
        if k == 0:
            avg = g.op("AveragePool", [bright_lum], kernel_shape=[s, s], strides=[s, s])
        else:
            f = s // strides[k - 1]
            avg = g.op("AveragePool", [avg], kernel_shape=[f, f], strides=[f, f])
        bright_score = g.op("Sigmoid", [g.op("Mul", [g.op("Sub", [avg, c(0.5)]),
                                                     c(SCORE_SLOPE)])])
        score_map = g.op("Mul", [g.op("Mul", [bright_score, centre_bright]), centerness])

        flat = c([1, 1, -1], np.int64)

        def fl(t):
            return g.op("Reshape", [t, flat])

        heads.append({
            "x1": x1, "y1": y1, "x2": x2, "y2": y2, "score_map": score_map,
            "flat": {
                "x1": fl(x1), "y1": fl(y1), "x2": fl(x2), "y2": fl(y2),
                "cx": fl(g.op("Mul", [g.op("Add", [x1, x2]), c(0.5)])),
                "cy": fl(g.op("Mul", [g.op("Add", [y1, y2]), c(0.5)])),
                "w": fl(g.op("Relu", [g.op("Sub", [x2, x1])])),
                "h": fl(g.op("Relu", [g.op("Sub", [y2, y1])])),
                "score": fl(score_map),
            },
        })
    return heads


def cat_heads(g, heads, key):
    ts = [h["flat"][key] for h in heads]
    return ts[0] if len(ts) == 1 else g.op("Concat", ts, axis=2)


def blob_model(kind, size=320, dynamic=False):
    g = G()
    c = g.const
    steps = 12 if dynamic else max(1, math.ceil(math.log2(size)))
    strides = [8] if kind == "e2e" else [8, 16, 32]
    heads = blob_core(g, steps, strides)
    if dynamic:
        in_shape = [1, 3, "height", "width"]
    else:
        in_shape = [1, 3, size, size]
    n_anchors = "anchors" if dynamic else sum((size // s) ** 2 for s in strides)
    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, in_shape)

    if kind in ("v8", "v5"):
        box = g.op("Concat", [cat_heads(g, heads, k) for k in ("cx", "cy", "w", "h")], axis=1)
        score = cat_heads(g, heads, "score")                              # [1,1,N]
        if kind == "v8":
            zeros_before = g.op("Mul", [score, c(np.zeros((1, BALL_CLASS, 1)))])
            zeros_after = g.op("Mul", [score, c(np.zeros((1, 80 - BALL_CLASS - 1, 1)))])
            g.op("Concat", [box, zeros_before, score, zeros_after], axis=1, out="output0")
            out_shape = [1, 84, n_anchors]
        else:
            probs = g.op("Add", [g.op("Mul", [score, c(np.zeros((1, 3, 1)))]),
                                 c(np.array(V5_CLASS_PROBS).reshape(1, 3, 1))])
            cm = g.op("Concat", [box, score, probs], axis=1)             # [1,8,N]
            g.op("Transpose", [cm], perm=[0, 2, 1], out="output0")
            out_shape = [1, n_anchors, 8]
    else:  # end-to-end, single stride-8 head
        hd = heads[0]
        s_map = hd["score_map"]                                           # [1,1,h,w]
        padded = g.op("Pad", [s_map, c([0, 0, 1, 1, 0, 0, 1, 1], np.int64), c(-1.0)],
                      mode="constant")
        keep = None
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy == 0 and dx == 0:
                    continue
                starts = [1 + dy, 1 + dx]
                ends = [dy - 1 if dy < 1 else INT64_MAX, dx - 1 if dx < 1 else INT64_MAX]
                nb = g.op("Slice", [padded, c(starts, np.int64), c(ends, np.int64),
                                    c([2, 3], np.int64)])
                earlier = dy < 0 or (dy == 0 and dx < 0)
                cmp = g.op("Greater" if earlier else "GreaterOrEqual", [s_map, nb])
                keep = cmp if keep is None else g.op("And", [keep, cmp])
        kept = g.op("Mul", [s_map, g.op("Cast", [keep], to=TensorProto.FLOAT)])
        kept_flat = g.op("Reshape", [kept, c([1, -1], np.int64)])         # [1,n]
        vals, idx = g.op("TopK", [kept_flat, c([E2E_MAX_DET], np.int64)], n_out=2,
                         axis=-1, largest=1, sorted=1)
        idx1 = g.op("Reshape", [idx, c([-1], np.int64)])                  # [K]
        f = hd["flat"]
        box = g.op("Concat", [f["x1"], f["y1"], f["x2"], f["y2"]], axis=1)  # [1,4,n]
        box_k = g.op("Gather", [box, idx1], axis=2)                       # [1,4,K]
        score_k = g.op("Reshape", [vals, c([1, 1, -1], np.int64)])        # [1,1,K]
        used = g.op("Cast", [g.op("Greater", [score_k, c(0.0)])], to=TensorProto.FLOAT)
        box_k = g.op("Mul", [box_k, used])
        cls_k = g.op("Add", [g.op("Mul", [score_k, c(0.0)]), c(float(BALL_CLASS))])
        cm = g.op("Concat", [box_k, score_k, cls_k], axis=1)              # [1,6,K]
        g.op("Transpose", [cm], perm=[0, 2, 1], out="output0")
        out_shape = [1, E2E_MAX_DET, 6]

    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)
    imgsz = [size, size]
    common = ("bright-blob test detector built by models/make_models.py (no trained "
              "weights): a pixel is bright when mean(R,G,B) > 0.5; each grid cell "
              "(strides %s) boxes the bright run through its centre pixel along its row "
              "and column; score = sigmoid(12*(cell mean brightness-0.5)) * centerness. "
              % "/".join(map(str, strides)))
    if kind == "v8":
        desc = ("YOLOv8-layout " + common + "Output [1, 84, N]: cx, cy, w, h in input "
                "pixels, 80 COCO class scores (class 32 'sports ball' = score, others 0).")
        if dynamic:
            desc += " Dynamic input size: any height/width multiple of 32."
        md = base_metadata(desc, imgsz, COCO80)
    elif kind == "v5":
        desc = ("YOLOv5-layout " + common + "Output [1, N, 8]: cx, cy, w, h, objectness "
                "(= score), class probabilities ball 0.9, dark 0, other 0.05.")
        md = base_metadata(desc, imgsz, ["ball", "dark", "other"])
    else:
        desc = ("End-to-end (YOLOv10/YOLO26) layout " + common + "Only local maxima of "
                "the 40x40 score map are kept (no NMS needed), top 300. Output [1, 300, 6]: "
                "x1, y1, x2, y2 in input pixels, score, class id 32 (COCO 'sports ball'); "
                "unused rows are all 0.")
        md = base_metadata(desc, imgsz, None, end2end=True)
    return make_model(g, [inp], [out], md, desc)


# --------------------------------------------------------------------------------------
# bench model: YOLOv8n-shaped, random weights
# --------------------------------------------------------------------------------------

class Bench:
    def __init__(self, seed=8):
        self.g = G()
        self.rng = np.random.default_rng(seed)
        self.macs = 0
        self.params = 0
        self.convs = []   # (pre-activation output, weight name, bias name, target mean, std)

    def conv(self, x, cin, cout, k, s, hw, act=True, target=(0.0, 1.0)):
        """Conv (BN folded) + optional SiLU. hw = input (h, w). Returns (name, out hw).

        Weights start as N(0, 1/fan_in); calibrate() later rescales them so that, on the
        calibration image, every output channel has mean/std `target` (what a folded
        BatchNorm does), which keeps activations finite and input dependent."""
        g = self.g
        h, w = hw
        p = k // 2
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        fan_in = cin * k * k
        wt = self.rng.standard_normal((cout, cin, k, k)) / math.sqrt(fan_in)
        b = self.rng.standard_normal(cout) * 0.1
        wn = g.const(wt.astype(np.float32), name=g.name("w"))
        bn = g.const(b.astype(np.float32), name=g.name("b"))
        y = g.op("Conv", [x, wn, bn], kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p])
        self.convs.append((y, wn, bn, target))
        self.macs += ho * wo * cout * fan_in
        self.params += wt.size + b.size
        if act:
            y = g.op("Mul", [y, g.op("Sigmoid", [y])])
        return y, (ho, wo)

    def c2f(self, x, cin, cout, n, shortcut, hw):
        g = self.g
        c = cout // 2
        y, _ = self.conv(x, cin, 2 * c, 1, 1, hw)
        a, b = g.op("Split", [y, g.const([c, c], np.int64)], n_out=2, axis=1)
        ys = [a, b]
        for _ in range(n):
            t, _ = self.conv(ys[-1], c, c, 3, 1, hw)
            t, _ = self.conv(t, c, c, 3, 1, hw)
            if shortcut:
                t = g.op("Add", [ys[-1], t])
            ys.append(t)
        cat = g.op("Concat", ys, axis=1)
        return self.conv(cat, (2 + n) * c, cout, 1, 1, hw)[0]

    def sppf(self, x, cin, cout, hw):
        g = self.g
        c_ = cin // 2
        y, _ = self.conv(x, cin, c_, 1, 1, hw)
        ys = [y]
        for _ in range(3):
            ys.append(g.op("MaxPool", [ys[-1]], kernel_shape=[5, 5], strides=[1, 1],
                           pads=[2, 2, 2, 2]))
        return self.conv(g.op("Concat", ys, axis=1), 4 * c_, cout, 1, 1, hw)[0]

    def up(self, x):
        g = self.g
        return g.op("Resize", [x, "", g.const([1, 1, 2, 2])], mode="nearest",
                    coordinate_transformation_mode="asymmetric", nearest_mode="floor")

    def build(self, size=640, nc=80, reg_max=16):
        g = self.g
        x = "images"
        s = size
        x, _ = self.conv(x, 3, 16, 3, 2, (s, s))                    # P1/2   320
        x, _ = self.conv(x, 16, 32, 3, 2, (s // 2, s // 2))         # P2/4   160
        x = self.c2f(x, 32, 32, 1, True, (s // 4, s // 4))
        x, _ = self.conv(x, 32, 64, 3, 2, (s // 4, s // 4))         # P3/8   80
        p3 = self.c2f(x, 64, 64, 2, True, (s // 8, s // 8))
        x, _ = self.conv(p3, 64, 128, 3, 2, (s // 8, s // 8))       # P4/16  40
        p4 = self.c2f(x, 128, 128, 2, True, (s // 16, s // 16))
        x, _ = self.conv(p4, 128, 256, 3, 2, (s // 16, s // 16))    # P5/32  20
        x = self.c2f(x, 256, 256, 1, True, (s // 32, s // 32))
        p5 = self.sppf(x, 256, 256, (s // 32, s // 32))
        # PAN neck
        x = g.op("Concat", [self.up(p5), p4], axis=1)                # 384 @ 40
        n4 = self.c2f(x, 384, 128, 1, False, (s // 16, s // 16))
        x = g.op("Concat", [self.up(n4), p3], axis=1)                # 192 @ 80
        o3 = self.c2f(x, 192, 64, 1, False, (s // 8, s // 8))
        x, _ = self.conv(o3, 64, 64, 3, 2, (s // 8, s // 8))
        x = g.op("Concat", [x, n4], axis=1)                          # 192 @ 40
        o4 = self.c2f(x, 192, 128, 1, False, (s // 16, s // 16))
        x, _ = self.conv(o4, 128, 128, 3, 2, (s // 16, s // 16))
        x = g.op("Concat", [x, p5], axis=1)                          # 384 @ 20
        o5 = self.c2f(x, 384, 256, 1, False, (s // 32, s // 32))
        # Detect head
        c2 = max(16, 64 // 4, reg_max * 4)    # 64
        c3 = max(64, min(nc, 100))            # 80
        boxes, clss, anchors, strides = [], [], [], []
        for feat, ch, st in ((o3, 64, 8), (o4, 128, 16), (o5, 256, 32)):
            hw = (s // st, s // st)
            b, _ = self.conv(feat, ch, c2, 3, 1, hw)
            b, _ = self.conv(b, c2, c2, 3, 1, hw)
            b, _ = self.conv(b, c2, 4 * reg_max, 1, 1, hw, act=False, target=DFL_LOGITS)
            k, _ = self.conv(feat, ch, c3, 3, 1, hw)
            k, _ = self.conv(k, c3, c3, 3, 1, hw)
            k, _ = self.conv(k, c3, nc, 1, 1, hw, act=False, target=CLASS_LOGITS)
            boxes.append(g.op("Reshape", [b, g.const([1, 4 * reg_max, -1], np.int64)]))
            clss.append(g.op("Reshape", [k, g.const([1, nc, -1], np.int64)]))
            gy, gx = np.meshgrid(np.arange(hw[0]) + 0.5, np.arange(hw[1]) + 0.5, indexing="ij")
            anchors.append(np.stack([gx.ravel(), gy.ravel()]))
            strides.append(np.full(hw[0] * hw[1], st))
        box = g.op("Concat", boxes, axis=2)                           # [1,64,8400]
        cls = g.op("Concat", clss, axis=2)                            # [1,80,8400]
        # fixed logit prior: ~140 (anchor, class) pairs near 0, everything else -10, so
        # every frame gives ~140 candidates above 0.25 in 10 overlapping clusters
        cls = g.op("Add", [cls, g.const(class_prior(self.rng, nc, [(s // 8, s // 8),
                                                                (s // 16, s // 16),
                                                                (s // 32, s // 32)]),
                                        name="class_prior")])
        # DFL: softmax over 16 bins, expectation with bins 0..15
        d = g.op("Reshape", [box, g.const([1, 4, reg_max, -1], np.int64)])
        d = g.op("Softmax", [d], axis=2)
        d = g.op("ReduceSum", [g.op("Mul", [d, g.const(
            np.arange(reg_max, dtype=np.float32).reshape(1, 1, reg_max, 1))]),
            g.const([2], np.int64)], keepdims=0)                      # [1,4,8400]
        lt, rb = g.op("Split", [d, g.const([2, 2], np.int64)], n_out=2, axis=1)
        anc = g.const(np.concatenate(anchors, axis=1)[None].astype(np.float32))  # [1,2,A]
        strd = g.const(np.concatenate(strides)[None, None].astype(np.float32))   # [1,1,A]
        xy1 = g.op("Sub", [anc, lt])
        xy2 = g.op("Add", [anc, rb])
        cxy = g.op("Mul", [g.op("Add", [xy1, xy2]), g.const(0.5)])
        wh = g.op("Sub", [xy2, xy1])
        dbox = g.op("Mul", [g.op("Concat", [cxy, wh], axis=1), strd])
        g.op("Concat", [dbox, g.op("Sigmoid", [cls])], axis=1, out="output0")
        return 2 * self.macs


def calibration_images(size=640, seed=3):
    """Deterministic RGB images in 0..1, each [1, 3, size, size], as varied as the frames
    a benchmark may feed: a letterboxed smooth colour field with noise and flat rectangles,
    uniform noise, colour bars, a checkerboard, black and white (both letterboxed)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.5 + 0.4 * np.sin(6 * xx + 2 * yy), 0.5 + 0.4 * np.cos(5 * yy - 3 * xx),
                    0.5 + 0.3 * np.sin(9 * xx * yy)])
    img = img + rng.normal(0, 0.05, img.shape)
    for _ in range(12):
        x0, y0 = rng.integers(0, size - 64, 2)
        w, h = rng.integers(16, 200, 2)
        img[:, y0:y0 + h, x0:x0 + w] = rng.uniform(0, 1, (3, 1, 1))
    noise = rng.uniform(0, 1, (3, size, size))
    colours = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 1], [0, 1, 0], [1, 0, 1], [1, 0, 0],
                        [0, 0, 1], [0, 0, 0]], dtype=np.float64) * 0.75
    bars = colours[(np.arange(size) * 8 // size)].T[:, None, :].repeat(size, axis=1)
    checker = (((np.arange(size)[:, None] // 40) + (np.arange(size)[None] // 40)) % 2)
    checker = np.repeat(checker[None].astype(np.float64), 3, axis=0)
    black = np.zeros((3, size, size))
    white = np.ones((3, size, size))
    out = []
    for a in (img, noise, bars, checker, black, white):
        a = a.copy()
        bar = size // 8                              # letterbox bars of a 16:9 frame
        a[:, :bar] = 114 / 255
        a[:, size - bar:] = 114 / 255
        out.append(np.clip(a, 0, 1).astype(np.float32)[None])
    return out


def class_prior(rng, nc, levels, clusters=BENCH_CLUSTERS):
    """[1, nc, A] logit offsets: 0 on the (class, anchor) pairs of `clusters` fake objects
    (one class each; a 3x3 block of stride-8 anchors, 2x2 of stride 16, 1 of stride 32 at
    the same place: 14 anchors per object), -10 everywhere else."""
    sizes = [h * w for h, w in levels]
    offsets = np.cumsum([0] + sizes)
    prior = np.full((1, nc, offsets[-1]), -10.0, dtype=np.float32)
    h8, w8 = levels[0]
    for _ in range(clusters):
        cls = rng.integers(0, nc)
        cy, cx = rng.integers(2, h8 - 3), rng.integers(2, w8 - 3)     # stride-8 cell
        for lvl, (n, side) in enumerate(((3, levels[0]), (2, levels[1]), (1, levels[2]))):
            f = 1 << lvl
            y0, x0 = cy // f - n // 2, cx // f - n // 2
            for yy in range(y0, y0 + n):
                for xx in range(x0, x0 + n):
                    prior[0, cls, offsets[lvl] + yy * side[1] + xx] = 0.0
    return prior


def calibrate(model, convs, images):
    """BatchNorm emulation: in topological passes, run onnxruntime on `images`, measure
    each ready conv's per-channel mean/std (over all images and positions) and rescale its
    weights/bias to the target."""
    import onnxruntime as ort
    producer = {o: n for n in model.graph.node for o in n.output}
    conv_out = {c[0]: i for i, c in enumerate(convs)}

    def upstream(t, seen):
        """Conv outputs that tensor t depends on (through any non-conv node)."""
        res = set()
        stack = [t]
        while stack:
            cur = stack.pop()
            node = producer.get(cur)
            if node is None or cur in seen:
                continue
            seen.add(cur)
            if cur in conv_out and cur != t:
                res.add(cur)
                continue
            stack.extend(node.input)
        return res

    deps = {c[0]: upstream(c[0], set()) for c in convs}
    inits = {t.name: t for t in model.graph.initializer}
    done = set()
    so = ort.SessionOptions()
    passes = 0
    while len(done) < len(convs):
        ready = [c for c in convs if c[0] not in done and deps[c[0]] <= done]
        # probe = only the nodes the ready convs depend on
        need, stack, nodes = set(), [c[0] for c in ready], set()
        while stack:
            t = stack.pop()
            if t in need:
                continue
            need.add(t)
            node = producer.get(t)
            if node is not None:
                nodes.add(id(node))
                stack.extend(node.input)
        graph = helper.make_graph(
            [n for n in model.graph.node if id(n) in nodes], "probe", list(model.graph.input),
            [helper.make_tensor_value_info(c[0], TensorProto.FLOAT, None) for c in ready],
            initializer=[t for t in model.graph.initializer if t.name in need])
        probe = helper.make_model(graph, opset_imports=list(model.opset_import))
        probe.ir_version = model.ir_version
        sess = ort.InferenceSession(probe.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        runs = [sess.run(None, {"images": im}) for im in images]
        for i, (name, wn, bn, (t_mean, t_std)) in enumerate(ready):
            y = np.concatenate([r[i] for r in runs]).astype(np.float64)
            m = y.mean(axis=(0, 2, 3))
            sd = y.std(axis=(0, 2, 3)) + 1e-3
            wt = numpy_helper.to_array(inits[wn]).astype(np.float64)
            b = numpy_helper.to_array(inits[bn]).astype(np.float64)
            k = t_std / sd
            inits[wn].CopyFrom(numpy_helper.from_array((wt * k[:, None, None, None]).astype(np.float32), wn))
            inits[bn].CopyFrom(numpy_helper.from_array((b * k + t_mean - m * k).astype(np.float32), bn))
            done.add(name)
        passes += 1
    return passes


def bench_model(size=640):
    b = Bench()
    flops = b.build(size)
    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])
    n = sum((size // s) ** 2 for s in (8, 16, 32))
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 84, n])
    desc = ("YOLOv8n-shaped benchmark network with RANDOM weights (seed 8, BatchNorm-like "
            "calibration on a synthetic image) built by models/make_models.py --bench: same "
            "layers, shapes and compute as YOLOv8n at %d (%.2f GFLOPs = 2 x conv MACs); "
            "detections are meaningless." % (size, flops / 1e9))
    md = base_metadata(desc, [size, size], COCO80)
    model = make_model(b.g, [inp], [out], md, desc)
    calibrate(model, b.convs, calibration_images(size))
    onnx.checker.check_model(model, full_check=True)
    return model, flops, b.params


def save(model, path):
    data = model.SerializeToString(deterministic=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return len(data)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--bench", action="store_true",
                    help="also write generated/yolov8n-random-640.onnx and -320.onnx")
    args = ap.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    for fname, kind, dyn in (("blob-yolov8.onnx", "v8", False),
                             ("blob-yolov8-dynamic.onnx", "v8", True),
                             ("blob-yolov5.onnx", "v5", False),
                             ("blob-yolo26.onnx", "e2e", False)):
        path = os.path.join(args.out_dir, fname)
        n = save(blob_model(kind, 320, dyn), path)
        print(f"wrote {path} ({n} bytes)")
    if args.bench:
        gdir = os.path.join(args.out_dir, "generated")
        os.makedirs(gdir, exist_ok=True)
        for size in BENCH_SIZES:
            model, flops, params = bench_model(size)
            path = os.path.join(gdir, f"yolov8n-random-{size}.onnx")
            n = save(model, path)
            print(f"wrote {path} ({n} bytes, {params} parameters)")
            print(f"bench model FLOP estimate: {flops / 1e9:.2f} GFLOPs at {size} "
                  f"(2 x conv multiply-accumulates; YOLOv8n reports 8.7 at 640)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
