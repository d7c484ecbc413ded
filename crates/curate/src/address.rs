//! Street addresses: house number + street name + street type, in English, German, Dutch,
//! French, Spanish and Italian conventions, with optional unit, postcode and city.

use crate::detector::{Candidate, score};
use crate::text::{prev_char, trim_end_by};
use crate::{CurateError, EntityType};
use regex::Regex;

/// Index of the street-corner pattern in [`Addresses::patterns`].
const CORNER: usize = 12;

pub(crate) struct Addresses {
    patterns: Vec<Regex>,
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
            r"[\p{{Lu}}][\p{{L}}\-]*(?:{DE_NL_SUFFIX})[ ]+\d{{1,4}}[ ]?[a-zA-Z]?(?:[ ]?[-/][ ]?\d{{1,4}}[a-z]?)?(?:-?(?:hs|huis|bis))?{tail_eu}"
        );
        let de_words = format!(
            r"(?:[\p{{Lu}}][\p{{L}}\-]+[ ]+){{1,2}}(?:{DE_NL_WORD})[ ]+\d{{1,4}}[ ]?[a-zA-Z]?(?:[ ]?[-/][ ]?\d{{1,4}})?{tail_eu}"
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
            r"(?:dei|degli|delle|della|dello|del|di|de|d['’]|san|santa|sant['’]|santo)";
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
            r"(?:(?:ul\.|ulica|al\.|aleja|pl\.|os\.)[ ]+{cap}(?:[ ]+{cap}){{0,3}}|{cap}(?:[ ]+{cap}){{0,2}}[ ]+(?:út|utca|tér|körút))[ ]+\d{{1,4}}[A-Za-z]?(?:/\d{{1,4}})?\.?{tail_eu}"
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
        Ok(Addresses { patterns })
    }

    pub(crate) fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        if !text.bytes().any(|b| b.is_ascii_digit()) {
            return;
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
    fn street_corners() {
        finds(
            "Pick me up at the corner of Brakkeveien 14 and Ostrander Lane tonight.",
            StreetAddress,
            "the corner of Brakkeveien 14 and Ostrander Lane",
        );
    }
}
