#!/usr/bin/env python3
"""Make N logged calls for the curation benchmark from the BFCL development data: every record
replicated with varied values (numbers re-drawn, some personal data added), plus a few exact
duplicates, truncated answers and refusals so every pipeline step has work. Deterministic."""
import json, random, re, sys

src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(20261125)
base = [json.loads(l) for l in open(src, encoding="utf-8")]
first = ["Anna", "Lukas", "Sofia", "Mateo", "Chloé", "Jan", "Giulia", "Noah", "Emma", "Hugo"]
last = ["Schmidt", "García", "Rossi", "Dubois", "de Vries", "Novak", "Smith", "Kowalski"]
t0 = 1767225600000  # 2026-01-01
written = []
with open(out, "w", encoding="utf-8") as f:
    for i in range(n):
        roll = rng.random()
        if written and roll < 0.03:
            rec = json.loads(written[rng.randrange(len(written))])  # an exact repeat, later
        else:
            rec = json.loads(json.dumps(base[i % len(base)]))
            for m in rec["request"]["messages"]:
                if m.get("role") == "user" and isinstance(m.get("content"), str):
                    m["content"] = re.sub(r"\d+", lambda d: str(rng.randrange(1, 10 ** len(d.group()))), m["content"])
                    if rng.random() < 0.3:
                        fn, ln = rng.choice(first), rng.choice(last)
                        m["content"] += (f" I'm {fn} {ln}, reach me at {fn.lower()}.{rng.randrange(999)}@example.com"
                                         f" or +1 415 555 {rng.randrange(1000, 9999)}.")
            choice = rec["response"]["choices"][0]
            if roll > 0.99:
                choice["message"] = {"role": "assistant", "content": "I'm sorry, but I can't help with that."}
                choice["finish_reason"] = "stop"
            elif roll > 0.98:
                choice["finish_reason"] = "length"
        rec["timestamp"] = (t0 + i * 1000) / 1000
        rec["metadata"]["copy"] = str(i // len(base))
        line = json.dumps(rec, ensure_ascii=False)
        if len(written) < 5000:
            written.append(line)
        f.write(line + "\n")
print(f"wrote {n} calls to {out}", file=sys.stderr)
