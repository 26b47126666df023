#!/usr/bin/env python3
"""Float vs INT8: do both models find the same boxes, and how fast is each?

Usage::

    python models/agreement.py --pair FLOAT.onnx INT8.onnx [--pair F2 Q2 ...] \\
        (--images DIR | --blob-frames N [--seed S]) [--frames N] [--threads 2] \\
        [--conf 0.25] [--iou 0.45] [--match-iou 0.9] [--speed-only]

Every frame goes through reference.py's pipeline (letterbox, ONNX Runtime CPU EP, decode +
NMS, back to frame pixels) with both models; the letterboxed tensor is made once and fed to
both, and only ``session.run`` is timed (warm-up runs excluded; float and INT8 alternate
frame by frame, so both see the same machine load). ``--threads`` intra-op threads,
spinning off (as the ``yolodetect`` element's default).

A float and an INT8 detection match when they have the same class and IoU >= --match-iou
(greedy, highest IoU first, one-to-one per frame). Prints a Markdown table: frames,
detections of each model, matched, agreement both ways (matched / float detections,
matched / INT8 detections; 100 when both found nothing), the largest difference of a
matched box's corner coordinates in frame pixels, the frames that differ (a detection
without a match, or a matched corner more than --tol-px 2 apart), the largest score
difference of a matched pair, mean ms per inference of each and the ratio.
``--speed-only`` skips the detection columns (e.g. for random-weight networks, whose detections are meaningless).

Frames: ``--images DIR`` (.jpg/.jpeg/.png, sorted, at most --frames evenly spread) or
``--blob-frames N``: N frames of models/blob_frames.py made in memory (1280x720, seed S).
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import reference as R  # noqa: E402

WARMUP = 3


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(dets_a, dets_b, min_iou=0.9):
    """Greedy one-to-one matching, same class, IoU >= min_iou: [(i, j, iou)]."""
    cand = []
    for i, a in enumerate(dets_a):
        ba = (a["x1"], a["y1"], a["x2"], a["y2"])
        for j, b in enumerate(dets_b):
            if a["class_id"] != b["class_id"]:
                continue
            v = iou(ba, (b["x1"], b["y1"], b["x2"], b["y2"]))
            if v >= min_iou:
                cand.append((v, i, j))
    cand.sort(key=lambda t: -t[0])
    used_a, used_b, out = set(), set(), []
    for v, i, j in cand:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out.append((i, j, v))
    return out


def detect_timed(sess, tensor, params, w, h, conf, iou_thr, speed_only):
    name = sess.get_inputs()[0].name
    t0 = time.perf_counter()
    out = sess.run(None, {name: tensor})[0]
    dt = time.perf_counter() - t0
    if speed_only:
        return [], dt
    boxes, scores, cls = R.decode(out, conf, iou_thr)
    fb = R.to_frame(boxes, params, w, h)
    return [{"x1": float(b[0]), "y1": float(b[1]), "x2": float(b[2]), "y2": float(b[3]),
             "score": float(s), "class_id": int(c)} for b, s, c in zip(fb, scores, cls)], dt


def compare(float_path, int8_path, frames, threads=2, conf=0.25, iou_thr=0.45,
            match_iou=0.9, speed_only=False, tol_px=2.0):
    """Runs both models on `frames` (RGB uint8 arrays). Returns a dict of the table's
    figures (plus 'per_frame': [(n float, n int8, n matched)])."""
    sf = R.make_session(float_path, threads)
    sq = R.make_session(int8_path, threads)
    hm, wm = R.model_input_size(sf)
    if R.model_input_size(sq) != (hm, wm):
        raise ValueError(f"{int8_path}: input size {R.model_input_size(sq)} != float {(hm, wm)}")
    prepared = []
    for f in frames:
        t, p = R.letterbox(f, hm, wm)
        prepared.append((t, p, f.shape[1], f.shape[0]))
    for k in range(WARMUP):
        t = prepared[k % len(prepared)][0]
        sf.run(None, {sf.get_inputs()[0].name: t})
        sq.run(None, {sq.get_inputs()[0].name: t})
    res = {"frames": len(frames), "det_float": 0, "det_int8": 0, "matched": 0,
           "max_corner_px": 0.0, "max_score_diff": 0.0, "float_ms": 0.0, "int8_ms": 0.0,
           "frames_differing": 0, "per_frame": []}
    for i, (t, p, w, h) in enumerate(prepared):
        order = ((sf, "float"), (sq, "int8")) if i % 2 == 0 else ((sq, "int8"), (sf, "float"))
        got = {}
        for sess, key in order:
            dets, dt = detect_timed(sess, t, p, w, h, conf, iou_thr, speed_only)
            got[key] = dets
            res[f"{key}_ms"] += dt * 1e3
        a, b = got["float"], got["int8"]
        m = match(a, b, match_iou)
        res["det_float"] += len(a)
        res["det_int8"] += len(b)
        res["matched"] += len(m)
        worst = 0.0
        for ia, ib, _ in m:
            da, db = a[ia], b[ib]
            worst = max(worst, max(abs(da[k] - db[k]) for k in ("x1", "y1", "x2", "y2")))
            res["max_score_diff"] = max(res["max_score_diff"], abs(da["score"] - db["score"]))
        res["max_corner_px"] = max(res["max_corner_px"], worst)
        if len(m) != len(a) or len(m) != len(b) or worst > tol_px:
            res["frames_differing"] += 1
        res["per_frame"].append((len(a), len(b), len(m)))
    n = max(len(frames), 1)
    res["float_ms"] /= n
    res["int8_ms"] /= n

    def pct(m, d):
        return 100.0 * m / d if d else (100.0 if m == 0 else 0.0)

    res["agree_float"] = pct(res["matched"], res["det_float"])
    res["agree_int8"] = pct(res["matched"], res["det_int8"])
    return res


def table(rows, speed_only=False):
    """rows: [(label, result dict)] -> Markdown."""
    if speed_only:
        lines = ["| model | frames | float ms | int8 ms | float/int8 |",
                 "|---|---:|---:|---:|---:|"]
        for label, r in rows:
            lines.append(f"| {label} | {r['frames']} | {r['float_ms']:.2f} | {r['int8_ms']:.2f} | "
                         f"{r['float_ms'] / r['int8_ms']:.2f} |")
        return "\n".join(lines)
    lines = ["| model | frames | det float | det int8 | matched | agree float→int8 % | "
             "agree int8→float % | max corner diff px | frames differing | max score diff | "
             "float ms | int8 ms | float/int8 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, r in rows:
        lines.append(
            f"| {label} | {r['frames']} | {r['det_float']} | {r['det_int8']} | {r['matched']} | "
            f"{r['agree_float']:.1f} | {r['agree_int8']:.1f} | {r['max_corner_px']:.2f} | "
            f"{r['frames_differing']} | {r['max_score_diff']:.3f} | {r['float_ms']:.2f} | "
            f"{r['int8_ms']:.2f} | "
            f"{r['float_ms'] / r['int8_ms']:.2f} |")
    return "\n".join(lines)


def load_frames(args):
    if args.images:
        import quantize
        try:
            return quantize.folder_frames(args.images, args.frames, "frame(s)")
        except quantize.UserError as e:
            raise SystemExit(f"agreement.py: error: {e}")
    import blob_frames
    return [f for f, _ in blob_frames.frames(args.blob_frames, args.seed)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pair", nargs=2, action="append", metavar=("FLOAT", "INT8"), required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", metavar="DIR")
    src.add_argument("--blob-frames", type=int, metavar="N")
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--frames", type=int, default=1000, help="--images: at most N frames")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.45)
    ap.add_argument("--match-iou", type=float, default=0.9)
    ap.add_argument("--tol-px", type=float, default=2.0,
                    help="a frame differs when a box is unmatched or a corner moved more")
    ap.add_argument("--speed-only", action="store_true")
    args = ap.parse_args(argv)
    for f, q in args.pair:
        for p in (f, q):
            if not os.path.isfile(p):
                ap.error(f"model {p!r} does not exist")
    if args.blob_frames is not None and args.blob_frames < 1:
        ap.error("--blob-frames must be at least 1")
    frames = load_frames(args)
    rows = []
    for f, q in args.pair:
        r = compare(f, q, frames, args.threads, args.conf, args.iou, args.match_iou,
                    args.speed_only, args.tol_px)
        rows.append((f"{os.path.basename(f)} vs {os.path.basename(q)}", r))
    print(table(rows, args.speed_only))
    print(f"\n{len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, "
          f"{args.threads} threads, conf {args.conf}, NMS IoU {args.iou}, match: same class and "
          f"IoU >= {args.match_iou}; ms = mean session.run per frame", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
