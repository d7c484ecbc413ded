#!/usr/bin/env python3
"""gen.py BFCL_JSONL N [SEED]: writes N import-format call records built from the BFCL calls, spread over the last 30 days,
a share of them tagged as answered by a specialist or fallen back (what the gateway tags)."""
import json
import random
import sys
import time

src, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 7)
base = [json.loads(l) for l in open(src)]
now_ms = int(time.time() * 1000)
span = 30 * 24 * 3600 * 1000
out = sys.stdout
for i in range(n):
    r = dict(base[i % len(base)])
    r["timestamp"] = now_ms - rng.randrange(span)
    tags = {k: str(v) for k, v in (r.get("metadata") or {}).items()}
    tags["bench"] = "ui"
    x = rng.random()
    if x < 0.25:
        tags["downshift_route"] = "specialist"
    elif x < 0.28:
        tags["downshift_fallback"] = rng.choice(["low_confidence", "unoffered_tool", "schema"])
    r["metadata"] = tags
    out.write(json.dumps(r, separators=(",", ":")) + "\n")
