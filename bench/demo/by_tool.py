#!/usr/bin/env python3
"""What a confidence threshold per answered tool would serve, next to the one threshold per task
that the gate picks today: from a specialist's answers on its validation and test splits
(`downshift eval --no-base --split validation|test --predictions FILE`).

    bench/demo/by_tool.py VALIDATION.jsonl TEST.jsonl [--precision 0.95] [--min-group 8]

Both thresholds are chosen on the validation split only, the way `downshift_evaluate::calibrate`
chooses them (the lowest mean token log-probability whose served answers are right at least
PRECISION of the time, serving at least 5, ties cut together), and then applied to the test
split. Per tool, the answers are grouped by the tools they call (in order; no call: "text"); a
group with fewer than --min-group validation answers, or whose answers reach no threshold, is
never served, and neither is a group the validation split never produced.
"""
import argparse
import collections
import json
import sys

MIN_SERVED = 5  # crates/lifecycle/src/evaluate.rs


def calibrate(points, target, min_served=MIN_SERVED):
    """The lowest threshold whose served points are right >= target (None: none qualifies)."""
    pts = sorted((p for p in points if p[0] is not None), key=lambda p: -p[0])
    best, right = None, 0
    for i, (conf, ok) in enumerate(pts):
        right += ok
        if i + 1 < len(pts) and pts[i + 1][0] == conf:
            continue
        if i + 1 >= min_served and right / (i + 1) >= target:
            best = conf
    return best


def key(got):
    """The tools an answer calls, in order ("text" when it calls none)."""
    if isinstance(got, str):
        try:
            got = json.loads(got)
        except ValueError:
            return "text"
    calls = got.get("tool_calls") if isinstance(got, dict) else None
    if not calls:
        return "text"
    return ",".join((c.get("function") or {}).get("name", "?") for c in calls)


def load(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows.append((r.get("confidence"), bool(r.get("exact")), key(r.get("got"))))
    if not rows:
        sys.exit(f"{path}: no predictions")
    return rows


def served(rows, threshold_of):
    s = [ok for conf, ok, k in rows if conf is not None and (t := threshold_of(k)) is not None and conf >= t]
    return len(s), sum(s)


def cell(rows, threshold_of):
    n, right = served(rows, threshold_of)
    prec = f"{right / n:.1%}" if n else "—"
    return f"{n} of {len(rows)} ({n / len(rows):.1%}) | {prec}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("validation")
    ap.add_argument("test")
    ap.add_argument("--precision", type=float, default=0.95)
    ap.add_argument("--min-group", type=int, default=8)
    a = ap.parse_args()
    val, test = load(a.validation), load(a.test)

    whole = calibrate([(c, ok) for c, ok, _ in val], a.precision)
    groups = collections.defaultdict(list)
    for c, ok, k in val:
        groups[k].append((c, ok))
    per_tool = {k: (calibrate(p, a.precision) if len(p) >= a.min_group else None) for k, p in groups.items()}

    print(f"target precision {a.precision}, groups of at least {a.min_group} validation answers\n")
    print("| threshold | validation served | precision | test served | precision |")
    print("|---|---|---|---|---|")
    for name, of in (("one per task", lambda k: whole), ("one per answered tool", lambda k: per_tool.get(k))):
        print(f"| {name} | {cell(val, of)} | {cell(test, of)} |")
    print("\n| answered tool | validation answers (right) | its threshold | test answers (right) | test served (right) |")
    print("|---|---|---|---|---|")
    test_groups = collections.defaultdict(list)
    for c, ok, k in test:
        test_groups[k].append((c, ok))
    for k in sorted(set(groups) | set(test_groups), key=lambda k: -len(groups.get(k, []))):
        v, t, th = groups.get(k, []), test_groups.get(k, []), per_tool.get(k)
        s = [ok for c, ok in t if th is not None and c is not None and c >= th]
        print(f"| `{k}` | {len(v)} ({sum(ok for _, ok in v)}) | {'never' if th is None else f'{th:.4f}'} | "
              f"{len(t)} ({sum(ok for _, ok in t)}) | {len(s)} ({sum(s)}) |")


if __name__ == "__main__":
    main()
