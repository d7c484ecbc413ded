#!/usr/bin/env python3
"""Generate agent traffic that looks like what users bring, in downshift's import format.

    gen_traffic.py OUT.jsonl [--calls N] [--seed S]

Three agents, each record tagged with its gold job (`metadata.job`, `metadata.agent`; tags are
for scoring only and are never read by discovery):

* `support` — one system prompt per job: an intent classifier into a fixed label set (text), a
  JSON field extractor (JSON), a weather job with one tool (tool call) and a free-chat persona
  (text);
* `ops` — one shared agent prompt offering five tools; the user turns ask for different tools;
  gold job = the tool called;
* `assistant` — the generic "You are a helpful assistant." prompt with the instruction in the user
  turn: translate, summarise, fix grammar — instructions and material in four languages, answers
  that are what an LLM writes (the material translated, summarised or corrected).

Every user turn is entity-rich (person names, cities, e-mails, order numbers, dates, phone
numbers), phrased many ways and in several languages (English, French, German, Spanish), and the
job sizes are uneven. Deterministic for a given seed (Python's `random.Random`, no dependencies).
"""
import argparse
import json
import random

FIRST = ["Carla", "Bob", "Amina", "Hiroshi", "Lucía", "Pierre", "Ingrid", "Mateo", "Olu", "Priya",
         "Sven", "Fatima", "Giulia", "Jonas", "Mei", "Rafael", "Zoe", "Anders", "Chloé", "Dmitri",
         "Leila", "Tomasz", "Nadia", "Kwame", "Elif", "Hannah", "Diego", "Yuki", "Sofia", "Omar"]
LAST = ["Rossi", "Dubois", "Schneider", "Tanaka", "García", "Okafor", "Nguyen", "Kowalski",
        "Haddad", "Johansson", "Patel", "Moreau", "Fischer", "Silva", "Murphy", "Novak",
        "Lindqvist", "Costa", "Yilmaz", "Mensah", "Brennan", "Ferreira", "Kaur", "Almeida"]
CITIES = ["Cairo", "Tokyo", "Lima", "Perth", "Austin", "Lyon", "Hamburg", "Seville", "Nairobi",
          "Oslo", "Porto", "Kraków", "Osaka", "Quito", "Denver", "Leeds", "Turin", "Bergen",
          "Montréal", "Accra", "Bilbao", "Graz", "Curitiba", "Hanoi"]
DOMAINS = ["example.com", "mail.test", "inbox.example", "post.example.org", "corp.test"]
PRODUCTS = ["espresso machine", "running shoes", "desk lamp", "winter jacket", "headphones",
            "yoga mat", "phone case", "backpack", "coffee grinder", "air purifier", "keyboard"]


class World:
    """Random values for one record."""

    def __init__(self, rng):
        self.r = rng

    def name(self):
        return f"{self.r.choice(FIRST)} {self.r.choice(LAST)}"

    def email(self, name=None):
        first, last = (name or self.name()).split(" ", 1)
        sep = self.r.choice([".", "_", ""])
        return f"{first.lower()}{sep}{last.lower()}@{self.r.choice(DOMAINS)}".replace("í", "i").replace("é", "e").replace("ç", "c")

    def order(self):
        return self.r.choice(["#", "A-", "ORD-", "", "No. "]) + str(self.r.randint(10000, 999999))

    def city(self):
        return self.r.choice(CITIES)

    def date(self):
        d, m = self.r.randint(1, 28), self.r.randint(1, 12)
        return self.r.choice([f"2026-{m:02d}-{d:02d}", f"{d}/{m}/2026", f"{d}.{m}.2026"])

    def phone(self):
        return f"+{self.r.randint(1, 49)} {self.r.randint(100, 999)} {self.r.randint(100, 999)} {self.r.randint(1000, 9999)}"

    def product(self):
        return self.r.choice(PRODUCTS)


# ---- support agent: one system prompt per job ----------------------------------------------

INTENTS = ["billing", "cancellation", "shipping", "technical", "account", "other"]
CLASSIFIER_SYS = ("You are the intent router of ACME customer care. Read the customer's message and "
                  "answer with exactly one label from: billing, cancellation, shipping, technical, "
                  "account, other. Answer with the label only, no explanation.")
INTENT_MSGS = {
    "billing": ["Hi, this is {name}. I was charged twice for order {order} on {date}, please check.",
                "Bonjour, je suis {name}, la facture de la commande {order} est fausse. Mon e-mail : {email}",
                "Why did my card get billed {n} EUR for {order}? — {name}",
                "Hallo, {name} hier. Die Rechnung für {order} stimmt nicht, bitte an {email} schicken."],
    "cancellation": ["Please cancel my order {order}, I ordered the {product} by mistake. {name}",
                     "Quiero cancelar el pedido {order}. Soy {name}, correo {email}.",
                     "{name} here, cancel subscription linked to {email} effective {date}.",
                     "Je veux annuler ma commande {order} du {date}. Merci, {name}"],
    "shipping": ["Where is my {product}? Order {order}, shipped to {city} on {date}. {name}",
                 "Mi paquete {order} no ha llegado a {city}. {name}, tel {phone}",
                 "Tracking for {order} says delivered in {city} but nothing here. — {name} ({email})",
                 "Wann kommt meine Bestellung {order} in {city} an? Grüße, {name}"],
    "technical": ["The {product} from order {order} won't turn on. {name}, {phone}",
                  "My app keeps crashing when I log in with {email}. Help! {name}",
                  "Le {product} fait un bruit bizarre depuis le {date}. {name}",
                  "Error 5{n} every time I open the dashboard. Account {email}."],
    "account": ["Please change the e-mail on my account from {email} to {email2}. {name}",
                "I can't reset my password, the link goes to {email}. {name}, {city}",
                "Bitte aktualisieren Sie meine Telefonnummer auf {phone}. {name}",
                "Necesito cambiar mi dirección a {city}. Cuenta {email}."],
    "other": ["Do you have a store in {city}? Asking for {name}.",
              "Just wanted to say thanks for the great {product}! {name}",
              "¿Tienen ofertas para el {date}? Saludos, {name}",
              "Is the {product} available in green? {name} ({email})"],
}

EXTRACT_SYS = ("You are a data-entry assistant for ACME orders. Extract the fields from the customer's "
               "message and reply with a JSON object with the keys name, email, order_id, city and "
               "request. Use null for a missing field. Reply with JSON only.")
EXTRACT_MSGS = [
    "Hi, {name} here ({email}). Order {order} to {city}: please {req}.",
    "From: {email}\nName: {name}\nI'd like to {req} for order {order}, delivery in {city}.",
    "Bonjour, c'est {name} de {city}. Commande {order} : merci de {req_fr}. Contact {email}",
    "{name} — {email} — {city}. Re {order}: can you {req}?",
    "Hola, me llamo {name}, vivo en {city}. Pedido {order}, por favor {req_es}. {email}",
    "Please {req} (order {order}). Thanks, {name}, {city}, {email}",
]
REQS = [("cancel it", "l'annuler", "cancelarlo"), ("change the delivery date to {date}", "changer la date au {date}", "cambiar la fecha al {date}"),
        ("send an invoice", "envoyer une facture", "enviar una factura"), ("upgrade to express shipping", "passer en express", "enviarlo urgente")]

WEATHER_SYS = ("You are SkyCast, the weather assistant of a travel app. When the user asks about the "
               "weather or forecast for a place, call get_weather with the city and the date; never "
               "guess the weather yourself.")
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather or forecast for a city on a date.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name"},
        "date": {"type": "string", "description": "ISO date, today if omitted"}},
        "required": ["city"]}}}
WEATHER_MSGS = ["What's the weather in {city} today?", "Will it rain in {city} on {date}?",
                "{city} tomorrow — do I need a jacket?", "Quel temps fera-t-il à {city} le {date} ?",
                "Wie wird das Wetter in {city} am {date}?", "¿Qué tiempo hace en {city}?",
                "I'm flying to {city} on {date}, forecast please. My name is {name}.",
                "forecast {city} {date}", "Is it sunny in {city} right now? asking for {name}"]

CHAT_SYS = ("You are Juno, the cheerful companion inside the Wanderly travel app. Chat casually and "
            "warmly with the traveller about their plans, share tips, and keep answers short.")
CHAT_MSGS = ["Hey Juno! I'm {name}, heading to {city} next week, so excited!",
             "What should I pack for {city} in spring?", "Salut Juno, des idées de restos à {city} ?",
             "I just landed in {city} and I'm jet-lagged lol", "Any hidden gems in {city}? I'm there on {date}.",
             "Hola Juno, soy {name}. ¿Qué visitar en {city}?", "Tell me something fun about {city}!"]
CHAT_ANSWERS = ["How exciting! {city} is lovely this time of year — pack comfy shoes.",
                "Oh nice! Try the old town early in the morning before the crowds.",
                "Welcome! Drink water, get some daylight and you'll be fine by tomorrow."]

# ---- ops agent: one prompt, several tools ------------------------------------------------------

OPS_SYS = ("You are the back-office agent of ACME Retail. You act on customer orders for the support "
           "staff using the tools provided. Always call exactly one tool that matches the staff "
           "request; ask for missing details only when a required field is absent.")


def fn(name, desc, props, required):
    return {"type": "function", "function": {"name": name, "description": desc, "parameters": {
        "type": "object", "properties": {k: {"type": "string", "description": v} for k, v in props.items()},
        "required": required}}}


OPS_TOOLS = [
    fn("lookup_order", "Look up an order's status", {"order_id": "Order number"}, ["order_id"]),
    fn("refund_order", "Refund an order", {"order_id": "Order number", "reason": "Why"}, ["order_id", "reason"]),
    fn("update_address", "Change the delivery address of an order", {"order_id": "Order number", "city": "New city"}, ["order_id", "city"]),
    fn("send_email", "Send an e-mail to a customer", {"to": "E-mail address", "subject": "Subject"}, ["to", "subject"]),
    fn("schedule_callback", "Book a phone callback", {"phone": "Phone number", "date": "Date"}, ["phone", "date"]),
]
OPS_MSGS = {
    "lookup_order": ["What's the status of order {order}?", "Where is {name}'s order {order}?",
                     "Check order {order} please", "Estado del pedido {order}, cliente {name}",
                     "Can you pull up {order} for {email}?", "Statut de la commande {order} ?"],
    "refund_order": ["Refund order {order}, the {product} arrived broken.", "{name} wants her money back for {order}",
                     "Please issue a refund on {order} — wrong size.", "Rembourser la commande {order} de {name}, colis perdu",
                     "Erstatte Bestellung {order}, Artikel defekt.", "Refund {order} for {email}, item never arrived"],
    "update_address": ["Change the delivery address of {order} to {city}.", "{name} moved to {city}, update order {order}",
                       "Ship {order} to {city} instead", "Cambia la dirección del pedido {order} a {city}",
                       "Neue Lieferadresse für {order}: {city}", "Update address on {order}: now {city}"],
    "send_email": ["Email {email} that their order {order} shipped.", "Send {name} ({email}) a note about the delay",
                   "Write to {email}: your refund is on its way", "Envoie un mail à {email} pour confirmer {order}",
                   "Mail {email} the invoice for {order}"],
    "schedule_callback": ["Book a callback for {name} at {phone} on {date}.", "Call {phone} back on {date} please",
                          "{name} wants a call on {date}, number {phone}", "Programar llamada a {phone} el {date}",
                          "Rückruf bei {phone} am {date} einplanen"],
}

# ---- generic assistant: the instruction is in the user turn ----------------------------------
# The material exists in four languages (the same text, translated), so that an answer is what
# an LLM would write: a translation is the material in the target language, a summary a shorter
# text in the material's language, a grammar fix the sentence corrected (most words kept).

GENERIC_SYS = "You are a helpful assistant."
LANGS = ["en", "fr", "de", "es"]
# (material by language, its summary by language)
MATERIAL = [
    ({"en": "Dear {name}, thank you for your application for the analyst position in {city}. Your experience impressed the panel and we would like to meet you. We invite you to an interview at our office on {date}; please confirm by replying to {email}.",
      "fr": "Cher {name}, merci pour votre candidature au poste d'analyste à {city}. Votre expérience a impressionné le jury et nous aimerions vous rencontrer. Nous vous invitons à un entretien dans nos bureaux le {date} ; merci de confirmer en répondant à {email}.",
      "de": "Hallo {name}, vielen Dank für Ihre Bewerbung als Analyst in {city}. Ihre Erfahrung hat die Kommission beeindruckt und wir möchten Sie kennenlernen. Wir laden Sie am {date} zu einem Gespräch in unser Büro ein; bitte bestätigen Sie per Antwort an {email}.",
      "es": "Estimado {name}, gracias por su candidatura al puesto de analista en {city}. Su experiencia impresionó al comité y nos gustaría conocerle. Le invitamos a una entrevista en nuestra oficina el {date}; por favor confirme respondiendo a {email}."},
     {"en": "{name} is invited to an interview in {city} on {date}.",
      "fr": "{name} est invité à un entretien à {city} le {date}.",
      "de": "{name} wird am {date} zu einem Gespräch in {city} eingeladen.",
      "es": "{name} está invitado a una entrevista en {city} el {date}."}),
    ({"en": "The train strike in {city} continues for a third day. Commuters like {name} are working from home, and the roads into the centre are jammed every morning. Unions and the rail company will meet again on {date}, but neither side expects a quick deal.",
      "fr": "La grève des trains à {city} continue pour le troisième jour. Les navetteurs comme {name} travaillent depuis chez eux, et les routes vers le centre sont bloquées chaque matin. Les syndicats et la compagnie se retrouveront le {date}, mais personne n'attend un accord rapide.",
      "de": "Der Bahnstreik in {city} geht in den dritten Tag. Pendler wie {name} arbeiten von zu Hause, und die Straßen ins Zentrum sind jeden Morgen verstopft. Gewerkschaften und Bahn treffen sich am {date} wieder, doch keine Seite erwartet eine schnelle Einigung.",
      "es": "La huelga de trenes en {city} continúa por tercer día. Los viajeros como {name} trabajan desde casa, y las carreteras hacia el centro se atascan cada mañana. Los sindicatos y la compañía se reunirán de nuevo el {date}, pero nadie espera un acuerdo rápido."},
     {"en": "The rail strike in {city} goes on; talks resume on {date}.",
      "fr": "La grève continue à {city} ; les négociations reprennent le {date}.",
      "de": "Der Streik in {city} dauert an; Gespräche am {date}.",
      "es": "La huelga sigue en {city}; las negociaciones vuelven el {date}."}),
    ({"en": "Hi team, the quarterly report is attached. Sales grew in every region except {city}, where a supplier problem delayed deliveries. {name} will present the figures at the meeting on {date}. Send your questions to {email} before then.",
      "fr": "Bonjour à tous, le rapport trimestriel est en pièce jointe. Les ventes ont progressé dans toutes les régions sauf à {city}, où un problème de fournisseur a retardé les livraisons. {name} présentera les chiffres à la réunion du {date}. Envoyez vos questions à {email} avant.",
      "de": "Hallo zusammen, der Quartalsbericht ist angehängt. Der Umsatz ist in allen Regionen gewachsen außer in {city}, wo ein Lieferantenproblem die Lieferungen verzögert hat. {name} stellt die Zahlen beim Treffen am {date} vor. Fragen bitte vorher an {email}.",
      "es": "Hola equipo, adjunto el informe trimestral. Las ventas crecieron en todas las regiones salvo en {city}, donde un problema con un proveedor retrasó las entregas. {name} presentará las cifras en la reunión del {date}. Enviad vuestras preguntas a {email} antes."},
     {"en": "Sales grew everywhere but {city}; {name} presents on {date}.",
      "fr": "Ventes en hausse sauf à {city} ; {name} présente le {date}.",
      "de": "Umsatz überall gestiegen außer in {city}; {name} präsentiert am {date}.",
      "es": "Ventas al alza salvo en {city}; {name} presenta el {date}."}),
    ({"en": "Our new {product} ships on {date}. It is lighter than the old model, the battery lasts twice as long, and the price stays the same. Pre-orders from {city} open tomorrow morning; questions go to {email}.",
      "fr": "Notre nouveau {product} sera livré le {date}. Il est plus léger que l'ancien modèle, la batterie dure deux fois plus longtemps et le prix ne change pas. Les précommandes depuis {city} ouvrent demain matin ; vos questions à {email}.",
      "de": "Unser neues Modell {product} wird am {date} ausgeliefert. Es ist leichter als das alte Modell, der Akku hält doppelt so lange und der Preis bleibt gleich. Vorbestellungen aus {city} starten morgen früh; Fragen an {email}.",
      "es": "Nuestro nuevo {product} sale el {date}. Es más ligero que el modelo anterior, la batería dura el doble y el precio no cambia. Las reservas desde {city} abren mañana por la mañana; preguntas a {email}."},
     {"en": "The lighter new {product} ships on {date} at the same price.",
      "fr": "Le nouveau {product}, plus léger, sort le {date} au même prix.",
      "de": "Das leichtere neue Modell kommt am {date} zum gleichen Preis.",
      "es": "El nuevo {product}, más ligero, sale el {date} al mismo precio."}),
    ({"en": "{name} from {city} wrote to complain that the {product} broke after two days. The customer had already contacted support twice without an answer and now asks for a replacement or a full refund before {date}.",
      "fr": "{name}, de {city}, s'est plaint que le {product} s'est cassé après deux jours. Le client avait déjà contacté le support deux fois sans réponse et demande maintenant un remplacement ou un remboursement complet avant le {date}.",
      "de": "{name} aus {city} hat sich beschwert, dass das Gerät ({product}) nach zwei Tagen kaputt war. Der Kunde hatte sich schon zweimal ohne Antwort an den Support gewandt und verlangt nun bis zum {date} Ersatz oder eine volle Erstattung.",
      "es": "{name}, de {city}, se quejó de que el {product} se rompió a los dos días. El cliente ya había contactado con soporte dos veces sin respuesta y ahora pide un reemplazo o un reembolso completo antes del {date}."},
     {"en": "{name} wants a replacement or refund for a broken {product}.",
      "fr": "{name} veut un remplacement ou un remboursement pour le {product} cassé.",
      "de": "{name} will Ersatz oder Geld zurück für ein kaputtes Gerät.",
      "es": "{name} quiere un reemplazo o un reembolso por el {product} roto."}),
]
# (broken sentence, corrected) by language
BROKEN = {
    "en": [("me and {name} goes to {city} yesterday and we buyed a {product}", "{name} and I went to {city} yesterday and we bought a {product}."),
           ("{name} dont know where is the {product}, she have lost it in {city}", "{name} doesn't know where the {product} is; she lost it in {city}."),
           ("their going to {city} on {date} but they has no tickets", "They're going to {city} on {date}, but they have no tickets."),
           ("i has send the email to {email} but nobody answer me", "I have sent the email to {email}, but nobody has answered me.")],
    "fr": [("hier moi et {name} on est allé a {city} et on a acheter un {product}", "Hier, {name} et moi sommes allés à {city} et nous avons acheté un {product}."),
           ("je vous est envoyer un mail a {email} mais personne ma répondu", "Je vous ai envoyé un mail à {email}, mais personne ne m'a répondu."),
           ("{name} a perdu sont {product} a {city} et il sait pas ou il est", "{name} a perdu son {product} à {city} et il ne sait pas où il est.")],
    "de": [("gestern ich bin mit {name} nach {city} gefahrt und wir haben ein {product} gekauft", "Gestern bin ich mit {name} nach {city} gefahren und wir haben ein {product} gekauft."),
           ("ich habe die mail an {email} geschickt aber keiner hat mir geantwortet hat", "Ich habe die Mail an {email} geschickt, aber keiner hat mir geantwortet."),
           ("{name} weiss nicht wo der {product} ist, er hat ihm in {city} verloren", "{name} weiß nicht, wo der {product} ist; er hat ihn in {city} verloren.")],
    "es": [("ayer yo y {name} fuimos a {city} y compramos un {product} que no funciono", "Ayer {name} y yo fuimos a {city} y compramos un {product} que no funcionó."),
           ("le e enviado un correo a {email} pero nadie me a contestado", "Le he enviado un correo a {email}, pero nadie me ha contestado."),
           ("{name} no sabe donde esta su {product}, lo a perdido en {city}", "{name} no sabe dónde está su {product}; lo ha perdido en {city}.")],
}
# Instruction templates: (template, language of the instruction, target language of a translation).
GENERIC_JOBS = {
    "translate": [("Translate into French: {text}", "en", "fr"), ("Please translate this to German:\n{text}", "en", "de"),
                  ("Can you translate the following into Spanish?\n\n{text}", "en", "es"), ("Traduis en anglais : {text}", "fr", "en"),
                  ("Übersetze ins Englische: {text}", "de", "en"), ("Translate to English please: \"{text}\"", "en", "en"),
                  ("Traduce al inglés: {text}", "es", "en")],
    "summarise": [("Summarise this in one sentence: {text}", "en", None), ("TL;DR please:\n{text}", "en", None),
                  ("Give me a short summary of the text below.\n\n{text}", "en", None), ("Résume ce texte : {text}", "fr", None),
                  ("Fasse kurz zusammen: {text}", "de", None), ("Summarize in two bullet points:\n{text}", "en", None),
                  ("Resume en una frase: {text}", "es", None)],
    "grammar": [("Fix the grammar: {bad}", "en", None), ("Correct the spelling and grammar of this sentence:\n{bad}", "en", None),
                ("Can you proofread this for me? \"{bad}\"", "en", None), ("Corrige les fautes : {bad}", "fr", None),
                ("Please fix the mistakes in: {bad}", "en", None), ("Grammar check:\n{bad}", "en", None),
                ("Korrigiere bitte die Fehler: {bad}", "de", None), ("Corrige la gramática: {bad}", "es", None)],
}
# What an LLM sometimes writes before the answer, in the language of the instruction.
PREAMBLE = {
    "translate": {"en": "Here is the translation:", "fr": "Voici la traduction :", "de": "Hier ist die Übersetzung:", "es": "Aquí está la traducción:"},
    "summarise": {"en": "Here's a short summary:", "fr": "Voici un résumé :", "de": "Kurz gesagt:", "es": "En resumen:"},
    "grammar": {"en": "Corrected:", "fr": "Version corrigée :", "de": "Korrigiert:", "es": "Versión corregida:"},
}


def generic_record(rng, w, job):
    """(user turn, answer) of the generic assistant: the material's language follows the user's
    (now and then another one), the answer is the material translated, summarised or fixed."""
    name = w.name()
    vals = dict(name=name, email=w.email(name), city=w.city(), date=w.date(), product=w.product())
    template, lang, target = rng.choice(GENERIC_JOBS[job])
    if job == "translate":
        source = rng.choice([lang_ for lang_ in LANGS if lang_ != target]) if lang == target or rng.random() < 0.3 else lang
        text, _ = rng.choice(MATERIAL)
        user = template.format(text=text[source].format(**vals))
        body = text[target].format(**vals)
    elif job == "summarise":
        source = lang if rng.random() < 0.85 else rng.choice(LANGS)
        text, summary = rng.choice(MATERIAL)
        user = template.format(text=text[source].format(**vals))
        body = summary[source].format(**vals)
        if "bullet" in template:
            first = text[source].format(**vals).split(". ")[0]
            body = f"- {body}\n- {first}."
    else:
        source = lang if rng.random() < 0.85 else rng.choice(LANGS)
        bad, good = rng.choice(BROKEN[source])
        user = template.format(bad=bad.format(**vals))
        body = good.format(**vals)
    if rng.random() < 0.3:
        body = f"{PREAMBLE[job][lang]}\n\n{body}"
    return user, body


# (agent, job) → relative weight: uneven job sizes.
JOBS = [("support", "intent", 22), ("support", "extract", 12), ("support", "weather", 9),
        ("support", "chat", 4), ("ops", "lookup_order", 10), ("ops", "refund_order", 6),
        ("ops", "update_address", 4), ("ops", "send_email", 3), ("ops", "schedule_callback", 2),
        ("assistant", "translate", 14), ("assistant", "summarise", 8), ("assistant", "grammar", 6)]


def fill(rng, w, template, **extra):
    name = w.name()
    vals = dict(name=name, email=w.email(name), email2=w.email(), order=w.order(), city=w.city(),
                date=w.date(), phone=w.phone(), product=w.product(), n=rng.randint(2, 99))
    vals.update(extra)
    return template.format(**vals), vals


def tool_call(rng, name, args):
    return {"role": "assistant", "content": None, "tool_calls": [{
        "id": f"call_{rng.getrandbits(48):012x}", "type": "function",
        "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}]}


def record(rng, w, agent, job):
    """One call: (system prompt, user turn, tools, assistant message)."""
    tools = None
    if agent == "support" and job == "intent":
        label = rng.choice(INTENTS)
        user, _ = fill(rng, w, rng.choice(INTENT_MSGS[label]))
        return CLASSIFIER_SYS, user, None, {"role": "assistant", "content": label}
    if agent == "support" and job == "extract":
        req = rng.choice(REQS)
        d = w.date()
        user, v = fill(rng, w, rng.choice(EXTRACT_MSGS), req=req[0].format(date=d),
                       req_fr=req[1].format(date=d), req_es=req[2].format(date=d))
        out = {"name": v["name"], "email": v["email"], "order_id": v["order"], "city": v["city"],
               "request": req[0].format(date=d)}
        return EXTRACT_SYS, user, None, {"role": "assistant", "content": json.dumps(out, ensure_ascii=False)}
    if agent == "support" and job == "weather":
        user, v = fill(rng, w, rng.choice(WEATHER_MSGS))
        return WEATHER_SYS, user, [WEATHER_TOOL], tool_call(rng, "get_weather", {"city": v["city"], "date": v["date"]})
    if agent == "support" and job == "chat":
        user, v = fill(rng, w, rng.choice(CHAT_MSGS))
        return CHAT_SYS, user, None, {"role": "assistant", "content": rng.choice(CHAT_ANSWERS).format(city=v["city"])}
    if agent == "ops":
        user, v = fill(rng, w, rng.choice(OPS_MSGS[job]))
        args = {"lookup_order": {"order_id": v["order"]},
                "refund_order": {"order_id": v["order"], "reason": "customer request"},
                "update_address": {"order_id": v["order"], "city": v["city"]},
                "send_email": {"to": v["email"], "subject": "Your order"},
                "schedule_callback": {"phone": v["phone"], "date": v["date"]}}[job]
        return OPS_SYS, user, OPS_TOOLS, tool_call(rng, job, args)
    user, answer = generic_record(rng, w, job)
    return GENERIC_SYS, user, None, {"role": "assistant", "content": answer}


def generate(n, seed):
    rng = random.Random(seed)
    w = World(rng)
    total = sum(j[2] for j in JOBS)
    out = []
    for agent, job, weight in JOBS:
        for _ in range(max(1, round(n * weight / total))):
            system, user, tools, answer = record(rng, w, agent, job)
            request = {"model": "gpt-4o-2024-08-06",
                       "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}
            if tools:
                request["tools"] = tools
            out.append({
                "request": request,
                "response": {"object": "chat.completion", "model": "gpt-4o-2024-08-06",
                             "choices": [{"index": 0, "message": answer,
                                          "finish_reason": "tool_calls" if answer.get("tool_calls") else "stop"}]},
                "metadata": {"source": "varied", "agent": agent, "job": f"{agent}:{job}"},
            })
    rng.shuffle(out)
    base = 1767225600  # 2026-01-01T00:00:00Z
    for i, r in enumerate(out):
        r["timestamp"] = base + i * 7
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    recs = generate(a.calls, a.seed)
    with open(a.out, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
