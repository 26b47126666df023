#!/usr/bin/env python3
"""Reads a /metrics page with Prometheus' own OpenMetrics parser (prometheus_client) and
prints JSON: {"samples": {"name{label=value,...}": value}, "types": {family: type}}.
Usage: scrape_metrics.py URL"""

import json
import sys
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families

with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
    content_type = response.headers.get("Content-Type", "")
    text = response.read().decode()
if not content_type.startswith("application/openmetrics-text"):
    sys.exit(f"served as {content_type!r}, not OpenMetrics")
samples = {}
types = {}
for family in text_string_to_metric_families(text):
    types[family.name] = family.type
    for sample in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
        samples[f"{sample.name}{{{labels}}}"] = sample.value
print(json.dumps({"samples": samples, "types": types}))
