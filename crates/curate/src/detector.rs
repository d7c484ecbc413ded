//! The detector: runs every recogniser, resolves overlaps, applies the policy.

use crate::address::Addresses;
use crate::cues::{CueSet, Cues};
use crate::dates::Dates;
use crate::finance::Finance;
use crate::ids::Ids;
use crate::lexicon::Lexicon;
use crate::names::{NameRules, propagate};
use crate::network::Network;
use crate::person::{Persons, name_value};
use crate::phone::PhoneFinder;
use crate::secrets::Secrets;
use crate::tagger::{Tag, Tagger};
use crate::weights::{self, TaggerWeights};
use crate::{CurateError, Entity, EntityType, PiiConfig};
use regex::Regex;
use std::collections::HashSet;
use std::sync::Arc;

/// Priorities used to resolve overlapping candidates (higher wins).
pub(crate) mod score {
    pub const PRIVATE_KEY: u16 = 100;
    pub const CUSTOM: u16 = 98;
    pub const URL_CREDENTIALS: u16 = 95;
    pub const JWT: u16 = 93;
    pub const API_KEY: u16 = 90;
    pub const EMAIL: u16 = 86;
    pub const IBAN: u16 = 84;
    pub const CARD: u16 = 82;
    pub const SSN: u16 = 78;
    pub const NATIONAL_ID: u16 = 76;
    pub const IP: u16 = 74;
    pub const MAC: u16 = 74;
    pub const CUED_SECRET: u16 = 72;
    pub const PASSWORD: u16 = 71;
    pub const UUID_BLOCK: u16 = 70;
    pub const CUED_ID: u16 = 68;
    pub const DOB: u16 = 66;
    pub const HASH_BLOCK: u16 = 65;
    pub const DATE_BLOCK: u16 = 64;
    pub const PHONE_INTL: u16 = 62;
    pub const PHONE: u16 = 60;
    pub const URL_BLOCK: u16 = 52;
    pub const ADDRESS: u16 = 50;
    pub const ADDRESS_TAGGED: u16 = 49;
    pub const PERSON_JSON: u16 = 48;
    pub const PERSON_CUE: u16 = 45;
    pub const PERSON: u16 = 42;
    pub const PERSON_TAGGED: u16 = 40;
    pub const PERSON_WEAK: u16 = 38;
}

/// A possible entity before overlap resolution. `kind: None` marks a look-alike (UUID, date,
/// plain URL …) that only shields its bytes from lower-priority recognisers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    pub kind: Option<EntityType>,
    pub start: usize,
    pub end: usize,
    pub score: u16,
}

impl Candidate {
    pub(crate) fn new(kind: EntityType, start: usize, end: usize, score: u16) -> Self {
        Candidate {
            kind: Some(kind),
            start,
            end,
            score,
        }
    }

    pub(crate) fn block(start: usize, end: usize, score: u16) -> Self {
        Candidate {
            kind: None,
            start,
            end,
            score,
        }
    }
}

/// The smallest score margin at which a tagged token run is taken. Measured on the dev corpora:
/// raising it trades recall for almost no precision (the false positives are confident ones,
/// which the shape filters below remove instead), so any positive margin is taken.
const TAGGER_MIN_MARGIN: f32 = 0.0;
/// A multi-word span the tagger is this sure of needs no context cue. Measured on the dev parts
/// (presidio-evaluator's): from margin 20 on, 214 of 220 such spans were names; on BFCL tool
/// schemas and prompts, 17 spans in 7,259 strings reach it.
const TAGGER_SURE_MARGIN: f32 = 20.0;

/// Words that make a capitalised run an organisation, a date or a place rather than a person.
const NOT_PERSON_WORDS: &[&str] = &[
    "inc",
    "plc",
    "ltd",
    "llc",
    "limited",
    "corporation",
    "corp",
    "company",
    "co",
    "group",
    "holdings",
    "trust",
    "bank",
    "fund",
    "funds",
    "partners",
    "solutions",
    "systems",
    "technologies",
    "technology",
    "pharmaceuticals",
    "pharma",
    "laboratories",
    "labs",
    "manufacturing",
    "therapeutics",
    "energy",
    "capital",
    "acquisition",
    "brands",
    "industries",
    "international",
    "gmbh",
    "ag",
    "sa",
    "spa",
    "srl",
    "bv",
    "nv",
    "ab",
    "oy",
    "asa",
    "kk",
    "etf",
    "index",
    "airlines",
    "airline",
    "airways",
    "league",
    "association",
    "federation",
    "council",
    "agency",
    "club",
    "units",
    "area",
    "years",
    "district",
    "apartments",
    "hotel",
    "restaurant",
    "day",
    "eve",
    "street",
    "road",
    "avenue",
    "lane",
    "trail",
    "gateway",
    "wall",
    "way",
    "square",
    "university",
    "college",
    "hospital",
    "school",
    "museum",
    "church",
    "airport",
    "station",
];

struct Lookalikes {
    uuid: Regex,
    hash: Regex,
}

struct Inner {
    config: PiiConfig,
    cues: CueSet,
    lexicon: Lexicon,
    network: Network,
    finance: Finance,
    ids: Ids,
    secrets: Secrets,
    phones: PhoneFinder,
    dates: Dates,
    addresses: Addresses,
    persons: Persons,
    names: NameRules,
    tagger: Option<TaggerWeights>,
    lookalikes: Lookalikes,
    custom: Vec<(EntityType, Regex)>,
    allow: HashSet<String>,
    enabled: [bool; EntityType::ALL.len()],
}

/// PII/PHI detector. Cheap to clone (shared, immutable), `Send + Sync`.
#[derive(Clone)]
pub struct Detector {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Detector {
    /// Build a detector for a policy (compiles every pattern once), with the process-wide
    /// tagger weights: those found on the paths named by [`crate::set_tagger_search`], loaded
    /// once; rules alone, after one warning, when there are none (see [`crate::weights`]).
    pub fn new(config: &PiiConfig) -> Result<Self, CurateError> {
        Self::with_tagger(config, weights::shared()?)
    }

    /// Build a detector for a policy with the given tagger weights; `None`: rules alone.
    pub fn with_tagger(
        config: &PiiConfig,
        tagger: Option<TaggerWeights>,
    ) -> Result<Self, CurateError> {
        let mut custom = Vec::new();
        for c in &config.custom {
            let re = Regex::new(&c.pattern).map_err(|e| CurateError::pattern(&c.name, e))?;
            custom.push((c.kind, re));
        }
        let mut enabled = [true; EntityType::ALL.len()];
        for t in EntityType::ALL {
            enabled[t.index()] = config.is_enabled(t);
        }
        let lookalikes = Lookalikes {
            uuid: Regex::new(r"(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
                .map_err(|e| CurateError::pattern("uuid", e))?,
            hash: Regex::new(r"[0-9a-f]{7,128}|[0-9A-F]{32,128}")
                .map_err(|e| CurateError::pattern("hash", e))?,
        };
        Ok(Detector {
            inner: Arc::new(Inner {
                config: config.clone(),
                cues: CueSet::new()?,
                lexicon: Lexicon::new(),
                network: Network::new()?,
                finance: Finance::new()?,
                ids: Ids::new()?,
                secrets: Secrets::new()?,
                phones: PhoneFinder::new()?,
                dates: Dates::new()?,
                addresses: Addresses::new()?,
                persons: Persons::new()?,
                names: NameRules::new()?,
                tagger,
                lookalikes,
                custom,
                allow: config
                    .allow
                    .iter()
                    .map(|a| a.trim().to_lowercase())
                    .collect(),
                enabled,
            }),
        })
    }

    /// The policy this detector was built with.
    pub fn config(&self) -> &PiiConfig {
        &self.inner.config
    }

    pub(crate) fn lexicon(&self) -> &Lexicon {
        &self.inner.lexicon
    }

    /// Detect entities in `text`: sorted, non-overlapping, UTF-8 byte offsets.
    pub fn detect(&self, text: &str) -> Vec<Entity> {
        let mut cands = Vec::new();
        match unescape_breaks(text) {
            Some(plain) => self.candidates(&plain, &mut cands),
            None => self.candidates(text, &mut cands),
        }
        self.finish(text, cands)
    }

    /// Detect entities in a JSON string value, using its object key as context: the value of
    /// `"first_name"` is a name, the value of `"dob"` a date of birth, and so on.
    pub fn detect_with_key(&self, key: &str, value: &str) -> Vec<Entity> {
        if key.is_empty() {
            return self.detect(value);
        }
        // Detect over `key: value` so that cue words in the key apply, then keep the value part.
        let prefix_len = key.len() + 2;
        let mut joined = String::with_capacity(prefix_len + value.len());
        joined.push_str(key);
        joined.push_str(": ");
        joined.push_str(value);
        let mut cands = Vec::new();
        match unescape_breaks(&joined) {
            Some(plain) => self.candidates(&plain, &mut cands),
            None => self.candidates(&joined, &mut cands),
        }
        if let Some((s, e)) = self.inner.persons.key_kind(key).and_then(|specific| {
            name_value(
                &joined,
                prefix_len,
                joined.len(),
                specific,
                &self.inner.lexicon,
            )
        }) {
            cands.push(Candidate::new(EntityType::Person, s, e, score::PERSON_JSON));
        }
        cands.retain(|c| c.start >= prefix_len);
        for c in &mut cands {
            c.start -= prefix_len;
            c.end -= prefix_len;
        }
        self.finish(value, cands)
    }

    fn candidates(&self, text: &str, out: &mut Vec<Candidate>) {
        let inner = &*self.inner;
        let mut cue_list = Vec::new();
        inner.cues.scan(text, &mut cue_list);
        let cues = Cues::new(cue_list);
        for (kind, re) in &inner.custom {
            for m in re.find_iter(text) {
                if m.start() < m.end() {
                    out.push(Candidate::new(*kind, m.start(), m.end(), score::CUSTOM));
                }
            }
        }
        inner.secrets.find(text, &cues, out);
        inner.network.find(text, &cues, out);
        let has_digit = text.bytes().any(|b| b.is_ascii_digit());
        if has_digit {
            inner.finance.find(text, &cues, out);
            inner.ids.find(text, &cues, out);
            inner.dates.find(text, &cues, out);
            inner.phones.find(text, &cues, out);
            inner.addresses.find(text, &inner.lexicon, out);
            self.lookalikes(text, out);
        }
        inner.ids.find_cued(text, &cues, out);
        inner.persons.find(text, &cues, &inner.lexicon, out);
        if let Some(tagger) = &inner.tagger {
            self.tagged(tagger.tagger(), text, &cues, has_digit, out);
        }
        inner.names.find(text, &inner.lexicon, out);
    }

    /// Persons and addresses from the learned tagger, kept when their shape is plausible.
    fn tagged(
        &self,
        tagger: &Tagger,
        text: &str,
        cues: &Cues,
        has_digit: bool,
        out: &mut Vec<Candidate>,
    ) {
        let lex = &self.inner.lexicon;
        for sp in tagger.find(text, lex, None) {
            let Some(t) = text.get(sp.start..sp.end) else {
                continue;
            };
            match sp.tag {
                Tag::Person => {
                    let words: Vec<&str> = t.split_whitespace().collect();
                    let org = org_like(text, sp.start, sp.end);
                    let lone = words.len() == 1;
                    let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
                    let any_known = lower.iter().any(|l| lex.is_given(l) || lex.is_surname(l));
                    // A full name the lexicons vouch for: a known given name first, then more.
                    let full_known = !lone && lex.is_given(&lower[0]);
                    if org || sp.margin < TAGGER_MIN_MARGIN || (lone && !any_known) {
                        continue;
                    }
                    // Anything else needs context: a person cue right before ("sung by", "Laut",
                    // "Dear"), a verb of saying or an e-mail right after, or a dialogue colon.
                    // Title-case words on their own ("Theme Park", "Paris" in a tool schema) are
                    // not names.
                    let sure = !lone && sp.margin >= TAGGER_SURE_MARGIN;
                    if !full_known && !sure && !person_context(text, cues, sp.start, sp.end) {
                        continue;
                    }
                    // "San Francisco", "New Paris": a place prefix makes it a place.
                    let prev_word = text[..sp.start]
                        .split_whitespace()
                        .next_back()
                        .unwrap_or("")
                        .to_lowercase();
                    if crate::person::PLACE_PREFIXES.contains(&prev_word.as_str())
                        || lex.is_place(&format!("{prev_word} {t}"))
                    {
                        continue;
                    }
                    let capitalised = words
                        .iter()
                        .any(|w| w.chars().next().is_some_and(char::is_uppercase));
                    let all_stop = words.iter().all(|w| lex.is_stop(&w.to_lowercase()));
                    if t.len() <= 60
                        && words.len() <= 5
                        && capitalised
                        && !all_stop
                        && !lex.is_place(t)
                        && !t.contains(|c: char| {
                            c.is_ascii_digit()
                                || matches!(c, '@' | '_' | '/' | '\\' | '{' | '}' | '"')
                        })
                    {
                        out.push(Candidate::new(
                            EntityType::Person,
                            sp.start,
                            sp.end,
                            score::PERSON_TAGGED,
                        ));
                    }
                }
                Tag::Address => {
                    if sp.margin >= TAGGER_MIN_MARGIN
                        && has_digit
                        && t.len() >= 8
                        && t.bytes().any(|b| b.is_ascii_digit())
                        && t.contains(char::is_alphabetic)
                        && !only_years(t)
                        && !t
                            .find(|c: char| c.is_ascii_digit())
                            .is_some_and(|d| after_count_noun(text, sp.start + d))
                    {
                        out.push(Candidate::new(
                            EntityType::StreetAddress,
                            sp.start,
                            sp.end,
                            score::ADDRESS_TAGGED,
                        ));
                    }
                }
                Tag::Outside => {}
            }
        }
    }

    fn lookalikes(&self, text: &str, out: &mut Vec<Candidate>) {
        let l = &self.inner.lookalikes;
        if text.contains('-') {
            for m in l.uuid.find_iter(text) {
                out.push(Candidate::block(m.start(), m.end(), score::UUID_BLOCK));
            }
        }
        for m in l.hash.find_iter(text) {
            let t = m.as_str();
            let digits = t.bytes().filter(u8::is_ascii_digit).count();
            // Commit ids and digests: hex with both digits and letters, on word boundaries.
            if digits > 0
                && digits < t.len()
                && crate::text::word_start(text, m.start())
                && crate::text::word_end(text, m.end())
            {
                out.push(Candidate::block(m.start(), m.end(), score::HASH_BLOCK));
            }
        }
    }

    fn finish(&self, text: &str, mut cands: Vec<Candidate>) -> Vec<Entity> {
        let inner = &*self.inner;
        // Lexicon-only persons ("Labor Day", "Acme Partners") give way to organisation, date and
        // place words inside or right after them; cue- and key-based ones are kept.
        cands.retain(|c| {
            !(c.kind == Some(EntityType::Person)
                && ((c.score <= score::PERSON && org_like(text, c.start, c.end))
                    || (c.score < score::PERSON_JSON
                        && not_a_name(text, c.start, c.end, &inner.lexicon))))
        });
        // A look-alike inside a street address of the rules, after its start ("Hauptstraße
        // 9/6/16" reads as a date), is part of the address, not a reason to drop it.
        let addresses: Vec<(usize, usize)> = cands
            .iter()
            .filter(|c| c.kind == Some(EntityType::StreetAddress) && c.score == score::ADDRESS)
            .map(|c| (c.start, c.end))
            .collect();
        if !addresses.is_empty() {
            cands.retain(|c| {
                c.kind.is_some() || !addresses.iter().any(|&(s, e)| s < c.start && c.end <= e)
            });
        }
        let mut kept = resolve(cands);
        if kept.iter().any(|c| c.kind == Some(EntityType::Person)) {
            propagate(text, &inner.lexicon, &mut kept);
            kept = resolve(kept);
        }
        kept.into_iter()
            .filter_map(|c| {
                let kind = c.kind?;
                if !inner.enabled[kind.index()] {
                    return None;
                }
                let t = text.get(c.start..c.end)?;
                if !inner.allow.is_empty() && inner.allow.contains(&t.trim().to_lowercase()) {
                    return None;
                }
                Some(Entity {
                    kind,
                    start: c.start,
                    end: c.end,
                    text: t.to_string(),
                })
            })
            .collect()
    }
}

/// Text logged with its line breaks escaped ("Phone:\\n417 4336", JSON inside JSON) reads as
/// one glued word ("nMobile") to every recogniser. A copy with each `\\n`, `\\r`, `\\t` made a
/// space plus the real character keeps every byte offset; `None` when there is none.
fn unescape_breaks(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let has = b
        .windows(2)
        .any(|w| w[0] == b'\\' && matches!(w[1], b'n' | b'r' | b't'));
    if !has {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() && matches!(b[i + 1], b'n' | b'r' | b't') {
            out.push(b' ');
            out.push(match b[i + 1] {
                b'n' => b'\n',
                b'r' => b'\r',
                _ => b'\t',
            });
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    // Only ASCII bytes were replaced by ASCII bytes, so the copy is valid UTF-8.
    String::from_utf8(out).ok()
}

/// Is the span `s..e` in a person's context: a person cue ending just before it, a verb of
/// saying or an e-mail right after it, or a colon after it at the start of a line (dialogue)?
fn person_context(text: &str, cues: &Cues, s: usize, e: usize) -> bool {
    use crate::cues::CueKind as K;
    let kinds = [
        K::Title,
        K::Greeting,
        K::IntroStrong,
        K::IntroWeak,
        K::Role,
        K::Preposition,
        K::Signoff,
        K::Label,
    ];
    let before = cues.nearest_cue_before(&kinds, s, 4).is_some_and(|c| {
        text[c.end..s]
            .trim_matches([' ', ',', ':', '\n', '\t', '"', '\''])
            .is_empty()
    });
    let after = text[e..].starts_with(' ') && cues.starts_at(K::PostVerb, e + 1);
    let rest = text[e..].trim_start_matches(' ');
    let email = (rest.starts_with('(') || rest.starts_with('<'))
        && rest
            .split([')', '>'])
            .next()
            .is_some_and(|x| x.contains('@'));
    let dialogue = text[e..].starts_with(':') && crate::person::sentence_start(text, s);
    before || after || email || dialogue
}

/// Endings of English adverbs ("Secretly", "Amazingly"), which no name in the lexicons has.
const ADVERB_ENDINGS: &[&str] = &[
    "tly", "ngly", "ously", "ively", "fully", "lessly", "ably", "ibly",
];

/// Street types that end a street's name ("Takuda Lane", "Caitlin Forks", "Babić Summit").
const STREET_TYPES: &[&str] = &[
    "lane",
    "meadow",
    "meadows",
    "forks",
    "fork",
    "village",
    "villages",
    "summit",
    "turnpike",
    "terrace",
    "wall",
    "street",
    "streets",
    "creek",
    "garden",
    "gardens",
    "drive",
    "court",
    "place",
    "plaza",
    "ridge",
    "heights",
    "hills",
    "crossing",
    "square",
    "way",
    "road",
    "avenue",
    "boulevard",
    "trail",
    "pike",
    "parkway",
    "circle",
    "loop",
    "grove",
    "haven",
    "hollow",
    "landing",
    "manor",
    "mews",
    "path",
    "cove",
    "falls",
    "estates",
    "shores",
    "springs",
    "ville",
    "highway",
    "expressway",
    "junction",
    "orchard",
    "passage",
    "rapids",
    "rest",
    "row",
    "spur",
    "station",
    "throughway",
    "tunnel",
    "valley",
    "viaduct",
    "views",
    "vista",
    "walk",
    "wells",
];

/// A person candidate that reads as something else: a word with an adverb's ending that no
/// lexicon knows as a name, or a street ("the corner of Elm Road and Takuda Lane", "at Jens
/// Meadow"): a street type last, after "corner of" on the same line or right after "at"/"on".
fn not_a_name(text: &str, s: usize, e: usize, lex: &Lexicon) -> bool {
    let t = &text[s..e];
    let adverb = t.split_whitespace().any(|w| {
        let l = w.to_lowercase();
        ADVERB_ENDINGS.iter().any(|x| l.ends_with(x)) && !lex.is_given(&l) && !lex.is_surname(&l)
    });
    let last = t
        .split_whitespace()
        .next_back()
        .unwrap_or("")
        .to_lowercase();
    let street = STREET_TYPES.contains(&last.as_str()) && t.contains(' ') && {
        let line = text[..s].rsplit('\n').next().unwrap_or("");
        let prev = line
            .split_whitespace()
            .next_back()
            .unwrap_or("")
            .to_lowercase();
        line.to_lowercase().contains("corner of") || prev == "at" || prev == "on"
    };
    adverb || street
}

/// Are all numbers of `t` years ("Qatar 2022", "London 2022/08/16" has others)? A place and a
/// year are no street address.
fn only_years(t: &str) -> bool {
    t.split(|c: char| !c.is_ascii_digit())
        .filter(|n| !n.is_empty())
        .all(|n| n.len() == 4 && n.parse::<u32>().is_ok_and(|y| (1900..=2099).contains(&y)))
}

/// Nouns a number counts or ranks ("Chapter 12", "Season 3", "page 40"): such a number is not
/// a house number, whatever street-like word follows it ("Chapter 12 Street Fighter review").
const COUNT_NOUNS: &[&str] = &[
    "chapter", "page", "episode", "season", "volume", "vol", "part", "section", "level", "track",
    "act", "scene", "round", "step", "verse", "figure", "table", "version", "grade", "issue",
];

/// Whether the word right before byte `s` is one of [`COUNT_NOUNS`].
fn after_count_noun(text: &str, s: usize) -> bool {
    let before = text.get(..s).unwrap_or_default().trim_end();
    let word = before
        .rsplit(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default();
    !word.is_empty() && COUNT_NOUNS.contains(&word.to_lowercase().as_str())
}

/// Does `text[s..e]`, or the word right after it, hold an organisation, date or place word?
pub(crate) fn org_like(text: &str, s: usize, e: usize) -> bool {
    let next_word = text[e..].split_whitespace().next().unwrap_or("");
    text[s..e]
        .split_whitespace()
        .chain(std::iter::once(next_word))
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .any(|w| NOT_PERSON_WORDS.contains(&w.as_str()))
}

/// Greedy overlap resolution: highest score first, then longest, then leftmost.
pub(crate) fn resolve(mut cands: Vec<Candidate>) -> Vec<Candidate> {
    cands.retain(|c| c.start < c.end);
    cands.sort_by(|a, b| {
        b.score
            .cmp(&a.score)
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(a.start.cmp(&b.start))
    });
    let mut kept: Vec<Candidate> = Vec::with_capacity(cands.len());
    for c in cands {
        // `kept` is sorted by start; find the neighbours of c.
        let pos = kept.partition_point(|k| k.start < c.start);
        let clash_prev = pos > 0 && kept[pos - 1].end > c.start;
        let clash_next = pos < kept.len() && kept[pos].start < c.end;
        if !clash_prev && !clash_next {
            kept.insert(pos, c);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_line_breaks_keep_offsets() {
        let t = r"Personal Info:\nPhone:\n417 4336\nMobile: 95 676902";
        let plain = unescape_breaks(t).unwrap();
        assert_eq!(plain.len(), t.len());
        assert!(plain.contains(" \nPhone:"));
        assert!(unescape_breaks("no escapes here").is_none());
        let found = super::test_support::found(t);
        assert!(
            found
                .iter()
                .any(|(k, v)| *k == EntityType::Phone && v == "417 4336"),
            "{found:?}"
        );
    }

    #[test]
    fn numbers_after_count_nouns_are_not_house_numbers() {
        let t = "Chapter 12 Street Fighter review; see page 40. Send it to 12 Elm Street.";
        assert!(after_count_noun(t, t.find("12").unwrap()));
        assert!(after_count_noun(t, t.find("40").unwrap()));
        assert!(!after_count_noun(t, t.rfind("12").unwrap()));
        assert!(!after_count_noun("12 Elm Street", 0));
    }

    #[test]
    fn a_place_and_a_year_is_no_address() {
        assert!(only_years("Qatar 2022"));
        assert!(!only_years("Kvernbakken 17"));
        assert!(!only_years("Brno 2022, Masarykova 12"));
    }

    #[test]
    fn resolution_prefers_score_then_length() {
        let c = vec![
            Candidate::new(EntityType::Person, 0, 10, score::PERSON),
            Candidate::new(EntityType::Email, 5, 20, score::EMAIL),
            Candidate::block(22, 30, score::DATE_BLOCK),
            Candidate::new(EntityType::Phone, 24, 28, score::PHONE),
        ];
        let r = resolve(c);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].kind, Some(EntityType::Email));
        assert_eq!(r[1].kind, None);
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use std::sync::OnceLock;

    pub(crate) fn detector() -> &'static Detector {
        static D: OnceLock<Detector> = OnceLock::new();
        D.get_or_init(|| Detector::new(&PiiConfig::default()).unwrap())
    }

    pub(crate) fn found(text: &str) -> Vec<(EntityType, String)> {
        detector()
            .detect(text)
            .into_iter()
            .map(|e| (e.kind, e.text))
            .collect()
    }

    /// `value` is found in `text` with type `kind`.
    #[track_caller]
    pub(crate) fn finds(text: &str, kind: EntityType, value: &str) {
        let f = found(text);
        assert!(
            f.iter().any(|(k, v)| *k == kind && v == value),
            "expected {kind} {value:?} in {text:?}, found {f:?}"
        );
    }

    /// Nothing of type `kind` is found in `text`.
    #[track_caller]
    pub(crate) fn none_of(text: &str, kind: EntityType) {
        let f = found(text);
        assert!(
            !f.iter().any(|(k, _)| *k == kind),
            "unexpected {kind} in {text:?}: {f:?}"
        );
    }

    /// Nothing at all is found in `text`.
    #[track_caller]
    pub(crate) fn nothing(text: &str) {
        let f = found(text);
        assert!(f.is_empty(), "unexpected entities in {text:?}: {f:?}");
    }
}

#[cfg(test)]
mod lookalike_tests {
    use super::test_support::*;
    use crate::{Detector, EntityType, PiiConfig};

    #[test]
    fn lookalikes_are_not_flagged() {
        for t in [
            "Order #48213377 shipped on 2024-03-15; tracking 1Z999AA10123456784.",
            "Order ORD-2024-118273 and invoice INV-2023-00123.",
            "Upgraded to v2.14.3 at 2024-03-15T10:22:33Z, see commit 3f2a9c1b7d4e.",
            "Build 4.2.1.7 released; rollback to 2.8.1.187 if needed.",
            "SKU-4471-BLK costs $1,299.99 or €1.299,00.",
            "Request 123e4567-e89b-12d3-a456-426614174000 took 231 ms.",
            "The number 4532 7718 2290 1145 fails Luhn.",
            "Reference 4000123412341235 is not a card.",
            "Coordinates 48.8566, 2.3522; elevation 35 m.",
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "Meeting at 10:30 in room 4.12, dial-in code 535-0686751.",
            "Temperature 21.5 °C, humidity 48 %, uptime 12:30:45.",
            "ISBN 978-3-16-148410-0 and EAN 4006381333931.",
            "Version 10.2.0.1 of the firmware fixes it.",
            "The meeting is on 2024-05-01 at 09:00.",
            "Unix time 1712345678 and port 8080.",
            "We moved from Visual Studio Code to Google Cloud Run.",
        ] {
            nothing(t);
        }
    }

    #[test]
    fn allow_list_and_disabled_types() {
        let cfg: PiiConfig = serde_json::from_str(
            r#"{"allow": ["Support@Acme.com"], "enabled": {"IP_ADDRESS": false}}"#,
        )
        .unwrap();
        let d = Detector::new(&cfg).unwrap();
        let e = d.detect("Write to support@acme.com or jane.doe@acme.com from 10.0.0.1");
        let kinds: Vec<_> = e.iter().map(|e| (e.kind, e.text.as_str())).collect();
        assert_eq!(kinds, vec![(EntityType::Email, "jane.doe@acme.com")]);
    }

    #[test]
    fn custom_recognisers() {
        let cfg: PiiConfig = serde_json::from_str(
            r#"{"custom": [{"name": "employee", "type": "NATIONAL_ID", "pattern": "EMP-\\d{6}"},
                           {"name": "ticket", "pattern": "TCK\\d+"}]}"#,
        )
        .unwrap();
        let d = Detector::new(&cfg).unwrap();
        let e = d.detect("Employee EMP-123456 opened TCK991.");
        let kinds: Vec<_> = e.iter().map(|e| (e.kind, e.text.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                (EntityType::NationalId, "EMP-123456"),
                (EntityType::Custom, "TCK991")
            ]
        );
        let bad: PiiConfig =
            serde_json::from_str(r#"{"custom": [{"name": "x", "pattern": "("}]}"#).unwrap();
        assert!(Detector::new(&bad).is_err());
    }

    #[test]
    fn offsets_are_utf8_bytes_sorted_and_disjoint() {
        let t = "Grüße von Jürgen Müller: jürgen.müller@example.de, Tel. +49 30 12345678.";
        let e = detector().detect(t);
        assert!(e.len() >= 3, "{e:?}");
        for w in e.windows(2) {
            assert!(w[0].end <= w[1].start);
        }
        for x in &e {
            assert_eq!(&t[x.start..x.end], x.text);
        }
    }

    #[test]
    fn detect_with_key_uses_the_key_as_context() {
        let d = detector();
        let e = d.detect_with_key("date_of_birth", "1985-03-12");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, EntityType::DateOfBirth);
        assert_eq!((e[0].start, e[0].end), (0, 10));
        let e = d.detect_with_key("first_name", "Zbigniew");
        assert_eq!(e[0].kind, EntityType::Person);
        let e = d.detect_with_key("created_at", "1985-03-12");
        assert!(e.is_empty());
        let e = d.detect_with_key("name", "get_weather");
        assert!(e.is_empty());
    }
}
