//! Street addresses: house number + street name + street type, in English, German, Dutch,
//! French, Spanish and Italian conventions, with optional unit, postcode and city.

use crate::detector::{Candidate, score};
use crate::lexicon::Lexicon;
use crate::text::{prev_char, trim_end_by};
use crate::{CurateError, EntityType};
use regex::Regex;

/// Index of the street-corner pattern in [`Addresses::patterns`].
const CORNER: usize = 12;

pub(crate) struct Addresses {
    patterns: Vec<Regex>,
    cued: Regex,
    po_box: Regex,
}

/// Lower-case words a street's name may hold when it has no street-type word of its own:
/// particles ("Rua José de Diego 12", "Capo le Case 143") and street types written apart,
/// Nordic, Finnish, Hungarian, Slavic ("Olaf Aakranns veg 112", "Stensås terrasse 38").
const STREET_LOWER: &[&str] = &[
    "de", "del", "della", "la", "le", "les", "los", "las", "da", "das", "do", "dos", "du", "des",
    "di", "van", "der", "den", "von", "am", "an", "im", "y", "e", "i", "pri", "na", "veg", "vei",
    "gate", "gata", "gatan", "vej", "gade", "terrasse", "allé", "plass", "plads", "torg", "tie",
    "katu", "utca", "út", "tér", "ulica", "u.", "ul.", "rkp.", "krt.", "trg",
];

/// Capitalised words a number counts, ranks or versions ("Season 3", "Node 18", "Windows 11"):
/// with a number after a preposition they are not a street and its house number.
const NOT_STREET: &[&str] = &[
    "chapter",
    "page",
    "episode",
    "season",
    "series",
    "volume",
    "vol",
    "part",
    "section",
    "level",
    "track",
    "act",
    "scene",
    "round",
    "step",
    "verse",
    "figure",
    "table",
    "version",
    "grade",
    "issue",
    "phase",
    "stage",
    "week",
    "day",
    "year",
    "top",
    "model",
    "gen",
    "generation",
    "terminal",
    "platform",
    "gate",
    "exit",
    "channel",
    "room",
    "floor",
    "suite",
    "unit",
    "apt",
    "box",
    "no",
    "nr",
    "number",
    "item",
    "line",
    "lines",
    "row",
    "column",
    "slide",
    "lesson",
    "module",
    "class",
    "group",
    "team",
    "game",
    "match",
    "race",
    "league",
    "cup",
    "iphone",
    "galaxy",
    "pixel",
    "xbox",
    "playstation",
    "ps",
    "switch",
    "windows",
    "ios",
    "android",
    "ubuntu",
    "debian",
    "fedora",
    "centos",
    "macos",
    "python",
    "java",
    "node",
    "php",
    "perl",
    "ruby",
    "django",
    "rails",
    "postgres",
    "postgresql",
    "mysql",
    "redis",
    "kafka",
    "spark",
    "angular",
    "react",
    "vue",
    "gpt",
    "claude",
    "gemini",
    "llama",
    "mistral",
    "cuda",
    "covid",
    "apollo",
    "formula",
    "f",
    "mk",
    "mark",
    "type",
    "vs",
    "v",
    "raum",
    "zimmer",
    "saal",
    "stock",
    "etage",
    "salle",
    "sala",
    "stanza",
    "aula",
    "kamer",
    "zaal",
    "quarto",
];

/// Is `w` (one word of a street name found after a preposition) a plausible street word?
fn street_word(w: &str, lex: &Lexicon) -> bool {
    let l = w.to_lowercase();
    if w.starts_with(char::is_lowercase) {
        return STREET_LOWER.contains(&l.as_str());
    }
    let bare = l.trim_end_matches('.');
    let caps = w.chars().filter(|c| c.is_uppercase()).count();
    !NOT_STREET.contains(&bare)
        && !lex.is_stop(bare)
        && (caps <= 1 || w.chars().any(char::is_lowercase))
}

const EN_TYPES: &str = "Street|St|Avenue|Ave|Av|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Way|Terrace|Ter|Close|Crescent|Cres|Square|Sq|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Trail|Trl|Row|Mews|Grove|Gardens|Gdns|Walk|Hill|Plaza|Alley|Path|Pike|Loop|Expressway|Freeway|Crossing|Point|Ridge|View|Green|Rise|Parade|Embankment|Wharf|Quay";
const DE_NL_SUFFIX: &str = "straße|strasse|str\\.|weg|allee|platz|gasse|ring|damm|ufer|chaussee|steig|pfad|markt|graben|kai|straat|gracht|laan|plein|kade|singel|dijk|steeg|wal|kanaal|park|vej|vejen|veien|vegen|gade|gaden|gata|gatan|vägen|stræde|plads|torget|torg|tie|katu|polku|kuja|utca|gasse";
const DE_NL_WORD: &str =
    "Straße|Strasse|Str\\.|Weg|Allee|Platz|Gasse|Ring|Damm|Ufer|Chaussee|Steig|Markt|Graben";
const FR_TYPES: &str = "rue|avenue|av\\.|boulevard|bd|bld|place|chemin|allée|allee|impasse|quai|cours|route|square|passage|rond-point|faubourg|esplanade|voie|promenade|parvis|sentier|montée|traverse";
const ES_TYPES: &str = "calle|c/|avenida|avda\\.?|av\\.|plaza|pza\\.?|paseo|pº|camino|carretera|ctra\\.|ronda|travesía|travesia|glorieta|rambla|carrer|passeig|callejón|urbanización|urb\\.|vía";
const IT_TYPES: &str = "Via|via|Viale|viale|V\\.le|Piazza|piazza|P\\.za|Piazzale|piazzale|Corso|corso|C\\.so|Largo|largo|Vicolo|vicolo|Strada|strada|Lungomare|Lungotevere|Contrada|Borgo|Salita|Galleria|Piazzetta";

impl Addresses {
    pub(crate) fn new() -> Result<Self, CurateError> {
        // A capitalised word (letters, apostrophes, hyphens, dots) or a number.
        let cap = r"[\p{Lu}\d][\p{L}'’\-.]*";
        let city = r"[\p{Lu}][\p{Ll}'’][\p{L}'’\-.]*(?:[ \-](?:[\p{Lu}][\p{Ll}'’][\p{L}'’\-.]*|am|an der|im|sur|de|del|di|la|le|les|en|aan|den))*";
        let en = format!(
            r"\d{{1,5}}[A-Za-z]?(?:[-–]\d{{1,5}})?,?[ ]+(?:(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)\.?[ ]+)?(?:{cap}[ ]+){{1,4}}?(?:{EN_TYPES})(?-u:\b)\.?(?:[ ]+(?:NW|NE|SW|SE|N|S|E|W)(?-u:\b))?(?:,?[ ]*(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|Room|Rm|Bldg|\#)\.?[ ]*\#?[ ]*[A-Za-z0-9\-]+)?(?:,[ ]*{city})?(?:,?[ ]+(?:[A-Z]{{2}}[ ]+\d{{5}}(?:-\d{{4}})?|[A-Z]{{1,2}}\d[A-Z\d]?[ ]?\d[A-Z]{{2}}))?"
        );
        let tail_eu = format!(
            r"(?:,?[ ]+(?:(?:D|A|CH|NL|F|I|E|B|L)-)?(?:\d{{5}}|\d{{4}}[ ]?[A-Z]{{2}}|\d{{4}})[ ]+{city}(?:[ ]*\([A-Z]{{2}}\))?)?"
        );
        let de_compound = format!(
            r"[\p{{Lu}}][\p{{L}}\-]*(?:{DE_NL_SUFFIX})[ ]+\d{{1,4}}[ ]?[a-zA-Z]?(?:[ ]?[-/][ ]?\d{{1,4}}[a-z]?){{0,3}}(?:-?(?:hs|huis|bis))?{tail_eu}"
        );
        let de_words = format!(
            r"(?:[\p{{Lu}}][\p{{L}}\-]+[ ]+){{1,2}}(?:{DE_NL_WORD})[ ]+\d{{1,4}}[ ]?[a-zA-Z]?(?:[ ]?[-/][ ]?\d{{1,4}}){{0,3}}{tail_eu}"
        );
        let nl_prep = format!(
            r"(?:Laan|Plein|Kade|Weg|Straat|Burgemeester|Van|Prins|Koningin|Sint|Oude|Nieuwe)[ ]+(?:(?:van|der|de|den|het|op|aan|[\p{{Lu}}][\p{{L}}\-]*)[ ]+){{1,4}}\d{{1,4}}[ ]?[a-zA-Z]?{tail_eu}"
        );
        let particle_fr = r"(?:de[ ]+la|de[ ]+l['’]|du|des|de|d['’]|la|le|les|l['’])";
        let fr = format!(
            r"\d{{1,4}}(?:[ ]?(?:bis|ter|[A-Z](?-u:\b)))?,?[ ]+(?i:{FR_TYPES})[ ]+(?:{particle_fr}[ ]*)?{cap}(?:[ ]+(?:{particle_fr}|et|sur|sous|{cap})){{0,5}}{tail_eu}(?:[ ]+(?:Cedex|CEDEX)(?:[ ]+\d+)?)?"
        );
        let particle_es = r"(?:de[ ]+la|de[ ]+los|de[ ]+las|del|de|la|el|los|las|d['’])";
        let es = format!(
            r"(?i:{ES_TYPES})[ ]+(?:{particle_es}[ ]+)?{cap}(?:[ ]+(?:{particle_es}|y|i|{cap})){{0,5}},?[ ]*(?:n[º°o]\.?[ ]*|núm\.?[ ]*|número[ ]*)?\d{{1,4}}(?:[ ]?[A-Za-z](?-u:\b))?(?:,[ ]*\d{{1,2}}(?:[º°ª][ ]*[A-Za-z]?|[ ]*[A-Za-z](?-u:\b))(?:-[A-Za-z])?)?{tail_eu}"
        );
        let particle_it =
            r"(?:dei|degli|delle|della|dello|del|di|de|d['’]|le|la|lo|il|san|santa|sant['’]|santo)";
        let it = format!(
            r"(?:{IT_TYPES})[ ]+(?:{particle_it}[ ]*)?{cap}(?:[ ]+(?:{particle_it}|{cap}|[IVX]+)){{0,5}},?[ ]*(?:n\.?[ ]*)?\d{{1,4}}(?:[ ]?/[ ]?[A-Za-z]|[A-Za-z](?-u:\b))?{tail_eu}"
        );
        let particle_pt = r"(?:da|das|do|dos|de|d['’])";
        let pt = format!(
            r"(?:Rua|Avenida|Av\.|Travessa|Trav\.|Largo|Praça|Pç\.|Estrada|Alameda|Calçada|Rotunda|Beco|Praceta)[ ]+(?:{particle_pt}[ ]+)?{cap}(?:[ ]+(?:{particle_pt}|e|{cap})){{0,5}},?[ ]*(?:n\.?[º°][ ]*)?\d{{1,4}}[A-Za-z]?(?:,?[ ]*\d{{1,2}}\.?[º°ª](?:[ ]*(?:Esq\.?|Dto\.?|Dt\.?|Frente|andar|[A-Z](?-u:\b)))?)?(?:,?[ ]+\d{{4}}-\d{{3}}[ ]+{city})?"
        );
        // German prepositional street names: "Am Rosengarten 3a", "An der Alster 12", "Im Winkel 4".
        let de_prep = format!(
            r"(?:Am|An[ ]der|An[ ]den|Auf[ ]dem|Auf[ ]der|Im|In[ ]der|In[ ]den|Zum|Zur|Unter[ ]den|Hinter[ ]der|Vor[ ]dem)[ ]+[\p{{Lu}}][\p{{L}}\-]+(?:[ ]+[\p{{Lu}}][\p{{L}}\-]+)?[ ]+\d{{1,4}}[ ]?[a-zA-Z]?(?:[ ]?[-/][ ]?\d{{1,4}})*(?:,?[ ]+(?:(?:D|A|CH)-)?\d{{4,5}}[ ]+{city})"
        );
        // A house number and a street without a street-type word, anchored by what follows: a
        // unit ("659 Broadway, Suite 842"), or a city with a US state and ZIP code.
        let unit = r"(?:Apt|Apartment|Suite|Ste|Unit|Flat|Fl|\#)\.?[ ]*\#?[ ]*[A-Za-z0-9\-]{1,6}";
        let anchored = format!(
            r"\d{{1,5}}[A-Za-z]?[ ]+(?:[\p{{Lu}}][\p{{L}}'’.\-]*[ ]+){{0,3}}?[\p{{Lu}}][\p{{L}}'’.\-]*(?:[ ]+\d{{1,5}}[A-Za-z]?)?(?:,?[ ]*\n?[ ]*{unit}(?:,?[ ]*\n?[ ]*{city}(?:,?[ ]+[A-Z]{{2}}[ ]+\d{{5}}(?:-\d{{4}})?)?)?|,[ ]*{city},[ ]*[A-Z]{{2}}[ ]+\d{{5}}(?:-\d{{4}})?)"
        );
        // Central and eastern European: "ul. Zagórna 55", "Rákóczi út 13", "Na Příkopě 12".
        let ce = format!(
            r"(?:(?:ul\.|ulica|al\.|aleja|pl\.|os\.)[ ]+{cap}(?:[ ]+{cap}){{0,3}}|{cap}(?:[ ]+{cap}){{0,2}}[ ]+(?:út|utca|u\.|tér|körút|krt\.|rakpart|rkp\.))[ ]+\d{{1,4}}[A-Za-z]?(?:/\d{{1,4}})?\.?{tail_eu}"
        );
        // A street corner: "the corner of Elm Road 12 and Takuda Lane" (one side has a number).
        let corner = format!(
            r"(?:[Tt]he[ ]+)?[Cc]orner[ ]+of[ ]+[\p{{Lu}}\d][^\n,;?!]{{1,60}}?[ ]+and[ ]+{cap}(?:[ ]+{cap}){{0,3}}"
        );
        // US military and diplomatic post: "USS Labrie\nFPO AP 27625", "PSC 5439, Box 0299 APO AE 48831".
        let military = r"(?:(?:USS|USNS|USNV|USCGC)[ ]+[\p{L}'’\-]+(?:[ ]+[\p{L}'’\-]+)?|(?:PSC|CMR|Unit)[ ]+\d{1,5},?[ ]+Box[ ]+\d{1,5})[ ,]*\n?[ ]*(?:FPO|APO|DPO)[ ]+(?:AA|AE|AP)[ ]+\d{5}".to_string();
        let mut patterns = Vec::new();
        for (name, p) in [
            ("address_en", en),
            ("address_de", de_compound),
            ("address_de_words", de_words),
            ("address_nl", nl_prep),
            ("address_fr", fr),
            ("address_es", es),
            ("address_it", it),
            ("address_pt", pt),
            ("address_de_prep", de_prep),
            ("address_anchored", anchored),
            ("address_ce", ce),
            ("address_military", military),
            ("address_corner", corner),
        ] {
            patterns.push(Regex::new(&p).map_err(|e| CurateError::pattern(name, e))?);
        }
        // "lives on Parmova 109", "the north side of Holzschachen 30", "It's in 47733 Paraguay
        // 87": a street's name and number with no street-type word, after a preposition of
        // place or an address label; the words are checked by `street_word`.
        let cued = Regex::new(
            r"(?i:\b(?:at|on|in|to|of|near|address|addresses|adresse|dirección|indirizzo|adres|morada|anschrift)\b)[ ]*:?[ ]*\n?[ ]*((\d{1,5}[A-Za-z]?[ ]+)?([\p{Lu}][\p{L}'’\-.]*(?:[ ]+[\p{L}][\p{L}'’\-.]*){0,3}?)[ ]+(\d{1,4})[A-Za-z]?)(?:[ ]*(?:[,.;:!?)]|\n|\\n|$)|[ ]+(?:street|St\.?|Str\.?|with|and|since|these|for|near|but|which|where|now|today|until)(?-u:\b))",
        )
        .map_err(|e| CurateError::pattern("address_cued", e))?;
        // Post-office boxes: "P.O. Box 63", "Postfach 10 02 33", "Apartado de Correos 114".
        let po_box = Regex::new(
            r"(?i:\b(?:P\.?[ ]?O\.?[ ]?Box|Post[ ]Office[ ]Box|Postfach|Apartado(?:[ ]de[ ]Correos)?|Casella[ ]Postale|Postbus|Caixa[ ]Postal|Boîte[ ]Postale))[ ]+\d{1,6}(?:[ ]\d{2}){0,2}\b",
        )
        .map_err(|e| CurateError::pattern("address_po_box", e))?;
        Ok(Addresses {
            patterns,
            cued,
            po_box,
        })
    }

    pub(crate) fn find(&self, text: &str, lex: &Lexicon, out: &mut Vec<Candidate>) {
        if !text.bytes().any(|b| b.is_ascii_digit()) {
            return;
        }
        self.find_cued(text, lex, out);
        for m in self.po_box.find_iter(text) {
            out.push(Candidate::new(
                EntityType::StreetAddress,
                m.start(),
                m.end(),
                score::ADDRESS,
            ));
        }
        for (i, re) in self.patterns.iter().enumerate() {
            for m in re.find_iter(text) {
                let s = m.start();
                if prev_char(text, s)
                    .is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '.' || c == '/')
                {
                    continue;
                }
                let t = m.as_str();
                // Italian/Spanish lower-case street words need "in via …" / "en la calle …".
                if (i == 5 || i == 6) && t.starts_with(|c: char| c.is_lowercase()) {
                    // The last few characters before the match, lower-cased.
                    let from = (s.saturating_sub(8)..s)
                        .find(|&j| text.is_char_boundary(j))
                        .unwrap_or(s);
                    let before = text[from..s].to_lowercase();
                    let ok = [
                        "in ", "en ", "en la ", "a ", "la ", "nella ", "alla ", "sulla ", "dalla ",
                        "della ",
                    ]
                    .iter()
                    .any(|p| before.ends_with(p));
                    if !ok {
                        continue;
                    }
                }
                let e = trim_end_by(text, s, m.end(), |c| {
                    matches!(c, ',' | ' ' | '-' | '’' | '\'')
                });
                // A corner needs a house number on one of its streets.
                if t.len() < 6 || (i == CORNER && !t.bytes().any(|b| b.is_ascii_digit())) {
                    continue;
                }
                out.push(Candidate::new(
                    EntityType::StreetAddress,
                    s,
                    e,
                    score::ADDRESS,
                ));
            }
        }
    }
}

impl Addresses {
    /// Streets without a street-type word after a preposition of place (see `cued`).
    fn find_cued(&self, text: &str, lex: &Lexicon, out: &mut Vec<Candidate>) {
        for c in self.cued.captures_iter(text) {
            let (Some(all), Some(street), Some(num)) = (c.get(1), c.get(3), c.get(4)) else {
                continue;
            };
            let lead = c.get(2).is_some();
            let words: Vec<&str> = street
                .as_str()
                .split(' ')
                .filter(|w| !w.is_empty())
                .collect();
            // Without a leading house number, the name must not be a place ("in Berlin 3"),
            // and a four-digit number must not be a year ("in Qatar 2022").
            let year = num.as_str().len() == 4
                && num
                    .as_str()
                    .parse::<u32>()
                    .is_ok_and(|y| (1900..=2099).contains(&y));
            // "Raum 3.14", "Corporation 6.500%": a decimal number is no house number.
            let decimal = text[all.end()..].starts_with(['.', ','])
                && text[all.end() + 1..].starts_with(|c: char| c.is_ascii_digit());
            let ok = !decimal
                && !crate::detector::org_like(text, street.start(), street.end())
                && words.iter().all(|w| street_word(w, lex))
                && (lead
                    || (!lex.is_place(street.as_str())
                        && !year
                        && words.iter().all(|w| w.chars().count() >= 2)));
            if ok {
                out.push(Candidate::new(
                    EntityType::StreetAddress,
                    all.start(),
                    all.end(),
                    score::ADDRESS,
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::EntityType::*;
    use crate::detector::test_support::*;

    #[test]
    fn addresses() {
        for (t, v) in [
            (
                "I live at 221B Baker Street, London NW1 6XE.",
                "221B Baker Street, London NW1 6XE",
            ),
            (
                "ship to 500 Oak Rd, Apt 4B, Springfield, IL 62704",
                "500 Oak Rd, Apt 4B, Springfield, IL 62704",
            ),
            ("1600 Pennsylvania Avenue NW", "1600 Pennsylvania Avenue NW"),
            (
                "wohnhaft Hauptstraße 5, 10115 Berlin",
                "Hauptstraße 5, 10115 Berlin",
            ),
            ("in der Berliner Straße 12a", "Berliner Straße 12a"),
            (
                "Zustellung: Hietzinger Gasse 7/2/11, 1130 Wien",
                "Hietzinger Gasse 7/2/11, 1130 Wien",
            ),
            (
                "wohnhaft Kärntnerstraße 21/4/9, 8010 Graz",
                "Kärntnerstraße 21/4/9, 8010 Graz",
            ),
            (
                "j'habite au 12 rue de la Paix, 75002 Paris",
                "12 rue de la Paix, 75002 Paris",
            ),
            (
                "vivo en Calle de Alcalá, 42, 28014 Madrid",
                "Calle de Alcalá, 42, 28014 Madrid",
            ),
            (
                "abito in Via Giuseppe Garibaldi 25, 00184 Roma",
                "Via Giuseppe Garibaldi 25, 00184 Roma",
            ),
            (
                "Please return to USS Labrie\nFPO AP 27625 in case of an issue",
                "USS Labrie\nFPO AP 27625",
            ),
            (
                "ik woon op Keizersgracht 123, 1015 CJ Amsterdam",
                "Keizersgracht 123, 1015 CJ Amsterdam",
            ),
        ] {
            finds(t, StreetAddress, v);
        }
    }

    #[test]
    fn address_lookalikes() {
        none_of("We sent 3 items via DHL 2 days ago.", StreetAddress);
        none_of("Room 4.12 on floor 3, building B.", StreetAddress);
        none_of("Chapter 12 Street Fighter review", StreetAddress);
        // A corner of two streets with no number is a place, not an address.
        none_of("We met at the corner of Elm and Oak.", StreetAddress);
    }

    #[test]
    fn streets_without_a_street_type_after_a_place_word() {
        for (t, v) in [
            (
                "Ingrid lives on Kvernbakken 17 these days.",
                "Kvernbakken 17",
            ),
            (
                "The taxi stopped on the east side of Brennerhof 42.",
                "Brennerhof 42",
            ),
            (
                "Her address: 5120 Tovarniška 8, second floor",
                "5120 Tovarniška 8",
            ),
            (
                "We met at Sørhaugen terrasse 6, by the lake.",
                "Sørhaugen terrasse 6",
            ),
            (
                "It's in 77 Viale Odorico le Vigne 14.",
                "Viale Odorico le Vigne 14",
            ),
            ("Dropped the keys at Budai u. 31. yesterday", "Budai u. 31."),
        ] {
            finds(t, StreetAddress, v);
        }
        // Versions, counts, years and places after the same words are not streets.
        for t in [
            "We upgraded to Node 18. It runs on Windows 11.",
            "See the table in Chapter 4, then skip to Season 2.",
            "The final was held in Qatar 2022.",
            "Tickets for Gate 12. Boarding at Terminal 2.",
            "Das Meeting ist um 14:30 in Raum 3.14.",
            "She moved to Brunswick Corporation 6.5% notes.",
        ] {
            none_of(t, StreetAddress);
        }
    }

    #[test]
    fn post_office_boxes() {
        finds(
            "Send the forms to P.O. Box 4471, Tulsa.",
            StreetAddress,
            "P.O. Box 4471",
        );
        finds(
            "Postfach 10 02 33\n80331 München",
            StreetAddress,
            "Postfach 10 02 33",
        );
        none_of("The box holds 12 items.", StreetAddress);
    }

    #[test]
    fn street_corners() {
        finds(
            "Pick me up at the corner of Brakkeveien 14 and Ostrander Lane tonight.",
            StreetAddress,
            "the corner of Brakkeveien 14 and Ostrander Lane",
        );
    }
}
