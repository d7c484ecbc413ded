//! Dates: a date next to a birth cue is a DATE_OF_BIRTH; any other date or timestamp only
//! shields its digits from the phone and id recognisers.

use crate::cues::{CueKind, Cues};
use crate::detector::{Candidate, score};
use crate::text::{next_char, prev_char};
use crate::{CurateError, EntityType};
use regex::Regex;

pub(crate) struct Dates {
    date: Regex,
    timestamp: Regex,
}

const MONTHS: &str = "january|february|march|april|may|june|july|august|september|october|november|december|\
jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|\
januar|februar|märz|maerz|mai|juni|juli|oktober|dezember|jän|mär|okt|dez|\
janvier|février|fevrier|mars|avril|juin|juillet|août|aout|septembre|octobre|novembre|décembre|decembre|janv|févr|fév|avr|juil|déc|\
enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre|ene|abr|ago|dic|\
gennaio|febbraio|aprile|maggio|giugno|luglio|settembre|ottobre|dicembre|gen|mag|giu|lug|set|ott|\
januari|februari|maart|mei|augustus|oktober|okt|mrt|\
janeiro|fevereiro|março|marco|maio|junho|julho|setembro|outubro|novembro|dezembro|fev|out|dez";

impl Dates {
    pub(crate) fn new() -> Result<Self, CurateError> {
        let numeric = r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[./\-]\d{1,2}[./\-](?:\d{4}|\d{2})";
        let text_dmy = format!(
            r"\d{{1,2}}(?:st|nd|rd|th|er|º|°)?\.?\s+(?:de\s+|of\s+)?(?:{MONTHS})\.?,?\s+(?:de\s+)?\d{{4}}"
        );
        let text_mdy = format!(r"(?:{MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}");
        // "14-Mar-1987", "14/Mar/87"; "14 March '87".
        let dashed = format!(
            r"\d{{1,2}}[-/](?:{MONTHS})\.?[-/]?(?:\d{{4}}|\d{{2}})|\d{{1,2}}\s+(?:{MONTHS})\.?,?\s+['’]\d{{2}}"
        );
        let pat = format!(r"(?i:{numeric}|{text_dmy}|{text_mdy}|{dashed})");
        Ok(Dates {
            date: Regex::new(&pat).map_err(|e| CurateError::pattern("date", e))?,
            timestamp: Regex::new(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+\-]\d{2}:?\d{2})?|\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?")
                .map_err(|e| CurateError::pattern("timestamp", e))?,
        })
    }

    pub(crate) fn find(&self, text: &str, cues: &Cues, out: &mut Vec<Candidate>) {
        if !text.bytes().any(|b| b.is_ascii_digit()) {
            return;
        }
        for m in self.date.find_iter(text) {
            let (s, e) = (m.start(), m.end());
            if prev_char(text, s).is_some_and(|c| c.is_alphanumeric())
                || next_char(text, e).is_some_and(|c| c.is_alphanumeric())
            {
                continue;
            }
            if prev_char(text, s).is_some_and(|c| matches!(c, '.' | '-' | '/' | '+')) {
                continue;
            }
            // Part of a longer dotted or dashed number ("01.07.15.77.99").
            if text[e..].starts_with(['.', '-', '/'])
                && text[e + 1..].starts_with(|c: char| c.is_ascii_digit())
            {
                continue;
            }
            if !plausible(m.as_str()) {
                continue;
            }
            let dob = cues.before(CueKind::Dob, s, 6)
                || (cues.before_same_line(text, CueKind::Dob, s, 48) && {
                    // No sentence end between the cue and the date.
                    let from = s.saturating_sub(48);
                    let from = (from..s).find(|&i| text.is_char_boundary(i)).unwrap_or(s);
                    cues.list.iter().any(|c| {
                        c.kind == CueKind::Dob
                            && c.end >= from
                            && c.end <= s
                            && (!text[c.end..s].contains(". ") || answers(&text[c.end..s]))
                    })
                });
            if dob {
                out.push(Candidate::new(EntityType::DateOfBirth, s, e, score::DOB));
            } else {
                out.push(Candidate::block(s, e, score::DATE_BLOCK));
            }
        }
        for m in self.timestamp.find_iter(text) {
            out.push(Candidate::block(m.start(), m.end(), score::DATE_BLOCK));
        }
    }
}

/// Whether the sentence right before a date only opens an answer to the sentence before it
/// ("… your date of birth. It's 3/29/1982"): the birth cue still applies across the break.
fn answers(between: &str) -> bool {
    let last = between.rsplit(". ").next().unwrap_or_default();
    matches!(
        last.trim().to_lowercase().replace('’', "'").as_str(),
        "it's" | "it is" | "that's" | "that is" | "mine is" | "mine's" | "it was"
    )
}

/// Reject impossible numeric dates (month 13, day 32 …).
fn plausible(s: &str) -> bool {
    let parts: Vec<&str> = s.split(['-', '/', '.']).collect();
    if parts.len() != 3
        || !parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return true; // a textual date: the regex already constrained it
    }
    let n: Vec<u32> = parts.iter().map(|p| p.parse().unwrap_or(0)).collect();
    let (y, a, b) = if parts[0].len() == 4 {
        (n[0], n[1], n[2])
    } else {
        (n[2], n[0], n[1])
    };
    let _ = y;
    let dm = (1..=31).contains(&a) && (1..=12).contains(&b);
    let md = (1..=12).contains(&a) && (1..=31).contains(&b);
    if parts[0].len() == 4 {
        (1..=12).contains(&a) && (1..=31).contains(&b)
    } else {
        dm || md
    }
}

#[cfg(test)]
mod tests {
    use crate::EntityType::*;
    use crate::detector::test_support::*;

    #[test]
    fn dates_of_birth() {
        finds("DOB: 1985-03-12", DateOfBirth, "1985-03-12");
        finds(
            "DOB: 07-Nov-1979, allergies none",
            DateOfBirth,
            "07-Nov-1979",
        );
        finds("date of birth: 2 June '64", DateOfBirth, "2 June '64");
        finds(
            "born on January 21, 1998 in Leeds",
            DateOfBirth,
            "January 21, 1998",
        );
        finds("geboren am 12.05.1980", DateOfBirth, "12.05.1980");
        finds("née le 3 février 1975", DateOfBirth, "3 février 1975");
        finds(
            "fecha de nacimiento 23 de abril de 1996",
            DateOfBirth,
            "23 de abril de 1996",
        );
        finds("nato il 1 settembre 1976", DateOfBirth, "1 settembre 1976");
        finds(
            "Utente: Benedita Quaresma, nascida a 14 de fevereiro de 1988.",
            DateOfBirth,
            "14 de fevereiro de 1988",
        );
        finds("geboortedatum 14-07-1969", DateOfBirth, "14-07-1969");
        finds(
            "{\"date_of_birth\": \"1962-08-26\"}",
            DateOfBirth,
            "1962-08-26",
        );
    }

    #[test]
    fn a_birth_date_given_as_the_answer_to_its_question() {
        finds(
            "Could you confirm the date of birth. It's 7/4/1979, I think.",
            DateOfBirth,
            "7/4/1979",
        );
        finds("Her birthday? It is 12/1/1990.", DateOfBirth, "12/1/1990");
        none_of(
            "Date of birth is on file. The renewal is 3/29/2026.",
            DateOfBirth,
        );
    }

    #[test]
    fn other_dates_are_not_birth_dates() {
        none_of("Invoice dated 2024-03-15, due 15/04/2024.", DateOfBirth);
        none_of("Born in Paris. The meeting is on 12 May 2024.", DateOfBirth);
        none_of("DOB: 2024-13-45", DateOfBirth);
    }
}
