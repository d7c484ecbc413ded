#!/usr/bin/env python3
"""Acceptance summary of issue 30 over the independent corpora's report parts (out/*.scores.json)."""
import json
import os
import sys

out = sys.argv[1]
print("### acceptance (issue 30) on the independent corpora's report parts\n")
print("| corpus | structured R (>=0.97) | PERSON R (>=0.90) | ADDRESS R (>=0.90) | precision (>=0.95) | throughput ratio (>=50x) |")
print("|---|---:|---:|---:|---:|---:|")
for c in ("peval", "varied", "real"):
    path = os.path.join(out, f"{c}.scores.json")
    if not os.path.exists(path):
        continue
    s = json.load(open(path))["types"]
    d = json.load(open(os.path.join(out, f"{c}.downshift_stats.json")))
    p = json.load(open(os.path.join(out, f"{c}.presidio_stats.json")))
    ratio = d["texts_per_s"] / p["texts_per_s"]

    def cell(key, field, floor):
        v = s.get(key, {}).get(field)
        if v is None:
            return "-"
        return f"{v:.3f} {'ok' if v >= floor else 'MISSED'}"
    print(f"| {c} | {cell('structured', 'R', 0.97)} | {cell('PERSON', 'R', 0.90)} | {cell('STREET_ADDRESS', 'R', 0.90)} | "
          f"{cell('all', 'P', 0.95)} | {ratio:.0f}x {'ok' if ratio >= 50 else 'MISSED'} |")
