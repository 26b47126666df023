#!/usr/bin/env python3
"""Reads a /metrics page with Prometheus' own parser (prometheus_client) and prints its
samples as JSON: {"name{label=value,...}": value}. Usage: scrape_metrics.py URL"""

import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
    text = response.read().decode()
samples = {}
for family in text_string_to_metric_families(text):
    for sample in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
        samples[f"{sample.name}{{{labels}}}"] = sample.value
print(json.dumps(samples))
