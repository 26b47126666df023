#!/usr/bin/env python3
"""Independent reference for the `yolodetect` element: letterbox + ONNX Runtime + decode.

Detect one frame::

    python models/reference.py --model M --frame F.rgb --width W --height H \\
        [--conf 0.25] [--iou 0.45] [--agnostic] [--max-det 300]

F is raw packed RGB24 (W*H*3 bytes, rows top to bottom, no padding). Prints one line of
JSON, ``{"boxes": [{"x1": .., "y1": .., "x2": .., "y2": .., "score": .., "class_id": ..},
...]}``, boxes in FRAME pixel coordinates, sorted by score descending (ties: the order
the model produced them in).

Benchmark a hand-written Python pipeline (what people write around onnxruntime)::

    python models/reference.py --bench --model M --width 1280 --height 720 \\
        --frames N --threads T

prints ``{"fps": .., "pre_ms": .., "infer_ms": .., "post_ms": ..}`` (means per frame).

Only numpy and onnxruntime are used for detection (cv2 is used by --bench alone, when
``opencv-python-headless`` is installed).

Model input size
    (Hm, Wm) from the model input ``[1, 3, Hm, Wm]``; a symbolic dim is taken from the
    ``imgsz`` metadata (``[H, W]`` or a single int); failing that, 640.

Output layout (from the shape of the output array actually produced)
    * ``[1, K, 6]``            -> end-to-end (YOLOv10 / YOLO26): x1, y1, x2, y2, score, class.
      Checked first, so a YOLOv5 model with exactly 1 class (``[1, N, 6]``) would be
      read as end-to-end.
    * ``[1, C, N]`` with C < N -> YOLOv8/v9/v11 channel-major: cx, cy, w, h, nc = C - 4
      class scores.
    * ``[1, N, C]`` with N > C -> YOLOv5: cx, cy, w, h, objectness, nc = C - 5 class scores.
    * anything else (C == N, or no class column left) is rejected.

Letterbox (the Rust element does exactly the same)
    r = min(Wm / W, Hm / H); new_w = floor(W * r + 0.5), new_h = floor(H * r + 0.5)
    (float64; at least 1); left = (Wm - new_w) // 2, top = (Hm - new_h) // 2. The canvas
    is filled with float32(114) / 255. The frame is resized to new_w x new_h by bilinear
    interpolation with half-pixel centres and no antialiasing (cv2.INTER_LINEAR style):
    sx = (x + 0.5) * (W / new_w) - 0.5 (float64), clamped to [0, W - 1]; x0 = floor(sx),
    x1 = min(x0 + 1, W - 1), wx = float32(sx - x0); same for y. Interpolation in float32
    on 0..255 values, horizontal first: a = p[y0,x0] * (1 - wx) + p[y0,x1] * wx,
    b = p[y1,x0] * (1 - wx) + p[y1,x1] * wx, v = a * (1 - wy) + b * wy, then v / 255
    (a division). RGB, CHW, batch 1, float32.

Decoding
    v8: score = max class score, class = its argmax (first on ties); v5: score =
    objectness x max class score. Candidates: score > conf (strict). Boxes cx, cy, w, h ->
    x1 = cx - w/2, y1 = cy - h/2, x2 = cx + w/2, y2 = cy + h/2. NMS per class (default) or
    class-agnostic (--agnostic): candidates sorted by descending score (stable), the best is
    kept and every remaining box of the same class (any class when agnostic) whose IoU
    with it is > iou (strict) is dropped; IoU = inter / (area_a + area_b - inter), areas
    from clamped-at-0 widths and heights, 0 when the union is 0. The survivors are sorted by
    descending score (stable) and cut to --max-det. End-to-end: rows with score > conf,
    class = round(column 5), no NMS, sorted by score, cut to --max-det.

Back to the frame
    x = (x_model - left) / (new_w / W), y = (y_model - top) / (new_h / H), then clipped to
    [0, W] and [0, H].
"""

import argparse
import ast
import json
import math
import sys
import time

import numpy as np
import onnxruntime as ort

PAD_VALUE = np.float32(114.0) / np.float32(255.0)


# ----------------------------------------------------------------------------- model ---

def make_session(model, threads=None):
    so = ort.SessionOptions()
    if threads is not None:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def parse_imgsz(value):
    try:
        v = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return None
    if isinstance(v, int):
        return v, v
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return int(v[0]), int(v[1])
    if isinstance(v, (list, tuple)) and len(v) == 1 and isinstance(v[0], int):
        return int(v[0]), int(v[0])
    return None


def model_input_size(sess):
    """(Hm, Wm): from the input shape, else ``imgsz`` metadata, else 640."""
    shape = sess.get_inputs()[0].shape
    meta = sess.get_modelmeta().custom_metadata_map
    imgsz = parse_imgsz(meta["imgsz"]) if "imgsz" in meta else None
    dims = []
    for i, axis in enumerate((2, 3)):
        d = shape[axis] if len(shape) == 4 else None
        if isinstance(d, int) and d > 0:
            dims.append(d)
        elif imgsz is not None:
            dims.append(imgsz[i])
        else:
            dims.append(640)
    return dims[0], dims[1]


def class_names(sess):
    meta = sess.get_modelmeta().custom_metadata_map
    if "names" in meta:
        try:
            return ast.literal_eval(meta["names"])
        except (ValueError, SyntaxError):
            return None
    return None


# ------------------------------------------------------------------------- letterbox ---

def letterbox_params(w, h, wm, hm):
    r = min(wm / w, hm / h)
    new_w = max(1, int(math.floor(w * r + 0.5)))
    new_h = max(1, int(math.floor(h * r + 0.5)))
    left = (wm - new_w) // 2
    top = (hm - new_h) // 2
    return new_w, new_h, left, top


def _axis_coords(n_src, n_dst):
    scale = n_src / n_dst
    s = (np.arange(n_dst, dtype=np.float64) + 0.5) * scale - 0.5
    s = np.clip(s, 0.0, n_src - 1)
    i0 = np.floor(s).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_src - 1)
    wgt = (s - i0).astype(np.float32)
    return i0, i1, wgt


def resize_bilinear(frame, new_w, new_h):
    """frame: uint8 or float32 [H, W, 3] -> float32 [new_h, new_w, 3] on 0..255."""
    h, w = frame.shape[:2]
    x0, x1, wx = _axis_coords(w, new_w)
    y0, y1, wy = _axis_coords(h, new_h)
    one = np.float32(1.0)
    wx = wx[None, :, None]
    r0 = frame[y0].astype(np.float32)          # [new_h, W, 3]
    r1 = frame[y1].astype(np.float32)
    a = r0[:, x0] * (one - wx) + r0[:, x1] * wx
    b = r1[:, x0] * (one - wx) + r1[:, x1] * wx
    wy = wy[:, None, None]
    return a * (one - wy) + b * wy


def letterbox(frame, hm, wm):
    """frame: uint8 [H, W, 3] RGB -> (float32 [1, 3, hm, wm], (new_w, new_h, left, top))."""
    h, w = frame.shape[:2]
    new_w, new_h, left, top = letterbox_params(w, h, wm, hm)
    canvas = np.full((hm, wm, 3), PAD_VALUE, dtype=np.float32)
    canvas[top:top + new_h, left:left + new_w] = resize_bilinear(frame, new_w, new_h) / np.float32(255.0)
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None]), (new_w, new_h, left, top)


# ---------------------------------------------------------------------------- decode ---

def detect_layout(shape):
    if len(shape) != 3 or shape[0] != 1:
        raise ValueError(f"unsupported output shape {shape}")
    _, a, b = shape
    if b == 6:
        return "e2e"
    if 4 < a < b:
        return "v8"
    if a > b > 5:
        return "v5"
    raise ValueError(f"unsupported or ambiguous output shape {shape}")


def iou_one_to_many(box, boxes):
    xx1 = np.maximum(box[0], boxes[:, 0])
    yy1 = np.maximum(box[1], boxes[:, 1])
    xx2 = np.minimum(box[2], boxes[:, 2])
    yy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.maximum(xx2 - xx1, 0) * np.maximum(yy2 - yy1, 0)
    area_a = max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
    area_b = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes, scores, iou_thr):
    """Greedy NMS. Returns kept indices, in descending score order (stable)."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        if rest.size == 0:
            break
        order = rest[iou_one_to_many(boxes[i], boxes[rest]) <= iou_thr]
    return np.asarray(keep, dtype=np.int64)


def decode(out, conf=0.25, iou=0.45, agnostic=False, max_det=300):
    """Raw model output -> (boxes [n,4] x1y1x2y2 model px, scores [n], class ids [n]),
    sorted by descending score."""
    out = np.asarray(out, dtype=np.float32)
    layout = detect_layout(out.shape)
    if layout == "e2e":
        rows = out[0]
        sel = np.nonzero(rows[:, 4] > conf)[0]
        boxes = rows[sel, :4].astype(np.float64)
        scores = rows[sel, 4]
        cls = np.rint(rows[sel, 5]).astype(np.int64)
        order = np.argsort(-scores, kind="stable")[:max_det]
        return boxes[order], scores[order], cls[order]
    if layout == "v8":
        pred = out[0].T                                   # [N, 4 + nc]
        cls_scores = pred[:, 4:]
        cls = np.argmax(cls_scores, axis=1)
        scores = cls_scores[np.arange(len(pred)), cls]
    else:
        pred = out[0]                                     # [N, 5 + nc]
        cls_scores = pred[:, 5:]
        cls = np.argmax(cls_scores, axis=1)
        scores = pred[:, 4] * cls_scores[np.arange(len(pred)), cls]
    sel = np.nonzero(scores > conf)[0]
    xywh = pred[sel, :4].astype(np.float64)
    boxes = np.stack([xywh[:, 0] - xywh[:, 2] / 2, xywh[:, 1] - xywh[:, 3] / 2,
                      xywh[:, 0] + xywh[:, 2] / 2, xywh[:, 1] + xywh[:, 3] / 2], axis=1)
    scores = scores[sel]
    cls = cls[sel].astype(np.int64)
    if agnostic:
        keep = nms(boxes, scores, iou)
    else:
        keep = np.concatenate([np.nonzero(cls == c)[0][nms(boxes[cls == c], scores[cls == c], iou)]
                               for c in np.unique(cls)] or [np.zeros(0, np.int64)])
        keep = np.sort(keep)                              # back to model order for stable ties
        keep = keep[np.argsort(-scores[keep], kind="stable")]
    keep = keep[:max_det]
    return boxes[keep], scores[keep], cls[keep]


def to_frame(boxes, params, w, h):
    new_w, new_h, left, top = params
    b = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    b[:, [0, 2]] = (b[:, [0, 2]] - left) / (new_w / w)
    b[:, [1, 3]] = (b[:, [1, 3]] - top) / (new_h / h)
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, h)
    return b


def detect(sess, frame, conf=0.25, iou=0.45, agnostic=False, max_det=300):
    """frame: uint8 [H, W, 3] RGB. Returns a list of box dicts in frame pixels."""
    h, w = frame.shape[:2]
    hm, wm = model_input_size(sess)
    tensor, params = letterbox(frame, hm, wm)
    out = sess.run(None, {sess.get_inputs()[0].name: tensor})[0]
    boxes, scores, cls = decode(out, conf, iou, agnostic, max_det)
    fb = to_frame(boxes, params, w, h)
    return [{"x1": float(b[0]), "y1": float(b[1]), "x2": float(b[2]), "y2": float(b[3]),
             "score": float(s), "class_id": int(c)} for b, s, c in zip(fb, scores, cls)]


def read_rgb(path, w, h):
    data = np.fromfile(path, dtype=np.uint8)
    if data.size != w * h * 3:
        raise SystemExit(f"{path}: {data.size} bytes, expected {w}*{h}*3 = {w * h * 3}")
    return data.reshape(h, w, 3)


# ----------------------------------------------------------------------------- bench ---

def synthetic_frames(w, h, n=8, seed=1):
    """n distinct RGB frames: a dark gradient, noise and a few bright moving rectangles."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = ((xx * 60 // max(w, 1) + yy * 40 // max(h, 1)) % 256).astype(np.uint8)
    frames = []
    for i in range(n):
        f = np.repeat(base[:, :, None], 3, axis=2)
        f = np.clip(f.astype(np.int16) + rng.integers(-12, 13, f.shape), 0, 255).astype(np.uint8)
        for k in range(3):
            bw, bh = w // (6 + k), h // (5 + k)
            x0 = (w // 8 + k * w // 4 + i * w // 40) % max(w - bw, 1)
            y0 = (h // 6 + k * h // 5 + i * h // 30) % max(h - bh, 1)
            f[y0:y0 + bh, x0:x0 + bw] = rng.integers(150, 256, 3, dtype=np.uint8)
        frames.append(f)
    return frames


def bench(args):
    try:
        import cv2
        cv2.setNumThreads(args.threads)
    except ImportError:
        cv2 = None
    sess = make_session(args.model, args.threads)
    name = sess.get_inputs()[0].name
    hm, wm = model_input_size(sess)
    w, h = args.width, args.height
    new_w, new_h, left, top = letterbox_params(w, h, wm, hm)
    params = (new_w, new_h, left, top)
    frames = synthetic_frames(w, h)

    def pre(frame):
        if cv2 is not None:
            resized = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
            canvas = np.full((hm, wm, 3), 114, dtype=np.uint8)
            canvas[top:top + new_h, left:left + new_w] = resized
            return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        return letterbox(frame, hm, wm)[0]

    def post(out):
        boxes, scores, cls = decode(out, args.conf, args.iou, args.agnostic, args.max_det)
        return to_frame(boxes, params, w, h), scores, cls

    for i in range(3):                                     # warm-up, not timed
        post(sess.run(None, {name: pre(frames[i % len(frames)])})[0])
    t_pre = t_inf = t_post = 0.0
    start = time.perf_counter()
    for i in range(args.frames):
        t0 = time.perf_counter()
        x = pre(frames[i % len(frames)])
        t1 = time.perf_counter()
        out = sess.run(None, {name: x})[0]
        t2 = time.perf_counter()
        post(out)
        t3 = time.perf_counter()
        t_pre += t1 - t0
        t_inf += t2 - t1
        t_post += t3 - t2
    total = time.perf_counter() - start
    n = max(args.frames, 1)
    print(json.dumps({"fps": args.frames / total if total > 0 else 0.0,
                      "pre_ms": t_pre * 1e3 / n, "infer_ms": t_inf * 1e3 / n,
                      "post_ms": t_post * 1e3 / n}))
    print(f"bench: {args.frames} frames {w}x{h} -> {wm}x{hm}, threads {args.threads}, "
          f"resize {'cv2' if cv2 is not None else 'numpy'}", file=sys.stderr)


def main(argv=None):
    ap = argparse.ArgumentParser(description="YOLO ONNX reference detector / benchmark")
    ap.add_argument("--model", required=True)
    ap.add_argument("--frame", help="raw packed RGB24 file")
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--height", type=int, required=True)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.45)
    ap.add_argument("--agnostic", action="store_true")
    ap.add_argument("--max-det", type=int, default=300)
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.bench:
        bench(args)
        return 0
    if not args.frame:
        ap.error("--frame is required (or --bench)")
    frame = read_rgb(args.frame, args.width, args.height)
    sess = make_session(args.model)
    boxes = detect(sess, frame, args.conf, args.iou, args.agnostic, args.max_det)
    print(json.dumps({"boxes": boxes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
