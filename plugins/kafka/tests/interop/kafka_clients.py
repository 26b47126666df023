#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Third-party Kafka clients for interop tests: the Rust tests run this with the
project venv's python ($KV_PYTHON) to check that what kafkasink writes is readable
by other clients, and that kafkasrc reads what other clients write.

  produce     --client kafka-python|confluent --brokers B --topic T --file F
              [--count N] [--header k=v ...] [--timeout S]
      Writes the bytes of F as the value of N records (no key), flushes, and prints
      {"written": N}. Exits 1 when not all records were acknowledged.
  consume     --client kafka-python|confluent --brokers B --topic T --count N
              --timeout S [--out-dir D]
      Reads N records from the start of every partition (explicit assignment, no
      consumer group, nothing committed), writes each value to D/NNNN.bin (0000.bin
      first, in the order received) and prints one JSON line per record:
      {"partition":P,"offset":O,"size":S,"headers":{"name":"utf-8 value"}}
      Exits 1 with a message on stderr when N records did not come within S seconds
      (the lines of the records that did come are printed first).
  create-topic --brokers B --topic T [--partitions N] [--config K=V ...]
      Creates T (replication factor 1); fine if it exists. tansu does not auto-create.

stdout carries only the JSON; diagnostics go to stderr.
"""

import argparse
import json
import os
import sys
import time

# kafka-python against tansu 0.6.0 (checked with kafka-python 3.0.12): its ApiVersions
# probe settles on (3, 9); (4, 0), (3, 9), (2, 8) and (2, 5) all work. (2, 0) and older
# must NOT be used: the idempotent producer then sends InitProducerId without a producer
# id, tansu's sqlite engine panics (todo!() in tansu-storage lite.rs) and the broker drops
# every connection ("socket disconnected") until it is restarted. Pinned so another
# kafka-python release can't guess differently; it also saves the probe's round trip.
KAFKA_PYTHON_API_VERSION = (3, 9)

# Room for big records (video frames): clients refuse records above their limits.
MAX_BYTES = 64 * 1024 * 1024


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def fail(msg):
    print(f"kafka_clients: {msg}", file=sys.stderr)
    sys.exit(1)


def parse_headers(pairs):
    headers = []
    for pair in pairs or []:
        if "=" not in pair:
            fail(f"--header wants k=v, got {pair!r}")
        k, v = pair.split("=", 1)
        headers.append((k, v.encode("utf-8")))
    return headers


def headers_json(headers):
    return {
        k: (None if v is None else bytes(v).decode("utf-8", errors="replace"))
        for k, v in (headers or [])
    }


def kafka_python_common(brokers):
    opts = {"bootstrap_servers": brokers.split(",")}
    if KAFKA_PYTHON_API_VERSION is not None:
        opts["api_version"] = KAFKA_PYTHON_API_VERSION
    return opts


# ---------------------------------------------------------------- produce


def produce_confluent(args, value, headers):
    from confluent_kafka import Producer

    delivered = 0
    errors = []

    def on_delivery(err, _msg):
        nonlocal delivered
        if err is None:
            delivered += 1
        else:
            errors.append(str(err))

    producer = Producer(
        {
            "bootstrap.servers": args.brokers,
            "acks": "all",
            "message.max.bytes": MAX_BYTES,
            "message.timeout.ms": int(args.timeout * 1000),
        }
    )
    for _ in range(args.count):
        while True:
            try:
                producer.produce(args.topic, value=value, headers=headers or None,
                                 on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(args.timeout)
    if errors:
        print(f"kafka_clients: {len(errors)} records failed, first: {errors[0]}",
              file=sys.stderr)
    return delivered


def produce_kafka_python(args, value, headers):
    from kafka import KafkaProducer

    producer = KafkaProducer(
        acks="all",
        max_request_size=MAX_BYTES,
        request_timeout_ms=int(args.timeout * 1000),
        # send() blocks this long for metadata; an unknown topic (tansu never creates
        # one) would otherwise hang for the default 60 s.
        max_block_ms=int(args.timeout * 1000),
        **kafka_python_common(args.brokers),
    )
    futures = []
    delivered = 0
    try:
        for _ in range(args.count):
            futures.append(producer.send(args.topic, value=value, headers=headers))
    except Exception as e:  # noqa: BLE001 - e.g. KafkaTimeoutError for a missing topic
        print(f"kafka_clients: send failed: {e!r}", file=sys.stderr)
    producer.flush(timeout=args.timeout)
    for fut in futures:
        try:
            fut.get(timeout=0)
            delivered += 1
        except Exception as e:  # noqa: BLE001 - report, count, go on
            print(f"kafka_clients: record failed: {e!r}", file=sys.stderr)
    producer.close(timeout=5)
    return delivered


def cmd_produce(args):
    with open(args.file, "rb") as f:
        value = f.read()
    headers = parse_headers(args.header)
    fn = produce_confluent if args.client == "confluent" else produce_kafka_python
    written = fn(args, value, headers)
    emit({"written": written})
    if written != args.count:
        fail(f"only {written} of {args.count} records were acknowledged")


# ---------------------------------------------------------------- consume


class Sink:
    """Writes values to the out dir and prints the JSON lines, in arrival order."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.n = 0
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)

    def record(self, partition, offset, value, headers):
        value = value or b""
        if self.out_dir:
            with open(os.path.join(self.out_dir, f"{self.n:04d}.bin"), "wb") as f:
                f.write(value)
        self.n += 1
        emit({"partition": partition, "offset": offset, "size": len(value),
              "headers": headers_json(headers)})


def consume_confluent(args, sink, deadline):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": args.brokers,
            # librdkafka insists on a group.id; with assign() and no commits the group
            # is never joined.
            "group.id": "kafka-clients-py-unused",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.message.max.bytes": MAX_BYTES,
            "receive.message.max.bytes": MAX_BYTES + 1024 * 1024,
        }
    )
    try:
        partitions = None
        while partitions is None:
            md = consumer.list_topics(args.topic, timeout=max(0.1, deadline - time.monotonic()))
            t = md.topics.get(args.topic)
            if t is not None and t.error is None and t.partitions:
                partitions = sorted(t.partitions)
            elif time.monotonic() >= deadline:
                err = t.error if t is not None else "no metadata"
                fail(f"timeout: topic {args.topic!r} not found ({err})")
            else:
                time.sleep(0.2)
        consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])
        while sink.n < args.count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            msg = consumer.poll(min(left, 1.0))
            if msg is None:
                continue
            if msg.error():
                # End-of-partition events are off by default; anything else is fatal.
                fail(f"consume error: {msg.error()}")
            sink.record(msg.partition(), msg.offset(), msg.value(), msg.headers())
    finally:
        consumer.close()


def consume_kafka_python(args, sink, deadline):
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_BYTES,
        fetch_max_bytes=MAX_BYTES,
        **kafka_python_common(args.brokers),
    )
    try:
        partitions = None
        while not partitions:
            partitions = consumer.partitions_for_topic(args.topic)
            if not partitions:
                if time.monotonic() >= deadline:
                    fail(f"timeout: topic {args.topic!r} not found")
                time.sleep(0.2)
        tps = [TopicPartition(args.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        while sink.n < args.count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            batches = consumer.poll(timeout_ms=int(min(left, 1.0) * 1000),
                                    max_records=args.count - sink.n)
            for tp, records in batches.items():
                for r in records:
                    sink.record(tp.partition, r.offset, r.value, r.headers)
    finally:
        consumer.close()


def cmd_consume(args):
    deadline = time.monotonic() + args.timeout
    sink = Sink(args.out_dir)
    fn = consume_confluent if args.client == "confluent" else consume_kafka_python
    fn(args, sink, deadline)
    if sink.n < args.count:
        fail(f"timeout: got {sink.n} of {args.count} records within {args.timeout}s")


# ---------------------------------------------------------------- create-topic


def cmd_create_topic(args):
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    config = {}
    for entry in args.config or []:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            fail(f"--config {entry!r}: expected KEY=VALUE, e.g. cleanup.policy=compact")
        config[key] = value
    admin = AdminClient({"bootstrap.servers": args.brokers})
    fut = admin.create_topics(
        [NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1,
                  config=config)],
        operation_timeout=10, request_timeout=15,
    )[args.topic]
    try:
        fut.result()
        emit({"created": args.topic, "partitions": args.partitions, "config": config})
    except KafkaException as e:
        if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            fail(f"creating topic {args.topic!r}: {e}")
        metadata = admin.list_topics(args.topic, timeout=10).topics.get(args.topic)
        partitions = len(metadata.partitions) if metadata is not None else None
        emit({"exists": args.topic, "partitions": partitions})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p, client=True):
        if client:
            p.add_argument("--client", choices=["kafka-python", "confluent"], required=True)
        p.add_argument("--brokers", required=True)
        p.add_argument("--topic", required=True)

    p = sub.add_parser("produce")
    common(p)
    p.add_argument("--file", required=True)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--header", action="append", metavar="K=V")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to deliver all")
    p.set_defaults(fn=cmd_produce)

    p = sub.add_parser("consume")
    common(p)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--out-dir")
    p.set_defaults(fn=cmd_consume)

    p = sub.add_parser("create-topic")
    common(p, client=False)
    p.add_argument("--partitions", type=int, default=1)
    p.add_argument("--config", action="append", metavar="K=V",
                   help="a topic setting, e.g. cleanup.policy=compact (repeatable)")
    p.set_defaults(fn=cmd_create_topic)

    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
