#!/usr/bin/env python3
"""Score `downshift discover --json` (and BERTopic on the same calls) against gold job tags.

    score.py NAME RECORDS_JSONL DISCOVER_JSON DISCOVER_SECONDS [--label job] [--by agent]
             [--subset KEY=VALUE] [--bertopic]

RECORDS_JSONL is what was imported (import format, gold label in `metadata[--label]`); calls are
joined to discover's assignments by their position in import order, which `discover --json`
keeps (oldest first; the generators give every record a distinct, increasing timestamp or none).
Prints ARI / NMI / noise overall, per `--by` group, and on `--subset` (e.g. `step=0`: the first
call of each τ² conversation), the number of tasks, and the router placement figure when
`discover --placement` was run. Noise (no task; BERTopic topic -1) counts as one singleton
cluster per call, so unassigned calls never earn agreement.

BERTopic 0.17 runs with its defaults and the same all-MiniLM-L6-v2 weights as in compare.py;
each call's document is the text of its request's system and user messages.
"""
import json
import os
import sys
import time

from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def doc_of(rec):
    parts = []
    for m in rec["request"].get("messages", []):
        if m.get("role") in ("system", "user") and isinstance(m.get("content"), str):
            parts.append(m["content"])
    return "\n".join(parts)


def scores(truth, pred):
    p = [x if x is not None else f"noise-{i}" for i, x in enumerate(pred)]
    return (adjusted_rand_score(truth, p), normalized_mutual_info_score(truth, p),
            sum(1 for x in pred if x is None) / max(1, len(pred)))


def arg(name, default=None):
    if name in sys.argv:
        return sys.argv[sys.argv.index(name) + 1]
    return default


def run_bertopic(docs):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    t = time.time()
    from bertopic import BERTopic
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(os.path.join(root, "models/all-minilm-l6-v2"), device="cpu")
    topics, _ = BERTopic(embedding_model=model).fit_transform(docs)
    return [t if t != -1 else None for t in topics], time.time() - t


def main():
    name, records_path, disc_path, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    label, by, subset = arg("--label", "job"), arg("--by"), arg("--subset")
    recs = [json.loads(l) for l in open(records_path, encoding="utf-8")]
    out = json.load(open(disc_path, encoding="utf-8"))
    assignments = out["assignments"]
    assert len(assignments) == len(recs), f"{len(assignments)} assignments for {len(recs)} records"
    for r, a in zip(recs, assignments):
        assert a["tags"].get(label) == r["metadata"].get(label), "discover output is not in import order"
    ours = [a["task_id"] for a in assignments]
    bert, bert_secs = (None, None)
    if "--bertopic" in sys.argv:
        bert, bert_secs = run_bertopic([doc_of(r) for r in recs])

    rows = [("all", list(range(len(recs))))]
    if subset:
        k, v = subset.split("=", 1)
        rows.append((f"{k}={v}", [i for i, r in enumerate(recs) if str(r["metadata"].get(k)) == v]))
    if by:
        for g in sorted({r["metadata"].get(by, "") for r in recs}):
            rows.append((f"{by}={g}", [i for i, r in enumerate(recs) if r["metadata"].get(by, "") == g]))
    print(f"== {name}: {len(recs)} calls, gold label `{label}`")
    print(f"{'calls':<24} {'n':>6} {'jobs':>5} | {'downshift ARI':>13} {'NMI':>6} {'noise':>6}"
          + (f" | {'BERTopic ARI':>12} {'NMI':>6} {'noise':>6}" if bert else ""))
    for row, idx in rows:
        truth = [recs[i]["metadata"].get(label, "") for i in idx]
        a, n, z = scores(truth, [ours[i] for i in idx])
        line = f"{row:<24} {len(idx):>6} {len(set(truth)):>5} | {a:>13.3f} {n:>6.3f} {z:>6.1%}"
        if bert:
            a2, n2, z2 = scores(truth, [bert[i] for i in idx])
            line += f" | {a2:>12.3f} {n2:>6.3f} {z2:>6.1%}"
        print(line)
    line = f"tasks: downshift {len(out['tasks'])}"
    if bert:
        line += f", BERTopic {len(set(t for t in bert if t is not None))} topics"
    print(line)
    line = f"wall time: downshift discover {secs:.1f} s"
    if bert_secs is not None:
        line += f", BERTopic {bert_secs:.1f} s, ratio {bert_secs / max(secs, 1e-9):.1f}x"
    print(line)
    p = out.get("placement")
    if p:
        print(f"router placement on held-back calls: {p['share']:.1%} ({p['placed']} of {p['held_back']}; "
              f"{p['placed_elsewhere']} elsewhere, {p['not_placed']} left to the LLM), lowest task {p['min_task_share']:.1%}"
              + (f"; precision {p['precision']:.1%} ({p['noise_placed']} of {p['noise_held_back']} held-back noise calls taken into a task)"
                 if "precision" in p else ""))
    print("labels: " + "; ".join(f"{t['label']} ({t['calls']})" for t in out["tasks"][:12]))


if __name__ == "__main__":
    main()
