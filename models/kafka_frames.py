#!/usr/bin/python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Frames of a Kafka topic as RGB, read through the elements themselves.

Builds ``kafkasrc ! kafkadecodebin ! videoconvert ! video/x-raw,format=RGB ! appsink`` from
element factories and writes every ``--every``-th frame, at most ``--frames`` of them, to
stdout::

    GST_PLUGIN_PATH=/path/to/plugins python3 kafka_frames.py --brokers HOST:PORT \\
        --topic frames [--frames 100] [--every 1] [--timeout 10] > frames.bin

Each frame is the 4 bytes ``GKVF``, width and height as little-endian uint32, then
width * height * 3 bytes of tightly packed RGB rows. The topic is read from the beginning
of every partition without a consumer group (nothing is committed). Reading stops after
``--frames`` frames, once every stream read has sent its end-of-stream record, or when no
frame arrives for ``--timeout`` seconds. Records without an envelope are read as JPEG.

``models/quantize.py`` runs it with Debian's python3, the one with PyGObject
(``python3-gi``, ``gir1.2-gstreamer-1.0``). On failure it prints one line
``kafka_frames.py: error: ...`` and exits with status 2.
"""

import argparse
import struct
import sys

FRAME_MAGIC = b"GKVF"
FRAME_HEADER = struct.Struct("<4sII")
EXIT_ERROR = 2


class ReadError(Exception):
    """Why no frames could be read, in words naming what the user can change."""


def element(Gst, factory, **properties):
    made = Gst.ElementFactory.make(factory, None)
    if made is None:
        hint = (" set GST_PLUGIN_PATH to the folder holding libgstkafka.so"
                if factory.startswith("kafka") else " install GStreamer's base plugins")
        raise ReadError(f"no GStreamer element '{factory}':{hint}")
    for name, value in properties.items():
        made.set_property(name.replace("_", "-"), value)
    return made


def build(Gst, brokers, topic, timeout):
    source = element(Gst, "kafkasrc", brokers=brokers, topic=topic, stop_on_eos=True,
                     connect_timeout=max(1, int(timeout * 1000)))
    Gst.util_set_object_arg(source, "start-from", "earliest")
    # Records of other clients carry no caps: a JPEG value is then a frame, anything else a
    # bad record that kafkasrc skips.
    source.set_property("caps", Gst.Caps.from_string("image/jpeg"))
    decode = element(Gst, "kafkadecodebin")
    convert = element(Gst, "videoconvert")
    rgb = element(Gst, "capsfilter", caps=Gst.Caps.from_string("video/x-raw,format=RGB"))
    sink = element(Gst, "appsink", sync=False, max_buffers=4, drop=False)
    pipeline = Gst.Pipeline.new("kafka-frames")
    for part in (source, decode, convert, rgb, sink):
        pipeline.add(part)
    if not (source.link(decode) and decode.link(convert) and convert.link(rgb)
            and rgb.link(sink)):
        raise ReadError("cannot link kafkasrc ! kafkadecodebin ! videoconvert ! appsink")
    return pipeline, sink


def rgb_rows(Gst, sample):
    """A sample of caps video/x-raw,format=RGB -> (width, height, tightly packed rows)."""
    s = sample.get_caps().get_structure(0)
    width, height = s.get_value("width"), s.get_value("height")
    buf = sample.get_buffer()
    ok, info = buf.map(Gst.MapFlags.READ)
    if not ok:
        raise ReadError("cannot map a decoded frame")
    try:
        data = bytes(info.data)
    finally:
        buf.unmap(info)
    row = width * 3
    stride = (row + 3) // 4 * 4          # GStreamer's default for packed RGB
    if len(data) < stride * (height - 1) + row:
        raise ReadError(f"decoded RGB frame {width}x{height} has only {len(data)} bytes")
    if stride == row:
        return width, height, data[:row * height]
    return width, height, b"".join(data[y * stride:y * stride + row] for y in range(height))


def bus_error(bus, Gst):
    message = bus.pop_filtered(Gst.MessageType.ERROR)
    if message is None:
        return None
    error, _debug = message.parse_error()
    return f"{message.src.get_name()}: {error.message}"


def read_frames(args, out):
    """Writes the frames to `out`; returns how many frames were decoded and written."""
    try:
        import gi
        gi.require_version("Gst", "1.0")
        from gi.repository import Gst
    except (ImportError, ValueError) as e:
        raise ReadError(f"PyGObject with GStreamer is missing ({e}): install Debian's "
                        "python3-gi and gir1.2-gstreamer-1.0") from None
    Gst.init(None)
    pipeline, sink = build(Gst, args.brokers, args.topic, args.timeout)
    bus = pipeline.get_bus()
    where = f"topic {args.topic!r} on {args.brokers}"
    decoded = written = 0
    try:
        if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            raise ReadError(f"cannot read {where}: "
                            f"{bus_error(bus, Gst) or 'the pipeline did not start'}")
        while written < args.frames:
            sample = sink.emit("try-pull-sample", int(args.timeout * Gst.SECOND))
            if sample is None:
                error = bus_error(bus, Gst)
                if error:
                    raise ReadError(f"reading {where}: {error}")
                break                       # end of every stream, or nothing for --timeout
            decoded += 1
            if (decoded - 1) % args.every:
                continue
            width, height, rows = rgb_rows(Gst, sample)
            out.write(FRAME_HEADER.pack(FRAME_MAGIC, width, height))
            out.write(rows)
            written += 1
        out.flush()
    finally:
        pipeline.set_state(Gst.State.NULL)
    return decoded


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--frames", type=int, default=100, help="at most this many frames")
    ap.add_argument("--every", type=int, default=1, help="every K-th decoded frame")
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="seconds to wait for the brokers, and for each frame")
    args = ap.parse_args(argv)
    if args.frames < 1 or args.every < 1 or not args.timeout > 0:
        ap.error("--frames and --every must be at least 1, --timeout positive")
    try:
        decoded = read_frames(args, sys.stdout.buffer)
    except ReadError as e:
        print(f"kafka_frames.py: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(f"kafka_frames.py: {decoded} frame(s) decoded", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
