#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""The seed-style detector loop that e2e-bench measures ours against.

What a competent user writes without GStreamer: kafka-python consumer, OpenCV JPEG decode
and letterbox, numpy normalisation, one ONNX Runtime session (CPU, its default threads),
YOLOv8 decode and per-class NMS in numpy, one JSON detections record per frame produced
with kafka-python::

    python bench/python/seed_loop.py --brokers HOST:PORT --topic IN --output OUT \\
        --group G --model yolov8n-random-640.onnx --frames 300

Reads IN from the earliest offset as the fresh group G until FRAMES frames (records with
a non-empty value; gst-kafka-vision's end-of-stream record is empty) have been detected,
then flushes the producer. Prints one line of JSON: ``{"frames": .., "seconds": ..,
"detections": ..}``, the seconds from the first frame received to the last record flushed
(the session and its warm-up run, as in yolodetect's start(), the clients and the group
join come before the clock starts, as they do for e2e-bench's pipelines).
"""

import argparse
import json
import sys
import time

import cv2
import numpy as np
import onnxruntime as ort
from kafka import KafkaConsumer, KafkaProducer

CONF = 0.25
IOU = 0.45
MAX_DET = 300


def letterbox(image, size):
    """BGR uint8 HxWx3 -> (float32 1x3xSxS RGB in 0..1, scale, left, top)."""
    h, w = image.shape[:2]
    scale = min(size / w, size / h)
    new_w, new_h = round(w * scale), round(h * scale)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    padded = cv2.copyMakeBorder(
        resized, top, size - new_h - top, left, size - new_w - left,
        cv2.BORDER_CONSTANT, value=(114, 114, 114))
    rgb = cv2.cvtColor(padded, cv2.COLOR_BGR2RGB)
    blob = rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    return np.ascontiguousarray(blob), scale, left, top


def nms(boxes, scores, iou):
    """Indices kept by greedy NMS over x1, y1, x2, y2 boxes."""
    order = scores.argsort()[::-1]
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    keep = []
    while order.size and len(keep) < MAX_DET:
        best, rest = order[0], order[1:]
        keep.append(best)
        xx1 = np.maximum(boxes[best, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[best, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[best, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = (xx2 - xx1).clip(0) * (yy2 - yy1).clip(0)
        union = areas[best] + areas[rest] - inter
        order = rest[inter <= iou * union]
    return np.array(keep, dtype=np.int64)


def decode(output, scale, left, top, width, height):
    """YOLOv8 [1, 4 + classes, anchors] -> list of detection dicts in frame pixels."""
    rows = output[0].T
    class_ids = rows[:, 4:].argmax(axis=1)
    scores = rows[np.arange(len(rows)), 4 + class_ids]
    mask = scores > CONF
    rows, class_ids, scores = rows[mask], class_ids[mask], scores[mask]
    if not len(rows):
        return []
    boxes = np.empty((len(rows), 4), dtype=np.float32)
    boxes[:, 0] = rows[:, 0] - rows[:, 2] / 2
    boxes[:, 1] = rows[:, 1] - rows[:, 3] / 2
    boxes[:, 2] = rows[:, 0] + rows[:, 2] / 2
    boxes[:, 3] = rows[:, 1] + rows[:, 3] / 2
    # Per-class NMS in one pass: boxes of different classes are moved apart.
    offsets = class_ids[:, None].astype(np.float32) * 7680.0
    keep = nms(boxes + offsets, scores, IOU)
    boxes = boxes[keep]
    boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - left) / scale).clip(0, width)
    boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - top) / scale).clip(0, height)
    return [
        {
            "class_id": int(c),
            "confidence": round(float(s), 4),
            "x": round(float(b[0]), 1),
            "y": round(float(b[1]), 1),
            "width": round(float(b[2] - b[0]), 1),
            "height": round(float(b[3] - b[1]), 1),
        }
        for b, c, s in zip(boxes, class_ids[keep], scores[keep])
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--frames", type=int, required=True)
    args = parser.parse_args()

    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    size = model_input.shape[2]
    session.run(None, {model_input.name: np.zeros((1, 3, size, size), np.float32)})
    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.brokers,
        group_id=args.group,
        auto_offset_reset="earliest",
        # Frames are ~100 KB: let a fetch carry several.
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
        # Without the optional crc32c package kafka-python checks CRCs in pure Python
        # (~9 ms per 80 KB frame here); librdkafka, under kafkasrc, does not check them
        # by default either.
        check_crcs=False,
    )
    producer = KafkaProducer(bootstrap_servers=args.brokers, linger_ms=5)

    started = None
    frames = detections = 0
    while frames < args.frames:
        for records in consumer.poll(timeout_ms=1000).values():
            for record in records:
                if not record.value:
                    continue
                if started is None:
                    started = time.perf_counter()
                image = cv2.imdecode(np.frombuffer(record.value, np.uint8), cv2.IMREAD_COLOR)
                height, width = image.shape[:2]
                blob, scale, left, top = letterbox(image, size)
                output = session.run(None, {model_input.name: blob})[0]
                found = decode(output, scale, left, top, width, height)
                detections += len(found)
                producer.send(args.output, key=record.key, value=json.dumps({
                    "offset": record.offset,
                    "width": width,
                    "height": height,
                    "detections": found,
                }).encode())
                frames += 1
    producer.flush()
    seconds = time.perf_counter() - started
    consumer.close()
    producer.close()
    print(json.dumps({"frames": frames, "seconds": seconds, "detections": detections}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
