//! Payment cards (Luhn + issuer ranges) and IBANs (per-country length + mod-97).

use crate::checksum::{card_issuer_ok, iban_length, iban_ok, luhn};
use crate::cues::{CueKind, Cues};
use crate::detector::{Candidate, score};
use crate::text::{next_char, prev_char};
use crate::{CurateError, EntityType};
use regex::Regex;

pub(crate) struct Finance {
    card: Regex,
    iban: Regex,
}

impl Finance {
    pub(crate) fn new() -> Result<Self, CurateError> {
        Ok(Finance {
            card: Regex::new(r"\d[\d \-]{10,28}\d").map_err(|e| CurateError::pattern("card", e))?,
            iban: Regex::new(r"[A-Z]{2}\d{2}[ \-]?[A-Z0-9]")
                .map_err(|e| CurateError::pattern("iban", e))?,
        })
    }

    pub(crate) fn find(&self, text: &str, cues: &Cues, out: &mut Vec<Candidate>) {
        self.cards(text, cues, out);
        self.ibans(text, out);
    }

    fn cards(&self, text: &str, cues: &Cues, out: &mut Vec<Candidate>) {
        for m in self.card.find_iter(text) {
            let s = m.start();
            if prev_char(text, s)
                .is_some_and(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '+' | '/' | '_'))
            {
                continue;
            }
            // Split into digit groups with their separators.
            let mut groups: Vec<(usize, usize)> = Vec::new();
            let mut seps: Vec<u8> = Vec::new();
            let b = text.as_bytes();
            let mut i = s;
            let mut ok = true;
            while i < m.end() {
                let gs = i;
                while i < m.end() && b[i].is_ascii_digit() {
                    i += 1;
                }
                groups.push((gs, i));
                if i < m.end() {
                    if i + 1 < m.end() && !b[i + 1].is_ascii_digit() {
                        ok = false; // double separator: stop here
                        break;
                    }
                    seps.push(b[i]);
                    i += 1;
                }
            }
            let _ = ok;
            // Try the longest prefix of groups that forms a valid card.
            let mut n = groups.len();
            while n >= 1 {
                let (gs, ge) = (groups[0].0, groups[n - 1].1);
                let lens: Vec<usize> = groups[..n].iter().map(|g| g.1 - g.0).collect();
                let sep_ok = seps[..n.saturating_sub(1)].windows(2).all(|w| w[0] == w[1]);
                if sep_ok
                    && card_layout_ok(&lens)
                    && !next_char(text, ge).is_some_and(|c| c.is_alphanumeric())
                {
                    let digits: Vec<u8> = text[gs..ge]
                        .bytes()
                        .filter(u8::is_ascii_digit)
                        .map(|x| x - b'0')
                        .collect();
                    // Behind a card cue ("card 3503…", "Karte Nr."), any Luhn-valid number of a
                    // card's length counts: issuer tables are never complete.
                    let cued = cues.before_same_line(text, CueKind::Card, gs, 40);
                    if luhn(&digits) && (card_issuer_ok(&digits) || cued) {
                        let negative = cues.before_same_line(text, CueKind::Negative, gs, 24)
                            && !cues.before(CueKind::Card, gs, 40);
                        if !negative {
                            out.push(Candidate::new(EntityType::CreditCard, gs, ge, score::CARD));
                        }
                        break;
                    }
                }
                n -= 1;
            }
        }
    }

    fn ibans(&self, text: &str, out: &mut Vec<Candidate>) {
        let b = text.as_bytes();
        for m in self.iban.find_iter(text) {
            let s = m.start();
            if prev_char(text, s).is_some_and(|c| c.is_alphanumeric()) {
                continue;
            }
            let Some(len) = iban_length(&b[s..s + 2]) else {
                continue;
            };
            let mut compact: Vec<u8> = Vec::with_capacity(len);
            let mut i = s;
            let mut last_end = s;
            while i < b.len() && compact.len() < len {
                let c = b[i];
                if c.is_ascii_uppercase() || c.is_ascii_digit() {
                    compact.push(c);
                    i += 1;
                    last_end = i;
                } else if (c == b' ' || c == b'-')
                    && i + 1 < b.len()
                    && b[i + 1].is_ascii_alphanumeric()
                    && compact.len() >= 4
                {
                    i += 1;
                } else {
                    break;
                }
            }
            if compact.len() != len
                || next_char(text, last_end).is_some_and(|c| c.is_alphanumeric())
            {
                continue;
            }
            if iban_ok(&compact) {
                out.push(Candidate::new(EntityType::Iban, s, last_end, score::IBAN));
            }
        }
    }
}

fn card_layout_ok(lens: &[usize]) -> bool {
    let total: usize = lens.iter().sum();
    if !(12..=19).contains(&total) {
        return false;
    }
    match lens {
        [_] => true,
        [4, 6, 5] | [4, 6, 4] => true,
        _ => {
            let (last, head) = lens.split_last().unwrap_or((&0, &[]));
            head.iter().all(|&l| l == 4) && (1..=4).contains(last)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::EntityType::*;
    use crate::detector::test_support::*;

    #[test]
    fn cards() {
        finds(
            "card 4111 1111 1111 1111 exp 12/27",
            CreditCard,
            "4111 1111 1111 1111",
        );
        finds("Amex 3782-822463-10005", CreditCard, "3782-822463-10005");
        finds("mc 5555555555554444.", CreditCard, "5555555555554444");
        finds(
            "new mc 2223-0031-2200-3222",
            CreditCard,
            "2223-0031-2200-3222",
        );
        none_of("card 4111 1111 1111 1112", CreditCard); // fails Luhn
        none_of("9111111111111111", CreditCard); // no issuer
        none_of("4111 1111-1111 1111", CreditCard); // mixed separators
        none_of("order 4539578763621486", CreditCard); // Luhn-valid but an order number
    }

    #[test]
    fn ibans() {
        finds(
            "IBAN DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX",
            Iban,
            "DE89 3704 0044 0532 0130 00",
        );
        finds(
            "pay to GB82WEST12345698765432.",
            Iban,
            "GB82WEST12345698765432",
        );
        finds(
            "FR14 2004 1010 0505 0001 3M02 606",
            Iban,
            "FR14 2004 1010 0505 0001 3M02 606",
        );
        none_of("DE89 3704 0044 0532 0130 01", Iban); // bad check digits
        none_of("DE89370400440532013", Iban); // too short for DE
        none_of("XX89370400440532013000", Iban); // unknown country
    }
}
