#!/usr/bin/python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Embedding the elements in a Python (PyGObject) application.

Builds ``kafkasrc ! kafkadecodebin ! videoconvert ! yolodetect ! fakesink`` from element
factories with typed properties, prints the detections of every frame from yolodetect's
``yolodetect`` bus messages, and the elements' ``stats`` at the end::

    GST_PLUGIN_PATH=/path/to/plugins python3 detect.py --brokers HOST:PORT --topic frames \\
        --model yolov8n.onnx [--ort-library libonnxruntime.so] [--frames N]

Needs Debian's ``python3-gi``, ``gir1.2-gstreamer-1.0`` and ``python3-gst-1.0`` (without
the last one PyGObject cannot read ``GstValueArray`` fields such as ``detections``).
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402


def element(factory, **properties):
    made = Gst.ElementFactory.make(factory, None)
    if made is None:
        sys.exit(f"detect.py: no element '{factory}': set GST_PLUGIN_PATH to the plugins' folder")
    for name, value in properties.items():
        made.set_property(name.replace("_", "-"), value)
    return made


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ort-library")
    ap.add_argument("--frames", type=int, help="stop after this many frames")
    args = ap.parse_args()

    Gst.init(None)
    source = element("kafkasrc", brokers=args.brokers, topic=args.topic, stop_on_eos=True)
    Gst.util_set_object_arg(source, "start-from", "earliest")
    decode = element("kafkadecodebin")
    convert = element("videoconvert")
    detect = element("yolodetect", model_location=args.model, post_messages=True)
    if args.ort_library:
        detect.set_property("ort-library", args.ort_library)
    sink = element("fakesink", sync=False)

    pipeline = Gst.Pipeline.new("detect")
    for part in (source, decode, convert, detect, sink):
        pipeline.add(part)
    source.link(decode)
    decode.link(convert)
    convert.link(detect)
    detect.link(sink)

    loop = GLib.MainLoop()
    state = {"frames": 0, "error": None}

    def on_message(_bus, message):
        if message.type == Gst.MessageType.ELEMENT and message.has_name("yolodetect"):
            s = message.get_structure()
            found = []
            for d in s.get_value("detections"):
                found.append(f"{d.get_value('label')} {d.get_value('confidence'):.2f} "
                             f"[{d.get_value('x')},{d.get_value('y')} "
                             f"{d.get_value('width')}x{d.get_value('height')}]")
            print(f"frame pts={s.get_value('pts')} inferred={s.get_value('inferred')}: "
                  + "; ".join(found), flush=True)
            state["frames"] += 1
            if args.frames and state["frames"] >= args.frames:
                pipeline.send_event(Gst.Event.new_eos())
        elif message.type == Gst.MessageType.EOS:
            loop.quit()
        elif message.type == Gst.MessageType.ERROR:
            error, _debug = message.parse_error()
            state["error"] = f"{message.src.get_name()}: {error.message}"
            loop.quit()

    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
        message = bus.timed_pop_filtered(0, Gst.MessageType.ERROR)
        error = message.parse_error()[0].message if message else "the pipeline did not start"
        pipeline.set_state(Gst.State.NULL)
        sys.exit(f"detect.py: {error}")
    loop.run()
    stats = {name: part.get_property("stats") for name, part in
             (("kafkasrc", source), ("yolodetect", detect))}
    pipeline.set_state(Gst.State.NULL)
    for name, structure in stats.items():
        print(f"stats {name}: {structure.to_string()}")
    if state["error"]:
        sys.exit(f"detect.py: {state['error']}")


if __name__ == "__main__":
    main()
