//! Phone numbers: country calling codes with national number lengths, and national plans.

/// (calling code, min, max) length of the national significant number, trunk prefix removed.
/// ITU calling codes are prefix-free, so at most one entry matches a digit string.
#[rustfmt::skip]
const COUNTRIES: &[(&str, u8, u8)] = &[
    ("1", 10, 10), ("7", 10, 10), ("20", 9, 10), ("27", 9, 9), ("30", 10, 10), ("31", 9, 9),
    ("32", 8, 9), ("33", 9, 9), ("34", 9, 9), ("36", 8, 9), ("39", 6, 11), ("40", 9, 9),
    ("41", 9, 9), ("43", 4, 13), ("44", 9, 10), ("45", 8, 8), ("46", 7, 10), ("47", 8, 8),
    ("48", 9, 9), ("49", 6, 13), ("51", 8, 9), ("52", 10, 10), ("53", 8, 8), ("54", 10, 11),
    ("55", 10, 11), ("56", 9, 9), ("57", 8, 10), ("58", 10, 10), ("60", 8, 10), ("61", 9, 9),
    ("62", 8, 12), ("63", 8, 10), ("64", 8, 10), ("65", 8, 8), ("66", 8, 9), ("81", 9, 10),
    ("82", 8, 10), ("84", 9, 10), ("86", 10, 11), ("90", 10, 10), ("91", 10, 10), ("92", 9, 10),
    ("93", 9, 9), ("94", 9, 9), ("95", 7, 10), ("98", 10, 10), ("212", 9, 9), ("213", 9, 9),
    ("216", 8, 8), ("218", 9, 9), ("220", 7, 7), ("221", 9, 9), ("225", 10, 10), ("233", 9, 9),
    ("234", 8, 10), ("237", 9, 9), ("251", 9, 9), ("254", 9, 9), ("255", 9, 9), ("256", 9, 9),
    ("260", 9, 9), ("263", 9, 9), ("351", 9, 9), ("352", 4, 11), ("353", 7, 9), ("354", 7, 9),
    ("355", 8, 9), ("356", 8, 8), ("357", 8, 8), ("358", 5, 12), ("359", 8, 9), ("370", 8, 8),
    ("371", 8, 8), ("372", 7, 8), ("373", 8, 8), ("374", 8, 8), ("375", 9, 9), ("376", 6, 6),
    ("377", 8, 9), ("380", 9, 9), ("381", 8, 9), ("382", 8, 8), ("385", 8, 9), ("386", 8, 8),
    ("387", 8, 8), ("389", 8, 8), ("420", 9, 9), ("421", 9, 9), ("423", 7, 7), ("852", 8, 8),
    ("853", 8, 8), ("855", 8, 9), ("856", 8, 10), ("880", 10, 10), ("886", 8, 9), ("960", 7, 7),
    ("961", 7, 8), ("962", 8, 9), ("963", 9, 9), ("964", 10, 10), ("965", 8, 8), ("966", 9, 9),
    ("967", 9, 9), ("968", 8, 8), ("970", 9, 9), ("971", 8, 9), ("972", 8, 9), ("973", 8, 8),
    ("974", 8, 8), ("975", 8, 8), ("976", 8, 8), ("977", 10, 10), ("992", 9, 9), ("993", 8, 8),
    ("994", 9, 9), ("995", 9, 9), ("996", 9, 9), ("998", 9, 9),
];

/// Look up the calling code at the start of `d` (digit values).
pub(crate) fn country_of(d: &[u8]) -> Option<(usize, u8, u8)> {
    for cc_len in 1..=3 {
        if d.len() <= cc_len {
            return None;
        }
        let code: String = d[..cc_len].iter().map(|x| char::from(b'0' + x)).collect();
        if let Some(&(_, lo, hi)) = COUNTRIES.iter().find(|(c, _, _)| *c == code) {
            return Some((cc_len, lo, hi));
        }
    }
    None
}

/// Is `d` (digits after `+` / `00`, any "(0)" removed) a plausible international number?
pub(crate) fn international_ok(d: &[u8]) -> bool {
    let Some((cc_len, lo, hi)) = country_of(d) else {
        return false;
    };
    let mut nsn = &d[cc_len..];
    // "+49 030 …" is a common mistake: tolerate one trunk zero.
    // Italy keeps its leading zero in international format.
    if nsn.first() == Some(&0) && d[..cc_len] != [3, 9] {
        nsn = &nsn[1..];
    }
    let n = nsn.len();
    if n < usize::from(lo) || n > usize::from(hi) {
        return false;
    }
    if cc_len == 1 && d[0] == 1 {
        // NANP: area code and exchange start with 2–9.
        return nsn[0] >= 2 && nsn[3] >= 2;
    }
    true
}

/// Group lengths of a national number as written ("030 1234 567" → [3, 4, 3]).
pub(crate) fn national_ok(d: &[u8], groups: &[usize], cue: bool) -> bool {
    let n = d.len();
    let grouped = groups.len() >= 2;
    // NANP: (AAA) EEE-NNNN, optionally with a leading 1.
    let nanp = |x: &[u8]| x.len() == 10 && x[0] >= 2 && x[3] >= 2;
    if n == 10 && nanp(d) && (groups == [3, 3, 4] || (cue && (groups == [10] || groups == [3, 7])))
    {
        return true;
    }
    if n == 11 && d[0] == 1 && nanp(&d[1..]) && groups == [1, 3, 3, 4] {
        return true;
    }
    // Trunk-zero countries (UK, DE, FR, IT landlines, NL, BE, AT, CH …).
    if d[0] == 0 && d.get(1).is_some_and(|&x| x != 0) && (9..=12).contains(&n) {
        // The first group is the trunk zero and an area code of 1–4 digits.
        if grouped && groups.iter().all(|&g| g >= 2) && groups[0] <= 5 {
            return true;
        }
        return cue;
    }
    // Spain: 9 digits starting 6/7/8/9.
    if n == 9 && (6..=9).contains(&d[0]) {
        let es = [[3, 3, 3].as_slice(), &[3, 2, 2, 2], &[2, 3, 2, 2], &[3, 6]];
        if es.contains(&groups) {
            return true;
        }
        return cue && groups.len() == 1;
    }
    // Portugal landlines: 2x xxx xxxx.
    if n == 9 && d[0] == 2 && groups == [2, 3, 4] {
        return true;
    }
    // Russia and Kazakhstan: trunk 8, then a 10-digit number: 8 (495) 123-45-67, 8 912 345 6789.
    if n == 11 && d[0] == 8 && groups.len() >= 3 {
        let ru = [[1, 3, 3, 2, 2].as_slice(), &[1, 3, 3, 4], &[1, 3, 7]];
        if ru.contains(&groups) {
            return true;
        }
    }
    // Greece: 10 digits, landlines 2x…, mobiles 69…: 2310 123456, 6944 123 456.
    if n == 10 && ((d[0] == 2 && d[1] != 0) || (d[0] == 6 && d[1] == 9)) {
        let gr = [[4, 6].as_slice(), &[4, 3, 3], &[3, 3, 4]];
        if gr.contains(&groups) {
            return true;
        }
    }
    // Brazil: area code and an 8- or 9-digit number: 11 98765-4321, 21 3456-7890.
    if (n == 10 || n == 11) && d[0] != 0 && (groups == [2, 4, 4] || groups == [2, 5, 4]) {
        return true;
    }
    // Eight-digit plans without a trunk prefix (Denmark, Norway): 32 12 45 78, 412 34 567.
    // Two groups of four are left to cues: house numbers and years look the same.
    if n == 8 && d[0] >= 2 && (groups == [2, 2, 2, 2] || groups == [3, 2, 3]) {
        return true;
    }
    // Poland: 9 digits in threes, mobiles 5xx/6xx/7xx/8xx: 512 345 678.
    if n == 9 && (4..=8).contains(&d[0]) && groups == [3, 3, 3] {
        return true;
    }
    // Italy mobiles: 3xx xxx xxxx.
    if n == 10 && d[0] == 3 {
        let it = [[3, 3, 4].as_slice(), &[3, 7], &[3, 4, 3], &[3, 3, 2, 2]];
        if it.contains(&groups) {
            return true;
        }
        return cue && groups.len() == 1;
    }
    // Six digits in pairs ("84 23 30": Greenland, the Faroes, small exchanges) only by a cue.
    if n == 6 {
        return cue && groups == [2, 2, 2];
    }
    cue && (7..=12).contains(&n) && groups.iter().all(|&g| g >= 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::digits_of;

    #[test]
    fn international_lengths() {
        assert!(international_ok(&digits_of("49 30 12345678")));
        assert!(international_ok(&digits_of("44 20 7946 0958")));
        assert!(international_ok(&digits_of("1 415 555 2671")));
        assert!(international_ok(&digits_of("33 6 12 34 56 78")));
        assert!(international_ok(&digits_of("39 02 1234 5678")));
        assert!(!international_ok(&digits_of("1 115 555 2671")));
        assert!(!international_ok(&digits_of("33 6 12 34")));
        assert!(!international_ok(&digits_of("999 1234567")));
    }

    #[test]
    fn national_plans() {
        assert!(national_ok(&digits_of("4155552671"), &[3, 3, 4], false));
        assert!(!national_ok(&digits_of("4155552671"), &[10], false));
        assert!(national_ok(&digits_of("4155552671"), &[10], true));
        assert!(national_ok(
            &digits_of("0612345678"),
            &[2, 2, 2, 2, 2],
            false
        ));
        assert!(national_ok(&digits_of("02079460958"), &[3, 4, 4], false));
        assert!(national_ok(&digits_of("612345678"), &[3, 3, 3], false));
        assert!(national_ok(&digits_of("3331234567"), &[3, 3, 4], false));
        assert!(!national_ok(&digits_of("123456789"), &[3, 3, 3], false));
    }
}

mod finder {
    use super::{extension_len, international_ok, national_ok};
    use crate::cues::{CueKind, Cues};
    use crate::detector::{Candidate, score};
    use crate::text::{next_char, prev_char};
    use crate::{CurateError, EntityType};
    use regex::Regex;

    /// Finds phone-number candidates and validates them against the numbering tables.
    pub(crate) struct PhoneFinder {
        re: Regex,
    }

    struct Group {
        s: usize,
        e: usize,
    }

    fn lens_of(gl: &[Group]) -> Vec<usize> {
        gl.iter().map(|g| g.e - g.s).collect()
    }

    impl PhoneFinder {
        pub(crate) fn new() -> Result<Self, CurateError> {
            Ok(PhoneFinder {
                re: Regex::new(r"(?:\+[ ]?|\(\+?)?\d[\d \-./()\u{a0}]{4,26}\d\)?")
                    .map_err(|e| CurateError::pattern("phone", e))?,
            })
        }

        pub(crate) fn find(&self, text: &str, cues: &Cues, out: &mut Vec<Candidate>) {
            for m in self.re.find_iter(text) {
                self.candidate(text, m.start(), m.end(), cues, out);
            }
        }

        fn candidate(&self, text: &str, s: usize, e: usize, cues: &Cues, out: &mut Vec<Candidate>) {
            let b = text.as_bytes();
            // A comma before the number counts only after a digit ("1,234,567"), not in a list
            // ("…-Office,021 259 903").
            let after_digit_comma = prev_char(text, s) == Some(',')
                && text[..s - 1]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_ascii_digit());
            if after_digit_comma
                || prev_char(text, s).is_some_and(|c| {
                    c.is_alphanumeric()
                        || matches!(c, '_' | '-' | '.' | '/' | '#' | '$' | '€' | '£')
                })
            {
                return;
            }
            // Split into digit groups; a separator run may be one of " ", "-", ".", "/", " - ",
            // "(", ")", ") ", " (", "(0)", " (0) ". Anything else ends the candidate.
            let mut groups: Vec<Group> = Vec::new();
            let mut plus = false;
            let mut trunk_paren = false;
            let mut i = s;
            if b[i] == b'+' {
                plus = true;
                i += 1;
            } else if b[i] == b'(' && b.get(i + 1) == Some(&b'+') {
                plus = true;
                i += 2;
            }
            let mut seps: Vec<&str> = Vec::new();
            while i < e {
                let sep_start = i;
                while i < e && !b[i].is_ascii_digit() {
                    i += 1;
                }
                let mut sep = &text[sep_start..i];
                if sep.contains("(0)") {
                    trunk_paren = true;
                    sep = " ";
                }
                if !groups.is_empty() || !sep.is_empty() {
                    let clean = sep.trim_matches(|c| c == '(' || c == ')');
                    let valid =
                        matches!(clean, "" | " " | "-" | "." | "/" | " - " | " / " | "\u{a0}")
                            || (sep.contains(['(', ')']) && clean.trim().is_empty());
                    if !valid {
                        break;
                    }
                    if !groups.is_empty() {
                        seps.push(sep);
                    }
                }
                if i >= e {
                    break;
                }
                let gs = i;
                while i < e && b[i].is_ascii_digit() {
                    i += 1;
                }
                groups.push(Group { s: gs, e: i });
            }
            if groups.is_empty() {
                return;
            }
            // Mixed separators ("2024-03-15 10") and dotted triples (dates, versions) are not phones.
            let lens: Vec<usize> = groups.iter().map(|g| g.e - g.s).collect();
            let card_like = lens.len() >= 4 && lens.iter().take(4).all(|&l| l == 4);
            if card_like {
                return;
            }
            let intl = plus || text[groups[0].s..].starts_with("00");
            // The closest cue decides: `"phone": "…", "tracking": "…"` is a tracking number.
            let nearest = cues.nearest_cue_before(&[CueKind::Phone, CueKind::Negative], s, 32);
            // "Phone: 417 4336", or a label on its own line: "Phone:\n417 4336".
            let phone_on_line = cues.before_same_line(text, CueKind::Phone, s, 32)
                || cues
                    .nearest_cue_before(&[CueKind::Phone], s, 32)
                    .is_some_and(|c| {
                        text[c.end..s]
                            .trim_matches([' ', ':', '\n', '\r', '\t', '-'])
                            .is_empty()
                    });
            // A negative cue counts when it labels the number ("account 1234…", "order: …"), not
            // when words stand between them ("the phone on the account is 555-…").
            let negative = nearest.is_some_and(|c| {
                c.kind == CueKind::Negative
                    && !(phone_on_line && {
                        let gap = text[c.end..s]
                            .trim_matches([' ', ':', '#', '.', '\t', '"', '\'', '=', ',']);
                        !gap.is_empty()
                            && !matches!(
                                gap.to_ascii_lowercase().as_str(),
                                "no" | "nr" | "number" | "num" | "id"
                            )
                    })
            });
            // A number alone on its line in a signature: "Cordialement,\nAnne Roux\n0612345678".
            let signature = text[..s]
                .rsplit('\n')
                .next()
                .is_some_and(|l| l.trim().is_empty())
                && text[e..]
                    .split('\n')
                    .next()
                    .is_some_and(|l| l.trim().is_empty())
                && cues
                    .nearest_cue_before(&[CueKind::Signoff], s, 100)
                    .is_some_and(|c| text[c.end..s].matches('\n').count() <= 3);
            let line_cue = (phone_on_line || signature) && !negative;
            let mut n = groups.len();
            while n >= 1 {
                let gl = &groups[..n];
                let start = if plus || b[s] == b'(' { s } else { gl[0].s };
                let mut end = gl[n - 1].e;
                if text[end..].starts_with(')') && text[start..end].contains('(') {
                    end += 1;
                }
                let seps_here = &seps[..n.saturating_sub(1)];
                let kinds: Vec<&str> = seps_here
                    .iter()
                    .map(|x| x.trim_matches(|c| c == '(' || c == ')' || c == ' '))
                    .filter(|x| !x.is_empty())
                    .collect();
                // One separator after an area code, another inside the number ("11 98765-4321",
                // "23/286-0129"): the rest must agree.
                let area_first = kinds.len() >= 2
                    && matches!(
                        seps_here.first().map(|x| x.trim_matches(['(', ')'])),
                        Some(" " | "/")
                    )
                    && kinds[1..].windows(2).all(|w| w[0] == w[1]);
                let mixed = !area_first && kinds.windows(2).any(|w| w[0] != w[1]);
                let dotted = kinds.first() == Some(&".") && n == 3 && lens_of(gl) != [3, 3, 4];
                // An extension glued to the number ("955-1033x315", "… ext. 12") belongs to it.
                let ext_len = extension_len(&text[end..]);
                let end = end + ext_len;
                // A label after the number: "555 0132 office", "…-Fax", "… (mobile)".
                let line_cue = line_cue || (!negative && super::labelled_after(&text[end..]));
                let bad_next = next_char(text, end)
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '@')
                    || (text[end..].starts_with(['.', '-', '/'])
                        && text[end + 1..].starts_with(|c: char| c.is_ascii_digit()));
                if !mixed && !dotted && !bad_next {
                    let mut digits: Vec<u8> = Vec::with_capacity(16);
                    for g in gl {
                        digits.extend(text[g.s..g.e].bytes().map(|x| x - b'0'));
                    }
                    let ok = if intl {
                        let d = if plus {
                            &digits[..]
                        } else {
                            &digits[2.min(digits.len())..]
                        };
                        let _ = trunk_paren;
                        international_ok(d)
                    } else {
                        let glens: Vec<usize> = gl.iter().map(|g| g.e - g.s).collect();
                        !negative && national_ok(&digits, &glens, line_cue)
                    };
                    if ok {
                        let sc = if intl {
                            score::PHONE_INTL
                        } else {
                            score::PHONE
                        };
                        out.push(Candidate::new(EntityType::Phone, start, end, sc));
                        return;
                    }
                }
                n -= 1;
            }
        }
    }
}

/// Words that label a phone number written after it, in signatures and contact blocks.
const PHONE_LABELS_AFTER: &[&str] = &[
    "office", "fax", "mobile", "cell", "home", "work", "direct", "landline", "tel", "phone",
];

/// Whether `rest` (the text right after a number) opens with a phone label: "-Office",
/// " fax", " (mobile)", " – cell".
fn labelled_after(rest: &str) -> bool {
    let r = rest.trim_start_matches([' ', '-', '(', '–', '\u{a0}']);
    if r.len() == rest.len() && !rest.is_empty() {
        return false;
    }
    let word: String = r
        .chars()
        .take_while(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect();
    PHONE_LABELS_AFTER.contains(&word.as_str())
}

/// Length of a phone extension at the start of `rest`: "x315", " ext. 12", " x 7"; 0 if none.
fn extension_len(rest: &str) -> usize {
    for p in [
        "x", " x", " x ", " ext. ", " ext ", " ext.", "ext.", " Ext. ",
    ] {
        if let Some(r) = rest.strip_prefix(p) {
            let digits = r.bytes().take_while(u8::is_ascii_digit).count();
            let after = r[digits..].chars().next();
            if (1..=5).contains(&digits) && !after.is_some_and(char::is_alphanumeric) {
                return p.len() + digits;
            }
        }
    }
    0
}

pub(crate) use finder::PhoneFinder;

#[cfg(test)]
mod detect_tests {
    use crate::EntityType::*;
    use crate::detector::test_support::*;

    #[test]
    fn phones() {
        for (t, v) in [
            ("call +44 20 7946 0958 today", "+44 20 7946 0958"),
            ("US (415) 555-2671.", "(415) 555-2671"),
            ("or 415-555-2671", "415-555-2671"),
            ("tel 415.555.2671", "415.555.2671"),
            ("Telefon 030 12345678", "030 12345678"),
            ("mobil +49 (0)171 2345678", "+49 (0)171 2345678"),
            ("appelez le 06 12 34 56 78", "06 12 34 56 78"),
            ("numéro 01.23.45.67.89", "01.23.45.67.89"),
            ("móvil 612 345 678", "612 345 678"),
            ("cell 333 123 4567", "333 123 4567"),
            ("bel 06-12345678", "06-12345678"),
            ("0049 89 1234567 ist erreichbar", "0049 89 1234567"),
            ("Desk: (082)955-1033x315", "(082)955-1033x315"),
            // National plans, no cue needed.
            ("Zvonite 8 (812) 407-19-33 do obeda", "8 (812) 407-19-33"),
            ("Einfach 6947 318 220 wählen", "6947 318 220"),
            ("Me liga no 21 98412-7730 amanhã", "21 98412-7730"),
            ("Ring til 43 71 29 05 i morgen", "43 71 29 05"),
            ("Jeg svarer på 913 48 226 etter fire", "913 48 226"),
            ("Dzwoń na 603 118 274 po południu", "603 118 274"),
            // Alone on its line under a sign-off.
            ("Bien à vous,\nOdile Carrasset\n0798113524", "0798113524"),
            ("Un saludo,\nIñaki Berrocal\n954771208\n", "954771208"),
        ] {
            finds(t, Phone, v);
        }
        // A bare number on its own line with no sign-off above it is not a phone.
        none_of("Totals\n0798113524", Phone);
        // A pair of years, or an order number with a year, is not a number of any plan.
        none_of("Compare the seasons 2019 2020 side by side.", Phone);
        none_of("Auftrag 2024/118832 wurde erfasst.", Phone);
    }

    #[test]
    fn phones_labelled_after_the_number() {
        let block = "Noor Haddad\nAtlas Freight\n7 Quay Road, Leith\n0131 496 0021 office\n0131 496 0099-Fax,07700 900 431 (mobile)\n";
        for v in ["0131 496 0021", "0131 496 0099", "07700 900 431"] {
            finds(block, Phone, v);
        }
        finds("Reach the depot on 71 48 22 - cell", Phone, "71 48 22");
        finds("Ring me on 35 61 07 after six.", Phone, "35 61 07");
        // A label word glued to a number, or six digits with no cue, are not phones.
        none_of("Route 2024 office hours: 9 to 5", Phone);
        none_of("Batch 35 61 07 shipped.", Phone);
    }

    #[test]
    fn phone_lookalikes() {
        for t in [
            "4155552671",                 // ungrouped, no cue
            "+1 115 555 2671",            // NANP area code starts with 1
            "+33 6 12 34",                // too short for France
            "order 030 12345678",         // order number
            "on 2024-03-15 10:22",        // timestamp
            "dates 12.05.2023 and 1.2.3", // date, version
            "price 1.299,00 EUR",
            "articolo 027679-561",
            "\"contact_phone\": \"030 47739928\", \"tracking\": \"981216922271\"",
        ] {
            let f = found(t);
            let phones: Vec<_> = f.iter().filter(|(k, _)| *k == Phone).collect();
            assert!(
                phones.len() <= usize::from(t.contains("contact_phone")),
                "{t}: {f:?}"
            );
        }
    }
}
