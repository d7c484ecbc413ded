//! Issue 30, acceptance 3: the scrubbed training data keeps no person name or e-mail address that
//! the traffic carried. Calls in seven languages carry names and addresses in the user's
//! message, in the assistant's tool-call arguments (JSON) and in the assistant's reply; after the
//! curate pipeline, no given name, surname or e-mail address of any of them is left anywhere in
//! the examples, in either replacement mode.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

use downshift_curate::{CallInput, CurateConfig, PiiConfig, SurrogateMode, curate};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// (language, given name, surname, e-mail, user message with {G} {S} {E} slots, reply).
const CASES: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "en",
        "Rosalind",
        "Featherby",
        "r.featherby@example.com",
        "Hi, my name is {G} {S}. Please update my e-mail to {E} and confirm.",
        "Thanks {G}, done.",
    ),
    (
        "en",
        "Thaddeus",
        "Okonkwo",
        "thaddeus.okonkwo@mail.example.org",
        "This is {G} {S} ({E}); I can't log in since yesterday.",
        "Sorry about that, {G}. I reset it.",
    ),
    (
        "en",
        "Marigold",
        "Pennywhistle",
        "marigold.p@example.net",
        "Please book a table for two under the name {G} {S}, confirmation to {E}.",
        "Booked for {G} {S}.",
    ),
    (
        "de",
        "Hildegund",
        "Rautenstrauch",
        "hildegund.rautenstrauch@beispiel.de",
        "Guten Tag, mein Name ist {G} {S}. Bitte schicken Sie die Rechnung an {E}.",
        "Vielen Dank, Frau {S}.",
    ),
    (
        "de",
        "Wendelin",
        "Zwirnmann",
        "w.zwirnmann@firma.example",
        "Hallo, ich heiße {G} {S} und meine Adresse ist {E}.",
        "Hallo {G}, erledigt.",
    ),
    (
        "fr",
        "Anatole",
        "Quesnoy",
        "anatole.quesnoy@exemple.fr",
        "Bonjour, je m'appelle {G} {S}, mon e-mail est {E}.",
        "Merci Monsieur {S}.",
    ),
    (
        "fr",
        "Bérengère",
        "Vautrin",
        "berengere.vautrin@exemple.fr",
        "Bonjour, c'est {G} {S}. Écrivez-moi à {E} s'il vous plaît.",
        "Bien reçu, Madame {S}.",
    ),
    (
        "es",
        "Evaristo",
        "Quiñones",
        "evaristo.quinones@ejemplo.es",
        "Hola, me llamo {G} {S}. Mi correo es {E}.",
        "Gracias, {G}.",
    ),
    (
        "es",
        "Remedios",
        "Altamirano",
        "r.altamirano@ejemplo.es",
        "Buenas tardes, soy {G} {S}; escribidme a {E}.",
        "Hola {G}, ya está.",
    ),
    (
        "it",
        "Gualtiero",
        "Scaramuzza",
        "gualtiero.scaramuzza@esempio.it",
        "Buongiorno, mi chiamo {G} {S}, la mia email è {E}.",
        "Grazie {G}, fatto.",
    ),
    (
        "it",
        "Ornella",
        "Pizzigoni",
        "o.pizzigoni@esempio.it",
        "Salve, sono {G} {S}. Scrivetemi a {E}.",
        "Gentile signora {S}, abbiamo aggiornato i dati.",
    ),
    (
        "nl",
        "Siebren",
        "Wolthuizen",
        "siebren.wolthuizen@voorbeeld.nl",
        "Hoi, mijn naam is {G} {S}, mijn e-mail is {E}.",
        "Dank je, {G}.",
    ),
    (
        "nl",
        "Grietje",
        "Oosterveld",
        "g.oosterveld@voorbeeld.nl",
        "Goedemorgen, ik ben {G} {S}. Mail me op {E}.",
        "Beste mevrouw {S}, het is geregeld.",
    ),
    (
        "pt",
        "Gonçalo",
        "Magalhães",
        "goncalo.magalhaes@exemplo.pt",
        "Olá, chamo-me {G} {S} e o meu email é {E}.",
        "Obrigado, {G}.",
    ),
];

fn fill(t: &str, g: &str, s: &str, e: &str) -> String {
    t.replace("{G}", g).replace("{S}", s).replace("{E}", e)
}

fn calls() -> Vec<CallInput> {
    CASES
        .iter()
        .enumerate()
        .map(|(i, (lang, g, s, e, user, reply))| {
            let args = json!({"full_name": format!("{g} {s}"), "email": e, "lang": lang}).to_string();
            // Odd calls answer with a tool call, even ones with text.
            let message = if i % 2 == 1 {
                json!({"role": "assistant", "content": null, "tool_calls": [{"id": format!("c{i}"), "type": "function",
                       "function": {"name": "update_contact", "arguments": args}}]})
            } else {
                json!({"role": "assistant", "content": fill(reply, g, s, e)})
            };
            CallInput {
                call_id: format!("call-{i}"),
                ts_ms: 1_700_000_000_000 + i as i64,
                endpoint: "chat/completions".into(),
                status: "ok".into(),
                model: "gpt-test".into(),
                episode: Some(format!("ep-{i}")),
                tags: BTreeMap::new(),
                request: Some(json!({
                    "model": "gpt-test",
                    "messages": [
                        {"role": "system", "content": "You are the support agent of a travel company."},
                        {"role": "user", "content": fill(user, g, s, e)},
                    ],
                    "tools": [{"type": "function", "function": {"name": "update_contact",
                               "parameters": {"type": "object", "properties": {"full_name": {"type": "string"}, "email": {"type": "string"}}}}}],
                })),
                response: Some(json!({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})),
            }
        })
        .collect()
}

#[test]
fn no_name_or_email_from_the_traffic_survives_curation() {
    // The tagger is part of what is measured: its weights must be there (the error names the
    // command that makes them), so the test never passes on the rules alone.
    downshift_curate::weights::checkout_weights().unwrap_or_else(|e| panic!("{e}"));
    for mode in [SurrogateMode::Placeholder, SurrogateMode::Surrogate] {
        let config = CurateConfig {
            pii: PiiConfig {
                surrogate: mode,
                ..PiiConfig::default()
            },
            ..CurateConfig::default()
        };
        let (examples, report) = curate(calls(), &config, b"test secret", 2).unwrap();
        // Every call must come out (none is filtered or deduplicated away), or the check is hollow.
        assert_eq!(examples.len(), CASES.len(), "{mode:?}: {report:?}");
        let all: Vec<String> = examples.iter().map(|x| x.record.to_string()).collect();
        let text = all.join("\n");
        let mut left = Vec::new();
        for (_, g, s, e, _, _) in CASES {
            for needle in [*g, *s, *e] {
                if text.contains(needle) {
                    left.push(needle.to_string());
                }
            }
        }
        assert!(
            left.is_empty(),
            "{mode:?}: left in the training data: {left:?}\n{text}"
        );
        // The structure that makes the examples useful is still there.
        for x in &examples {
            let msgs = x.record["messages"].as_array().unwrap();
            assert_eq!(
                msgs[0]["content"],
                "You are the support agent of a travel company."
            );
            if let Some(Value::String(args)) = msgs
                .last()
                .and_then(|m| m.pointer("/tool_calls/0/function/arguments"))
            {
                let parsed: Value = serde_json::from_str(args).unwrap();
                assert!(parsed.get("full_name").is_some() && parsed.get("email").is_some());
            }
        }
        assert!(
            report.pii_entities["PERSON"] >= CASES.len() as u64,
            "{report:?}"
        );
        assert!(
            report.pii_entities["EMAIL"] >= CASES.len() as u64,
            "{report:?}"
        );
    }
}
