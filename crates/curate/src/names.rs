//! Person names from the structure of a text rather than from a cue word right before them:
//! names with a middle initial ("Ada K. Lovell"), the name line that opens a signature or postal
//! block, speakers of a dialogue, people listed after a plural person noun ("founders: A, B and
//! C"), the speaker and addressee of a quotation ("… said Ola to Kim"), "lives in" subjects,
//! the subject of a sentence that goes on with "his" or "her" ("Ivo had lent Ola his car"),
//! "named her" objects, owners of personal things ("Kim's address", "Ola's wife"), and, once a
//! full name is found, its given name or surname elsewhere in
//! the same text ("… sung by Ada Lovell. Lovell's song …").

use crate::CurateError;
use crate::detector::{Candidate, score};
use crate::lexicon::Lexicon;
use crate::text::{word_end, word_start};
use crate::{EntityType, detector};
use regex::Regex;

/// One capitalised name word: "Ada", "McKenzie", "D'Arcy", "Jean-Luc", "Ólafsdóttir".
const WORD: &str = r"\p{Lu}[\p{Ll}\p{M}]+(?:['’]?\p{Lu}[\p{Ll}\p{M}]+)?(?:-\p{Lu}[\p{Ll}\p{M}]+)?";

/// Plural nouns for people that introduce a list of names.
const PEOPLE_NOUNS: &str = "founders|co-founders|cofounders|authors|co-authors|speakers|guests|attendees|participants|panelists|colleagues|siblings|owners|winners|members|players|hosts|organisers|organizers|reviewers|editors|witnesses|tenants|passengers";

/// Words that open a "Label: value" line and are not speakers of a dialogue.
const LINE_LABELS: &[&str] = &[
    "note",
    "notes",
    "subject",
    "from",
    "to",
    "cc",
    "date",
    "time",
    "user",
    "bot",
    "assistant",
    "system",
    "human",
    "agent",
    "customer",
    "answer",
    "question",
    "input",
    "output",
    "example",
    "step",
    "warning",
    "error",
    "title",
    "summary",
    "description",
    "name",
    "address",
    "phone",
    "email",
    "e-mail",
    "mobile",
    "desk",
    "fax",
    "website",
    "tip",
    "update",
    "status",
    "result",
    "reply",
    "response",
    "request",
    "task",
    "goal",
    "context",
    "instructions",
    "model",
    "tool",
    "source",
    "reference",
    "location",
    "price",
    "total",
    "query",
    "hint",
    "comment",
    "edit",
];

pub(crate) struct NameRules {
    initial: Regex,
    list: Regex,
    said: Regex,
    speaker: Regex,
    lives: Regex,
    named: Regex,
    apposition: Regex,
    possessive: Regex,
    vocative: Regex,
    opener: Regex,
    subject: Regex,
    item: Regex,
}

impl NameRules {
    pub(crate) fn new() -> Result<Self, CurateError> {
        let re = |name: &str, p: &str| Regex::new(p).map_err(|e| CurateError::pattern(name, e));
        let two = format!("{WORD}(?: {WORD})?");
        Ok(NameRules {
            initial: re(
                "person initial",
                &format!(r"({WORD}) \p{{Lu}}\.? ({WORD}(?: {WORD})?)"),
            )?,
            list: re(
                "person list",
                &format!(
                    r"(?i:\b(?:{PEOPLE_NOUNS}))(?:\s*:\s*|\s+(?:are|were|include|included|:)\s+)({two}(?:,\s*{two})*,?\s+(?:and|&)\s+{two})"
                ),
            )?,
            said: re(
                "person said",
                &format!(r#"[!?,.]["”’']?\s+said\s+({two})(?:\s+to\s+({two}))?"#),
            )?,
            speaker: re(
                "person speaker",
                &format!(r"(?m)^[ \t]*({two}):[ \t]+[\p{{L}}\x22“']"),
            )?,
            lives: re(
                "person lives",
                &format!(r"({two}) lives (?:on|in|at|with|near)\b"),
            )?,
            named: re(
                "person named",
                &format!(r"\b(?:named|called) (?:him|her|them|the baby|the child) ({two})"),
            )?,
            apposition: re(
                "person apposition",
                &format!(
                    r#"({two}), (?:the|a|an|our|their|his|her) [^"\n:;]{{2,80}}?, (?:said|says|wrote|writes|added|adds|explained|told|noted|replied)\b"#
                ),
            )?,
            possessive: re(
                "person possessive",
                &format!(
                    r"({WORD})['’]s? (?:home address|address|phone number|phone|mobile|e-?mail|birthday|wife|husband|partner|mother|father|son|daughter|brother|sister|family|boss|killers?|funeral|passport|signature|song|album|novel|poem)\b"
                ),
            )?,
            vocative: re("person vocative", &format!(r", ({WORD})[!?]"))?,
            opener: re(
                "person opener",
                &format!(
                    r"(?m)^[ \t>\x22“]*({WORD}),[ ]+(?:can|could|would|will|do|did|are|is|have|may|please|I|you|we|let's|thanks|thank|don't|remember|where|what|when|why|how)\b"
                ),
            )?,
            subject: re(
                "person subject",
                &format!(
                    r#"(?m)(?:^|[.!?]["”]?[ ]+)(?:(?:Before|After|When|While|Since|Until|Once|Because|Although|Though|If|Unless|As|Then|Now)[ ]+)?({two}) (?:is|was|has|had|will|would|can|could|did|does|gave|told|took|made|said|went|got|left|sent|wrote|kept|[a-z]{{2,}}ed|[a-z]{{3,}}s) [^.!?\n]{{0,60}}?\b(?:his|her|him|he|she)\b"#
                ),
            )?,
            item: re("person list item", WORD)?,
        })
    }

    /// Add person candidates found by structure; `out` holds every other candidate already.
    pub(crate) fn find(&self, text: &str, lex: &Lexicon, out: &mut Vec<Candidate>) {
        if !text.contains(|c: char| c.is_uppercase()) {
            return;
        }
        let mut found = Vec::new();
        self.initials(text, lex, &mut found);
        self.signature(text, lex, out, &mut found);
        self.lists(text, lex, &mut found);
        self.speakers(text, lex, &mut found);
        // ", Ysolde?" at the end of a sentence and "Ysolde, can you …" opening a line: a
        // person addressed by name.
        // A name no lexicon knows at a sentence end needs a lower-case word before its comma:
        // "London, England?" is a place and its country.
        for c in self.vocative.captures_iter(text) {
            if let Some(g) = c.get(1)
                && addressed(g.as_str(), lex)
                && plausible(text, g.start(), g.end(), lex)
                && (lex.is_given(&g.as_str().to_lowercase())
                    || !text[..g.start().saturating_sub(2)]
                        .split_whitespace()
                        .next_back()
                        .is_some_and(|w| w.starts_with(char::is_uppercase)))
            {
                found.push((g.start(), g.end()));
            }
        }
        for c in self.opener.captures_iter(text) {
            if let Some(g) = c.get(1)
                && addressed(g.as_str(), lex)
                && plausible(text, g.start(), g.end(), lex)
            {
                found.push((g.start(), g.end()));
            }
        }
        for re in [
            &self.subject,
            &self.said,
            &self.lives,
            &self.named,
            &self.apposition,
            &self.possessive,
        ] {
            for c in re.captures_iter(text) {
                for g in c.iter().skip(1).flatten() {
                    if plausible(text, g.start(), g.end(), lex) {
                        found.push((g.start(), g.end()));
                    }
                }
            }
        }
        out.extend(
            found
                .iter()
                .map(|&(s, e)| Candidate::new(EntityType::Person, s, e, score::PERSON)),
        );
    }

    /// "Ada K. Lovell", "Tom I Holzman": a name word, a capital initial, a name word.
    fn initials(&self, text: &str, lex: &Lexicon, found: &mut Vec<(usize, usize)>) {
        for c in self.initial.captures_iter(text) {
            let (Some(all), Some(first), Some(last)) = (c.get(0), c.get(1), c.get(2)) else {
                continue;
            };
            if word_start(text, all.start())
                && word_end(text, all.end())
                && plausible(text, first.start(), first.end(), lex)
                && plausible(text, last.start(), last.end(), lex)
            {
                found.push((all.start(), all.end()));
            }
        }
    }

    /// The first line of a text (or of a block after a blank line) made of two to four name
    /// words, when an address, phone number or e-mail address follows within eight lines: the
    /// name that opens a signature or a postal block.
    fn signature(
        &self,
        text: &str,
        lex: &Lexicon,
        cands: &[Candidate],
        found: &mut Vec<(usize, usize)>,
    ) {
        let mut pos = 0;
        let mut block_start = true;
        for line in text.split_inclusive('\n') {
            let (ls, le) = (pos, pos + line.trim_end().len());
            pos += line.len();
            let body = line.trim();
            if body.is_empty() {
                block_start = true;
                continue;
            }
            let opens = block_start;
            block_start = false;
            if !opens {
                continue;
            }
            // Leading bullets or quoting marks ("> ", "• ", "??? ").
            let Some(off) = text[ls..le].find(|c: char| c.is_alphabetic()) else {
                continue;
            };
            let (s, e) = (ls + off, le);
            let words: Vec<&str> = text[s..e].split(' ').collect();
            if !(2..=4).contains(&words.len()) || !words.iter().all(|w| name_word_or_initial(w)) {
                continue;
            }
            if !plausible(text, s, e, lex) {
                continue;
            }
            // The block that follows (eight lines) holds an address, a phone or an e-mail.
            let tail_end = text[e..]
                .match_indices('\n')
                .nth(8)
                .map_or(text.len(), |(i, _)| e + i);
            let followed = cands.iter().any(|c| {
                c.start >= e
                    && c.start < tail_end
                    && matches!(
                        c.kind,
                        Some(EntityType::StreetAddress | EntityType::Phone | EntityType::Email)
                    )
            });
            if followed {
                found.push((s, e));
            }
        }
    }

    /// "founders: Lee, Okafor and Brandt": every item of a list after a plural person noun.
    fn lists(&self, text: &str, lex: &Lexicon, found: &mut Vec<(usize, usize)>) {
        for c in self.list.captures_iter(text) {
            let Some(items) = c.get(1) else { continue };
            let mut s = None;
            let mut e = 0;
            // Items are separated by commas, "and" or "&"; each is one or two name words.
            for m in self.item.find_iter(items.as_str()) {
                let (ms, me) = (items.start() + m.start(), items.start() + m.end());
                match s {
                    Some(_) if text[e..ms] == *" " => e = me,
                    _ => {
                        if let Some(st) = s
                            && plausible(text, st, e, lex)
                        {
                            found.push((st, e));
                        }
                        s = Some(ms);
                        e = me;
                    }
                }
            }
            if let Some(st) = s
                && plausible(text, st, e, lex)
            {
                found.push((st, e));
            }
        }
    }

    /// Speakers of a dialogue: two or more lines "Name: words", one speaker a known given name.
    fn speakers(&self, text: &str, lex: &Lexicon, found: &mut Vec<(usize, usize)>) {
        let spans: Vec<(usize, usize)> = self
            .speaker
            .captures_iter(text)
            .filter_map(|c| c.get(1))
            .filter(|g| {
                let w = g.as_str().to_lowercase();
                !LINE_LABELS.contains(&w.as_str()) && plausible(text, g.start(), g.end(), lex)
            })
            .map(|g| (g.start(), g.end()))
            .collect();
        let known = spans.iter().any(|&(s, e)| {
            let first = text[s..e].split(' ').next().unwrap_or("").to_lowercase();
            lex.is_given(&first)
        });
        if spans.len() >= 2 && known {
            found.extend(spans);
        }
    }
}

fn name_word_or_initial(w: &str) -> bool {
    let mut cs = w.chars();
    let Some(first) = cs.next() else { return false };
    let rest: String = cs.collect();
    first.is_uppercase()
        && (rest.is_empty()
            || rest == "."
            || (rest
                .chars()
                .all(|c| c.is_alphabetic() || c == '-' || c == '\'')
                && rest.chars().any(char::is_lowercase)))
}

/// A word a text addresses as a person ("Olu, can you …", "…, Rhonda!"): a known given name, or
/// a single name-shaped word (a capital, then three or more lower-case letters) that has no
/// adverb's "-ly" ending ("Additionally, can you").
fn addressed(w: &str, lex: &Lexicon) -> bool {
    lex.is_given(&w.to_lowercase()) || name_shaped(w)
}

/// A single word shaped like a name no lexicon knows: a capital, then three or more lower-case
/// letters, and no adverb's "-ly" ending.
fn name_shaped(w: &str) -> bool {
    let mut cs = w.chars();
    cs.next().is_some_and(char::is_uppercase)
        && cs.clone().count() >= 3
        && cs.all(char::is_lowercase)
        && !w.ends_with("ly")
}

/// A span of name words that is not a stop word, a place, or an organisation/date/place phrase.
fn plausible(text: &str, s: usize, e: usize, lex: &Lexicon) -> bool {
    let t = &text[s..e];
    if lex.is_place(t) || detector::org_like(text, s, e) {
        return false;
    }
    t.split(' ').all(|w| {
        let l = w.trim_end_matches('.').to_lowercase();
        !lex.is_stop(&l) && !LINE_LABELS.contains(&l.as_str()) && !lex.is_place(w)
    })
}

/// Once a person of two words or more is found (`out`: the resolved entities), each of its name
/// words that stands alone elsewhere in the text (capitalised, a whole word, "Lovell's" too) is
/// that person.
pub(crate) fn propagate(text: &str, lex: &Lexicon, out: &mut Vec<Candidate>) {
    let persons: Vec<(usize, usize)> = out
        .iter()
        .filter(|c| c.kind == Some(EntityType::Person))
        .map(|c| (c.start, c.end))
        .collect();
    let mut words: Vec<&str> = Vec::new();
    for &(s, e) in &persons {
        let parts: Vec<&str> = text[s..e].split_whitespace().collect();
        if parts.len() < 2 {
            continue;
        }
        for w in parts {
            let w = w.trim_end_matches(['.', ',']);
            if w.chars().count() >= 3
                && name_word_or_initial(w)
                && !lex.is_stop(&w.to_lowercase())
                && !words.contains(&w)
            {
                words.push(w);
            }
        }
    }
    let taken = |s: usize, e: usize, out: &[Candidate]| {
        out.iter()
            .any(|c| c.kind.is_some() && c.start < e && s < c.end)
    };
    let mut extra = Vec::new();
    for w in words {
        for (i, _) in text.match_indices(w) {
            let end = i + w.len();
            if word_start(text, i) && word_end(text, end) && !taken(i, end, out) {
                extra.push(Candidate::new(
                    EntityType::Person,
                    i,
                    end,
                    score::PERSON_WEAK,
                ));
            }
        }
    }
    out.extend(extra);
}

#[cfg(test)]
mod tests {
    use crate::EntityType::Person;
    use crate::detector::test_support::{finds, none_of};

    #[test]
    fn names_with_a_middle_initial() {
        finds(
            "Please ask Ottilie R. Brennagh about it.",
            Person,
            "Ottilie R. Brennagh",
        );
        finds(
            "Reviewed by the committee, then Zoran T Vukelja signed.",
            Person,
            "Zoran T Vukelja",
        );
        // Organisations and plans keep their letter.
        none_of("We upgraded to the Plan B Corp package.", Person);
    }

    #[test]
    fn the_name_line_of_a_signature_or_postal_block() {
        finds(
            "Ilse Varnhagen\nHead of logistics\nNordkai 14\n20457 Hamburg\nPhone: +49 40 3012 7781",
            Person,
            "Ilse Varnhagen",
        );
        finds(
            "> Quillon Marsh-Tedder\n> 18 Wexcombe Lane\n> Apt. 4\n> Leeds LS6 2QT",
            Person,
            "Quillon Marsh-Tedder",
        );
        // A heading with no address, phone or e-mail after it is not a name.
        none_of("Quarterly Results\nRevenue grew in every region.", Person);
    }

    #[test]
    fn people_listed_after_a_plural_person_noun() {
        let text = "The shop was started by its three founders: Okafor, Brandvold and Teague.";
        for n in ["Okafor", "Brandvold", "Teague"] {
            finds(text, Person, n);
        }
        finds(
            "The speakers are Hanne Lisowski and Tiago Adeyemi.",
            Person,
            "Tiago Adeyemi",
        );
    }

    #[test]
    fn speakers_of_a_quotation_and_a_dialogue() {
        finds(
            "\"Not again!\" said Thorvald to Mireille.",
            Person,
            "Thorvald",
        );
        finds(
            "\"Not again!\" said Thorvald to Mireille.",
            Person,
            "Mireille",
        );
        let dialogue = "Emma: Did you lock the door?\nKasimir: I thought you did.\nEmma: Great.";
        finds(dialogue, Person, "Kasimir");
        // Labels of a record are not speakers.
        none_of(
            "Status: shipped\nSummary: two boxes left the warehouse.",
            Person,
        );
    }

    #[test]
    fn a_described_speaker_and_an_addressed_name() {
        finds(
            "Wilhelmina Osei, the night-shift supervisor, said: \"We were told at noon.\"",
            Person,
            "Wilhelmina Osei",
        );
        finds("Where were you last night, Sarah?", Person, "Sarah");
        none_of("Where were you last night, Boston?", Person);
        // Names no lexicon knows, addressed at a sentence end or opening a request.
        finds("Stop worrying so much, Tamsinne!", Person, "Tamsinne");
        finds("Olufemi, can you send me the slides?", Person, "Olufemi");
        finds(
            "Hi all\nBirgitte, could you check the invoice?",
            Person,
            "Birgitte",
        );
        // Discourse openers and adverbs are not names.
        none_of("Additionally, can you list the files?", Person);
        none_of("Alright, could you book it for Friday?", Person);
        none_of("Honestly, I don't know.", Person);
        none_of("However, I cancelled it.", Person);
        none_of("What is the weather in New Delhi, India?", Person);
        none_of("Find me a flat in Ronda, Andalusia!", Person);
    }

    #[test]
    fn owners_of_personal_things() {
        finds("Here is Odalys's address, as promised:", Person, "Odalys");
        finds(
            "I still have Brennick’s phone number somewhere.",
            Person,
            "Brennick",
        );
        // A company's things are not a person's.
        none_of("Acme Corp's phone line is down.", Person);
    }

    #[test]
    fn a_sentence_subject_taken_up_by_his_or_her() {
        finds("Radomir had lent Ysolde his bicycle.", Person, "Radomir");
        finds(
            "Yesterday it rained. Varsenik Tumanyan posted her notes online.",
            Person,
            "Varsenik Tumanyan",
        );
        finds(
            "Before Ottoline signs off, she wants the report.",
            Person,
            "Ottoline",
        );
        // An imperative is no subject, and a company is no person.
        none_of("Send her the invoice. Remind him tomorrow.", Person);
        none_of("Acme Corp emailed his lawyer.", Person);
    }

    #[test]
    fn lives_in_and_named_her() {
        finds("Radomir lives on the third floor.", Person, "Radomir");
        finds(
            "They named her Ysolde after her grandmother.",
            Person,
            "Ysolde",
        );
    }

    #[test]
    fn a_found_full_name_marks_its_parts_elsewhere() {
        let text = "The ballad was recorded by Caedmon Fairweather in 1971, and Fairweather's version charted.";
        finds(text, Person, "Caedmon Fairweather");
        finds(text, Person, "Fairweather");
    }
}
