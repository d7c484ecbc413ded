//! Context cue words, found in one Aho–Corasick pass over the text.

use crate::CurateError;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CueKind {
    Phone,
    Card,
    Ssn,
    Dob,
    Secret,
    Password,
    Mrn,
    HealthPlan,
    /// Cue for national ids that need one (BSN, Steuer-ID, NHS number …).
    NationalId,
    /// Mr, Dr, Frau … (must be capitalised in the text).
    Title,
    /// Hi, Dear, Bonjour …
    Greeting,
    /// "my name is", "je m'appelle" … (any capitalised words follow).
    IntroStrong,
    /// "I'm", "ich bin" … (the next word must be a known name).
    IntroWeak,
    /// "customer", "patient", "recipient" … (a known name, or two capitalised words).
    Role,
    /// "with", "to", "from" … (a known name, or a name confirmed by a verb or email after it).
    Preposition,
    /// "called", "hat angerufen" … after a name.
    PostVerb,
    /// "Regards,", "Cordialement" …
    Signoff,
    /// "Name:", "Patient:", "From:" …
    Label,
    /// order, invoice, tracking … (a look-alike is likely).
    Negative,
    /// version, release, build …
    Version,
    Mac,
}

#[rustfmt::skip]
const CUES: &[(CueKind, &[&str])] = &[
    (CueKind::Phone, &[
        "phone", "phone number", "tel", "tel.", "telephone", "call", "call me", "call us", "ring me", "ring us", "mobile", "cell",
        "fax", "whatsapp", "sms", "text me", "reach me", "contact number", "ph", "ph.", "mob", "mob.",
        "telefon", "telefonnummer", "handy", "handynummer", "mobil", "ruf", "ruf an", "rufen sie",
        "anrufen", "erreichbar", "téléphone", "tél", "tél.", "portable", "appelez", "appeler",
        "joignable", "numéro de téléphone", "teléfono", "telefono", "móvil", "movil", "llámame",
        "llamar", "llame", "cellulare", "chiamami", "chiamare", "numero di telefono", "telefoonnummer",
        "mobiel", "bel", "bellen", "bel me", "gsm", "phone_number", "phonenumber", "mobile_number",
        "contact_phone", "tel:", "rappeler", "rappelez", "rappel", "call back", "callback", "zurückrufen",
        "rückruf", "richiamare", "richiamami", "terugbellen", "devolver la llamada", "number", "numéro", "número", "numero", "nummer", "nr", "reachable on",
        "reachable at", "telemóvel", "telemovel", "telefone", "ligar", "ligue", "ligar-me", "ligue-me",
        "contacto", "desk", "cellphone", "cell phone", "answering at", "my line", "line number", "tlf",
        "mobile number", "direct line", "landline", "registered", "registered number", "messages to",
        "message to", "texts to", "sms to", "text to", "whatsapp me",
    ]),
    (CueKind::Card, &[
        "card", "credit card", "card number", "card no", "cc", "visa", "mastercard", "amex", "karte",
        "kreditkarte", "kartennummer", "carte", "carte bancaire", "numéro de carte", "tarjeta",
        "número de tarjeta", "carta", "carta di credito", "creditcard", "kaart", "card_number",
        "cardnumber", "pan",
    ]),
    (CueKind::Ssn, &[
        "ssn", "social security", "social security number", "ss#", "ss #", "soc sec", "tin",
    ]),
    (CueKind::Dob, &[
        "dob", "d.o.b", "d.o.b.", "date of birth", "birth date", "birthdate", "birthday", "born",
        "born on", "date_of_birth", "birth_date", "dateofbirth", "geboren", "geboren am", "geb.",
        "geburtsdatum", "geburtstag", "né le", "née le", "né(e) le", "né", "née", "date de naissance",
        "date_naissance", "naissance", "nacido", "nacida", "nacido el", "nacida el",
        "fecha de nacimiento", "fecha_nacimiento", "nacimiento", "nato", "nata", "nato il", "nata il",
        "data di nascita", "data_nascita", "nascita", "geboren op", "geboortedatum",
        "geboorte", "verjaardag", "data de nascimento", "nascido", "nascida", "nascido a", "nascida a",
        "nasci", "nasci a", "nasceu", "geb.-datum", "geb.datum", "geburtsdatum:", "born:",
    ]),
    (CueKind::Secret, &[
        "api key", "api_key", "api-key", "apikey", "x-api-key", "access key", "access_key",
        "access key id", "access_key_id", "secret", "secret key", "secret_key", "client secret",
        "client_secret", "secret access key", "secret_access_key", "aws_secret_access_key", "token",
        "access token", "access_token", "auth token", "auth_token", "refresh token", "refresh_token",
        "bearer", "authorization", "private key", "private_key", "signing key", "signing_key",
        "webhook secret", "webhook_secret", "session token", "session_token", "credentials",
        "credential", "apitoken", "api_token", "api token", "auth", "jeton", "schlüssel",
        "clave api", "chiave api", "sleutel", "secret_token", "app_secret", "app secret",
    ]),
    (CueKind::Password, &[
        "password", "passwd", "pwd", "pass", "passphrase", "passwort", "kennwort", "mot de passe",
        "mdp", "contraseña", "contrasena", "clave", "wachtwoord", "db_password",
        "db_pass", "user_password", "pin",
    ]),
    (CueKind::Mrn, &[
        "mrn", "medical record", "medical record number", "medical record no", "patient id",
        "patient_id", "patientid", "patient no", "patient no.", "patient number", "patient #",
        "chart number", "chart #", "chart no", "record number", "patientennummer", "patienten-id",
        "patientenid", "fallnummer", "dossier médical", "numéro de dossier", "n° de dossier",
        "numéro patient", "n° patient", "ipp", "historia clínica", "historia clinica", "nhc",
        "número de historia", "numero de historia", "cartella clinica", "numero paziente",
        "id paziente", "patiëntnummer", "patientnummer", "dossiernummer", "medical_record_number",
        "hospital number", "hospital no", "hospital no.", "hospital #", "hospital id", "record no",
        "record no.", "record #", "aktenzahl", "aktennummer", "krankenakte", "processo clínico",
        "processo clinico", "n.º processo", "nº processo", "n.º de processo", "número de processo",
        "numero de processo", "número de utente", "cartella", "cartella n.", "record_no", "mrn_number",
        "chart", "case file", "numéro de patient", "número de paciente", "numero cartella",
    ]),
    (CueKind::HealthPlan, &[
        "member id", "member_id", "memberid", "member number", "member no", "policy number",
        "policy no", "policy #", "policy_number", "insurance id", "insurance number", "insurance_id",
        "subscriber id", "subscriber_id", "health plan", "health plan id", "plan id", "group number",
        "medicare", "medicaid", "medicare number", "medicaid id", "beneficiary id",
        "versichertennummer", "krankenversichertennummer", "kvnr", "versicherungsnummer",
        "numéro d'adhérent", "n° adhérent", "mutuelle", "numéro de sécurité sociale",
        "número de afiliación", "numero de afiliacion", "tarjeta sanitaria", "número de póliza",
        "numero de poliza", "tessera sanitaria", "numero di polizza", "polisnummer",
        "verzekeringsnummer", "zorgverzekering", "health_plan_id", "insurance_member_id",
    ]),
    (CueKind::NationalId, &[
        "bsn", "burgerservicenummer", "steuer-id", "steuer-idnr", "steueridentifikationsnummer",
        "steuerliche identifikationsnummer", "idnr", "nhs number", "nhs no", "nhs", "tax id",
        "personal id", "national id", "id number", "personalausweis", "dni", "nie", "nif",
        "codice fiscale", "numéro de sécurité sociale", "insee", "nir", "national insurance",
        "sofinummer", "passport", "passport number", "reisepass", "passeport", "pasaporte",
        "passaporto", "paspoort",
    ]),
    (CueKind::Title, &[
        "Mr", "Mr.", "Mrs", "Mrs.", "Ms", "Ms.", "Miss", "Mx.", "Dr", "Dr.", "Prof", "Prof.",
        "Herr", "Frau", "Hr.", "Fr.", "M.", "Mme", "Mme.", "Mlle", "Mlle.", "Monsieur", "Madame",
        "Mademoiselle", "Sr.", "Sra.", "Srta.", "Señor", "Señora", "Don", "Doña", "Sig.", "Sig.ra",
        "Sig.na", "Signor", "Signora", "Dott.", "Dott.ssa", "Avv.", "Ing.", "Dhr.", "Mevr.", "Mw.",
        "Meneer", "Mevrouw", "Sir", "Lady", "Dra.", "Herr Dr.", "Frau Dr.", "Herr Prof.", "Frau Prof.",
        "de heer", "heer", "Mister", "Madam", "Senhor", "Senhora", "Sr.ª", "Dona", "Eng.", "Mag.",
    ]),
    (CueKind::Greeting, &[
        "hi", "hello", "hey", "dear", "good morning", "good afternoon", "hallo", "hallo zusammen",
        "liebe", "lieber", "sehr geehrte", "sehr geehrter", "guten tag", "moin", "servus", "bonjour",
        "bonsoir", "salut", "cher", "chère", "hola", "buenos días", "buenas tardes", "estimado",
        "estimada", "querido", "querida", "ciao", "salve", "buongiorno", "gentile", "caro", "cara",
        "egregio", "beste", "geachte", "hoi", "goedemorgen", "olá", "ola", "cheers", "bom dia", "boa tarde", "caro",
        "prezado", "prezada", "grüß gott", "servus", "moin moin", "thanks", "thank you", "thx", "merci",
        "danke", "gracias", "grazie", "bedankt",
    ]),
    (CueKind::IntroStrong, &[
        "my name is", "my name's", "name is", "i am called", "call me", "this is", "je m'appelle",
        "je m’appelle", "mon nom est", "ich heiße", "ich heisse", "mein name ist", "me llamo",
        "mi nombre es", "mi chiamo", "il mio nome è", "mijn naam is", "ik heet", "signed",
        "sincerely yours", "speaking with", "spoke with", "spoke to", "assigned to", "on behalf of",
        "contact person", "ansprechpartner", "ansprechpartnerin", "signed by", "approved by",
        "written by", "reported by", "requested by", "attn", "attn:", "z. hd.", "z.hd.",
        "à l'attention de", "a la atención de", "all'attenzione di", "t.a.v.",
        "under the name", "in the name of", "under the name of", "auf den namen", "au nom de",
        "a nombre de", "a nome di", "op naam van", "chamo-me", "o meu nome é", "meu nome é", "ao cuidado de", "a/c", "alla c.a. di", "c.a.",
        "a la atención", "t.n.v.", "z. hd. von", "kontoinhaber", "titular", "intestato a",
        "au nom de", "a nombre de", "ten name van", "im namen von", "falei com", "hablé con",
        "ho sentito", "j'ai eu", "ik heb", "habe mit", "telefoniert mit", "spoke to", "talked to",
        "your name?", "'s name", "’s name",
        "calls me", "everyone calls me", "people call me", "goes by", "it's under", "it’s under",
        "is under", "booked under", "reserved under", "listed under", "ask for", "asked for",
    ]),
    (CueKind::Role, &[
        "destinataire", "destinatario", "empfänger", "empfängerin", "ontvanger", "recipient", "addressee",
        "patient", "patientin", "patiente", "paciente", "paziente", "patiënt", "customer", "client",
        "kunde", "kundin", "cliente", "klant", "employee", "mitarbeiter", "mitarbeiterin", "cc",
        "attention", "colleague", "kollege", "kollegin", "collègue", "compañero", "compañera",
        "collega", "utente", "user", "member", "guest", "driver", "doctor", "nurse", "manager", "agent",
        "technician", "tenant", "landlord", "applicant", "candidate", "student", "teacher",
        "player", "commenter", "songwriter", "singer", "producer", "actor", "actress", "writer",
        "composer", "guitarist", "drummer", "journalist", "guardian", "spokesperson", "spokesman",
        "spokeswoman", "coach", "captain", "pilot", "lawyer", "attorney", "surgeon", "therapist",
    ]),
    (CueKind::Preposition, &[
        "ask", "tell", "thanks to", "de la part de", "de parte de", "da parte di", "namens", "contact",
        "forward to", "forwarded to", "cc'd", "ping", "met with", "meeting with", "rappeler", "rappelez",
        "met", "with", "from", "by", "call", "appelez", "appeler", "llama a", "llamar a", "chiama",
        "chiamare", "bel", "bellen", "contacta a", "contatta", "contacteer", "ring", "email", "mail",
        "an", "to", "à", "naar", "for", "für", "pour", "para", "per", "voor", "van", "von", "de", "di",
        "mit", "avec", "con", "and", "und", "et", "en", "of", "or", "oder", "ou",
        "about", "über", "sur", "su", "sobre", "over", "between",
    ]),
    (CueKind::PostVerb, &[
        "called", "said", "wrote", "asked", "reported", "replied", "mentioned", "emailed", "phoned",
        "will join", "joined", "confirmed", "approved", "signed", "is out", "is on leave", "sent",
        "hat angerufen", "hat geschrieben", "hat gesagt", "sagt", "schreibt", "schrieb", "rief",
        "a appelé", "a écrit", "a dit", "a confirmé", "llamó", "escribió", "dijo", "ha llamado",
        "ha escrito", "ha chiamato", "ha scritto", "ha detto", "belde", "schreef", "zei", "heeft gebeld",
        "heeft geschreven", "says", "writes", "asks", "reports", "calls", "mentions", "confirms",
        "wants", "needs", "is asking", "dit", "dice", "zegt", "schrijft", "écrit", "escribe", "scrive",
        "chiede", "demande", "pregunta", "vraagt", "fragt", "hat heute", "hat gestern", "ruft", "rief an", "a téléphoné", "telefoneó",
        "ha telefonato", "heeft vandaag gebeld",
    ]),
    (CueKind::Version, &[
        "rollback", "roll back", "rolled back", "downgrade", "downgraded", "upgrade to", "upgraded to",
        "revert to", "reverted to", "pinned", "pin",
    ]),
    (CueKind::IntroWeak, &[
        "i'm", "i’m", "i am", "it's", "it’s", "its", "je suis", "c'est", "ich bin", "hier ist", "soy",
        "sono", "ik ben", "dit is", "this is", "here is", "here's",
    ]),
    (CueKind::Signoff, &[
        "regards", "best regards", "kind regards", "warm regards", "best", "best wishes", "cheers",
        "sincerely", "thanks", "thank you", "many thanks", "yours", "yours truly", "all the best",
        "mit freundlichen grüßen", "mit freundlichen grüssen", "freundliche grüße", "viele grüße",
        "beste grüße", "liebe grüße", "lg", "mfg", "gruß", "grüße", "cordialement", "bien à vous",
        "bien cordialement", "amicalement", "bises", "salutations", "saludos", "un saludo",
        "atentamente", "saludos cordiales", "un abrazo", "cordiali saluti", "distinti saluti",
        "saluti", "un saluto", "a presto", "met vriendelijke groet", "met vriendelijke groeten",
        "vriendelijke groet", "groeten", "groetjes", "hartelijke groet", "com os melhores cumprimentos",
        "melhores cumprimentos", "cumprimentos", "atenciosamente", "um abraço", "beijinhos", "—", "--",
    ]),
    (CueKind::Label, &[
        "nome -", "name -", "nom -", "nombre -", "naam -", "nominativo:", "nominativo -",
        "versicherter:", "versicherte:", "full name -", "utente:", "paciente:", "paziente:",
        "name:", "name :", "full name:", "patient:", "patient name", "patient name:",
        "customer:", "customer name", "customer name:", "client:", "contact:", "from:", "to:",
        "sender:", "recipient:", "author:", "assignee:", "owner:", "signed:", "driver:",
        "passenger:", "guest:", "employee:", "kunde:", "kundin:", "vorname:", "nachname:", "nom:",
        "nom :", "prénom:", "prénom :", "nombre:", "apellidos:", "apellido:", "nome:", "cognome:",
        "naam:", "voornaam:", "achternaam:", "absender:", "empfänger:", "destinataire:",
        "destinatario:", "mittente:", "afzender:", "ontvanger:", "contacto:", "contatto:",
        "contactpersoon:", "titulaire:", "inhaber:", "kontoinhaber:", "account holder:",
        "cardholder:", "card holder:", "titular:", "intestatario:", "rekeninghouder:",
        "first name:", "last name:", "surname:",
    ]),
    (CueKind::Negative, &[
        "order", "order no", "order number", "order #", "order id", "invoice", "invoice no",
        "tracking", "tracking number", "ref", "ref.", "reference", "sku", "ticket", "case",
        "case number", "transaction", "transaction id", "txn", "build", "job", "item", "part",
        "part number", "model", "serial", "serial number", "batch", "lot", "bestellung",
        "bestellnummer", "rechnung", "rechnungsnummer", "sendungsnummer", "artikel", "artikelnummer",
        "commande", "numéro de commande", "facture", "référence", "suivi", "pedido",
        "número de pedido", "factura", "referencia", "seguimiento", "ordine", "numero d'ordine",
        "fattura", "riferimento", "spedizione", "bestelling", "bestelnummer", "factuur", "referentie",
        "order_id", "invoice_id", "request_id", "trace_id", "price", "total", "amount", "qty",
        "quantity", "isbn", "ean", "upc", "gtin", "asin", "account", "acct", "iban", "bic", "code",
        "pin", "dial-in", "dial-in code", "meeting id", "conference id", "articolo", "article", "artículo",
        "código", "codice", "tracking:", "room", "zimmer", "raum", "salle", "sala", "kamer",
    ]),
    (CueKind::Version, &[
        "version", "v", "ver", "ver.", "release", "build", "firmware", "kernel", "python", "node",
        "rust", "java", "chrome", "version:", "versión", "versione", "versie", "upgrade", "update",
        "updated", "bump", "bumped", "tag", "semver", "sdk", "api version", "os",
    ]),
    (CueKind::Mac, &["mac", "mac address", "mac-adresse", "adresse mac", "dirección mac", "indirizzo mac", "hwaddr", "ether", "bssid"]),
];

/// Titles that are also written in lower case mid-sentence ("Geachte meneer Jansen").
const LOWERCASE_TITLES: &[&str] = &[
    "herr",
    "frau",
    "monsieur",
    "madame",
    "mademoiselle",
    "señor",
    "señora",
    "signor",
    "signora",
    "meneer",
    "mevrouw",
    "de heer",
    "heer",
    "mister",
    "madam",
    "senhor",
    "senhora",
];

#[derive(Debug, Clone, Copy)]
pub(crate) struct Cue {
    pub kind: CueKind,
    pub start: usize,
    pub end: usize,
}

/// All cue words in one automaton (ASCII case-insensitive, leftmost-longest).
pub(crate) struct CueSet {
    ac: AhoCorasick,
    kinds: Vec<Vec<CueKind>>,
}

impl CueSet {
    pub(crate) fn new() -> Result<Self, CurateError> {
        // One pattern may belong to several kinds ("build", "this is"): dedupe, keep all kinds.
        let mut pats: Vec<String> = Vec::new();
        let mut kinds: Vec<Vec<CueKind>> = Vec::new();
        for (kind, words) in CUES {
            for w in *words {
                let key = w.to_lowercase();
                if let Some(i) = pats.iter().position(|p| *p == key) {
                    if !kinds[i].contains(kind) {
                        kinds[i].push(*kind);
                    }
                } else {
                    pats.push(key);
                    kinds.push(vec![*kind]);
                }
            }
        }
        // Title patterns are matched case-insensitively too and checked for capitals later.
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&pats)?;
        Ok(CueSet { ac, kinds })
    }

    /// Every cue in `text`, respecting word boundaries.
    pub(crate) fn scan(&self, text: &str, out: &mut Vec<Cue>) {
        let bytes = text.as_bytes();
        for m in self.ac.find_iter(text) {
            let (s, e) = (m.start(), m.end());
            let first = bytes[s];
            let last = bytes[e - 1];
            let word = |b: u8| b.is_ascii_alphanumeric() || b >= 0x80;
            if word(first)
                && text[..s]
                    .chars()
                    .next_back()
                    .is_some_and(char::is_alphanumeric)
            {
                continue;
            }
            if word(last) && text[e..].chars().next().is_some_and(char::is_alphanumeric) {
                continue;
            }
            for &kind in &self.kinds[m.pattern().as_usize()] {
                if kind == CueKind::Title {
                    // Short titles must be capitalised (`M.`, `Dr`, `Don`); all are followed by a space.
                    let long = LOWERCASE_TITLES
                        .iter()
                        .any(|t| text[s..e].eq_ignore_ascii_case(t));
                    // "ms. Lund", "dr. Okafor": a lower-case title with its dot, before a capital.
                    let dotted = text[s..e].ends_with('.')
                        && text[e..].chars().nth(1).is_some_and(char::is_uppercase);
                    let cap =
                        long || dotted || text[s..].chars().next().is_some_and(char::is_uppercase);
                    let sp = text[e..].starts_with(' ');
                    if !cap || !sp {
                        continue;
                    }
                }
                out.push(Cue {
                    kind,
                    start: s,
                    end: e,
                });
            }
        }
    }
}

/// Cues found in one text, with look-ups by position.
pub(crate) struct Cues {
    pub list: Vec<Cue>,
}

impl Cues {
    /// Wrap a scan result; sorts by end position for range look-ups.
    pub(crate) fn new(mut list: Vec<Cue>) -> Self {
        list.sort_by_key(|c| (c.end, c.start));
        Cues { list }
    }

    /// Cues ending in `[pos - window, pos]`.
    fn ending_near(&self, pos: usize, window: usize) -> &[Cue] {
        let lo = self
            .list
            .partition_point(|c| c.end < pos.saturating_sub(window));
        let hi = self.list.partition_point(|c| c.end <= pos);
        &self.list[lo..hi.max(lo)]
    }

    /// The closest cue among `kinds` ending in `[pos - window, pos]`, with its position.
    pub(crate) fn nearest_cue_before(
        &self,
        kinds: &[CueKind],
        pos: usize,
        window: usize,
    ) -> Option<&Cue> {
        self.ending_near(pos, window)
            .iter()
            .rev()
            .find(|c| kinds.contains(&c.kind))
    }

    /// Is there a cue of `kind` ending at most `window` bytes before `pos` (and not after it)?
    pub(crate) fn before(&self, kind: CueKind, pos: usize, window: usize) -> bool {
        self.ending_near(pos, window).iter().any(|c| c.kind == kind)
    }

    /// Like [`Cues::before`], but the gap between cue and `pos` holds no newline.
    pub(crate) fn before_same_line(
        &self,
        text: &str,
        kind: CueKind,
        pos: usize,
        window: usize,
    ) -> bool {
        self.ending_near(pos, window)
            .iter()
            .any(|c| c.kind == kind && !text[c.end..pos].contains('\n'))
    }

    /// Is there a cue of `kind` starting exactly at `pos`?
    pub(crate) fn starts_at(&self, kind: CueKind, pos: usize) -> bool {
        // Cues are short: look at those ending within 40 bytes after `pos`.
        let lo = self.list.partition_point(|c| c.end <= pos);
        self.list[lo..]
            .iter()
            .take_while(|c| c.end <= pos + 40)
            .any(|c| c.kind == kind && c.start == pos)
    }
}
