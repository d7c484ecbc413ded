#!/usr/bin/env python3
"""Score `downshift discover --json` and BERTopic on the same BFCL calls.

    compare.py BFCL_JSONL DISCOVER_JSON DISCOVER_SECONDS [--no-bertopic]

Label families (tags are used here only, never by discovery): multi-turn turns by API class
(`api_class`), live_multiple records by tool-set group (`toolset`), simple_python records by
function (`function`). Each family is scored on its own calls out of the one run over all
2,445 calls. Noise (downshift: no task; BERTopic: topic -1) counts as one singleton cluster
per call, so unassigned calls never earn agreement.

BERTopic 0.17 runs with its defaults (UMAP n_neighbors=15, n_components=5; HDBSCAN
min_cluster_size=10, prediction data; c-TF-IDF) and the same all-MiniLM-L6-v2 weights,
loaded by sentence-transformers from the packaged folder models/all-minilm-l6-v2 (no hub).
Each call's document is the text of its request's system and user messages, what a BERTopic
user would embed. Its wall time covers loading the model, embedding and fitting.
"""
import json
import os
import sys
import time

from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

FAMILIES = [
    ("multi-turn API class", "multi_turn_base", "api_class"),
    ("live_multiple tool set", "live_multiple", "toolset"),
    ("simple_python function", "simple_python", "function"),
    ("all calls (category+label)", None, None),
]


def doc_of(rec):
    parts = []
    for m in rec["request"].get("messages", []):
        if m.get("role") in ("system", "user") and isinstance(m.get("content"), str):
            parts.append(m["content"])
    return "\n".join(parts)


def truth_of(rec, cat, key):
    md = rec["metadata"]
    if cat is None:
        k = {"multi_turn_base": "api_class", "live_multiple": "toolset"}.get(md["bfcl_category"], "function")
        return md["bfcl_category"] + ":" + md.get(k, "")
    return md.get(key, "")


def scores(truth, pred):
    # Noise as singletons.
    p = [x if x is not None else f"noise-{i}" for i, x in enumerate(pred)]
    return (adjusted_rand_score(truth, p), normalized_mutual_info_score(truth, p),
            sum(1 for x in pred if x is None) / max(1, len(pred)))


def main():
    bfcl, disc_path, disc_secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
    run_bertopic = "--no-bertopic" not in sys.argv
    recs = [json.loads(l) for l in open(bfcl, encoding="utf-8")]
    key = lambda md: md["bfcl_id"] + "/" + md.get("turn", "")  # multi-turn ids repeat per turn
    by_id = {key(r["metadata"]): r for r in recs}
    out = json.load(open(disc_path, encoding="utf-8"))
    # Call ids differ from BFCL ids: join on the bfcl_id tag.
    ours = {key(a["tags"]): a["task_id"] for a in out["assignments"]}
    order = [key(r["metadata"]) for r in recs]
    assert len(by_id) == len(recs), "BFCL call keys are not unique"
    assert set(ours) == set(order), "discover output does not cover the BFCL calls"

    bert = None
    bert_secs = None
    if run_bertopic:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        t = time.time()
        from bertopic import BERTopic
        from sentence_transformers import SentenceTransformer
        model = SentenceTransformer(os.path.join(root, "models/all-minilm-l6-v2"), device="cpu")
        docs = [doc_of(r) for r in recs]
        topics, _ = BERTopic(embedding_model=model).fit_transform(docs)
        bert_secs = time.time() - t
        bert = {bid: (t if t != -1 else None) for bid, t in zip(order, topics)}

    print(f"{'labels':<28} {'calls':>5} {'classes':>7} | {'downshift ARI':>13} {'NMI':>6} {'noise':>6}"
          + (f" | {'BERTopic ARI':>12} {'NMI':>6} {'noise':>6}" if bert else ""))
    for name, cat, key in FAMILIES:
        ids = [i for i in order if cat is None or by_id[i]["metadata"]["bfcl_category"] == cat]
        truth = [truth_of(by_id[i], cat, key) for i in ids]
        a, n, z = scores(truth, [ours[i] for i in ids])
        line = f"{name:<28} {len(ids):>5} {len(set(truth)):>7} | {a:>13.3f} {n:>6.3f} {z:>6.1%}"
        if bert:
            a2, n2, z2 = scores(truth, [bert[i] for i in ids])
            line += f" | {a2:>12.3f} {n2:>6.3f} {z2:>6.1%}"
        print(line)
    tasks = len(out["tasks"])
    print(f"\ntasks: downshift {tasks}" + (f", BERTopic {len(set(t for t in bert.values() if t is not None))} topics" if bert else ""))
    line = f"wall time: downshift discover {disc_secs:.1f} s"
    if bert_secs is not None:
        line += f", BERTopic {bert_secs:.1f} s, ratio {bert_secs / disc_secs:.1f}x"
    print(line)


if __name__ == "__main__":
    main()
