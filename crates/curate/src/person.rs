//! Person names: context cues (titles, greetings, "my name is", sign-offs, labels, JSON keys)
//! plus given-name and surname lexicons with capitalisation rules.

use crate::cues::{CueKind, Cues};
use crate::detector::{Candidate, score};
use crate::lexicon::Lexicon;
use crate::{CurateError, EntityType};
use regex::Regex;

pub(crate) struct Persons {
    json_key: Regex,
    specific: std::collections::HashSet<String>,
    generic: std::collections::HashSet<String>,
}

/// JSON keys (snake_case; `firstName`, `FIRST_NAME` and `firstname` match too) whose string
/// value is a person's name.
const SPECIFIC_KEYS: &[&str] = &[
    "recipient",
    "sender",
    "passenger",
    "patient",
    "attendee",
    "reviewer",
    "requester",
    "reporter",
    "assignee",
    "contact_person",
    "first_name",
    "last_name",
    "full_name",
    "given_name",
    "family_name",
    "middle_name",
    "sur_name",
    "surname",
    "customer_name",
    "patient_name",
    "contact_name",
    "client_name",
    "holder_name",
    "card_holder",
    "card_holder_name",
    "cardholder",
    "cardholder_name",
    "account_holder",
    "account_holder_name",
    "employee_name",
    "passenger_name",
    "guest_name",
    "recipient_name",
    "sender_name",
    "user_full_name",
    "person_name",
    "manager_name",
    "doctor_name",
    "physician",
    "nom_complet",
    "prenom",
    "prénom",
    "vorname",
    "nachname",
    "apellido",
    "apellidos",
    "nombre_completo",
    "nombre_cliente",
    "cognome",
    "nome_completo",
    "voornaam",
    "achternaam",
    "tussenvoegsel",
];
/// Keys whose value is a name only when it looks like one (a known name, or 2+ capitalised words).
const GENERIC_KEYS: &[&str] = &[
    "name",
    "display_name",
    "author",
    "owner",
    "contact",
    "person",
    "nom",
    "nombre",
    "nome",
    "naam",
    "kunde",
    "cliente",
    "klant",
    "organizer",
    "user",
];

/// Roles whose `<role>_name` key holds a person's name (`applicant_name`, `traveler_name` …).
const PERSON_ROLES: &[&str] = &[
    "patient",
    "applicant",
    "customer",
    "holder",
    "traveler",
    "traveller",
    "passenger",
    "recipient",
    "contact",
    "guest",
    "member",
    "employee",
    "account_holder",
    "beneficiary",
    "insured",
    "subscriber",
    "driver",
    "tenant",
];

fn normalise_key(k: &str) -> String {
    k.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Words that start place names ("San Diego", "Bad Homburg", "Puerto Rico").
pub(crate) const PLACE_PREFIXES: &[&str] = &[
    "san", "santa", "santo", "são", "new", "los", "las", "saint", "st", "fort", "port", "mount",
    "lake", "bad", "sankt", "porto", "puerto", "costa", "monte", "cape", "rio", "isla", "villa",
    "el", "la", "le", "north", "south", "east", "west", "upper", "lower", "great", "little", "old",
];

const PARTICLES: &[&str] = &[
    "van", "von", "de", "der", "den", "di", "da", "del", "della", "dos", "das", "du", "le", "la",
    "ter", "ten", "bin", "ibn", "al", "el", "y", "zu", "af", "av", "mac", "st.", "e",
];

#[derive(Debug, Clone, Copy)]
struct Tok {
    s: usize,
    e: usize,
    cap: bool,
    initial: bool,
    sent_start: bool,
}

fn tokenize(text: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if !c.is_alphabetic() {
            continue;
        }
        let s = i;
        let mut e = i + c.len_utf8();
        while let Some(&(j, d)) = it.peek() {
            if d.is_alphabetic() {
                e = j + d.len_utf8();
                it.next();
            } else if matches!(d, '\'' | '’' | '-')
                && text[j + d.len_utf8()..].starts_with(char::is_alphabetic)
            {
                it.next();
            } else {
                break;
            }
        }
        // A digit glued to the word ("abc123") makes it an identifier, not a name.
        let glued = text[e..].starts_with(|c: char| c.is_ascii_digit() || c == '_' || c == '@')
            || text[..s].ends_with(|c: char| {
                c.is_ascii_digit() || c == '_' || c == '@' || c == '/' || c == '.'
            });
        let tok = &text[s..e];
        for poss in ["'s", "’s"] {
            if tok.len() > poss.len() + 1 && tok.ends_with(poss) {
                e -= poss.len();
                break;
            }
        }
        let tok = &text[s..e];
        let mut chars = tok.chars();
        let first = chars.next().unwrap_or(' ');
        let nchars = tok.chars().count();
        let lowers = tok.chars().filter(|c| c.is_lowercase()).count();
        let uppers = tok.chars().filter(|c| c.is_uppercase()).count();
        let parts = 1 + tok
            .chars()
            .filter(|c| matches!(c, '-' | '\'' | '’'))
            .count();
        let one = nchars == 1;
        // Name-shaped: "Anna", "McDonald", "O'Brien", "Jean-Luc", "Li"; not "IDs", "SEO-friendly", "X".
        let adjacent_upper = tok
            .chars()
            .zip(tok.chars().skip(1))
            .any(|(a, b)| a.is_uppercase() && b.is_uppercase());
        let cap = !glued
            && first.is_uppercase()
            && (lowers >= 2 || (nchars == 2 && lowers == 1))
            && uppers <= parts + 1
            && !adjacent_upper;
        let initial = one && first.is_uppercase() && text[e..].starts_with('.');
        toks.push(Tok {
            s,
            e,
            cap,
            initial,
            sent_start: sentence_start(text, s),
        });
    }
    toks
}

pub(crate) fn sentence_start(text: &str, s: usize) -> bool {
    for c in text[..s].chars().rev() {
        if c == '\n' {
            return true;
        }
        if c.is_whitespace() {
            continue;
        }
        return matches!(
            c,
            '.' | '!'
                | '?'
                | ':'
                | ';'
                | '"'
                | '“'
                | '«'
                | '('
                | '-'
                | '•'
                | '*'
                | '>'
                | '#'
                | '|'
                | '['
                | '{'
                | '¿'
                | '¡'
        );
    }
    true
}

impl Persons {
    pub(crate) fn new() -> Result<Self, CurateError> {
        let alts: Vec<String> = SPECIFIC_KEYS
            .iter()
            .chain(GENERIC_KEYS)
            .map(|k| regex::escape(k).replace('_', "_?"))
            .collect();
        let pat = format!(
            r#"(?i)\\?"({}|[a-z_\-]{{0,24}}(?:full_?name|first_?name|last_?name|sur_?name|given_?name|family_?name)|(?:{})_?name|holder|applicant|traveler|traveller)\\?"\s*:\s*\\?"([^"\\]{{1,80}})\\?""#,
            alts.join("|"),
            PERSON_ROLES.join("|")
        );
        Ok(Persons {
            json_key: Regex::new(&pat).map_err(|e| CurateError::pattern("person_json", e))?,
            specific: SPECIFIC_KEYS.iter().map(|k| normalise_key(k)).collect(),
            generic: GENERIC_KEYS.iter().map(|k| normalise_key(k)).collect(),
        })
    }

    pub(crate) fn find(&self, text: &str, cues: &Cues, lex: &Lexicon, out: &mut Vec<Candidate>) {
        let toks = tokenize(text);
        if toks.is_empty() {
            return;
        }
        let mut lower = String::new();
        self.lexicon_pass(text, &toks, cues, lex, &mut lower, out);
        self.cue_pass(text, &toks, cues, lex, &mut lower, out);
        if text.contains('"') {
            self.json_pass(text, lex, out);
        }
    }

    fn lexicon_pass(
        &self,
        text: &str,
        toks: &[Tok],
        cues: &Cues,
        lex: &Lexicon,
        lower: &mut String,
        out: &mut Vec<Candidate>,
    ) {
        let mut l2 = String::new();
        let mut i = 0;
        while i < toks.len() {
            let t = toks[i];
            if !t.cap {
                i += 1;
                continue;
            }
            lowercase_into(&text[t.s..t.e], lower);
            let next_surname = || {
                let mut l3 = String::new();
                next_cap(toks, i).is_some_and(|k| {
                    k == i + 1 && {
                        lowercase_into(&text[toks[k].s..toks[k].e], &mut l3);
                        lex.is_surname(&l3)
                    }
                })
            };
            // "Jan Brouwer", "May Smith": a given name that is also a common word counts when a
            // known surname follows.
            if lex.is_stop(lower) && !(lex.is_given(lower) && next_surname()) {
                i += 1;
                continue;
            }
            let given = lex.is_given(lower);
            let ambiguous = lex.is_ambiguous(lower);
            let (end, caps, _) = chain(text, toks, i, lex);
            let span_end = toks[end - 1].e;
            let second_known = caps >= 2
                && next_cap(toks, i).is_some_and(|k| {
                    lowercase_into(&text[toks[k].s..toks[k].e], &mut l2);
                    lex.is_surname(&l2) || lex.is_given(&l2)
                });
            // Context after the name: "X called", "X (x@example.com)", "X <x@example.com>".
            let after_cue =
                followed_by_verb(text, span_end, cues) || followed_by_email(text, span_end);
            // "San Francisco", "New York", "Yesterday Maria": a capitalised non-name word glued in
            // front makes a lone name doubtful, and a place prefix makes it a place. (Greetings
            // such as "Thanks Maria" are handled by the cue pass.)
            let glued_stop = i > 0 && toks[i - 1].cap && &text[toks[i - 1].e..t.s] == " " && {
                lowercase_into(&text[toks[i - 1].s..toks[i - 1].e], &mut l2);
                lex.is_stop(&l2)
            };
            if glued_stop && (PLACE_PREFIXES.contains(&l2.as_str()) || (caps == 1 && !after_cue)) {
                i = end;
                continue;
            }
            if given && (!ambiguous || second_known || (caps >= 2 && after_cue)) {
                let lone_at_start = caps == 1
                    && t.sent_start
                    && text[span_end..]
                        .trim_start()
                        .starts_with(|c: char| c.is_ascii_digit());
                if !lone_at_start {
                    let sc = if caps >= 2 {
                        score::PERSON
                    } else {
                        score::PERSON_WEAK
                    };
                    push_person(text, lex, t.s, span_end, sc, out);
                    i = end;
                    continue;
                }
            } else if caps >= 2 && !ambiguous {
                // Unknown first word followed by a known surname ("Zbigniew Kowalczyk"), or two
                // capitalised words followed by a verb of communication or an email address.
                let sur_known = next_cap(toks, i).is_some_and(|k| {
                    lowercase_into(&text[toks[k].s..toks[k].e], &mut l2);
                    lex.is_surname(&l2) && !lex.is_stop(&l2)
                });
                if sur_known || after_cue {
                    push_person(text, lex, t.s, span_end, score::PERSON, out);
                    i = end;
                    continue;
                }
            }
            i += 1;
        }
    }

    fn cue_pass(
        &self,
        text: &str,
        toks: &[Tok],
        cues: &Cues,
        lex: &Lexicon,
        lower: &mut String,
        out: &mut Vec<Candidate>,
    ) {
        for c in &cues.list {
            let kind = c.kind;
            if !matches!(
                kind,
                CueKind::Title
                    | CueKind::Greeting
                    | CueKind::IntroStrong
                    | CueKind::IntroWeak
                    | CueKind::Signoff
                    | CueKind::Label
                    | CueKind::Role
                    | CueKind::Preposition
            ) {
                continue;
            }
            // First token after the cue.
            let k = toks.partition_point(|t| t.s < c.end);
            let Some(&t) = toks.get(k) else { continue };
            let gap = &text[c.end..t.s];
            let gap_ok = match kind {
                CueKind::Title => matches!(gap, " " | ". " | "  "),
                CueKind::Greeting => {
                    gap.len() <= 3 && !gap.contains('\n') && gap.trim_matches([' ', ',']).is_empty()
                }
                CueKind::IntroStrong
                | CueKind::IntroWeak
                | CueKind::Role
                | CueKind::Preposition => {
                    gap.len() <= 3 && gap.trim_matches([' ', ':', ',']).is_empty()
                }
                CueKind::Label => {
                    gap.len() <= 4 && gap.trim_matches([' ', ':', '\t', '"']).is_empty()
                }
                CueKind::Signoff => {
                    let sig_start = sentence_start(text, c.start);
                    let trimmed = gap.trim_matches([' ', ',', '!', '.', '\n', '\r', '\t']);
                    sig_start
                        && trimmed.is_empty()
                        && (gap.contains(',')
                            || gap.contains('\n')
                            || text[c.start..c.end].starts_with(['-', '—']))
                        && gap.len() <= 8
                }
                _ => false,
            };
            // "meneer van der Meer": a title may be followed by a particle.
            let lead_particle = kind == CueKind::Title && !t.cap && {
                lowercase_into(&text[t.s..t.e], lower);
                PARTICLES.contains(&lower.as_str())
                    && next_is_cap_after_particles(text, toks, k + 1)
            };
            // Chat style: "it's rosalind here", "my name is anna" (a known given name, lower case).
            let lower_given =
                matches!(kind, CueKind::IntroStrong | CueKind::IntroWeak) && !t.cap && {
                    lowercase_into(&text[t.s..t.e], lower);
                    lex.is_given(lower) && !lex.is_ambiguous(lower) && !lex.is_stop(lower)
                };
            if gap_ok && lower_given {
                push_person(text, lex, t.s, t.e, score::PERSON_CUE, out);
                continue;
            }
            if !gap_ok || !(t.cap || lead_particle) {
                continue;
            }
            lowercase_into(&text[t.s..t.e], lower);
            let first_given = lex.is_given(lower);
            let lenient = matches!(
                kind,
                CueKind::Title
                    | CueKind::Greeting
                    | CueKind::Signoff
                    | CueKind::IntroStrong
                    | CueKind::Label
            );
            if lex.is_stop(lower) && !(first_given && (lenient || next_cap(toks, k) == Some(k + 1)))
            {
                // A lowercase known given name after a self-introduction: "hey its rosalind here".
                continue;
            }
            let first_known = (first_given && !lex.is_ambiguous(lower)) || lex.is_surname(lower);
            let (end, caps, known) = chain(text, toks, k, lex);
            let accept = match kind {
                CueKind::Title | CueKind::IntroStrong | CueKind::Label | CueKind::Greeting => true,
                CueKind::Signoff => {
                    // The name sits alone on its line (or ends the text).
                    let after = &text[toks[end - 1].e..];
                    let line_rest = after.split('\n').next().unwrap_or("");
                    line_rest.trim().is_empty()
                        || line_rest
                            .trim_start()
                            .starts_with(['|', '-', ',', '(', '<', '"', '\\'])
                }
                CueKind::Role | CueKind::IntroWeak => first_known || known || caps >= 2,
                CueKind::Preposition => {
                    let span_end = toks[end - 1].e;
                    first_known
                        || known
                        || (caps >= 2
                            && (followed_by_verb(text, span_end, cues)
                                || followed_by_email(text, span_end)))
                }
                _ => false,
            };
            if accept {
                push_person(text, lex, t.s, toks[end - 1].e, score::PERSON_CUE, out);
            }
        }
    }

    fn json_pass(&self, text: &str, lex: &Lexicon, out: &mut Vec<Candidate>) {
        for caps in self.json_key.captures_iter(text) {
            let (Some(key), Some(val)) = (caps.get(1), caps.get(2)) else {
                continue;
            };
            let specific = self.key_kind(key.as_str()) == Some(true);
            if let Some((s, e)) = name_value(text, val.start(), val.end(), specific, lex) {
                push_person(text, lex, s, e, score::PERSON_JSON, out);
            }
        }
    }

    /// Is `key` (a JSON object key) one whose value is a person's name? `Some(true)`: always
    /// (first_name …); `Some(false)`: when the value looks like one (name …); `None`: no.
    pub(crate) fn key_kind(&self, key: &str) -> Option<bool> {
        if key.len() > 40 {
            return None;
        }
        let k = normalise_key(key);
        let role_name = k
            .strip_suffix("name")
            .is_some_and(|r| PERSON_ROLES.iter().any(|p| normalise_key(p) == r));
        let name_suffix = [
            "fullname",
            "firstname",
            "lastname",
            "surname",
            "givenname",
            "familyname",
        ]
        .iter()
        .any(|x| k.ends_with(x));
        if self.specific.contains(&k)
            || role_name
            || name_suffix
            || matches!(
                k.as_str(),
                "holder" | "applicant" | "traveler" | "traveller"
            )
        {
            Some(true)
        } else if self.generic.contains(&k) {
            Some(false)
        } else {
            None
        }
    }
}

/// A JSON string value that is shaped like a name; returns the trimmed span.
pub(crate) fn name_value(
    text: &str,
    s: usize,
    e: usize,
    specific: bool,
    lex: &Lexicon,
) -> Option<(usize, usize)> {
    let v = &text[s..e];
    let lead = v.len() - v.trim_start().len();
    let v = v.trim();
    if v.is_empty() || v.len() > 70 {
        return None;
    }
    let words: Vec<&str> = v.split_whitespace().collect();
    if words.len() > 5 {
        return None;
    }
    let mut known = false;
    let mut caps = 0;
    let mut lower = String::new();
    for w in &words {
        let w = w.trim_end_matches([',', '.']);
        if w.is_empty() {
            continue;
        }
        let first = w.chars().next().unwrap_or(' ');
        lowercase_into(w, &mut lower);
        if first.is_uppercase() {
            if !w
                .chars()
                .all(|c| c.is_alphabetic() || matches!(c, '\'' | '’' | '-' | '.'))
            {
                return None;
            }
            caps += 1;
            if lex.is_stop(&lower) && !lex.is_given(&lower) && !lex.is_surname(&lower) {
                return None;
            }
            known |= lex.is_given(&lower) || lex.is_surname(&lower);
        } else if !PARTICLES.contains(&lower.as_str()) {
            return None;
        }
    }
    if caps == 0 {
        return None;
    }
    if specific || known || caps >= 2 {
        Some((s + lead, s + lead + v.len()))
    } else {
        None
    }
}

/// " called", " hat angerufen" … right after `end`.
fn followed_by_verb(text: &str, end: usize, cues: &Cues) -> bool {
    text[end..].starts_with(' ') && cues.starts_at(CueKind::PostVerb, end + 1)
}

/// " (x@example.com)" or " <x@example.com>" right after `end`.
fn followed_by_email(text: &str, end: usize) -> bool {
    let rest = &text[end..];
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let Some(inner) = rest.strip_prefix(['(', '<']) else {
        return false;
    };
    let close = inner.find([')', '>']).unwrap_or(inner.len()).min(80);
    inner[..close.min(inner.len())].contains('@')
}

/// Push a person candidate unless its text is a known place.
fn push_person(
    text: &str,
    lex: &Lexicon,
    s: usize,
    e: usize,
    score: u16,
    out: &mut Vec<Candidate>,
) {
    if !lex.is_place(&text[s..e]) {
        out.push(Candidate::new(EntityType::Person, s, e, score));
    }
}

fn lowercase_into(s: &str, buf: &mut String) {
    buf.clear();
    for c in s.chars() {
        if c == '’' {
            buf.push('\'');
        } else {
            buf.extend(c.to_lowercase());
        }
    }
}

fn next_is_cap_after_particles(text: &str, toks: &[Tok], mut k: usize) -> bool {
    let mut lower = String::new();
    for _ in 0..3 {
        let Some(t) = toks.get(k) else { return false };
        if t.cap {
            return true;
        }
        lowercase_into(&text[t.s..t.e], &mut lower);
        if !PARTICLES.contains(&lower.as_str()) {
            return false;
        }
        k += 1;
    }
    false
}

fn next_cap(toks: &[Tok], i: usize) -> Option<usize> {
    (i + 1..toks.len())
        .take(4)
        .find(|&k| toks[k].cap && !toks[k].initial)
}

/// Extend a name from token `i`: capitalised words, initials and inner particles, separated by
/// single spaces. Returns (end token index, capitalised words, any word in a lexicon).
fn chain(text: &str, toks: &[Tok], i: usize, lex: &Lexicon) -> (usize, usize, bool) {
    let mut lower = String::new();
    let mut caps = 0;
    let mut known = false;
    let mut last = i;
    let mut k = i;
    while k < toks.len() {
        let t = toks[k];
        if k > i {
            let gap = &text[toks[k - 1].e..t.s];
            let ok = gap == " " || (toks[k - 1].initial && (gap == ". " || gap == "."));
            if !ok {
                break;
            }
        }
        lowercase_into(&text[t.s..t.e], &mut lower);
        if t.initial {
            last = k;
        } else if t.cap {
            if k > i && (lex.is_stop(&lower) && !lex.is_surname(&lower)) {
                break;
            }
            caps += 1;
            known |= lex.is_given(&lower) || lex.is_surname(&lower);
            last = k;
            if caps >= 4 {
                break;
            }
        } else if PARTICLES.contains(&lower.as_str())
            && next_is_cap_after_particles(text, toks, k + 1)
        {
            // particle ("van", "de la"): keep going, it counts once a capitalised word follows
        } else {
            break;
        }
        k += 1;
    }
    // A trailing initial without a following word is not part of the name.
    while last > i && toks[last].initial {
        last -= 1;
    }
    (last + 1, caps, known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_kinds() {
        let p = Persons::new().unwrap();
        assert_eq!(p.key_kind("first_name"), Some(true));
        assert_eq!(p.key_kind("firstName"), Some(true));
        assert_eq!(p.key_kind("cardholder_name"), Some(true));
        assert_eq!(p.key_kind("name"), Some(false));
        assert_eq!(p.key_kind("order_id"), None);
        assert_eq!(p.key_kind("patient_full_name"), Some(true));
        assert_eq!(p.key_kind("applicantName"), Some(true));
        assert_eq!(p.key_kind("holder"), Some(true));
        assert_eq!(p.key_kind("file_name"), None);
    }
}

#[cfg(test)]
mod detect_tests {
    use crate::EntityType::*;
    use crate::detector::test_support::*;

    #[test]
    fn names_from_cues() {
        finds("Hi Sarah, thanks!", Person, "Sarah");
        finds(
            "My name is Zbigniew Brzęczyszczykiewicz.",
            Person,
            "Zbigniew Brzęczyszczykiewicz",
        );
        finds("Dear Mr. Featherstonehaugh,", Person, "Featherstonehaugh");
        finds("Sehr geehrte Frau Dr. Achterberg,", Person, "Achterberg");
        finds("Je m'appelle Aurore Duvernois.", Person, "Aurore Duvernois");
        finds("Me llamo Begoña Etxeberria.", Person, "Begoña Etxeberria");
        finds(
            "Mi chiamo Ottavio Quattrocchi.",
            Person,
            "Ottavio Quattrocchi",
        );
        finds("Geachte meneer van der Meer,", Person, "van der Meer");
        finds(
            "Best regards,\nTabitha Hargreaves",
            Person,
            "Tabitha Hargreaves",
        );
        finds(
            "Mit freundlichen Grüßen\nDetlev Hartmann",
            Person,
            "Detlev Hartmann",
        );
        finds(
            "{\"first_name\": \"Wendelin\", \"last_name\": \"Quandt\"}",
            Person,
            "Wendelin",
        );
        finds(
            "{\"customer_name\": \"Ruprecht Kesselring\"}",
            Person,
            "Ruprecht Kesselring",
        );
        finds(
            "Almut Breitenbach hat heute angerufen.",
            Person,
            "Almut Breitenbach",
        );
        finds(
            "Lodewijk Brinkhuis (l.brinkhuis@example.nl) wrote",
            Person,
            "Lodewijk Brinkhuis",
        );
        // One-word names after strong cues, and roles and reservations before a name.
        finds("Thanks for the help.\nRegards, Ana", Person, "Ana");
        finds("At the desk, ask for Hiroshi.", Person, "Hiroshi");
        finds("Dear Olu,\nthe parcel arrived.", Person, "Olu");
        finds(
            "The table is under Tamsin Okonkwo-Reyes.",
            Person,
            "Tamsin Okonkwo-Reyes",
        );
        finds(
            "The tennis player Ilvani Strozek withdrew.",
            Person,
            "Ilvani Strozek",
        );
        finds(
            "My name is Dragana but everyone calls me Gaga",
            Person,
            "Gaga",
        );
    }

    #[test]
    fn names_from_lexicons() {
        finds(
            "Please forward this to Katarzyna Kowalczyk.",
            Person,
            "Katarzyna Kowalczyk",
        );
        finds(
            "Yesterday Giovanni Esposito confirmed.",
            Person,
            "Giovanni Esposito",
        );
        finds("cc Jean-Pierre Dubois", Person, "Jean-Pierre Dubois");
        finds("Ask Maria about it.", Person, "Maria");
    }

    #[test]
    fn non_names() {
        nothing("Hi team, hello world. Dear customer, thanks all.");
        nothing("The Golden Gate Bridge and Notre Dame.");
        nothing("May I ask? Will it work in June?");
        nothing("{\"name\": \"get_weather\", \"description\": \"Premium Plan\"}");
        none_of("Job 57c4184e-1790-4955-a7eb-df2e49e4c927 finished", Person);
    }
}
