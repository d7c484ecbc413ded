#!/usr/bin/env python3
"""Score downshift and Presidio against the gold corpus and print a side-by-side table.

Span match rule (the same for both tools): a predicted span matches a gold span when both have the
same entity type (after mapping Presidio's names to ours) and they overlap by at least half of the
shorter of the two spans (in UTF-8 bytes). Recall = matched gold spans / gold spans; precision =
predicted spans that match some gold span / predicted spans of that type. Presidio entity types
with no counterpart here (NRP, ORGANIZATION, CRYPTO, AGE, US_BANK_NUMBER, UUID…) are ignored rather
than counted as false positives; for types Presidio does not cover its columns read "-".
"""
import argparse
import json
from collections import defaultdict

PRESIDIO_MAP = {
    "PERSON": "PERSON", "EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN", "US_SSN": "SSN", "IP_ADDRESS": "IP_ADDRESS", "MAC_ADDRESS": "MAC_ADDRESS",
    # Presidio has no credential-URL, date-of-birth, street-address or MRN recogniser; these are its
    # closest entities (every URL, every date, spaCy locations, medical licences).
    "URL": "URL_WITH_CREDENTIALS", "DATE_TIME": "DATE_OF_BIRTH", "LOCATION": "STREET_ADDRESS",
    "MEDICAL_LICENSE": "MEDICAL_RECORD_NUMBER",
    "UK_NHS": "NATIONAL_ID", "US_ITIN": "NATIONAL_ID", "US_PASSPORT": "NATIONAL_ID", "US_DRIVER_LICENSE": "NATIONAL_ID",
    "ES_NIF": "NATIONAL_ID", "ES_NIE": "NATIONAL_ID", "IT_FISCAL_CODE": "NATIONAL_ID", "UK_NINO": "NATIONAL_ID",
}

ORDER = ["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "SSN", "IP_ADDRESS", "MAC_ADDRESS", "API_KEY", "URL_WITH_CREDENTIALS",
         "PERSON", "STREET_ADDRESS", "DATE_OF_BIRTH", "MEDICAL_RECORD_NUMBER", "HEALTH_PLAN_ID", "NATIONAL_ID",
         "JWT", "PRIVATE_KEY", "PASSWORD"]
STRUCTURED = ["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "SSN", "IP_ADDRESS", "MAC_ADDRESS", "API_KEY", "URL_WITH_CREDENTIALS"]
COVERED_BY_PRESIDIO = set(PRESIDIO_MAP.values())


def matches(a, b):
    ov = min(a["end"], b["end"]) - max(a["start"], b["start"])
    if ov <= 0:
        return False
    shorter = min(a["end"] - a["start"], b["end"] - b["start"])
    return ov * 2 >= shorter


def score(gold_rows, pred_rows, mapper):
    tp_gold = defaultdict(int)
    n_gold = defaultdict(int)
    tp_pred = defaultdict(int)
    n_pred = defaultdict(int)
    errors = []
    for g, p in zip(gold_rows, pred_rows):
        preds = []
        for e in p.get("entities", []):
            t = mapper(e["type"])
            if t:
                preds.append({"type": t, "start": e["start"], "end": e["end"]})
        for s in g["spans"]:
            n_gold[s["type"]] += 1
            if any(x["type"] == s["type"] and matches(x, s) for x in preds):
                tp_gold[s["type"]] += 1
            else:
                errors.append(("FN", s["type"], g["text"], s))
        for x in preds:
            n_pred[x["type"]] += 1
            if any(x["type"] == s["type"] and matches(x, s) for s in g["spans"]):
                tp_pred[x["type"]] += 1
            else:
                errors.append(("FP", x["type"], g["text"], x))
    return tp_gold, n_gold, tp_pred, n_pred, errors


def prf(tp_gold, n_gold, tp_pred, n_pred, types):
    g = sum(n_gold[t] for t in types)
    tg = sum(tp_gold[t] for t in types)
    p = sum(n_pred[t] for t in types)
    tpp = sum(tp_pred[t] for t in types)
    rec = tg / g if g else None
    prec = tpp / p if p else None
    f1 = 2 * prec * rec / (prec + rec) if prec and rec else (0.0 if prec is not None and rec is not None else None)
    return prec, rec, f1


def fmt(x):
    return "   -  " if x is None else f"{x:6.3f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--downshift", required=True)
    ap.add_argument("--presidio", required=True)
    ap.add_argument("--downshift-stats", required=True)
    ap.add_argument("--presidio-stats", required=True)
    ap.add_argument("--errors", help="write misses and false positives of downshift here")
    args = ap.parse_args()
    gold = [json.loads(l) for l in open(args.corpus, encoding="utf-8")]
    ds = [json.loads(l) for l in open(args.downshift, encoding="utf-8")]
    pr = [json.loads(l) for l in open(args.presidio, encoding="utf-8")]
    assert len(gold) == len(ds) == len(pr), (len(gold), len(ds), len(pr))
    d = score(gold, ds, lambda t: t)
    p = score(gold, pr, lambda t: PRESIDIO_MAP.get(t))
    n_spans = sum(len(g["spans"]) for g in gold)
    langs = sorted({g["lang"] for g in gold} - {"xx"})
    print(f"corpus: {len(gold)} texts ({sum(1 for g in gold if not g['spans'])} without PII), {n_spans} gold spans, languages: {', '.join(langs)}")
    print("match rule: same type and overlap >= 50% of the shorter span (UTF-8 bytes)\n")
    head = f"{'type':<22} {'gold':>5} | {'downshift P':>11} {'R':>6} {'F1':>6} | {'presidio P':>10} {'R':>6} {'F1':>6}"
    print(head)
    print("-" * len(head))
    for t in ORDER:
        if d[1][t] == 0:
            continue
        dp, dr, df = prf(*d[:4], [t])
        if t in COVERED_BY_PRESIDIO:
            pp, prr, pf = prf(*p[:4], [t])
        else:
            pp = prr = pf = None
        print(f"{t:<22} {d[1][t]:>5} | {fmt(dp):>11} {fmt(dr)} {fmt(df)} | {fmt(pp):>10} {fmt(prr)} {fmt(pf)}")
    print("-" * len(head))
    for label, types in (("structured (micro)", STRUCTURED), ("all types (micro)", ORDER)):
        dp, dr, df = prf(*d[:4], types)
        pp, prr, pf = prf(*p[:4], types)
        print(f"{label:<22} {sum(d[1][t] for t in types):>5} | {fmt(dp):>11} {fmt(dr)} {fmt(df)} | {fmt(pp):>10} {fmt(prr)} {fmt(pf)}")
    dstat = json.load(open(args.downshift_stats))
    pstat = json.load(open(args.presidio_stats))
    ratio = dstat["texts_per_s"] / pstat["texts_per_s"]
    print()
    print(f"throughput  downshift: {dstat['texts_per_s']:10.0f} texts/s  ({dstat['texts']} texts in {dstat['seconds']:.2f} s, one process, start-up included)")
    print(f"            presidio : {pstat['texts_per_s']:10.1f} texts/s  ({pstat['texts']} texts in {pstat['seconds']:.2f} s, model load of {pstat['load_seconds']:.1f} s excluded)")
    print(f"            ratio    : {ratio:10.1f}x")
    print()
    fails = []
    for t in STRUCTURED:
        dp, dr, _ = prf(*d[:4], [t])
        if dr is None:
            continue
        if dr < 0.97 or (dp or 0) < 0.95:
            fails.append(f"{t} P={fmt(dp).strip()} R={fmt(dr).strip()}")
    for t in ("PERSON", "STREET_ADDRESS"):
        _, dr, _ = prf(*d[:4], [t])
        if dr is not None and dr < 0.90:
            fails.append(f"{t} R={fmt(dr).strip()}")
    if ratio < 20:
        fails.append(f"throughput ratio {ratio:.1f}x < 20x")
    print("targets (issue 3): structured R>=0.97 P>=0.95; PERSON, STREET_ADDRESS R>=0.90; throughput >=20x:",
          "all met" if not fails else "NOT met: " + "; ".join(fails))
    if args.errors:
        with open(args.errors, "w", encoding="utf-8") as f:
            for kind, t, text, span in d[4]:
                f.write(json.dumps({"error": kind, "type": t, "span": text.encode()[span["start"]:span["end"]].decode(errors="replace"), "text": text}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
