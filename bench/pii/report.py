#!/usr/bin/env python3
"""Score one corpus per type and per locale, downshift beside Presidio (Presidio optional).

Same match rule as score.py: same type (after mapping Presidio's names) and an overlap of at
least half of the shorter span, in UTF-8 bytes. "structured" = the types of score.STRUCTURED plus
SSN-like health ids (DATE_OF_BIRTH, MEDICAL_RECORD_NUMBER); "names+addresses" = PERSON and
STREET_ADDRESS. Writes a Markdown table to stdout and, with --errors, downshift's misses and false
positives as JSON Lines.

Usage: report.py --name NAME --corpus C --downshift D [--presidio P] [--errors E] [--json J]
"""
import argparse
import json
import os
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from score import ORDER, PRESIDIO_MAP, COVERED_BY_PRESIDIO, matches, score, prf  # noqa: E402

STRUCT = ["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "SSN", "IP_ADDRESS", "MAC_ADDRESS", "API_KEY", "URL_WITH_CREDENTIALS",
          "DATE_OF_BIRTH", "MEDICAL_RECORD_NUMBER", "HEALTH_PLAN_ID", "NATIONAL_ID", "JWT", "PRIVATE_KEY", "PASSWORD"]
NAMEADDR = ["PERSON", "STREET_ADDRESS"]


def drop_ignored(gold, preds, mapper):
    """Drop predictions that match no gold span but overlap a span the corpus marks "ignore"."""
    out = []
    for g, p in zip(gold, preds):
        ign = g.get("ignore", [])
        if not ign:
            out.append(p)
            continue
        keep = []
        for e in p.get("entities", []):
            t = mapper(e["type"])
            x = {"type": t, "start": e["start"], "end": e["end"]}
            hit = any(t == s["type"] and matches(x, s) for s in g["spans"])
            if not hit and any(matches(x, s) for s in ign):
                continue
            keep.append(e)
        out.append({"entities": keep})
    return out


def f3(x):
    return "-" if x is None else f"{x:.3f}"


def group_scores(gold, preds, mapper, types):
    s = score(gold, preds, mapper)
    return prf(*s[:4], types), s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--downshift", required=True)
    ap.add_argument("--presidio")
    ap.add_argument("--errors")
    ap.add_argument("--json")
    args = ap.parse_args()
    gold = [json.loads(line) for line in open(args.corpus, encoding="utf-8")]
    ds = [json.loads(line) for line in open(args.downshift, encoding="utf-8")]
    pr = [json.loads(line) for line in open(args.presidio, encoding="utf-8")] if args.presidio else None
    assert len(gold) == len(ds), (len(gold), len(ds))
    ident = lambda t: t  # noqa: E731
    pmap = lambda t: PRESIDIO_MAP.get(t)  # noqa: E731
    ds = drop_ignored(gold, ds, ident)
    pr = drop_ignored(gold, pr, pmap) if pr else None
    d = score(gold, ds, ident)
    p = score(gold, pr, pmap) if pr else None
    out = {"corpus": args.name, "texts": len(gold), "types": {}, "locales": {}}
    print(f"### {args.name}: {len(gold)} texts, {sum(len(g['spans']) for g in gold)} gold spans\n")
    print("| type | gold | downshift P | R | presidio P | R |")
    print("|---|---:|---:|---:|---:|---:|")
    for t in ORDER:
        if d[1][t] == 0 and d[3][t] == 0:
            continue
        dp, dr, _ = prf(*d[:4], [t])
        pp = prr = None
        if p and t in COVERED_BY_PRESIDIO:
            pp, prr, _ = prf(*p[:4], [t])
        out["types"][t] = {"gold": d[1][t], "P": dp, "R": dr, "presidio_P": pp, "presidio_R": prr}
        print(f"| {t} | {d[1][t]} | {f3(dp)} | {f3(dr)} | {f3(pp)} | {f3(prr)} |")
    for label, types in (("**structured**", STRUCT), ("**names+addresses**", NAMEADDR), ("**all**", ORDER)):
        dp, dr, _ = prf(*d[:4], types)
        pp, prr, _ = prf(*p[:4], types) if p else (None, None, None)
        out["types"][label.strip("*")] = {"gold": sum(d[1][t] for t in types), "P": dp, "R": dr, "presidio_P": pp, "presidio_R": prr}
        print(f"| {label} | {sum(d[1][t] for t in types)} | {f3(dp)} | {f3(dr)} | {f3(pp)} | {f3(prr)} |")
    langs = sorted({g["lang"] for g in gold})
    if len(langs) > 1:
        print(f"\nper locale ({args.name}): recall of structured / names+addresses, precision of all; presidio in brackets\n")
        print("| locale | texts | structured R | names+addr R | PERSON R | ADDRESS R | precision |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for lang in langs:
            idx = [i for i, g in enumerate(gold) if g["lang"] == lang]
            gs = [gold[i] for i in idx]
            dl = score(gs, [ds[i] for i in idx], ident)
            pl = score(gs, [pr[i] for i in idx], pmap) if pr else None
            row = {}
            cells = []
            for key, types, which in (("structured_R", STRUCT, 1), ("nameaddr_R", NAMEADDR, 1), ("PERSON_R", ["PERSON"], 1),
                                      ("ADDRESS_R", ["STREET_ADDRESS"], 1), ("P", ORDER, 0)):
                v = prf(*dl[:4], types)[which]
                pv = prf(*pl[:4], [t for t in types if t in COVERED_BY_PRESIDIO])[which] if pl else None
                row[key] = v
                row["presidio_" + key] = pv
                cells.append(f"{f3(v)} ({f3(pv)})" if pl else f3(v))
            out["locales"][lang] = row
            print(f"| {lang} | {len(idx)} | " + " | ".join(cells) + " |")
    print()
    if args.errors:
        with open(args.errors, "w", encoding="utf-8") as f:
            for kind, t, text, span in d[4]:
                f.write(json.dumps({"error": kind, "type": t, "span": text.encode()[span["start"]:span["end"]].decode(errors="replace"), "text": text}, ensure_ascii=False) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
