#!/usr/bin/env python3
"""Generate the labelled PII corpus for the downshift vs Presidio benchmark.

Stdlib only, seeded and deterministic. Every fake value is generated here (names, addresses,
numbers with valid check digits where the type has one). Output: JSON Lines
{"text": str, "lang": str, "kind": str, "spans": [{"type", "start", "end"}]} with UTF-8 byte offsets.

Usage: gen_corpus.py [--seed N] [--out PATH]
"""
import argparse
import json
import random
import string
import sys

# ---------------------------------------------------------------- names per locale
# Written for this benchmark; deliberately includes less common names.
NAMES = {
    "en": {
        "given_m": "James Oliver Henry Samuel Daniel Edward Thomas George Arthur Frederick Lucas Mason Ethan Logan Caleb Wyatt Rupert Alistair Desmond Barnaby Crispin Lachlan Ptolemy Otis Jasper Ezra Silas Declan Callum Hugo".split(),
        "given_f": "Emily Olivia Charlotte Amelia Sophie Grace Hannah Abigail Eleanor Harriet Imogen Philippa Rosalind Beatrix Clementine Ottilie Wren Maisie Georgina Tabitha Lydia Evelyn Madeleine Florence Priscilla Saoirse Niamh Bronwyn Lorna Delphine".split(),
        "sur": "Smith Johnson Williams Brown Taylor Davies Wilson Evans Thompson Walker Robinson Wright Hughes Edwards Green Hall Wood Harris Clarke Jackson Turner Hill Cooper Ward Morris Whitfield Ashworth Pemberton Featherstone Blackwood Thistlewood Hargreaves Cartwright Pilkington Fairweather Lockhart Merriweather Dunmore Abernethy Braithwaite".split(),
        "title_m": ["Mr.", "Mr", "Dr.", "Prof."], "title_f": ["Mrs.", "Ms.", "Ms", "Dr.", "Miss"],
    },
    "de": {
        "given_m": "Lukas Maximilian Felix Jonas Leon Paul Tobias Florian Matthias Stefan Jürgen Wolfgang Günther Dieter Klaus Benedikt Korbinian Ansgar Wendelin Gerold Hartmut Volkmar Leopold Ruprecht Meinrad Friedemann Anselm Detlev".split(),
        "given_f": "Anna Lena Sophie Katharina Julia Laura Johanna Lea Marie Clara Sabine Ursula Brigitte Ingrid Hildegard Gudrun Wiebke Frauke Roswitha Adelheid Mechthild Hannelore Liesel Gesine Almut Swantje Irmgard Dorothea".split(),
        "sur": "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Koch Richter Wolf Schröder Neumann Zimmermann Krüger Hartmann Lange Schmitt Oberhuber Kleinschmidt Breitenbach Rosenthal Eisenhauer Wittgenstein Hinterseer Quandt Brandhorst Lichtenberg Achterberg Kesselring".split(),
        "title_m": ["Herr", "Herr Dr.", "Dr."], "title_f": ["Frau", "Frau Dr.", "Dr."],
    },
    "fr": {
        "given_m": "Jean Pierre Nicolas Julien Thomas Antoine Mathieu Guillaume Sébastien Olivier François Benoît Gaspard Aurélien Baptiste Anatole Lucien Timothée Bertrand Eustache Gauthier Hippolyte Amaury Fulbert Tancrède Florimond Marcelin".split(),
        "given_f": "Marie Camille Léa Chloé Manon Sophie Julie Claire Élodie Émilie Mathilde Juliette Margaux Clémence Apolline Bérénice Ghislaine Solange Perrine Aurore Séverine Blanche Hortense Gwenaëlle Ségolène Capucine Anouk".split(),
        "sur": "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent Lefebvre Michel Garcia David Bertrand Roux Vincent Fournier Morel Girard Lemaire Fontaine Chevalier Delacroix Beaumont Marchetti Lacoste Duvernois Castelnau Montfort Villeneuve Desjardins Rochefort".split(),
        "title_m": ["M.", "Monsieur", "Dr"], "title_f": ["Mme", "Madame", "Mlle", "Dr"],
    },
    "es": {
        "given_m": "José Antonio Manuel Francisco Javier Carlos Miguel Alejandro Pablo Sergio Diego Álvaro Raúl Íñigo Gonzalo Rodrigo Ignacio Fermín Baltasar Eusebio Leandro Anselmo Teodoro Ulises Benigno Casimiro".split(),
        "given_f": "María Carmen Lucía Laura Marta Paula Elena Sara Sofía Irene Pilar Rocío Ainhoa Begoña Nerea Itziar Macarena Remedios Inmaculada Montserrat Almudena Covadonga Araceli Guadalupe Yolanda Maite".split(),
        "sur": "García Fernández González Rodríguez López Martínez Sánchez Pérez Gómez Martín Jiménez Ruiz Hernández Díaz Moreno Álvarez Romero Navarro Torres Domínguez Iglesias Etxeberria Villalobos Sepúlveda Valdivieso Echevarría Zubizarreta Montenegro Cifuentes Arrabal".split(),
        "title_m": ["Sr.", "Don", "Dr."], "title_f": ["Sra.", "Srta.", "Doña", "Dra."],
    },
    "it": {
        "given_m": "Giuseppe Giovanni Antonio Marco Andrea Luca Francesco Alessandro Matteo Lorenzo Stefano Paolo Gianluca Tommaso Edoardo Ludovico Ettore Ottavio Ruggero Gualtiero Amedeo Cosimo Fabrizio Saverio Corrado".split(),
        "given_f": "Giulia Francesca Chiara Sara Martina Valentina Alessia Elena Federica Silvia Roberta Ilaria Beatrice Ginevra Ludovica Costanza Gaia Ornella Rosalba Assunta Annunziata Benedetta Letizia Filomena Nives".split(),
        "sur": "Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo Conti De Luca Costa Giordano Mancini Rizzo Lombardi Moretti Barbieri Fontana Santoro Mariani Pellegrino Quattrocchi Sanfilippo Scarpellini Bevilacqua Lombardozzi Tagliaferro".split(),
        "title_m": ["Sig.", "Dott.", "Ing.", "Avv."], "title_f": ["Sig.ra", "Dott.ssa", "Signora"],
    },
    "nl": {
        "given_m": "Jan Pieter Daan Sem Lucas Bram Thijs Jeroen Maarten Sander Wouter Joost Gijs Tijmen Reinout Hidde Floris Gerrit Harm Ewoud Olaf Jurriaan Siebren Wietse Lodewijk".split(),
        "given_f": "Emma Julia Sophie Anne Lotte Sanne Fleur Lieke Femke Marieke Anouk Ilse Noor Roos Evi Tessa Marloes Geertje Jantine Hester Willemijn Aaltje Grietje Baukje Liesbeth".split(),
        "sur": "de Jong Jansen de Vries van den Berg van Dijk Bakker Visser Smit Meijer de Boer Mulder de Groot Bos Vos Peters Hendriks Dekker Brouwer Dijkstra Hoekstra van der Meer Kuipers Veenstra Schuurman Zwanenburg Oosterhout Ruitenberg Brinkhuis Wolthuis Terpstra".split(),
        "title_m": ["Dhr.", "meneer", "de heer"], "title_f": ["Mevr.", "mevrouw"],
    },
}
# Dutch surnames above contain particles as separate words; rebuild them properly.
NAMES["nl"]["sur"] = ["de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Visser", "Smit", "Meijer",
                      "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters", "Hendriks", "Dekker", "Brouwer", "Dijkstra",
                      "Hoekstra", "van der Meer", "Kuipers", "Veenstra", "Schuurman", "Zwanenburg", "Oosterhout",
                      "Ruitenberg", "Brinkhuis", "Wolthuis", "Terpstra"]
NAMES["it"]["sur"] = [s for s in NAMES["it"]["sur"] if s not in ("De", "Luca")] + ["De Luca"]

LANGS = ["en", "de", "fr", "es", "it", "nl"]

# ---------------------------------------------------------------- check digits

def luhn_digit(partial):
    total = 0
    for i, ch in enumerate(reversed(partial + "0")):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_ok(num):
    total = 0
    for i, ch in enumerate(reversed(num)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_check(country, bban):
    s = bban + country + "00"
    n = "".join(str(int(c, 36)) for c in s)
    return "%02d" % (98 - int(n) % 97)


IBAN_FORMATS = {  # country: list of (kind, length) for the BBAN; n digits, a upper letters, c alnum
    "DE": [("n", 18)], "FR": [("n", 10), ("c", 11), ("n", 2)], "ES": [("n", 20)], "IT": [("a", 1), ("n", 10), ("c", 12)],
    "NL": [("a", 4), ("n", 10)], "GB": [("a", 4), ("n", 14)], "BE": [("n", 12)], "AT": [("n", 16)], "CH": [("n", 5), ("c", 12)],
}


# ---------------------------------------------------------------- generators

class Gen:
    def __init__(self, rng):
        self.r = rng

    def digits(self, n):
        return "".join(self.r.choice(string.digits) for _ in range(n))

    def pick(self, xs):
        return self.r.choice(xs)

    # --- people
    def person(self, lang, sex=None):
        sex = sex or self.pick("mf")
        n = NAMES[lang]
        given = self.pick(n["given_" + sex])
        sur = self.pick(n["sur"])
        return given, sur, sex

    # --- email
    def email(self, lang, given=None, sur=None):
        domains = {
            "en": ["gmail.com", "outlook.com", "yahoo.co.uk", "acme-corp.com", "northwind.io", "fastmail.fm"],
            "de": ["web.de", "gmx.de", "t-online.de", "firma-mueller.de", "posteo.de", "beispiel-gmbh.de"],
            "fr": ["orange.fr", "free.fr", "laposte.net", "societe-dupont.fr", "wanadoo.fr", "sfr.fr"],
            "es": ["gmail.com", "hotmail.es", "telefonica.es", "empresa-garcia.es", "yahoo.es"],
            "it": ["libero.it", "virgilio.it", "tiscali.it", "azienda-rossi.it", "alice.it"],
            "nl": ["ziggo.nl", "kpnmail.nl", "xs4all.nl", "bedrijf-jansen.nl", "planet.nl"],
        }[lang]
        if given is None:
            given, sur, _ = self.person(lang)
        g = ascii_fold(given).lower()
        s = ascii_fold(sur).lower().replace(" ", "")
        style = self.r.randrange(6)
        local = [f"{g}.{s}", f"{g[0]}{s}", f"{g}_{s}{self.r.randrange(10, 99)}", f"{s}.{g}", f"{g}{self.r.randrange(1970, 2005)}", f"{g[0]}.{s}+billing"][style]
        return f"{local}@{self.pick(domains)}"

    # --- phones
    def phone(self, lang):
        r = self.r
        d = self.digits
        if lang == "en":
            if r.random() < 0.5:  # US
                area = str(r.randrange(2, 10)) + d(2)
                ex = str(r.randrange(2, 10)) + d(2)
                ln = d(4)
                return self.pick([f"({area}) {ex}-{ln}", f"{area}-{ex}-{ln}", f"+1 {area} {ex} {ln}", f"{area}.{ex}.{ln}", f"+1 ({area}) {ex}-{ln}", f"1-{area}-{ex}-{ln}"])
            if r.random() < 0.5:
                return self.pick([f"+44 20 {d(4)} {d(4)}", f"020 {d(4)} {d(4)}", f"+44 161 {d(3)} {d(4)}", f"0161 {d(3)} {d(4)}"])
            return self.pick([f"07{d(3)} {d(6)}", f"+44 7{d(3)} {d(6)}", f"+44 (0)7{d(3)} {d(3)} {d(3)}"])
        if lang == "de":
            return self.pick([f"+49 30 {d(8)}", f"030 {d(8)}", f"0171 {d(7)}", f"+49 (0)171 {d(7)}", f"0049 89 {d(7)}",
                              f"089 / {d(3)} {d(4)}", f"+49 151 {d(4)} {d(4)}", f"0221-{d(6)}", f"+49 40 {d(3)} {d(3)} {d(2)}"])
        if lang == "fr":
            mob = self.pick("67")
            pairs = " ".join(d(2) for _ in range(4))
            return self.pick([f"+33 {mob} {pairs}", f"0{mob} {pairs}", f"01.{d(2)}.{d(2)}.{d(2)}.{d(2)}", f"0033 1 {pairs}",
                              f"04 {d(2)} {d(2)} {d(2)} {d(2)}", f"+33 (0)1 {pairs}", f"0{mob}{d(8)}"])
        if lang == "es":
            m = self.pick("67") + d(2)
            return self.pick([f"+34 {m} {d(3)} {d(3)}", f"{m} {d(3)} {d(3)}", f"91 {d(3)} {d(2)} {d(2)}", f"+34 93 {d(3)} {d(2)} {d(2)}",
                              f"{m} {d(2)} {d(2)} {d(2)}", f"0034 {m}{d(6)}"])
        if lang == "it":
            m = "3" + self.pick("234679") + d(1)
            return self.pick([f"+39 02 {d(4)} {d(4)}", f"{m} {d(3)} {d(4)}", f"+39 {m} {d(7)}", f"06 {d(4)} {d(4)}", f"+39 {m} {d(3)} {d(4)}", f"0039 055 {d(6)}"])
        if lang == "nl":
            return self.pick([f"+31 6 {d(8)}", f"06-{d(8)}", f"020 {d(3)} {d(4)}", f"+31 20 {d(3)} {d(4)}", f"06 {d(2)} {d(2)} {d(2)} {d(2)}", f"010-{d(3)} {d(4)}"])
        raise ValueError(lang)

    # --- cards
    def card(self):
        kind = self.r.randrange(5)
        if kind == 0:
            body = "4" + self.digits(14)
        elif kind == 1:
            body = str(self.r.randrange(51, 56)) + self.digits(13)
        elif kind == 2:
            body = self.pick(["34", "37"]) + self.digits(12)
            num = body + luhn_digit(body)
            return self.pick([num, f"{num[:4]} {num[4:10]} {num[10:]}", f"{num[:4]}-{num[4:10]}-{num[10:]}"])
        elif kind == 3:
            body = "6011" + self.digits(11)
        else:
            body = str(self.r.randrange(2221, 2721)) + self.digits(11)
        num = body + luhn_digit(body)
        sep = self.pick(["", " ", "-", " "])
        return sep.join(num[i:i + 4] for i in range(0, 16, 4))

    def bad_card(self):
        while True:
            num = self.pick("4536") + self.digits(15)
            if not luhn_ok(num):
                return self.pick([num, " ".join(num[i:i + 4] for i in range(0, 16, 4))])

    # --- IBAN
    def iban(self, country=None):
        country = country or self.pick(list(IBAN_FORMATS))
        bban = ""
        for kind, n in IBAN_FORMATS[country]:
            for _ in range(n):
                if kind == "n":
                    bban += self.r.choice(string.digits)
                elif kind == "a":
                    bban += self.r.choice(string.ascii_uppercase)
                else:
                    bban += self.r.choice(string.digits + string.ascii_uppercase)
        full = country + iban_check(country, bban) + bban
        if self.r.random() < 0.55:
            return " ".join(full[i:i + 4] for i in range(0, len(full), 4))
        return full

    # --- SSN
    def ssn(self, sep="-"):
        while True:
            area = self.r.randrange(1, 900)
            if area != 666:
                break
        return f"{area:03d}{sep}{self.r.randrange(1, 100):02d}{sep}{self.r.randrange(1, 10000):04d}"

    # --- network
    def ipv4(self):
        first = self.pick([10, 172, 192, 34, 52, 81, 85, 91, 104, 151, 185, 203, 213, 62, 88])
        return f"{first}.{self.r.randrange(0, 256)}.{self.r.randrange(0, 256)}.{self.r.randrange(1, 255)}"

    def ipv6(self):
        groups = [format(self.r.randrange(0, 65536), "x") for _ in range(8)]
        if self.r.random() < 0.5:
            return "2001:db8:" + ":".join(groups[2:5]) + "::" + groups[7]
        return ":".join(["2a02", groups[1]] + groups[2:])

    def mac(self):
        b = [self.r.randrange(256) for _ in range(6)]
        style = self.r.randrange(4)
        if style == 0:
            return ":".join("%02x" % x for x in b)
        if style == 1:
            return ":".join("%02X" % x for x in b)
        if style == 2:
            return "-".join("%02X" % x for x in b)
        h = "".join("%02x" % x for x in b)
        return f"{h[0:4]}.{h[4:8]}.{h[8:12]}"

    # --- secrets
    def rand(self, n, alphabet=string.ascii_letters + string.digits):
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def api_key(self):
        k = self.r.randrange(11)
        if k == 0:
            return "sk-proj-" + self.rand(48, string.ascii_letters + string.digits + "_-")
        if k == 1:
            return "sk-" + self.rand(48)
        if k == 2:
            return "ghp_" + self.rand(36)
        if k == 3:
            return "github_pat_11" + self.rand(20, string.ascii_uppercase + string.digits) + "_" + self.rand(59)
        if k == 4:
            return self.pick(["AKIA", "ASIA"]) + self.rand(16, string.ascii_uppercase + string.digits)
        if k == 5:
            return "xoxb-" + self.digits(12) + "-" + self.digits(13) + "-" + self.rand(24)
        if k == 6:
            return self.pick(["sk_live_", "rk_live_", "pk_live_", "sk_test_"]) + self.rand(24)
        if k == 7:
            return "AIza" + self.rand(35, string.ascii_letters + string.digits + "_-")
        if k == 8:
            return "hf_" + self.rand(34)
        if k == 9:
            return "glpat-" + self.rand(20, string.ascii_letters + string.digits + "_-")
        return "sk-ant-api03-" + self.rand(93, string.ascii_letters + string.digits + "_-") + "AA"

    def generic_secret(self):
        return self.rand(self.r.randrange(24, 41), string.ascii_letters + string.digits)

    def jwt(self):
        import base64
        def b64(obj):
            return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")
        head = b64({"alg": self.pick(["HS256", "RS256"]), "typ": "JWT"})
        body = b64({"sub": self.digits(8), "iat": 1700000000 + self.r.randrange(10**7), "role": self.pick(["user", "admin"])})
        return f"{head}.{body}.{self.rand(43, string.ascii_letters + string.digits + '_-')}"

    def private_key(self):
        kind = self.pick(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
        lines = [self.rand(64, string.ascii_letters + string.digits + "+/") for _ in range(self.r.randrange(3, 7))]
        return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----"

    def password(self):
        return self.pick([
            self.pick(["Sommer", "Winter", "Paris", "Dragon", "Sunshine", "Bella", "Roma"]) + str(self.r.randrange(1, 9999)) + self.pick(["!", "?", "#", "$", ""]),
            self.rand(12, string.ascii_letters + string.digits + "!#$%&*"),
            self.pick(["hunter", "qwerty", "letmein", "passw0rd", "tr0ub4dor"]) + str(self.r.randrange(10, 99)) + "&" + self.pick("ABCXYZ"),
        ])

    def cred_url(self):
        k = self.r.randrange(5)
        host = self.pick(["db.internal", "10.0.3.7", "prod-db-01.example.net", "cache.example.com", "mq.corp.local"])
        user = self.pick(["admin", "root", "app_user", "deploy", "svc-backup", "postgres"])
        pw = self.rand(self.r.randrange(10, 20), string.ascii_letters + string.digits)
        if k == 0:
            return f"postgres://{user}:{pw}@{host}:5432/{self.pick(['orders', 'app', 'crm'])}"
        if k == 1:
            return f"mysql://{user}:{pw}@{host}:3306/shop"
        if k == 2:
            return f"https://{user}:{pw}@{self.pick(['git.example.com', 'registry.example.org', 'ftp.example.net'])}/{self.pick(['repo.git', 'v2/', 'files/report.csv'])}"
        if k == 3:
            return f"https://api.{self.pick(['example.com', 'weather-service.io', 'maps.example.org'])}/v1/{self.pick(['data', 'forecast', 'geocode'])}?{self.pick(['api_key', 'access_token', 'token', 'key'])}={self.rand(32)}"
        return f"redis://:{pw}@{host}:6379/0" if self.r.random() < 0.5 else f"amqp://{user}:{pw}@{host}:5672/vhost"

    # --- dates of birth
    def date(self, lang, year=None):
        y = year or self.r.randrange(1940, 2006)
        m = self.r.randrange(1, 13)
        dd = self.r.randrange(1, 29)
        months = {
            "en": "January February March April May June July August September October November December".split(),
            "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember".split(),
            "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre".split(),
            "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre".split(),
            "it": "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre".split(),
            "nl": "januari februari maart april mei juni juli augustus september oktober november december".split(),
        }[lang]
        mn = months[m - 1]
        forms = {
            "en": [f"{m:02d}/{dd:02d}/{y}", f"{mn} {dd}, {y}", f"{dd} {mn} {y}", f"{y}-{m:02d}-{dd:02d}"],
            "de": [f"{dd:02d}.{m:02d}.{y}", f"{dd}. {mn} {y}", f"{y}-{m:02d}-{dd:02d}"],
            "fr": [f"{dd:02d}/{m:02d}/{y}", f"{dd} {mn} {y}", f"{y}-{m:02d}-{dd:02d}"],
            "es": [f"{dd:02d}/{m:02d}/{y}", f"{dd} de {mn} de {y}", f"{dd}-{m:02d}-{y}"],
            "it": [f"{dd:02d}/{m:02d}/{y}", f"{dd} {mn} {y}", f"{y}-{m:02d}-{dd:02d}"],
            "nl": [f"{dd:02d}-{m:02d}-{y}", f"{dd} {mn} {y}", f"{y}-{m:02d}-{dd:02d}"],
        }[lang]
        return self.pick(forms)

    # --- street addresses
    def address(self, lang):
        r = self.r
        n = r.randrange(1, 250)
        if lang == "en":
            if r.random() < 0.5:
                street = self.pick(["Maple", "Oak", "Cedar", "Elm", "Pine", "Washington", "Lincoln", "Lakeview", "Sunset", "Highland", "Jefferson", "Willow Creek", "Martin Luther King"])
                typ = self.pick(["Street", "St", "Avenue", "Ave", "Road", "Blvd", "Drive", "Lane", "Court", "Way"])
                unit = self.pick(["", "", f", Apt {r.randrange(1, 40)}{self.pick('ABCD')}", f", Suite {r.randrange(100, 900)}"])
                city = self.pick(["Springfield, IL 62704", "Austin, TX 73301", "Portland, OR 97205", "Denver, CO 80202", "Madison, WI 53703"])
                return f"{n} {street} {typ}{unit}" + self.pick(["", f", {city}"])
            street = self.pick(["Baker", "Victoria", "Church", "Station", "Mill", "Kingsley", "Abbey", "Brook", "Queen's", "Elmwood"])
            typ = self.pick(["Street", "Road", "Lane", "Close", "Crescent", "Gardens", "Terrace", "Avenue", "Mews"])
            city = self.pick(["London SW1A 1AA", "Manchester M1 1AE", "Leeds LS1 4AP", "Bristol BS1 5TR", "Oxford OX1 2JD"])
            return f"{n} {street} {typ}" + self.pick(["", f", {city}"])
        if lang == "de":
            street = self.pick(["Hauptstraße", "Bahnhofstraße", "Goethestraße", "Schillerstr.", "Lindenallee", "Kirchweg", "Am Marktplatz", "Berliner Straße", "Friedrichstraße", "Rosenweg", "Mozartstraße", "Schlossallee"])
            city = self.pick(["10115 Berlin", "80331 München", "50667 Köln", "20095 Hamburg", "60311 Frankfurt am Main", "1010 Wien", "8001 Zürich"])
            return f"{street} {n}{self.pick(['', '', 'a', 'b'])}" + self.pick(["", f", {city}", f", {city}"])
        if lang == "fr":
            street = self.pick(["rue de la Paix", "avenue des Champs-Élysées", "boulevard Saint-Michel", "rue du Faubourg Saint-Antoine", "place Bellecour", "rue Victor Hugo", "chemin des Vignes", "allée des Tilleuls", "quai de la Loire", "rue Nationale"])
            city = self.pick(["75002 Paris", "69002 Lyon", "13001 Marseille", "31000 Toulouse", "33000 Bordeaux", "59000 Lille"])
            return f"{n}{self.pick(['', '', ' bis'])}, {street}" if r.random() < 0.2 else f"{n} {street}" + self.pick(["", f", {city}", f", {city}"])
        if lang == "es":
            street = self.pick(["Calle Mayor", "Calle de Alcalá", "Avenida de la Constitución", "Paseo de Gracia", "Calle Gran Vía", "Plaza Mayor", "Calle del Prado", "Avenida Diagonal", "Calle Serrano", "Ronda de Atocha"])
            city = self.pick(["28013 Madrid", "08007 Barcelona", "41001 Sevilla", "46002 Valencia", "48001 Bilbao"])
            return f"{street}, {n}" + self.pick(["", f", {r.randrange(1, 9)}º {self.pick('ABCD')}", f", {city}"]) if r.random() < 0.5 else f"{street} {n}" + self.pick(["", f", {city}"])
        if lang == "it":
            street = self.pick(["Via Roma", "Via Giuseppe Garibaldi", "Corso Vittorio Emanuele II", "Piazza Navona", "Via Dante Alighieri", "Viale dei Mille", "Via della Repubblica", "Corso Buenos Aires", "Via Toledo", "Piazza del Duomo"])
            city = self.pick(["00184 Roma", "20121 Milano", "80134 Napoli", "10121 Torino", "50122 Firenze (FI)"])
            return f"{street}, {n}" + self.pick(["", f", {city}"]) if r.random() < 0.5 else f"{street} {n}" + self.pick(["", f", {city}"])
        if lang == "nl":
            street = self.pick(["Keizersgracht", "Damstraat", "Kerkstraat", "Stationsplein", "Prinsengracht", "Laan van Meerdervoort", "Dorpsstraat", "Molenweg", "Herengracht", "Oudegracht"])
            city = self.pick(["1012 AB Amsterdam", "3511 AH Utrecht", "2513 AA Den Haag", "3011 BD Rotterdam", "9711 LM Groningen"])
            return f"{street} {n}" + self.pick(["", "", f", {city}", f"-{self.pick(['1', '2', 'hs'])}, {city}"])
        raise ValueError(lang)

    # --- health
    def mrn(self):
        return self.pick([self.digits(8), "MRN" + self.digits(7), f"{self.digits(3)}-{self.digits(3)}-{self.digits(3)}", "P-" + self.digits(7), self.digits(10)])

    def health_plan(self):
        return self.pick([self.rand(3, string.ascii_uppercase) + self.digits(9), "W" + self.digits(9), self.digits(3) + "-" + self.digits(4) + "-" + self.digits(3), "1EG4-TE5-MK" + self.digits(2), self.rand(1, string.ascii_uppercase) + self.digits(8) + self.rand(1, string.ascii_uppercase)])

    # --- national ids
    def national_id(self, lang):
        r = self.r
        if lang == "es":
            n = r.randrange(10**7, 10**8)
            return f"{n}{'TRWAGMYFPDXBNJZSQVHLCKE'[n % 23]}"
        if lang == "it":
            return codice_fiscale(self)
        if lang == "fr":
            sex = self.pick("12")
            body = sex + f"{r.randrange(40, 99):02d}{r.randrange(1, 13):02d}{r.randrange(1, 96):02d}{r.randrange(1, 990):03d}{r.randrange(1, 999):03d}"
            key = 97 - int(body) % 97
            full = body + f"{key:02d}"
            return f"{full[0]} {full[1:3]} {full[3:5]} {full[5:7]} {full[7:10]} {full[10:13]} {full[13:]}" if r.random() < 0.5 else full
        if lang == "nl":
            while True:
                d = [r.randrange(10) for _ in range(8)]
                s = sum(x * (9 - i) for i, x in enumerate(d))
                last = s % 11
                if last < 10 and d[0] != 0:
                    return "".join(map(str, d)) + str(last)
        if lang == "de":
            while True:
                d = [r.randrange(1, 10)] + [r.randrange(10) for _ in range(9)]
                product = 10
                for x in d:
                    s = (x + product) % 10 or 10
                    product = (s * 2) % 11
                check = (11 - product) % 10
                v = "".join(map(str, d)) + str(check)
                return f"{v[:2]} {v[2:5]} {v[5:8]} {v[8:]}" if r.random() < 0.4 else v
        if lang == "en":
            while True:
                d = [r.randrange(10) for _ in range(9)]
                s = sum(x * (10 - i) for i, x in enumerate(d))
                c = 11 - s % 11
                c = 0 if c == 11 else c
                if c != 10:
                    v = "".join(map(str, d)) + str(c)
                    return f"{v[:3]} {v[3:6]} {v[6:]}"
        raise ValueError(lang)


def codice_fiscale(g):
    odd = [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23]
    s = "".join(g.r.choice(string.ascii_uppercase) for _ in range(6)) + g.digits(2) + g.pick("ABCDEHLMPRST") + f"{g.r.randrange(1, 72):02d}" + g.pick("ABCDEFGHLMZ") + g.digits(3)
    total = 0
    for i, c in enumerate(s):
        v = int(c) if c.isdigit() else ord(c) - 65
        total += odd[v] if i % 2 == 0 else v
    return s + chr(65 + total % 26)


def ascii_fold(s):
    import unicodedata
    s = s.replace("ß", "ss").replace("ø", "o").replace("'", "").replace("’", "")
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


# ---------------------------------------------------------------- templates
# A template is a string with {SLOT} markers. Slots in TYPED produce gold spans; the others are
# look-alike fillers (no span). {FULL}, {GIVEN}, {SUR}, {TFULL} (title + name, span = name only).

TEMPLATES = {
    "en": [
        "Hi {GIVEN}, thanks for reaching out. Could you confirm your email {EMAIL} and phone {PHONE}?",
        "My name is {FULL} and I was charged twice on order {ORDER}. Card ending: {CARD}.",
        "Please forward the contract to {FULL} ({EMAIL}) before {ISODATE}.",
        "Dear {TFULL},\nyour refund of {PRICE} was sent to IBAN {IBAN}.\nKind regards,\n{FULL2}",
        "Customer {FULL}, DOB {DOB}, SSN {SSN}, lives at {ADDRESS}.",
        "Patient: {FULL}\nMRN: {MRN}\nDate of birth: {DOB}\nMember ID: {HPID}",
        "The build {VERSION} failed on host {IP}; MAC {MAC} was seen at {TIMESTAMP}.",
        "Call me back on {PHONE} or write to {EMAIL}. Best,\n{FULL}",
        "Deploy with OPENAI_API_KEY={APIKEY} and DATABASE_URL={CREDURL}",
        "Shipping address: {ADDRESS}. Contact {FULL} at {PHONE}.",
        "Can you check why {GIVEN} {SUR}'s payment with card {CARD} was declined? Order {ORDER}, SKU {SKU}.",
        "{FULL} reported that the router at {IP} ({MAC}) drops packets since firmware {VERSION}.",
        "Here is my token: {SECRET} - please rotate it after the demo.",
        "Meeting with {FULL} and {FULL2} on {ISODATE} about invoice {INVOICE}.",
        "I'm {FULL}, born on {DOB}. My social security number is {SSN}.",
        "Authorization: Bearer {JWT}",
        "Our new office is at {ADDRESS}; the old one closes on {ISODATE}.",
        "password: {PASSWORD}\nuser: {EMAIL}",
        "Got a call from {PHONE} about tracking number {TRACKING}, commit {HASH} fixed it.",
        "Use this key for the staging bucket:\n{PRIVKEY}",
        "NHS number {NATID} belongs to {TFULL}, reachable on {PHONE}.",
        "Hello {GIVEN},\nyour account was accessed from {IPV6} at {TIMESTAMP}. If this wasn't you, reset your password.",
        "Wire {PRICE} to {FULL}, IBAN {IBAN}, reference {INVOICE}.",
        "cc {FULL}: the server {IP} leaked {APIKEY} in the logs (request {UUID}).",
        "Connect with {CREDURL} and run the migration {VERSION}.",
        "Applicant {FULL}, SSN {SSN}, phone {PHONE}, previous address {ADDRESS}.",
        "The webhook fails: POST {CREDURL} returned 401 at {TIMESTAMP}.",
        "Session cookie for {EMAIL}: {JWT}",
        "W-9 on file: {FULL}, SSN {SSN}.",
        "hey its {LOWERGIVEN} here, can u call me at {PHONE}",
    ],
    "de": [
        "Hallo {GIVEN}, bitte schicken Sie die Unterlagen an {EMAIL} oder rufen Sie mich unter {PHONE} an.",
        "Mein Name ist {FULL}, ich wohne in der {ADDRESS}. Meine IBAN lautet {IBAN}.",
        "Sehr geehrte {TFULL},\nvielen Dank für Ihre Bestellung {ORDER}.\nMit freundlichen Grüßen\n{FULL2}",
        "Patient {FULL}, geboren am {DOB}, Patientennummer {MRN}, Versichertennummer {HPID}.",
        "Bitte leiten Sie das an {FULL} weiter, Telefon {PHONE}.",
        "Die Kreditkarte {CARD} von {FULL} wurde abgelehnt (Rechnung {INVOICE}, Betrag {PRICE}).",
        "Lieferadresse: {ADDRESS}\nEmpfänger: {FULL}",
        "Server {IP} mit MAC-Adresse {MAC} ist seit {TIMESTAMP} nicht erreichbar, Version {VERSION}.",
        "Steuer-ID: {NATID}, Geburtsdatum: {DOB}",
        "Hier der API-Schlüssel für das Staging: {APIKEY}",
        "{FULL} hat heute angerufen ({PHONE}) wegen Bestellnummer {ORDER}.",
        "Passwort: {PASSWORD} – bitte nach dem ersten Login ändern. Zugang: {CREDURL}",
        "Viele Grüße\n{FULL}\n{ADDRESS}\nTel. {PHONE}",
        "Frau {SUR} möchte ihre Adresse auf {ADDRESS} ändern.",
        "Überweisung von {PRICE} an {FULL}, IBAN {IBAN}, Verwendungszweck {INVOICE}.",
        "Die Datenbank erreichst du über {CREDURL} (nur intern).",
    ],
    "fr": [
        "Bonjour {GIVEN}, pouvez-vous confirmer votre adresse e-mail {EMAIL} et votre numéro {PHONE} ?",
        "Je m'appelle {FULL} et j'habite au {ADDRESS}.",
        "Madame, Monsieur,\nveuillez rembourser la commande {ORDER} sur l'IBAN {IBAN}.\nCordialement,\n{FULL}",
        "Patient : {FULL}, né le {DOB}, numéro de sécurité sociale {NATID}, numéro de dossier {MRN}.",
        "Merci de transmettre à {TFULL} ({EMAIL}) avant le {ISODATE}.",
        "La carte {CARD} de {FULL} a été refusée pour la facture {INVOICE} ({PRICE}).",
        "Le serveur {IP} (adresse MAC {MAC}) redémarre en boucle depuis la version {VERSION}.",
        "Appelez {FULL} au {PHONE}, il est disponible après {TIME}.",
        "Voici la clé API de production : {APIKEY}",
        "Adresse de livraison : {ADDRESS}, destinataire {FULL}.",
        "{FULL} a appelé ce matin au sujet du colis {TRACKING}.",
        "mot de passe : {PASSWORD}",
        "Bien à vous,\n{FULL}\nTél. {PHONE}",
        "Chaîne de connexion : {CREDURL}",
    ],
    "es": [
        "Hola {GIVEN}, ¿puedes confirmar tu correo {EMAIL} y tu teléfono {PHONE}?",
        "Me llamo {FULL} y vivo en {ADDRESS}.",
        "Estimada {TFULL}:\nle devolvemos el importe del pedido {ORDER} a la cuenta {IBAN}.\nUn saludo,\n{FULL2}",
        "Paciente: {FULL}, fecha de nacimiento {DOB}, DNI {NATID}, historia clínica {MRN}.",
        "Por favor, reenvía esto a {FULL} ({EMAIL}).",
        "La tarjeta {CARD} de {FULL} fue rechazada (factura {INVOICE}, {PRICE}).",
        "El servidor {IP} con MAC {MAC} falla desde la versión {VERSION}.",
        "Llama a {FULL} al {PHONE} después de las {TIME}.",
        "Dirección de envío: {ADDRESS}. Destinatario: {FULL}.",
        "{FULL} llamó ayer por el pedido {ORDER}.",
        "La clave de la API es {APIKEY}, no la compartas.",
        "Saludos,\n{FULL}\nTel.: {PHONE}",
        "contraseña: {PASSWORD}",
        "Cadena de conexión: {CREDURL}",
    ],
    "it": [
        "Ciao {GIVEN}, puoi confermare la tua email {EMAIL} e il numero {PHONE}?",
        "Mi chiamo {FULL} e abito in {ADDRESS}.",
        "Gentile {TFULL},\nabbiamo rimborsato l'ordine {ORDER} sull'IBAN {IBAN}.\nCordiali saluti,\n{FULL2}",
        "Paziente: {FULL}, nato il {DOB}, codice fiscale {NATID}, cartella clinica {MRN}.",
        "Inoltra a {FULL} ({EMAIL}), per favore.",
        "La carta {CARD} di {FULL} è stata rifiutata (fattura {INVOICE}, {PRICE}).",
        "Il server {IP} con MAC {MAC} non risponde dalla versione {VERSION}.",
        "Chiama {FULL} al {PHONE} dopo le {TIME}.",
        "Indirizzo di consegna: {ADDRESS}. Destinatario: {FULL}.",
        "{FULL} ha chiamato ieri per l'ordine {ORDER}.",
        "Ecco la chiave API: {APIKEY}",
        "Distinti saluti,\n{FULL}\nTel. {PHONE}",
        "Stringa di connessione: {CREDURL}",
    ],
    "nl": [
        "Hoi {GIVEN}, kun je je e-mailadres {EMAIL} en telefoonnummer {PHONE} bevestigen?",
        "Mijn naam is {FULL} en ik woon op {ADDRESS}.",
        "Geachte {TFULL},\nwij storten het bedrag van bestelling {ORDER} terug op {IBAN}.\nMet vriendelijke groet,\n{FULL2}",
        "Patiënt: {FULL}, geboortedatum {DOB}, BSN {NATID}, patiëntnummer {MRN}.",
        "Stuur dit door naar {FULL} ({EMAIL}).",
        "De creditcard {CARD} van {FULL} is geweigerd (factuur {INVOICE}, {PRICE}).",
        "Server {IP} met MAC {MAC} valt uit sinds versie {VERSION}.",
        "Bel {FULL} op {PHONE} na {TIME}.",
        "Afleveradres: {ADDRESS}. Ontvanger: {FULL}.",
        "{FULL} belde gisteren over bestelling {ORDER}.",
        "Hier is de API-sleutel: {APIKEY}",
        "Groeten,\n{FULL}\nTel: {PHONE}",
        "wachtwoord: {PASSWORD}",
        "Verbindingsstring: {CREDURL}",
    ],
}

# A second set of phrasings, written after the detector existed and not tuned against: it keeps
# the benchmark honest about wording the detector's author did not anticipate.
TEMPLATES_MORE = {
    "en": [
        "From: {FULL} <{EMAIL}>\nTo: {SUPPORT_EMAIL}\nSubject: wrong charge\n\nHi, I was billed twice.",
        "Can someone ping {GIVEN}? Her number is {PHONE} and she's at {ADDRESS} until Friday.",
        "Escalating for {FULL}: card {CARD} declined three times, last attempt {TIMESTAMP}.",
        "New hire {FULL}, start date {ISODATE}, DOB {DOB}, SSN {SSN}, direct deposit to {IBAN}.",
        "ssh admin@{IP} failed; the MAC of the box is {MAC}. Ticket {INVOICE}.",
        "The patient, {FULL}, was admitted on {ISODATE} (MRN {MRN}).",
        "export GITHUB_TOKEN={APIKEY}",
        "{FULL} says the delivery to {ADDRESS} never arrived.",
    ],
    "de": [
        "Von: {FULL} <{EMAIL}>\nBetreff: Rückerstattung\n\nGuten Tag, bitte erstatten Sie {PRICE} auf {IBAN}.",
        "Rückruf bitte an {TFULL} unter {PHONE}, sie ist ab {TIME} erreichbar.",
        "Neue Anschrift von {FULL}: {ADDRESS}.",
        "Der Kunde {FULL} (Kundennummer {ORDER}) hat die Karte {CARD} gesperrt.",
    ],
    "fr": [
        "De : {FULL} <{EMAIL}>\nObjet : remboursement\n\nBonjour, merci de rembourser {PRICE} sur {IBAN}.",
        "Pouvez-vous rappeler {TFULL} au {PHONE} ? Elle habite {ADDRESS}.",
        "Le client {FULL} a changé d'adresse : {ADDRESS}.",
    ],
    "es": [
        "De: {FULL} <{EMAIL}>\nAsunto: reembolso\n\nHola, devuélvanme {PRICE} a {IBAN}, por favor.",
        "¿Puedes llamar a {TFULL} al {PHONE}? Vive en {ADDRESS}.",
        "El cliente {FULL} cambió su dirección a {ADDRESS}.",
    ],
    "it": [
        "Da: {FULL} <{EMAIL}>\nOggetto: rimborso\n\nBuongiorno, rimborsate {PRICE} su {IBAN}.",
        "Puoi richiamare {TFULL} al {PHONE}? Abita in {ADDRESS}.",
        "Il cliente {FULL} ha cambiato indirizzo: {ADDRESS}.",
    ],
    "nl": [
        "Van: {FULL} <{EMAIL}>\nOnderwerp: terugbetaling\n\nHallo, graag {PRICE} terugstorten op {IBAN}.",
        "Kun je {TFULL} terugbellen op {PHONE}? Zij woont op {ADDRESS}.",
        "De klant {FULL} heeft een nieuw adres: {ADDRESS}.",
    ],
}
for _lang, _ts in TEMPLATES_MORE.items():
    TEMPLATES[_lang].extend(_ts)

# Tool-call arguments as the agent would send them (JSON text).
TOOLS = [
    ("create_customer", ["first_name:GIVEN", "last_name:SUR", "email:EMAIL", "phone:PHONE", "address:ADDRESS"]),
    ("send_email", ["to:EMAIL", "subject:@subject", "body:@body_person"]),
    ("update_billing", ["customer_name:FULL", "iban:IBAN", "card_number:CARD"]),
    ("register_patient", ["full_name:FULL", "dob:DOB_BARE", "mrn:MRN", "insurance_member_id:HPID"]),
    ("lookup_order", ["order_id:ORDER", "sku:SKU", "placed_at:TIMESTAMP"]),
    ("configure_device", ["hostname:@host", "ip:IP", "mac:MAC", "firmware:VERSION"]),
    ("store_secret", ["name:@secretname", "api_key:APIKEY"]),
    ("book_delivery", ["recipient:FULL", "street:ADDRESS", "contact_phone:PHONE", "tracking:TRACKING"]),
    ("verify_identity", ["name:FULL", "ssn:SSN", "date_of_birth:DOB_BARE"]),
    ("get_weather", ["city:@city", "units:@units"]),
    ("http_request", ["method:@method", "url:CREDURL", "timeout:@timeout"]),
    ("run_query", ["dsn:CREDURL", "sql:@sql"]),
    ("search_products", ["query:@query", "max_price:@price", "sku:SKU"]),
]

TYPED = {
    "EMAIL": "EMAIL", "PHONE": "PHONE", "CARD": "CREDIT_CARD", "IBAN": "IBAN", "SSN": "SSN", "IP": "IP_ADDRESS",
    "IPV6": "IP_ADDRESS", "MAC": "MAC_ADDRESS", "CREDURL": "URL_WITH_CREDENTIALS", "APIKEY": "API_KEY",
    "SECRET": "API_KEY", "DOB": "DATE_OF_BIRTH", "DOB_BARE": "DATE_OF_BIRTH", "ADDRESS": "STREET_ADDRESS",
    "MRN": "MEDICAL_RECORD_NUMBER", "HPID": "HEALTH_PLAN_ID", "NATID": "NATIONAL_ID", "JWT": "JWT",
    "PRIVKEY": "PRIVATE_KEY", "PASSWORD": "PASSWORD", "FULL": "PERSON", "FULL2": "PERSON", "GIVEN": "PERSON",
    "SUR": "PERSON", "TFULL": "PERSON", "SUPPORT_EMAIL": "EMAIL",
}


class Builder:
    """Concatenates text pieces and records gold spans as UTF-8 byte offsets."""

    def __init__(self):
        self.parts = []
        self.pos = 0
        self.spans = []

    def add(self, s, typ=None):
        b = len(s.encode("utf-8"))
        if typ:
            self.spans.append({"type": typ, "start": self.pos, "end": self.pos + b})
        self.parts.append(s)
        self.pos += b

    def text(self):
        return "".join(self.parts)


def filler(g, slot, lang):
    r = g.r
    if slot == "ORDER":
        return g.pick([f"#{g.digits(8)}", f"ORD-{r.randrange(2019, 2026)}-{g.digits(6)}", f"{g.digits(3)}-{g.digits(7)}", f"A{g.digits(9)}"])
    if slot == "INVOICE":
        return g.pick([f"INV-{r.randrange(2019, 2026)}-{g.digits(5)}", f"RE{g.digits(8)}", f"F-{g.digits(6)}/{r.randrange(2019, 2026)}"])
    if slot == "SKU":
        return g.pick([f"SKU-{g.digits(4)}-{g.pick(['BLK', 'WHT', 'RED'])}", f"{g.rand(3, string.ascii_uppercase)}-{g.digits(5)}-{g.digits(2)}", f"{g.digits(6)}-{g.digits(3)}"])
    if slot == "VERSION":
        return g.pick([f"{r.randrange(1, 15)}.{r.randrange(0, 30)}.{r.randrange(0, 50)}", f"v{r.randrange(1, 5)}.{r.randrange(0, 20)}.{r.randrange(0, 9)}", f"{r.randrange(1, 9)}.{r.randrange(0, 9)}.{r.randrange(0, 9)}.{r.randrange(100, 9999)}", f"{r.randrange(2019, 2026)}.{r.randrange(1, 13)}.{r.randrange(1, 30)}"])
    if slot == "TIMESTAMP":
        return g.pick([f"{r.randrange(2019, 2026)}-{r.randrange(1, 13):02d}-{r.randrange(1, 29):02d}T{r.randrange(24):02d}:{r.randrange(60):02d}:{r.randrange(60):02d}Z",
                       f"{r.randrange(2019, 2026)}-{r.randrange(1, 13):02d}-{r.randrange(1, 29):02d} {r.randrange(24):02d}:{r.randrange(60):02d}:{r.randrange(60):02d}",
                       str(1600000000 + r.randrange(10**8))])
    if slot == "ISODATE":
        return g.pick([f"{r.randrange(2023, 2027)}-{r.randrange(1, 13):02d}-{r.randrange(1, 29):02d}", f"{r.randrange(1, 29):02d}/{r.randrange(1, 13):02d}/{r.randrange(2023, 2027)}"])
    if slot == "TIME":
        return f"{r.randrange(8, 20)}:{g.pick(['00', '15', '30', '45'])}"
    if slot == "PRICE":
        return g.pick([f"${r.randrange(1, 5000):,}.{r.randrange(100):02d}", f"€{r.randrange(1, 5000)},{r.randrange(100):02d}", f"{r.randrange(1, 5000)}.{r.randrange(100):02d} EUR", f"£{r.randrange(1, 900)}.{r.randrange(100):02d}"])
    if slot == "TRACKING":
        return g.pick([f"1Z{g.rand(6, string.ascii_uppercase + string.digits)}{g.digits(10)}", f"JJD{g.digits(18)}", g.digits(12), f"LX{g.digits(9)}DE"])
    if slot == "UUID":
        h = "".join(r.choice("0123456789abcdef") for _ in range(32))
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
    if slot == "HASH":
        return "".join(r.choice("0123456789abcdef") for _ in range(g.pick([7, 12, 40])))
    if slot == "BADCARD":
        return g.bad_card()
    if slot == "PROPER":
        return g.pick(PROPER)
    if slot == "COORD":
        return f"{r.uniform(-80, 80):.4f}, {r.uniform(-170, 170):.4f}"
    raise KeyError(slot)


# Capitalised phrases that are not people: products, companies, places, institutions.
PROPER = [
    "Visual Studio Code", "Google Cloud Run", "Red Hat Enterprise Linux", "Microsoft Teams", "Amazon Web Services",
    "the Golden Gate Bridge", "Notre Dame", "Deutsche Bahn", "Crédit Agricole", "Société Générale", "Banco Santander",
    "Real Madrid", "Galleria degli Uffizi", "Palazzo Vecchio", "Rijkswaterstaat", "the New York Times",
    "Buenos Aires", "Santa Maria Novella", "Sagrada Família", "Hamburger Hafen", "Apple Pay", "Google Maps",
    "Jupyter Notebook", "Stack Overflow", "Hacker News", "Product Hunt", "Customer Success", "Human Resources",
    "Quality Assurance", "Sales Operations", "Mont Blanc", "Lago di Como", "Costa Brava", "Côte d'Azur",
]

LOOKALIKE_TEMPLATES = [
    "We moved the {PROPER} setup to {PROPER} after the {ISODATE} outage.",
    "Ask {PROPER} about order {ORDER}; {PROPER} already approved it.",
    "Trip notes: {PROPER}, then {PROPER} on {ISODATE}.",
    "Forward the report to {PROPER} and {PROPER} before Friday.",
    "Order {ORDER} shipped on {ISODATE}; tracking {TRACKING}.",
    "Upgraded the cluster to {VERSION} at {TIMESTAMP}, see commit {HASH}.",
    "Invoice {INVOICE} total {PRICE}, item {SKU}.",
    "Request {UUID} took 231 ms (p99 {TIME}).",
    "The card number on the form, {BADCARD}, fails validation.",
    "Reference {BADCARD} was rejected by the gateway.",
    "Coordinates {COORD}, elevation 312 m, sensor firmware {VERSION}.",
    "Build {VERSION} ({HASH}) released {ISODATE}; rollback to {VERSION2} if needed.",
    "Bestellung {ORDER} vom {ISODATE}, Artikel {SKU}, Preis {PRICE}.",
    "Commande {ORDER} expédiée le {ISODATE}, suivi {TRACKING}.",
    "Pedido {ORDER}: {SKU}, total {PRICE}, enviado {TIMESTAMP}.",
    "Ordine {ORDER} del {ISODATE}, articolo {SKU}.",
    "Bestelling {ORDER} verzonden op {ISODATE}, versie {VERSION}.",
    "Job {UUID} finished at {TIMESTAMP} with exit code 0; digest sha256:{HASH}.",
    "Version {VERSION} fixes the bug from {ISODATE}; see ticket {INVOICE}.",
    "Transaction {ORDER} for {PRICE} at {TIMESTAMP}.",
    "Test card {BADCARD} (intentionally invalid) must be rejected.",
    "The meeting is at {TIME} in room 4.12, dial-in code {ORDER}.",
    "Temperature 21.5 °C, humidity 48 %, build {VERSION}.",
    "ISBN 978-3-16-148410-0, EAN {TRACKING}, SKU {SKU}.",
]

SUBJECTS = ["Your invoice", "Meeting tomorrow", "Password reset", "Delivery update", "Re: contract"]


def render(g, template, lang):
    b = Builder()
    people = {}
    i = 0
    while i < len(template):
        j = template.find("{", i)
        if j < 0:
            b.add(template[i:])
            break
        b.add(template[i:j])
        k = template.index("}", j)
        slot = template[j + 1:k]
        i = k + 1
        value_slot(g, b, slot, lang, people)
    return b


def value_slot(g, b, slot, lang, people):
    if slot == "LOWERGIVEN":
        given, _, _ = people.setdefault("FULL", g.person(lang))
        b.add(given.lower(), "PERSON")
        return
    if slot in ("FULL", "FULL2", "GIVEN", "SUR", "TFULL"):
        key = "FULL2" if slot == "FULL2" else "FULL"
        if key not in people:
            people[key] = g.person(lang)
        given, sur, sex = people[key]
        if slot in ("FULL", "FULL2"):
            b.add(f"{given} {sur}", "PERSON")
        elif slot == "GIVEN":
            b.add(given, "PERSON")
        elif slot == "SUR":
            b.add(sur, "PERSON")
        else:
            title = g.pick(NAMES[lang]["title_" + sex])
            b.add(title + " ")
            b.add(g.pick([sur, f"{given} {sur}"]), "PERSON")
        return
    if slot in TYPED:
        typ = TYPED[slot]
        if slot == "SUPPORT_EMAIL":
            v = g.pick(["support@northwind.io", "help@acme-corp.com", "billing@example.org"])
        elif slot == "EMAIL":
            p = people.get("FULL")
            v = g.email(lang, p[0], p[1]) if p and g.r.random() < 0.6 else g.email(lang)
        elif slot == "PHONE":
            v = g.phone(lang)
        elif slot == "CARD":
            v = g.card()
        elif slot == "IBAN":
            v = g.iban({"de": g.pick(["DE", "AT", "CH"]), "fr": g.pick(["FR", "BE"]), "es": "ES", "it": "IT", "nl": g.pick(["NL", "BE"]), "en": g.pick(["GB", "DE", "NL"])}[lang])
        elif slot == "SSN":
            v = g.ssn()
        elif slot == "IP":
            v = g.ipv4() if g.r.random() < 0.8 else g.ipv6()
        elif slot == "IPV6":
            v = g.ipv6()
        elif slot == "MAC":
            v = g.mac()
        elif slot == "CREDURL":
            v = g.cred_url()
        elif slot == "APIKEY":
            v = g.api_key()
        elif slot == "SECRET":
            v = g.generic_secret()
        elif slot in ("DOB", "DOB_BARE"):
            v = g.date(lang)
        elif slot == "ADDRESS":
            v = g.address(lang)
        elif slot == "MRN":
            v = g.mrn()
        elif slot == "HPID":
            v = g.health_plan()
        elif slot == "NATID":
            v = g.national_id(lang)
        elif slot == "JWT":
            v = g.jwt()
        elif slot == "PRIVKEY":
            v = g.private_key()
        elif slot == "PASSWORD":
            v = g.password()
        else:
            raise KeyError(slot)
        b.add(v, typ)
        return
    if slot == "VERSION2":
        slot = "VERSION"
    b.add(filler(g, slot, lang))


def render_tool(g, tool, fields, lang):
    """JSON arguments text, built piece by piece so value offsets are exact."""
    b = Builder()
    people = {}
    b.add("{")
    for n, f in enumerate(fields):
        key, slot = f.split(":")
        if n:
            b.add(", ")
        b.add(json.dumps(key) + ": ")
        if slot.startswith("@"):
            v = {
                "@subject": g.pick(SUBJECTS), "@host": g.pick(["edge-router-3", "nas01", "printer-2f"]),
                "@secretname": g.pick(["openai", "github-ci", "stripe-prod"]), "@city": g.pick(["Berlin", "Lyon", "Valencia", "Torino", "Utrecht", "Denver"]),
                "@units": g.pick(["metric", "imperial"]), "@query": g.pick(["usb-c hub", "standing desk", "noise cancelling headphones"]),
                "@price": str(g.r.randrange(20, 500)), "@method": g.pick(["GET", "POST"]), "@timeout": str(g.r.randrange(5, 60)),
                "@sql": g.pick(["SELECT count(*) FROM orders", "SELECT id, total FROM invoices WHERE total > 100"]),
            }.get(slot)
            if slot == "@body_person":
                if "FULL" not in people:
                    people["FULL"] = g.person(lang)
                given, sur, _ = people["FULL"]
                b.add('"Hi ')
                b.add(given, "PERSON")
                b.add(", the documents are attached. Regards, ")
                b2 = g.person(lang)
                b.add(f"{b2[0]} {b2[1]}", "PERSON")
                b.add('"')
                continue
            b.add(json.dumps(v, ensure_ascii=False))
            continue
        b.add('"')
        value_slot(g, b, slot, lang, people)
        b.add('"')
    b.add("}")
    return b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=20260501)
    ap.add_argument("--out", default="-")
    ap.add_argument("--per-template", type=int, default=9)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    g = Gen(rng)
    rows = []
    for lang in LANGS:
        for t in TEMPLATES[lang]:
            for _ in range(args.per_template):
                b = render(g, t, lang)
                rows.append({"text": b.text(), "lang": lang, "kind": "message", "spans": b.spans})
    for lang in LANGS:
        for tool, fields in TOOLS:
            for _ in range(4):
                b = render_tool(g, tool, fields, lang)
                rows.append({"text": b.text(), "lang": lang, "kind": "tool_args", "spans": b.spans})
    for t in LOOKALIKE_TEMPLATES:
        for _ in range(12):
            b = render(g, t, "en")
            rows.append({"text": b.text(), "lang": "xx", "kind": "lookalike", "spans": b.spans})
    rng.shuffle(rows)
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")
    for r in rows:
        # Sanity: spans must be valid UTF-8 byte ranges of the text.
        raw = r["text"].encode("utf-8")
        for s in r["spans"]:
            raw[s["start"]:s["end"]].decode("utf-8")
        out.write(json.dumps(r, ensure_ascii=False) + "\n")
    if out is not sys.stdout:
        out.close()
    n_spans = sum(len(r["spans"]) for r in rows)
    print(f"corpus: {len(rows)} texts, {n_spans} gold spans", file=sys.stderr)


if __name__ == "__main__":
    main()
