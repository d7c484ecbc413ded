#!/usr/bin/env python3
"""A second, independent labelled PII corpus ("varied"): new phrasings, nine locales.

Written after the detector and separately from gen_corpus.py (no shared lists, templates or value
generators). Nine locales (en-US, en-GB, de-DE, de-AT, fr-FR, es-ES, it-IT, nl-NL, pt-PT), each
with its own national address layout and phone numbering plan; SSNs with and without separators;
MRNs and dates of birth in records and in free text; API keys inside non-English sentences;
texts that hold only look-alikes.

Split: every template list and every name list is cut in two by position (even -> dev, odd ->
report), and the two parts use different seeds. Rules may be read against the dev part only; the
report part is only scored.

Usage: gen_varied.py --split dev|report [--seed N] [--n-per-locale N] --out PATH
Output: JSON Lines {"text", "lang", "kind", "spans": [{"type", "start", "end"}]} (UTF-8 bytes).
"""
import argparse
import json
import random
import string

LOCALES = ["en-US", "en-GB", "de-DE", "de-AT", "fr-FR", "es-ES", "it-IT", "nl-NL", "pt-PT"]

GIVEN = {
    "en-US": "Brandon Tyler Dustin Marcus Trevor Garrett Colby Dakota Jolene Kaylee Brittany Shelby Madison Tamika Latoya Dwayne Cody Raylene Chase Savannah Harlan Reba".split(),
    "en-GB": "Nigel Graham Alasdair Gareth Rhys Hamish Fergus Eilidh Morag Siobhan Gemma Kirsty Bethan Rhiannon Ffion Dougal Tarquin Jocasta Hermione Percival Cormac Isla".split(),
    "de-DE": "Till Jannik Malte Hauke Ole Finn Kai Sönke Jörg Ulf Rüdiger Heike Silke Anke Dörte Maren Imke Ilka Telse Wiebke Lutz Ortrun".split(),
    "de-AT": "Florian Lorenz Valentin Severin Vinzenz Balthasar Ferdinand Alois Leopoldine Theresia Magdalena Notburga Rosina Kunigunde Aloisia Zita Engelbert Wolfram Sieglinde Herta Gottfried Waltraud".split(),
    "fr-FR": "Loïc Yannick Gwendal Erwan Ronan Maël Killian Théo Noémie Océane Maëlle Laëtitia Cécile Sylvie Nadège Brigitte Gaëtan Armelle Enzo Jordane Yvette Thibault".split(),
    "es-ES": "Xabier Aitor Jordi Pau Iker Unai Borja Marcos Nuria Montse Leire Amaia Arantxa Rosario Consuelo Milagros Rubén Adrián Estíbaliz Yaiza Cristóbal Ainara".split(),
    "it-IT": "Carmine Gennaro Salvatore Vincenzo Pasquale Rocco Mirko Elio Concetta Immacolata Loredana Tiziana Manuela Graziella Donatella Raffaella Gino Domenico Agata Noemi Aurelio Rita".split(),
    "nl-NL": "Joris Stijn Koen Bas Ruud Henk Kees Sjoerd Mirjam Ineke Annelies Wilma Loes Maaike Sietske Gerda Hein Dirk Janneke Trijntje Auke Femmigje".split(),
    "pt-PT": "João Tiago Duarte Gonçalo Rui Nuno Afonso Vasco Inês Beatriz Leonor Matilde Carolina Mariana Conceição Fátima Bruno Filipe Rosa Teresa Diogo Margarida".split(),
}
SURNAME = {
    "en-US": "Kowalski Jefferson Delgado Nguyen Washburn Whitaker Holloway Pruitt McAllister Kincaid Barrow Stackhouse Delacroix Haskins Ramirez Okafor Winslow Tillman Ochoa Brewster Mahoney Castellano".split(),
    "en-GB": "Pritchard Entwistle Ogilvy McTavish Llewellyn Fotheringham Aldridge Cholmondeley Trelawney Penhaligon Haworth Beckwith Armitage Sinclair Urquhart Fairbairn Dimbleby Cuthbert Ainsworth Rowntree Featherby Kilbride".split(),
    "de-DE": "Petersen Thiessen Carstensen Claussen Rohwedder Behrends Wübbena Oltmanns Gerdes Janssen Brüggemann Hasselhoff Overbeck Dreyer Lüdecke Wendland Kahlert Sievers Tönnies Bruhns Ketelsen Harms".split(),
    "de-AT": "Huber Gruber Pichler Moser Steiner Hofbauer Leitner Aigner Wimmer Brandstätter Eder Koller Lackner Oberndorfer Reisinger Fuchsberger Haslinger Kogler Schwaiger Stadlbauer Pölzl Zauner".split(),
    "fr-FR": "Le Goff Kerbrat Le Gall Quéméner Tanguy Guilloux Pasquier Carpentier Lemonnier Baudouin Charpentier Ferrand Barthélemy Vasseur Le Bihan Renaudin Jacquemin Brossard Lévêque Marchand Gauthier Delorme".split(),
    "es-ES": "Aguirre Urrutia Goikoetxea Puig Ferrer Soler Vidal Casals Bermúdez Quintana Salazar Benítez Pacheco Carrasco Calvo Cabello Arjona Escudero Lozano Vallejo Murillo Zamora".split(),
    "it-IT": "Esposito Capuano Amato D'Angelo Coppola Caruso Pagano Ferraro Sorrentino Cirillo Palumbo Longo Gentile Bellini Vitale Marchesi Fumagalli Brambilla Cattaneo Galbiati Mazzoleni Colnaghi".split(),
    "nl-NL": "Bosman van Leeuwen Koster Prins Huisman Postma Zijlstra van Wijk Kramer de Haan Verhoeven Blom Jonker van Vliet Westerhof Scholten Timmermans Groeneveld Hofstra de Wit Vermeulen Wouters".split(),
    "pt-PT": "Ferreira Pereira Carvalho Gomes Lopes Marques Almeida Ribeiro Pinto Cardoso Teixeira Moreira Sousa Fernandes Gonçalves Monteiro Mendes Barbosa Fonseca Magalhães Figueiredo Azevedo".split(),
}
# Two-word surnames written with a space.
for loc in ("fr-FR", "nl-NL"):
    merged, words, i = [], SURNAME[loc], 0
    while i < len(words):
        if words[i] in ("Le", "van", "de") and i + 1 < len(words):
            merged.append(words[i] + " " + words[i + 1])
            i += 2
        else:
            merged.append(words[i])
            i += 1
    SURNAME[loc] = merged

STREETS = {
    "en-US": ["Maple Grove", "Cedar Ridge", "Old Mill", "Willow Creek", "Lakeshore", "Magnolia", "Sycamore", "Pine Hollow", "Briarwood", "Chestnut Hill"],
    "en-GB": ["Kingsley", "Beechwood", "Albion", "Victoria", "Holly Tree", "St Mary's", "Chapel", "Orchard", "Abbey", "Meadowbank"],
    "de-DE": ["Linden", "Birken", "Kastanien", "Goethe", "Schiller", "Bahnhof", "Garten", "Mühlen", "Kirch", "Rosen"],
    "de-AT": ["Mariahilfer Straße", "Linzer Straße", "Grazer Gürtel", "Wiedner Hauptstraße", "Favoritenstraße", "Landstraßer Hauptstraße", "Salzburger Gasse", "Innsbrucker Bundesstraße", "Tiroler Gasse", "Kärntner Ring"],
    "fr-FR": ["Jean Jaurès", "Victor Hugo", "des Lilas", "de la République", "Gambetta", "du Général Leclerc", "Pasteur", "des Tilleuls", "Émile Zola", "de Verdun"],
    "es-ES": ["Mayor", "de la Constitución", "del Carmen", "de Goya", "San Vicente", "de la Paz", "del Sol", "Real", "de Colón", "de los Olivos"],
    "it-IT": ["Vittorio Emanuele II", "Giuseppe Mazzini", "Dante Alighieri", "Roma", "Cavour", "XX Settembre", "dei Mille", "Garibaldi", "della Libertà", "Matteotti"],
    "nl-NL": ["Prinsen", "Heren", "Linden", "Kerk", "Molen", "Beuken", "Eiken", "Wilhelmina", "Oranje", "Dorps"],
    "pt-PT": ["Augusta", "da Liberdade", "de Santa Catarina", "do Ouro", "Garrett", "dos Aliados", "de São Bento", "das Flores", "Alexandre Herculano", "da Boavista"],
}
CITIES = {
    "en-US": [("Austin", "TX", "787"), ("Denver", "CO", "802"), ("Portland", "OR", "972"), ("Columbus", "OH", "432"), ("Raleigh", "NC", "276"), ("Tucson", "AZ", "857")],
    "en-GB": [("Manchester", "M", ""), ("Leeds", "LS", ""), ("Bristol", "BS", ""), ("Cardiff", "CF", ""), ("Edinburgh", "EH", ""), ("Norwich", "NR", "")],
    "de-DE": [("Leipzig", "04", ""), ("Bremen", "28", ""), ("Kiel", "24", ""), ("Dresden", "01", ""), ("Hannover", "30", ""), ("Freiburg im Breisgau", "79", "")],
    "de-AT": [("Wien", "1", ""), ("Graz", "8", ""), ("Linz", "4", ""), ("Salzburg", "5", ""), ("Innsbruck", "6", ""), ("Klagenfurt", "9", "")],
    "fr-FR": [("Lyon", "69", ""), ("Nantes", "44", ""), ("Rennes", "35", ""), ("Toulouse", "31", ""), ("Lille", "59", ""), ("Brest", "29", "")],
    "es-ES": [("Madrid", "28", ""), ("Bilbao", "48", ""), ("Valencia", "46", ""), ("Zaragoza", "50", ""), ("Málaga", "29", ""), ("Girona", "17", "")],
    "it-IT": [("Torino", "10", "TO"), ("Napoli", "80", "NA"), ("Bologna", "40", "BO"), ("Bergamo", "24", "BG"), ("Firenze", "50", "FI"), ("Palermo", "90", "PA")],
    "nl-NL": [("Utrecht", "35", ""), ("Groningen", "97", ""), ("Haarlem", "20", ""), ("Leiden", "23", ""), ("Zwolle", "80", ""), ("Eindhoven", "56", "")],
    "pt-PT": [("Lisboa", "1", ""), ("Porto", "4", ""), ("Coimbra", "3", ""), ("Braga", "4", ""), ("Faro", "8", ""), ("Aveiro", "3", "")],
}
US_AREA = ["512", "303", "503", "614", "919", "520", "206", "617", "312", "404", "713", "602"]
DOMAINS = ["gmail.com", "proton.me", "icloud.com", "hotmail.com", "example.org", "mail.example.net", "kanzlei-nord.de", "sapo.pt", "wp.pl"]

MONTHS = {
    "en": "January February March April May June July August September October November December".split(),
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember".split(),
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre".split(),
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre".split(),
    "it": "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre".split(),
    "nl": "januari februari maart april mei juni juli augustus september oktober november december".split(),
    "pt": "janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro dezembro".split(),
}


def fold(s):
    import unicodedata
    s = s.replace("ß", "ss")
    s = unicodedata.normalize("NFKD", s)
    return "".join(c for c in s if c.isascii() and c.isalnum())


def luhn_complete(body):
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


def iban(r, country):
    fmt = {"DE": "n18", "AT": "n16", "FR": "n23", "ES": "n20", "IT": "a1n22", "NL": "a4n10", "PT": "n21", "GB": "a4n14"}[country]
    bban = ""
    i = 0
    while i < len(fmt):
        kind = fmt[i]
        j = i + 1
        while j < len(fmt) and fmt[j].isdigit():
            j += 1
        n = int(fmt[i + 1:j])
        alphabet = string.digits if kind == "n" else string.ascii_uppercase
        bban += "".join(r.choice(alphabet) for _ in range(n))
        i = j
    num = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    full = f"{country}{98 - num % 97:02d}{bban}"
    return " ".join(full[k:k + 4] for k in range(0, len(full), 4)) if r.random() < 0.5 else full


class Values:
    def __init__(self, r, split):
        self.r = r
        self.part = 0 if split == "dev" else 1

    def d(self, n):
        return "".join(self.r.choice(string.digits) for _ in range(n))

    def pick(self, xs):
        return self.r.choice(xs)

    def half(self, xs):
        return [x for i, x in enumerate(xs) if i % 2 == self.part]

    def name(self, loc):
        return self.pick(self.half(GIVEN[loc])), self.pick(self.half(SURNAME[loc]))

    def email(self, given, sur):
        g, s = fold(given).lower(), fold(sur).lower()
        local = self.pick([f"{g}.{s}", f"{g[0]}{s}", f"{s}{self.d(2)}", f"{g}-{s}", f"{g}{self.d(4)}"])
        return f"{local}@{self.pick(DOMAINS)}"

    def phone(self, loc):
        d, r = self.d, self.r
        if loc == "en-US":
            a = self.pick(US_AREA)
            x = str(r.randrange(2, 10)) + d(2)
            return self.pick([f"({a}) {x}-{d(4)}", f"{a}-{x}-{d(4)}", f"+1 {a}-{x}-{d(4)}", f"{a}.{x}.{d(4)}", f"+1 ({a}) {x} {d(4)}"])
        if loc == "en-GB":
            return self.pick([f"07{self.pick('4589')}{d(2)} {d(6)}", f"+44 7{self.pick('4589')}{d(2)} {d(3)} {d(3)}", f"0113 {d(3)} {d(4)}", f"+44 117 {d(3)} {d(4)}", f"029 {d(4)} {d(4)}", f"0131 {d(3)} {d(4)}"])
        if loc == "de-DE":
            return self.pick([f"0341 {d(7)}", f"0421/{d(6)}", f"+49 431 {d(6)}", f"015{self.pick('12789')} {d(8)}", f"+49 176 {d(8)}", f"0511-{d(3)} {d(2)} {d(2)}", f"+49 (0)351 {d(7)}"])
        if loc == "de-AT":
            return self.pick([f"01 {d(7)}", f"+43 1 {d(7)}", f"0664 {d(7)}", f"+43 664 {d(3)} {d(4)}", f"0316 {d(6)}", f"+43 699 {d(8)}", f"0732/{d(6)}"])
        if loc == "fr-FR":
            p = " ".join(d(2) for _ in range(4))
            return self.pick([f"0{self.pick('12345')} {p}", f"06 {p}", f"07.{d(2)}.{d(2)}.{d(2)}.{d(2)}", f"+33 6 {p}", f"+33 (0)4 {p}", f"0{self.pick('67')}{d(8)}"])
        if loc == "es-ES":
            return self.pick([f"6{d(2)} {d(3)} {d(3)}", f"7{self.pick('1234')}{d(1)} {d(2)} {d(2)} {d(2)}", f"+34 6{d(2)} {d(3)} {d(3)}", f"91 {d(3)} {d(2)} {d(2)}", f"+34 944 {d(3)} {d(3)}", f"963{d(6)}"])
        if loc == "it-IT":
            return self.pick([f"3{self.pick('2345')}{d(1)} {d(3)} {d(4)}", f"+39 3{self.pick('2345')}{d(1)} {d(7)}", f"011 {d(7)}", f"081-{d(7)}", f"+39 051 {d(6)}", f"02 {d(4)} {d(4)}"])
        if loc == "nl-NL":
            return self.pick([f"06-{d(8)}", f"06 {d(4)} {d(4)}", f"+31 6 {d(4)} {d(4)}", f"030 {d(3)} {d(4)}", f"+31 50 {d(3)} {d(4)}", f"(023) {d(3)} {d(4)}"])
        if loc == "pt-PT":
            return self.pick([f"9{self.pick('1236')}{d(1)} {d(3)} {d(3)}", f"+351 9{self.pick('1236')}{d(1)} {d(3)} {d(3)}", f"21 {d(3)} {d(4)}", f"+351 22 {d(3)} {d(4)}", f"9{self.pick('1236')}{d(7)}"])
        raise ValueError(loc)

    def address(self, loc):
        r, d = self.r, self.d
        street = self.pick(STREETS[loc])
        city, pre, extra = self.pick(CITIES[loc])
        no = str(r.randrange(1, 240))
        if loc == "en-US":
            kind = self.pick(["Drive", "Lane", "Avenue", "Road", "Court", "Boulevard", "St.", "Ave", "Way", "Pl"])
            unit = self.pick(["", "", f", Apt {r.randrange(1, 40)}", f", Unit {d(1)}B", f" #{d(3)}"])
            return self.pick([f"{r.randrange(100, 9999)} {street} {kind}{unit}, {city}, {self.city_state(city)} {extra}{d(2)}",
                              f"{r.randrange(100, 9999)} {street} {kind}{unit}, {city} {self.city_state(city)} {extra}{d(2)}"])
        if loc == "en-GB":
            kind = self.pick(["Road", "Close", "Crescent", "Gardens", "Lane", "Terrace", "Street", "Mews"])
            pc = f"{pre}{r.randrange(1, 20)} {r.randrange(1, 10)}{self.pick('ABDEFGHJ')}{self.pick('LNPQRSTUWXYZ')}"
            flat = self.pick(["", "", f"Flat {r.randrange(1, 12)}, "])
            return f"{flat}{no} {street} {kind}, {city} {pc}"
        if loc == "de-DE":
            suf = self.pick(["straße", "weg", "allee", "ring", "str."])
            return self.pick([f"{street}{suf} {no}{self.pick(['', 'a', 'b'])}, {pre}{d(3)} {city}", f"{street}{suf} {no}\n{pre}{d(3)} {city}", f"Am {street}hof {no}, {pre}{d(3)} {city}"])
        if loc == "de-AT":
            door = self.pick([f"/{r.randrange(1, 30)}", f"/{r.randrange(1, 9)}/{r.randrange(1, 20)}", ""])
            return f"{street} {no}{door}, {pre}{d(3)} {city}"
        if loc == "fr-FR":
            kind = self.pick(["rue", "avenue", "boulevard", "allée", "impasse", "place"])
            bis = self.pick(["", "", " bis", " ter"])
            return self.pick([f"{no}{bis} {kind} {street}, {pre}{d(3)} {city}", f"{no}{bis}, {kind} {street}\n{pre}{d(3)} {city.upper()}", f"Appt {r.randrange(1, 60)}, {no} {kind} {street}, {pre}{d(3)} {city}"])
        if loc == "es-ES":
            kind = self.pick(["Calle", "C/", "Avda.", "Avenida", "Paseo", "Plaza"])
            floor = self.pick(["", f", {r.randrange(1, 9)}º {self.pick('ABCD')}", f", {r.randrange(1, 9)}.º {self.pick(['izda.', 'dcha.'])}", f" {r.randrange(1, 9)}º{r.randrange(1, 4)}ª"])
            return f"{kind} {street}, {no}{floor}, {pre}{d(3)} {city}"
        if loc == "it-IT":
            kind = self.pick(["Via", "Corso", "Viale", "Piazza", "Vicolo"])
            return self.pick([f"{kind} {street} {no}, {pre}{d(3)} {city} ({extra})", f"{kind} {street}, {no} - {pre}{d(3)} {city}", f"{kind} {street} n. {no}, {pre}{d(3)} {city} {extra}"])
        if loc == "nl-NL":
            suf = self.pick(["gracht", "straat", "laan", "weg", "plein", "kade", "singel"])
            return self.pick([f"{street}{suf} {no}, {pre}{d(2)} {self.pick('ABCDEFGHJKLMN')}{self.pick('ABCDEFGHJKLMN')} {city}", f"{street}{suf} {no}-{self.pick(['I', 'II', 'hs', '2'])}\n{pre}{d(2)}{self.pick('KLMNPR')}{self.pick('ABCDEF')} {city}"])
        if loc == "pt-PT":
            kind = self.pick(["Rua", "Avenida", "Av.", "Travessa", "Largo", "Praça"])
            floor = self.pick(["", f", {r.randrange(1, 9)}º Esq.", f", {r.randrange(1, 9)}º Dto.", f" {r.randrange(1, 9)}.º andar"])
            return f"{kind} {street}, {no}{floor}, {pre}{d(3)}-{d(3)} {city}"
        raise ValueError(loc)

    def city_state(self, city):
        for c, st, _ in CITIES["en-US"]:
            if c == city:
                return st
        return "TX"

    def dob(self, loc):
        y, m, dd = self.r.randrange(1938, 2007), self.r.randrange(1, 13), self.r.randrange(1, 29)
        lang = loc[:2]
        mn = MONTHS[lang][m - 1]
        if loc == "en-US":
            return self.pick([f"{m}/{dd}/{y}", f"{m:02d}/{dd:02d}/{y}", f"{mn} {dd}, {y}", f"{mn[:3]} {dd} {y}", f"{y}-{m:02d}-{dd:02d}"])
        if loc == "en-GB":
            return self.pick([f"{dd:02d}/{m:02d}/{y}", f"{dd} {mn} {y}", f"{dd}th {mn} {y}" if dd in range(4, 21) else f"{dd} {mn[:3]} {y}"])
        if lang == "de":
            return self.pick([f"{dd:02d}.{m:02d}.{y}", f"{dd}.{m}.{y}", f"{dd}. {mn} {y}"])
        if lang == "fr":
            return self.pick([f"{dd:02d}/{m:02d}/{y}", f"{dd} {mn} {y}", f"{'1er' if dd == 1 else dd} {mn} {y}"])
        if lang == "es":
            return self.pick([f"{dd:02d}/{m:02d}/{y}", f"{dd} de {mn} de {y}", f"{dd}-{m:02d}-{y}"])
        if lang == "it":
            return self.pick([f"{dd:02d}/{m:02d}/{y}", f"{dd} {mn} {y}", f"{dd}.{m:02d}.{y}"])
        if lang == "nl":
            return self.pick([f"{dd:02d}-{m:02d}-{y}", f"{dd} {mn} {y}", f"{dd:02d}/{m:02d}/{y}"])
        return self.pick([f"{dd:02d}/{m:02d}/{y}", f"{dd} de {mn} de {y}", f"{dd:02d}-{m:02d}-{y}"])

    def ssn(self):
        while True:
            a = self.r.randrange(1, 900)
            if a != 666:
                break
        g, s = self.r.randrange(1, 100), self.r.randrange(1, 10000)
        sep = self.pick(["-", "-", " ", ""])
        return f"{a:03d}{sep}{g:02d}{sep}{s:04d}"

    def mrn(self):
        d = self.d
        return self.pick([d(8), f"{d(3)}-{d(3)}-{d(3)}", f"{self.pick(['H', 'MR', 'P', 'KH'])}{d(7)}", f"{d(4)}-{d(5)}", f"{self.r.randrange(2015, 2026)}/{d(6)}", d(10)])

    def card(self):
        k = self.r.randrange(4)
        if k == 0:
            n = luhn_complete("4" + self.d(14))
        elif k == 1:
            n = luhn_complete(str(self.r.randrange(51, 56)) + self.d(13))
        elif k == 2:
            n = luhn_complete(self.pick(["34", "37"]) + self.d(12))
            return self.pick([n, f"{n[:4]} {n[4:10]} {n[10:]}"])
        else:
            n = luhn_complete(str(self.r.randrange(2221, 2721)) + self.d(11))
        return self.pick(["", " ", "-"]).join(n[i:i + 4] for i in range(0, 16, 4))

    def key(self):
        a = string.ascii_letters + string.digits
        rnd = lambda n, al=a: "".join(self.r.choice(al) for _ in range(n))
        return self.pick([
            "sk-proj-" + rnd(40, a + "-_"), "sk-" + rnd(48), "ghp_" + rnd(36), "gho_" + rnd(36), "AKIA" + rnd(16, string.ascii_uppercase + string.digits),
            "xoxp-" + self.d(11) + "-" + self.d(12) + "-" + rnd(32, "0123456789abcdef"), "sk_live_" + rnd(28), "rk_test_" + rnd(26), "AIza" + rnd(35, a + "-_"),
            "glpat-" + rnd(20, a + "-_"), "hf_" + rnd(34), "SG." + rnd(22, a + "-_") + "." + rnd(43, a + "-_"), "npm_" + rnd(36), "dop_v1_" + rnd(64, "0123456789abcdef"),
            "sk-ant-api03-" + rnd(90, a + "-_") + "AA",
        ])

    def ip(self):
        return f"{self.pick([81, 94, 145, 176, 195, 212, 5, 37])}.{self.r.randrange(256)}.{self.r.randrange(256)}.{self.r.randrange(1, 255)}"


# Templates: slots {P} full name, {G} given name, {S} surname (after a literal title), {E} email,
# {T} phone, {A} address, {D} date of birth, {M} MRN, {N} SSN, {K} API key, {C} card, {I} IBAN,
# {IP} IP address. Literal text is not PII.
T = {
    "en-US": [
        "Hey, {P} here. Can you move my appointment? Best number is {T}.",
        "Ship the replacement to {A} and text {G} at {T} when it's out.",
        "Patient {P}, born {D}, MRN {M}, presented with chest pain.",
        "My social is {N}, DOB {D}. Please update the record.",
        "I went over the claim with {P} yesterday; she wants the refund on card {C}.",
        "Forwarding from {E}: {G} says the lease at {A} ends in May.",
        "The deploy failed because {P} pasted the token {K} into the CI log.",
        "Attn: {P}\n{A}",
        "{P} (SSN {N}) lives at {A}.",
        "Could somebody call {G} back? {T}, after 5pm.",
        "Follow-up for {P}, record number {M}, date of birth {D}.",
        "Our tenant {P} reported a leak at {A}; reach her on {T} or {E}.",
    ],
    "en-GB": [
        "Cheers {G}, I'll post the forms to {A}.",
        "Please ring {P} on {T} about the boiler.",
        "Hospital number {M}; patient {P}, DOB {D}.",
        "Spoke to {P} this morning, she's moved to {A}.",
        "Our contractor {P} can be reached at {E} or {T}.",
        "The login from {IP} used {G}'s key {K}.",
        "Dear Mr {S},\nyour parcel for {A} is held at the depot.",
        "{P}, born {D}, NHS patient, record {M}.",
        "Refund to {I} for {P}, please.",
        "Lovely to meet {G} at the conference. Mobile: {T}",
        "Consignment for {P}, {A}.",
        "I've cc'd {P} ({E}) on this thread.",
    ],
    "de-DE": [
        "Moin {G}, kannst du mich unter {T} zurückrufen?",
        "Bitte schicken Sie die Unterlagen an {P}, {A}.",
        "Patientin {P}, geb. {D}, Fallnummer {M}.",
        "Der API-Schlüssel {K} wurde versehentlich im Wiki veröffentlicht, sagt {P}.",
        "Frau {S} ist umgezogen: neue Anschrift {A}.",
        "Rückfragen bitte an {P} ({E}) oder telefonisch unter {T}.",
        "Überweisung auf das Konto {I}, Kontoinhaber {P}.",
        "Herr {S} hat heute wegen der Rechnung angerufen, Rückruf unter {T}.",
        "Lieferadresse:\n{P}\n{A}",
        "Geburtsdatum {D}, Patientennummer {M}, Versicherte {P}.",
        "Hallo {G}, hier der Zugangsschlüssel für die Staging-Umgebung: {K}",
        "Mein Name ist {P} und ich wohne in der {A}.",
    ],
    "de-AT": [
        "Servus {G}, ruf mich bitte unter {T} an.",
        "Die Wohnung in der {A} übernimmt ab März {P}.",
        "Patient {P}, geboren am {D}, Aktenzahl {M}.",
        "Grüß Gott Frau {S}, Ihr Termin ist bestätigt. Rückfragen: {T}",
        "Bitte den Betrag an {P}, IBAN {I}, überweisen.",
        "Ich habe mit {P} telefoniert, er erreicht man unter {E}.",
        "Zustellung an {A}, z. Hd. {P}.",
        "Der Token {K} gehört zum Account von {P}.",
        "Liebe Grüße,\n{P}\n{T}",
        "Versicherter: {P}, Geb.-Datum: {D}",
    ],
    "fr-FR": [
        "Bonjour {G}, pouvez-vous me rappeler au {T} ?",
        "Merci d'envoyer le colis à {P}, {A}.",
        "Patiente {P}, née le {D}, numéro de dossier {M}.",
        "La clé d'API {K} a fuité dans le dépôt public, d'après {P}.",
        "Madame {S} habite désormais au {A}.",
        "Contact : {P} – {E} – {T}",
        "Virement sur le compte {I} au nom de {P}.",
        "J'ai eu {P} au téléphone, il confirme le rendez-vous.",
        "Adresse de livraison :\n{P}\n{A}",
        "Je m'appelle {P}, je suis né le {D} et mon numéro est le {T}.",
        "Cordialement,\n{P}\n{T}",
        "Le jeton {K} ne fonctionne plus depuis ce matin.",
    ],
    "es-ES": [
        "Hola {G}, llámame al {T} cuando puedas.",
        "Envíen la factura a {P}, {A}.",
        "Paciente {P}, fecha de nacimiento {D}, historia clínica {M}.",
        "Según {P}, la clave {K} se subió por error al repositorio.",
        "La señora {S} vive ahora en {A}.",
        "Contacto: {P}, {E}, tel. {T}",
        "Transferencia a la cuenta {I}, titular {P}.",
        "Hablé con {P} y me confirmó la cita del jueves.",
        "Un saludo,\n{P}\n{T}",
        "Me llamo {P}, nací el {D} y vivo en {A}.",
        "El token {K} caducó ayer.",
        "Dirección de entrega: {A} (a la atención de {P}).",
    ],
    "it-IT": [
        "Ciao {G}, mi richiami al {T}?",
        "Inviate il pacco a {P}, {A}.",
        "Paziente {P}, nato il {D}, cartella clinica n. {M}.",
        "Secondo {P}, la chiave {K} è finita nel repository pubblico.",
        "La signora {S} si è trasferita in {A}.",
        "Riferimento: {P}, {E}, cell. {T}",
        "Bonifico sul conto {I} intestato a {P}.",
        "Ho sentito {P} stamattina, conferma l'appuntamento.",
        "Cordiali saluti,\n{P}\n{T}",
        "Mi chiamo {P}, sono nata il {D} e abito in {A}.",
        "Il token {K} è scaduto.",
        "Consegna presso {A}, alla c.a. di {P}.",
    ],
    "nl-NL": [
        "Hoi {G}, bel me even terug op {T}.",
        "Stuur het pakket naar {P}, {A}.",
        "Patiënt {P}, geboren {D}, patiëntnummer {M}.",
        "Volgens {P} is de sleutel {K} per ongeluk gepubliceerd.",
        "Mevrouw {S} woont nu op {A}.",
        "Contactpersoon: {P}, {E}, {T}",
        "Graag overmaken naar {I} t.n.v. {P}.",
        "Ik heb {P} gesproken, de afspraak staat.",
        "Met vriendelijke groet,\n{P}\n{T}",
        "Mijn naam is {P}, geboren op {D}, en ik woon op {A}.",
        "Het token {K} werkt niet meer.",
        "Afleveradres: {A}, t.a.v. {P}.",
    ],
    "pt-PT": [
        "Olá {G}, pode ligar-me para o {T}?",
        "Enviem a encomenda para {P}, {A}.",
        "Utente {P}, data de nascimento {D}, processo clínico {M}.",
        "Segundo {P}, a chave {K} foi publicada por engano.",
        "A senhora {S} mudou-se para {A}.",
        "Contacto: {P}, {E}, telemóvel {T}",
        "Transferência para o IBAN {I}, titular {P}.",
        "Falei com {P} hoje de manhã e confirmou a reunião.",
        "Com os melhores cumprimentos,\n{P}\n{T}",
        "Chamo-me {P}, nasci a {D} e moro na {A}.",
        "O token {K} expirou ontem.",
        "Morada de entrega: {A}, ao cuidado de {P}.",
    ],
}
TITLE = {"en-US": "Ms.", "en-GB": "Mr", "de-DE": "Frau", "de-AT": "Frau", "fr-FR": "Madame", "es-ES": "señora", "it-IT": "signora", "nl-NL": "Mevrouw", "pt-PT": "senhora"}

# Structured records (label: value lines) and tool arguments, with localised labels.
RECORD_KEYS = {
    "en-US": {"P": "Full name", "D": "DOB", "M": "MRN", "N": "SSN", "T": "Phone", "A": "Home address", "E": "E-mail"},
    "en-GB": {"P": "Name", "D": "Date of birth", "M": "Hospital no.", "T": "Tel", "A": "Address", "E": "Email"},
    "de-DE": {"P": "Name", "D": "Geburtsdatum", "M": "Patienten-ID", "T": "Telefon", "A": "Anschrift", "E": "E-Mail"},
    "de-AT": {"P": "Versicherter", "D": "Geb.-Datum", "M": "Aktenzahl", "T": "Tel.", "A": "Wohnadresse", "E": "Mail"},
    "fr-FR": {"P": "Nom", "D": "Date de naissance", "M": "N° de dossier", "T": "Tél.", "A": "Adresse", "E": "Courriel"},
    "es-ES": {"P": "Nombre", "D": "Fecha de nacimiento", "M": "NHC", "T": "Teléfono", "A": "Domicilio", "E": "Correo"},
    "it-IT": {"P": "Nominativo", "D": "Data di nascita", "M": "Cartella n.", "T": "Cellulare", "A": "Indirizzo", "E": "Email"},
    "nl-NL": {"P": "Naam", "D": "Geboortedatum", "M": "Patiëntnummer", "T": "Telefoon", "A": "Adres", "E": "E-mail"},
    "pt-PT": {"P": "Nome", "D": "Data de nascimento", "M": "N.º processo", "T": "Telemóvel", "A": "Morada", "E": "Email"},
}
JSON_TOOLS = [
    ("book_appointment", {"patient_full_name": "P", "birth_date": "D", "record_no": "M", "callback_number": "T"}),
    ("update_shipping", {"recipient": "P", "street_address": "A", "contact_phone": "T", "notify_email": "E"}),
    ("open_account", {"holder": "P", "iban": "I", "email_address": "E", "dob": "D"}),
    ("verify_identity", {"applicant_name": "P", "ssn": "N", "date_of_birth": "D"}),
    ("rotate_credentials", {"owner": "P", "old_key": "K", "source_ip": "IP"}),
    ("create_contact", {"display_name": "P", "mobile": "T", "home_address": "A"}),
]

LOOKALIKES = {
    "en-US": ["Order 114-2231-9981 ships from the Maple Grove warehouse on 03/14/2025.", "Version 3.12.4 broke the Cedar Ridge build; see ticket 44512.",
              "The meeting moved to 10/02/2025 at 2:30 pm, room 2214.", "Flight 1432 departs gate B12 at 18:05.", "Invoice INV-2025-00418 totals $1,284.50.",
              "Run 'pip install torch==2.4.1' and retry on port 8443."],
    "en-GB": ["Your order 40031-7782 will arrive on 12/03/2025.", "Platform 9, the 14:32 to Leeds, is delayed by 12 minutes.",
              "The Victoria line is closed between 22:00 and 05:30.", "Reference PO-77421, total £2,310.00 incl. VAT.", "Release 2.0.17 fixes the Albion Road display bug.",
              "Booking code 8KQ2LX for 2 nights."],
    "de-DE": ["Bestellung 3001-4471-22 wird am 14.03.2025 geliefert.", "Version 5.4.2 behebt den Fehler aus Ticket 88123.", "Das Meeting ist am 02.10.2025 um 14:30 Uhr in Raum 3.14.",
              "Die Goethestraße ist wegen Bauarbeiten gesperrt.", "Rechnung RE-2025-0418 über 1.284,50 €.", "Zug ICE 578 fährt um 18:05 von Gleis 7."],
    "de-AT": ["Auftrag 2024/118832 wurde am 03.02.2025 erfasst.", "Die Linie U6 fährt alle 4 Minuten.", "Rechnung Nr. 77812 über € 312,40.", "Wartungsfenster am 12.04.2025 von 22:00 bis 02:00.",
              "Der Mariahilfer Flohmarkt öffnet um 8 Uhr.", "Paket 00340434161234567890 ist unterwegs."],
    "fr-FR": ["Commande n° 2025-44817 expédiée le 14/03/2025.", "La version 4.2.1 corrige le ticket 5512.", "Réunion le 02/10/2025 à 14h30, salle 3.12.",
              "Le boulevard Gambetta est fermé ce week-end.", "Facture F-2025-0031 d'un montant de 1 284,50 €.", "Le TGV 8541 part à 18h05 du quai 7."],
    "es-ES": ["Pedido 2025-118273 enviado el 14/03/2025.", "La versión 2.8.1 corrige la incidencia 4471.", "Reunión el 02/10/2025 a las 14:30 en la sala 3.",
              "La calle Mayor estará cortada el domingo.", "Factura FAC-2025-0418 por 1.284,50 €.", "El AVE 3142 sale a las 18:05 del andén 7."],
    "it-IT": ["Ordine 2025-44817 spedito il 14/03/2025.", "La versione 3.1.4 risolve il ticket 8812.", "Riunione il 02/10/2025 alle 14:30 in sala 2.",
              "Via Roma è chiusa per lavori fino a venerdì.", "Fattura n. 418/2025 di 1.284,50 €.", "Il Frecciarossa 9541 parte alle 18:05 dal binario 7."],
    "nl-NL": ["Bestelling 2025-118273 is op 14-03-2025 verzonden.", "Versie 1.9.3 lost melding 4471 op.", "Overleg op 02-10-2025 om 14:30 in zaal 3.12.",
              "De Prinsengracht is afgesloten voor verkeer.", "Factuur 2025-0418 van € 1.284,50.", "De intercity 3541 vertrekt om 18:05 van spoor 7."],
    "pt-PT": ["Encomenda 2025-44817 enviada a 14/03/2025.", "A versão 2.3.9 corrige o pedido 5512.", "Reunião a 02/10/2025 às 14h30 na sala 3.",
              "A Rua Augusta está fechada ao trânsito.", "Fatura FT 2025/418 no valor de 1.284,50 €.", "O Alfa Pendular 131 parte às 18h05 da linha 7."],
}


class Builder:
    def __init__(self):
        self.parts = []
        self.spans = []
        self.n = 0

    def add(self, s, typ=None):
        b = s.encode("utf-8")
        if typ:
            self.spans.append({"type": typ, "start": self.n, "end": self.n + len(b)})
        self.parts.append(s)
        self.n += len(b)

    def text(self):
        return "".join(self.parts)


SLOT_TYPE = {"P": "PERSON", "G": "PERSON", "S": "PERSON", "E": "EMAIL", "T": "PHONE", "A": "STREET_ADDRESS", "D": "DATE_OF_BIRTH",
             "M": "MEDICAL_RECORD_NUMBER", "N": "SSN", "K": "API_KEY", "C": "CREDIT_CARD", "I": "IBAN", "IP": "IP_ADDRESS"}


def slot_value(v, loc, slot, person):
    given, sur = person
    if slot == "P":
        return f"{given} {sur}"
    if slot == "G":
        return given
    if slot == "S":
        return sur
    if slot == "E":
        return v.email(given, sur)
    if slot == "T":
        return v.phone(loc)
    if slot == "A":
        return v.address(loc)
    if slot == "D":
        return v.dob(loc)
    if slot == "M":
        return v.mrn()
    if slot == "N":
        return v.ssn()
    if slot == "K":
        return v.key()
    if slot == "C":
        return v.card()
    if slot == "I":
        return iban(v.r, {"en-US": "GB", "en-GB": "GB", "de-DE": "DE", "de-AT": "AT", "fr-FR": "FR", "es-ES": "ES", "it-IT": "IT", "nl-NL": "NL", "pt-PT": "PT"}[loc])
    if slot == "IP":
        return v.ip()
    raise ValueError(slot)


def render_template(v, loc, tpl):
    import re
    b = Builder()
    person = v.name(loc)
    pos = 0
    for m in re.finditer(r"\{(IP|[A-Z])\}", tpl):
        b.add(tpl[pos:m.start()])
        slot = m.group(1)
        b.add(slot_value(v, loc, slot, person), SLOT_TYPE[slot])
        pos = m.end()
    b.add(tpl[pos:])
    return b


def render_record(v, loc):
    keys = RECORD_KEYS[loc]
    person = v.name(loc)
    order = [k for k in keys]
    v.r.shuffle(order)
    order = ["P"] + [k for k in order if k != "P"][: v.r.randrange(2, len(order))]
    b = Builder()
    sep = v.pick([": ", ":\t", " - "])
    for i, k in enumerate(order):
        b.add(("\n" if i else "") + keys[k] + sep)
        b.add(slot_value(v, loc, k, person).replace("\n", ", "), SLOT_TYPE[k])
    return b


def render_json(v, loc):
    name, fields = v.pick(JSON_TOOLS)
    person = v.name(loc)
    b = Builder()
    b.add(f'{{"name": "{name}", "arguments": {{')
    for i, (key, slot) in enumerate(fields.items()):
        b.add((", " if i else "") + f'"{key}": "')
        b.add(slot_value(v, loc, slot, person).replace("\n", ", "), SLOT_TYPE[slot])
        b.add('"')
    b.add("}}")
    return b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", choices=["dev", "report"], required=True)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--n-per-locale", type=int, default=240)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else (7101 if args.split == "dev" else 9203)
    r = random.Random(seed)
    v = Values(r, args.split)
    rows = []
    for loc in LOCALES:
        tpls = v.half(T[loc])
        looks = v.half(LOOKALIKES[loc])
        for i in range(args.n_per_locale):
            x = r.random()
            if x < 0.62:
                kind, b = "message", render_template(v, loc, r.choice(tpls))
            elif x < 0.77:
                kind, b = "record", render_record(v, loc)
            elif x < 0.9:
                kind, b = "tool_args", render_json(v, loc)
            else:
                kind, b = "lookalike", Builder()
                b.add(r.choice(looks))
            rows.append({"text": b.text(), "lang": loc, "kind": kind, "spans": b.spans})
    with open(args.out, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{args.out}: {len(rows)} texts, {sum(len(x['spans']) for x in rows)} spans")


if __name__ == "__main__":
    main()
