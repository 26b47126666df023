#!/usr/bin/env python3
"""Write frames of bright rectangles on dark or grey backgrounds (PNG), for calibrating and
checking INT8 versions of the bright-blob models (models/quantize.py, models/agreement.py).

Usage::

    python models/blob_frames.py OUT_DIR [--count 40] [--seed 1] [--width 1280 --height 720]
        [--move 5] [--jpeg]
    python models/blob_frames.py OUT_DIR --edges      # the 16 threshold-edge frames

Deterministic for a given seed. Frames come in runs of ``--move`` consecutive frames (1 =
every frame independent) in which the same 1-3 rectangles move by a constant velocity of
up to +-13 px per frame (some stand still), so box edges land on many sub-pixel positions
of the detector's 320 px input. Rectangles: 160..420 px at 1280x720 (scaled with the
frame's shorter side), white, light grey, yellow or light cyan, never touching (at least
40 px apart over a whole run: the blob models merge touching blobs). Backgrounds: black,
dark or mid grey, the letterbox grey 114, or a dark horizontal gradient, with +-8 colour
noise (each channel its own); all darker than the models' brightness threshold (mean 0.5).
"""

import argparse
import os
import sys

import numpy as np

COLOURS = [(255, 255, 255), (200, 200, 200), (230, 230, 230), (255, 255, 0), (128, 255, 255)]
BACKGROUNDS = ("black", "dark", "grey", "letterbox", "gradient")


def background(rng, kind, w, h):
    if kind == "gradient":
        row = np.linspace(10, 100, w)
        f = np.repeat(np.repeat(row[None, :, None], h, axis=0), 3, axis=2)
    else:
        level = {"black": 0, "dark": 40, "grey": 90, "letterbox": 114}[kind]
        f = np.full((h, w, 3), float(level))
    f = f + rng.integers(-8, 9, (h, w, 3))          # per-channel (colour) noise
    return np.clip(f, 0, 255).astype(np.uint8)


def place_run(rng, n_obj, w, h, steps, gap=40):
    """n_obj rectangles with velocities, apart by `gap` over all `steps` frames."""
    k = min(w, h) / 720.0
    placed = []
    for _ in range(2000):
        if len(placed) == n_obj:
            break
        sw, sh = (int(rng.integers(160, 421) * k) for _ in range(2))
        vx, vy = (0, 0) if rng.random() < 0.3 else tuple(int(v) for v in rng.integers(-13, 14, 2))
        x0 = int(rng.integers(0, max(1, w - sw)))
        y0 = int(rng.integers(0, max(1, h - sh)))
        xs = [x0 + vx * t for t in range(steps)]
        ys = [y0 + vy * t for t in range(steps)]
        if min(xs) < 0 or max(xs) + sw > w or min(ys) < 0 or max(ys) + sh > h:
            continue
        box = (min(xs), min(ys), max(xs) + sw, max(ys) + sh)      # swept area
        if all(box[0] >= o[0][2] + gap or o[0][0] >= box[2] + gap or
               box[1] >= o[0][3] + gap or o[0][1] >= box[3] + gap for o in placed):
            colour = COLOURS[int(rng.integers(len(COLOURS)))]
            placed.append((box, x0, y0, sw, sh, vx, vy, colour))
    return placed


def frames(count, seed=1, w=1280, h=720, move=5):
    """Yields (frame RGB uint8, [(x1, y1, x2, y2), ...] drawn rectangles)."""
    rng = np.random.default_rng(seed)
    made = 0
    while made < count:
        steps = min(move, count - made)
        kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
        objs = place_run(rng, int(rng.integers(1, 4)), w, h, steps)
        for t in range(steps):
            f = background(rng, kind, w, h)
            rects = []
            for _, x0, y0, sw, sh, vx, vy, colour in objs:
                x, y = x0 + vx * t, y0 + vy * t
                f[y:y + sh, x:x + sw] = colour
                rects.append((x, y, x + sw, y + sh))
            yield f, rects
            made += 1


TIE_PAIRS = ((255, 0), (200, 55), (160, 95), (141, 114))   # rectangle + background = 255


def edge_frames(w=1280, h=720):
    """16 noise-free frames whose rectangle edges fall on every sub-pixel phase of the 4:1
    letterbox of a 1280x720 frame into 320x320, with rectangle and background grey levels
    adding up to 255: half-covered edge pixels of the model input are then at the
    brightness threshold (mean 0.5) itself, where any rounding decides the box edge.
    Yields (frame, rects) like frames()."""
    for i in range(16):
        rect, bg = TIE_PAIRS[i % 4]
        f = np.full((h, w, 3), bg, np.uint8)
        rects = []
        for k in range(3):
            px, py = (i + k) % 4, (i // 4 + k) % 4
            x1 = 40 + k * 400 + px
            y1 = 60 + (k % 2) * 300 + py
            x2 = x1 + 200 + 4 * k + (3 - px)
            y2 = y1 + 200 + 4 * (i % 3) + (3 - py)
            f[y1:y2, x1:x2] = rect
            rects.append((x1, y1, x2, y2))
        yield f, rects


def write(out_dir, count, seed=1, w=1280, h=720, move=5, jpeg=False, edges=False):
    import cv2
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    gen = edge_frames(w, h) if edges else frames(count, seed, w, h, move)
    for i, (f, _) in enumerate(gen):
        p = os.path.join(out_dir, f"blob-{i:04d}.{'jpg' if jpeg else 'png'}")
        if not cv2.imwrite(p, np.ascontiguousarray(f[:, :, ::-1])):
            raise OSError(f"cannot write {p}")
        paths.append(p)
    return paths


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--move", type=int, default=5, help="frames per run of moving rectangles")
    ap.add_argument("--jpeg", action="store_true", help="write JPEG instead of PNG")
    ap.add_argument("--edges", action="store_true",
                    help="write the 16 threshold-edge frames instead (see edge_frames)")
    a = ap.parse_args(argv)
    if a.count < 1 or a.move < 1:
        ap.error("--count and --move must be at least 1")
    if min(a.width, a.height) < 300 or max(a.width, a.height) > 8192:
        ap.error("frames must be 300..8192 px on each side")
    paths = write(a.out_dir, a.count, a.seed, a.width, a.height, a.move, a.jpeg, a.edges)
    print(f"wrote {len(paths)} frames to {a.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
