#!/usr/bin/env python3
"""Parses Prometheus text (stdin) with prometheus_client's parser, which
raises on anything malformed, and prints one line per sample:
NAME ctx=C name=N [function=F] [kind=K] VALUE (value as an int if whole).
Exits 1 when the text does not parse or holds no sample."""
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
count = 0
try:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = " ".join(
                "%s=%s" % (k, s.labels[k])
                for k in ("ctx", "name", "function", "kind")
                if k in s.labels)
            v = s.value
            v = int(v) if v == int(v) else v
            print("%s %s %s" % (s.name, labels, v))
            count += 1
except Exception as e:  # the parser's errors are of several types
    print("parse error: %s" % e)
    sys.exit(1)
sys.exit(0 if count else 1)
