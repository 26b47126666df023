/* SPDX-License-Identifier: MIT OR Apache-2.0
 *
 * Embedding the elements in a C application, against the plugins `meson install` put in
 * GStreamer's plugin directory (or in GST_PLUGIN_PATH for another prefix):
 *
 *   cc detect.c $(pkg-config --cflags --libs gstreamer-1.0) -o detect
 *   ./detect BROKERS TOPIC MODEL.onnx [FRAMES]
 *
 * Builds kafkasrc ! kafkadecodebin ! videoconvert ! yolodetect ! fakesink from element
 * factories with typed properties, prints each frame's detections from yolodetect's
 * `yolodetect` bus messages, and the elements' `stats` at the end.
 */
#include <gst/gst.h>
#include <stdio.h>
#include <stdlib.h>

static GstElement *make(const char *factory) {
  GstElement *element = gst_element_factory_make(factory, NULL);
  if (element == NULL) {
    fprintf(stderr, "detect: no element '%s': install the plugins (meson install) or set "
                    "GST_PLUGIN_PATH\n", factory);
    exit(1);
  }
  return element;
}

static void print_detections(const GstStructure *s) {
  guint64 pts = 0;
  gboolean inferred = FALSE;
  gst_structure_get_uint64(s, "pts", &pts);
  gst_structure_get_boolean(s, "inferred", &inferred);
  printf("frame pts=%" G_GUINT64_FORMAT " inferred=%d:", pts, inferred);
  const GValue *detections = gst_structure_get_value(s, "detections");
  guint n = detections != NULL ? gst_value_array_get_size(detections) : 0;
  for (guint i = 0; i < n; i++) {
    const GstStructure *d =
        gst_value_get_structure(gst_value_array_get_value(detections, i));
    const gchar *label = gst_structure_get_string(d, "label");
    gdouble confidence = 0, x = 0, y = 0, width = 0, height = 0;
    gst_structure_get_double(d, "confidence", &confidence);
    gst_structure_get_double(d, "x", &x);
    gst_structure_get_double(d, "y", &y);
    gst_structure_get_double(d, "width", &width);
    gst_structure_get_double(d, "height", &height);
    printf("%s %s %.2f [%.0f,%.0f %.0fx%.0f]", i == 0 ? "" : ";", label ? label : "?",
           confidence, x, y, width, height);
  }
  printf("\n");
  fflush(stdout);
}

static void print_stats(GstElement *element, const char *name) {
  GstStructure *stats = NULL;
  g_object_get(element, "stats", &stats, NULL);
  gchar *text = gst_structure_to_string(stats);
  printf("stats %s: %s\n", name, text);
  g_free(text);
  gst_structure_free(stats);
}

int main(int argc, char **argv) {
  gst_init(&argc, &argv);
  if (argc < 4) {
    fprintf(stderr, "usage: detect BROKERS TOPIC MODEL.onnx [FRAMES]\n");
    return 2;
  }
  long limit = argc > 4 ? strtol(argv[4], NULL, 10) : 0;

  GstElement *source = make("kafkasrc");
  g_object_set(source, "brokers", argv[1], "topic", argv[2], "stop-on-eos", TRUE, NULL);
  gst_util_set_object_arg(G_OBJECT(source), "start-from", "earliest");
  GstElement *decode = make("kafkadecodebin");
  GstElement *convert = make("videoconvert");
  GstElement *detect = make("yolodetect");
  g_object_set(detect, "model-location", argv[3], "post-messages", TRUE, NULL);
  GstElement *sink = make("fakesink");
  g_object_set(sink, "sync", FALSE, NULL);

  GstElement *pipeline = gst_pipeline_new("detect");
  gst_bin_add_many(GST_BIN(pipeline), source, decode, convert, detect, sink, NULL);
  if (!gst_element_link_many(source, decode, convert, detect, sink, NULL)) {
    fprintf(stderr, "detect: could not link the pipeline\n");
    return 1;
  }

  GstBus *bus = gst_element_get_bus(pipeline);
  int status = 0;
  long frames = 0;
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  for (gboolean done = FALSE; !done;) {
    GstMessage *msg = gst_bus_timed_pop_filtered(
        bus, GST_CLOCK_TIME_NONE,
        GST_MESSAGE_ELEMENT | GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
    switch (GST_MESSAGE_TYPE(msg)) {
    case GST_MESSAGE_ELEMENT:
      if (gst_message_has_name(msg, "yolodetect")) {
        print_detections(gst_message_get_structure(msg));
        if (++frames == limit)
          gst_element_send_event(pipeline, gst_event_new_eos());
      }
      break;
    case GST_MESSAGE_EOS:
      done = TRUE;
      break;
    case GST_MESSAGE_ERROR: {
      GError *error = NULL;
      gst_message_parse_error(msg, &error, NULL);
      fprintf(stderr, "detect: %s: %s\n", GST_OBJECT_NAME(msg->src), error->message);
      g_error_free(error);
      status = 1;
      done = TRUE;
      break;
    }
    default:
      break;
    }
    gst_message_unref(msg);
  }
  print_stats(source, "kafkasrc");
  print_stats(detect, "yolodetect");
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(pipeline);
  return status;
}
