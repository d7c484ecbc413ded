#!/usr/bin/env python3
"""Extra training text for the learned name/address tagger (never scored).

Two parts, seven languages' cue words where they exist:
- persons in narrative, dialogue, list and credit contexts ("sung by X", "X: ...", "said X to Y",
  "X, Y and Z founded ...", "directed by X"), with names built from random syllables as well as
  real-looking ones, so the model learns the context and the shape rather than a name list;
- capitalised things that are not persons: organisations with legal suffixes, holidays, titles of
  works, institutions, product names, street names without a number.

Usage: gen_tagger_train.py --seed N --n N --out PATH
"""
import argparse
import json
import random

SYL = "ka ri no ta mi lu ve sa do re zi ba ko na le fi mo ga ru ti pe la ne so hu ja vi da me lo ki ra se to".split()
CONS = "b c d f g h j k l m n p r s t v w z br tr st sch ch sh kr gr dr pl".split()
REAL_GIVEN = "Ayodele Björk Chidi Dagny Eitan Farida Guadalupe Hamid Ilse Jovana Kenji Lucía Mehmet Nadia Oksana Pedro Qiu Radek Saoirse Tariq Ulla Veronika Wojciech Xochitl Yusuf Zsofia Aurelio Brigid Casimir Dunja Esteban Freya Goran Hana Ioana Jarek".split()
REAL_SUR = "Adeyemi Bergström Castellanos Dvořák Eriksen Fonseca Gallagher Horvath Ivanova Jankowski Kowalczyk Lindqvist Moreau Nakamura Okafor Petrović Quintero Rasmussen Szabo Tanaka Ueda Vasquez Wiśniewski Yilmaz Zapata Abernathy Bianchi Christodoulou Delacroix Esposito".split()

ORG_SUFFIX = ["Inc.", "Corporation", "Corp.", "Ltd", "Limited", "LLC", "GmbH", "AG", "S.A.", "PLC", "Group", "Holdings", "Trust",
              "Partners", "Therapeutics", "Energy", "Bank", "Capital", "Technologies", "Systems", "Solutions", "Foundation", "Company"]
ORG_WORDS = "Acme Northwind Bluewater Silverline Granite Harbor Pinnacle Vertex Summit Meridian Atlas Orion Crescent Evergreen Redwood Falcon Horizon Keystone Liberty Sterling Apex Nova Titan Vanguard Zenith Cobalt Quantum Aurora Beacon".split()
COMMON_CAPS = "Energy Markets Income Global Pacific Atlantic Digital Advanced Applied General National International United Royal Standard Federal Central Western Eastern Northern Southern Financial Medical Industrial".split()
HOLIDAYS = ["Labor Day", "Christmas Eve", "New Year's Day", "Thanksgiving", "Easter Monday", "Boxing Day", "Memorial Day", "Independence Day",
            "Pfingsten", "Toussaint", "Semana Santa", "Ferragosto", "Koningsdag", "Black Friday", "Halloween"]
INSTITUTIONS = ["University of {w}", "{w} General Hospital", "{w} High School", "Museum of {w} Art", "{w} City Council", "Bank of {w}", "{w} Public Library"]
TITLES = ["The {w} of {w2}", "{w} and {w2}", "Songs of the {w}", "Return to {w}", "A {w} Story", "{w} Nights", "Under the {w} Sky"]
PRODUCTS = ["Galaxy S24", "iPhone 15 Pro", "Model Y", "PlayStation 5", "Surface Laptop", "Kindle Paperwhite", "ThinkPad X1", "Pixel Watch"]
STREETS_NO_NUM = ["Baker Street", "Main Street", "Rue de Rivoli", "Hauptstraße", "Calle Mayor", "Via Roma", "Kalverstraat", "Oak Avenue"]


def syl_name(r):
    def word():
        w = r.choice(CONS) + "".join(r.choice(SYL) for _ in range(r.randrange(1, 3)))
        if r.random() < 0.3:
            w += r.choice(["n", "s", "r", "sson", "ski", "ez", "ini", "ova", "ek", "berg"])
        return w.capitalize()
    return word(), word()


def name(r):
    if r.random() < 0.5:
        return syl_name(r)
    return r.choice(REAL_GIVEN), r.choice(REAL_SUR)


PERSON_TPL = [
    "The song was written and sung by {P} in {Y}.", "The film was directed by {P} and starring {S}.", "\"{Q}\" said {G} to {G2}.",
    "{G}: {Q}\n{G2}: {Q}", "{S}, {S2} and {S3} founded the company in {Y}.", "Follow up with {P} next week.",
    "Have you heard {P} speak yet?", "I think {G} was right about it.", "It was {S}'s idea in the first place.", "{P}, the new {J}, starts on Monday.",
    "{P}\n{J}\n{O}", "Photo: {P} / {O}", "According to {P}, the results were mixed.", "Written by {P}. Edited by {P2}.",
    "{G} told me that {G2} is leaving.", "We interviewed {P} about the {O} merger.", "Ask {G} whether {G2} can come.",
    "Laut {P} ist das Projekt verschoben.", "Selon {P}, la réunion est annulée.", "Según {P}, el pedido llegó tarde.",
    "Secondo {P}, il contratto è scaduto.", "Volgens {P} is het probleem opgelost.", "Segundo {P}, a encomenda chegou.",
    "{P} hat das Protokoll geschrieben.", "{P} a signé le contrat hier.", "{P} firmó el acuerdo ayer.", "{P} ha firmato il documento.",
    "{P} heeft de factuur betaald.", "{P} assinou o contrato ontem.", "Where does {G} live?", "Why is {G} so quiet today?",
    "Greetings from {G} and the whole team!", "{G} had given {G2} the keys.", "My favourite author is {P}.",
]
NEG_TPL = [
    "{O} reported record profits this quarter.", "I work for {O} in the sales department.", "The {H} sale starts on Friday.",
    "We close early on {H}.", "She studied at the {I}.", "Have you read \"{T}\"?", "The new {D} ships next month.",
    "The parade goes down {N}.", "{O} and {O2} announced a merger.", "Shares of {O} fell 3%.", "The {C} {C2} Fund closed higher.",
    "Our office is near the {I}.", "Tickets for \"{T}\" are sold out.", "{C} {C2} Index rose today.", "The {O} annual report is out.",
]
QUOTES = ["You saved my life!", "What a day.", "Remember me?", "I told you so.", "Not now, please.", "Where were you?"]
JOBS = ["software engineer", "head of sales", "nurse", "lawyer", "teacher", "accountant"]


def org(r):
    return " ".join(r.choice(ORG_WORDS + COMMON_CAPS) for _ in range(r.randrange(1, 3))) + " " + r.choice(ORG_SUFFIX)


def render(r, tpl):
    text, spans, pos = "", [], 0
    people = {}
    import re
    for m in re.finditer(r"\{(P2|P|G2|G|S3|S2|S|Q|Y|J|O2|O|H|I|T|D|N|C2|C)\}", tpl):
        text += tpl[pos:m.start()]
        k = m.group(1)
        typ = None
        if k in ("P", "P2", "G", "G2", "S", "S2", "S3"):
            base = k.rstrip("23") or k
            key = k
            if key not in people:
                people[key] = name(r)
            g, s = people[key]
            val = {"P": f"{g} {s}", "G": g, "S": s}[base[0]]
            typ = "PERSON"
        elif k == "Q":
            val = r.choice(QUOTES)
        elif k == "Y":
            val = str(r.randrange(1950, 2025))
        elif k == "J":
            val = r.choice(JOBS)
        elif k in ("O", "O2"):
            val = org(r)
        elif k == "H":
            val = r.choice(HOLIDAYS)
        elif k == "I":
            val = r.choice(INSTITUTIONS).format(w=r.choice(ORG_WORDS))
        elif k == "T":
            val = r.choice(TITLES).format(w=r.choice(ORG_WORDS + COMMON_CAPS), w2=r.choice(ORG_WORDS))
        elif k == "D":
            val = r.choice(PRODUCTS)
        elif k == "N":
            val = r.choice(STREETS_NO_NUM)
        else:
            val = r.choice(COMMON_CAPS)
        start = len(text.encode())
        text += val
        if typ:
            spans.append({"type": typ, "start": start, "end": len(text.encode())})
        pos = m.end()
    text += tpl[pos:]
    return {"text": text, "spans": spans}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    r = random.Random(a.seed)
    with open(a.out, "w", encoding="utf-8") as f:
        for _ in range(a.n):
            tpl = r.choice(PERSON_TPL) if r.random() < 0.6 else r.choice(NEG_TPL)
            f.write(json.dumps(render(r, tpl), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
