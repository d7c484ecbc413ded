//! SSNs, national ids with checksums, and cue-led ids: medical record numbers, health-plan ids.

use crate::checksum::{
    de_tax_id_ok, digits_of, es_dni_ok, fr_nir_ok, it_cf_ok, nl_bsn_ok, ssn_ok, uk_nhs_ok,
};
use crate::cues::{CueKind, Cues};
use crate::detector::{Candidate, score};
use crate::text::{next_char, prev_char, skip_separator, token_end};
use crate::{CurateError, EntityType};
use regex::Regex;

pub(crate) struct Ids {
    ssn: Regex,
    it_cf: Regex,
    es_dni: Regex,
    fr_nir: Regex,
    uk_nino: Regex,
}

fn compile(name: &str, pat: &str) -> Result<Regex, CurateError> {
    Regex::new(pat).map_err(|e| CurateError::pattern(name, e))
}

fn bounded(text: &str, s: usize, e: usize) -> bool {
    let glued_before = prev_char(text, s)
        .is_some_and(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '/'));
    let glued_after = next_char(text, e).is_some_and(|c| c.is_alphanumeric() || c == '_');
    let continues =
        text[e..].starts_with('-') && text[e + 1..].starts_with(|c: char| c.is_ascii_digit());
    !(glued_before || glued_after || continues)
}

impl Ids {
    pub(crate) fn new() -> Result<Self, CurateError> {
        Ok(Ids {
            ssn: compile("ssn", r"\d{3}-\d{2}-\d{4}|\d{3} \d{2} \d{4}|\d{9}")?,
            it_cf: compile(
                "codice_fiscale",
                r"[A-Z]{6}\d{2}[A-EHLMPR-T]\d{2}[A-Z]\d{3}[A-Z]",
            )?,
            es_dni: compile("dni", r"[XYZ]?\d{7,8}-?[A-Z]")?,
            fr_nir: compile(
                "nir",
                r"[1-478] ?\d{2} ?\d{2} ?(?:\d{2}|2A|2B) ?\d{3} ?\d{3} ?\d{2}",
            )?,
            uk_nino: compile(
                "nino",
                r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]",
            )?,
        })
    }

    pub(crate) fn find(&self, text: &str, cues: &Cues, out: &mut Vec<Candidate>) {
        let has_digit = text.bytes().any(|b| b.is_ascii_digit());
        if !has_digit {
            return;
        }
        for m in self.ssn.find_iter(text) {
            let (s, e) = (m.start(), m.end());
            if !bounded(text, s, e) {
                continue;
            }
            let d = digits_of(m.as_str());
            let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
            let group = u32::from(d[3]) * 10 + u32::from(d[4]);
            let serial = d[5..].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
            if !ssn_ok(area, group, serial) {
                continue;
            }
            let dashed = m.as_str().contains('-');
            if dashed || cues.before(CueKind::Ssn, s, 30) {
                out.push(Candidate::new(EntityType::Ssn, s, e, score::SSN));
            }
        }
        for m in self.it_cf.find_iter(text) {
            if bounded(text, m.start(), m.end()) && it_cf_ok(m.as_str().as_bytes()) {
                out.push(Candidate::new(
                    EntityType::NationalId,
                    m.start(),
                    m.end(),
                    score::NATIONAL_ID,
                ));
            }
        }
        for m in self.es_dni.find_iter(text) {
            let compact: Vec<u8> = m.as_str().bytes().filter(|&b| b != b'-').collect();
            if bounded(text, m.start(), m.end()) && es_dni_ok(&compact) {
                out.push(Candidate::new(
                    EntityType::NationalId,
                    m.start(),
                    m.end(),
                    score::NATIONAL_ID,
                ));
            }
        }
        for m in self.fr_nir.find_iter(text) {
            let compact: Vec<u8> = m.as_str().bytes().filter(|&b| b != b' ').collect();
            if bounded(text, m.start(), m.end()) && fr_nir_ok(&compact) {
                out.push(Candidate::new(
                    EntityType::NationalId,
                    m.start(),
                    m.end(),
                    score::NATIONAL_ID,
                ));
            }
        }
        for m in self.uk_nino.find_iter(text) {
            let p = &m.as_str()[..2];
            let banned = ["BG", "GB", "NK", "KN", "TN", "NT", "ZZ"];
            if bounded(text, m.start(), m.end()) && !banned.contains(&p) {
                let cue = cues.before(CueKind::NationalId, m.start(), 40);
                if cue || m.as_str().contains(' ') {
                    out.push(Candidate::new(
                        EntityType::NationalId,
                        m.start(),
                        m.end(),
                        score::NATIONAL_ID,
                    ));
                }
            }
        }
    }

    /// Ids that only count after a cue word: MRN, member ids, BSN/Steuer-ID/NHS, passports.
    pub(crate) fn find_cued(&self, text: &str, cues: &Cues, out: &mut Vec<Candidate>) {
        for c in &cues.list {
            let kind = match c.kind {
                CueKind::Mrn => EntityType::MedicalRecordNumber,
                CueKind::HealthPlan => EntityType::HealthPlanId,
                CueKind::NationalId => EntityType::NationalId,
                _ => continue,
            };
            let Some(vs) = skip_separator(text, c.end, 12) else {
                continue;
            };
            let ve = id_value_end(text, vs);
            if ve <= vs {
                continue;
            }
            let val = &text[vs..ve];
            let digits = val.bytes().filter(u8::is_ascii_digit).count();
            let letters = val.bytes().filter(u8::is_ascii_alphabetic).count();
            if kind == EntityType::NationalId {
                let d = digits_of(val);
                let spaced_only = val.bytes().all(|b| b.is_ascii_digit() || b == b' ');
                let checksum = spaced_only
                    && match d.len() {
                        9 => nl_bsn_ok(&d),
                        10 => uk_nhs_ok(&d),
                        11 => de_tax_id_ok(&d),
                        _ => false,
                    };
                // Passports and other ids without a checksum: alphanumeric, mostly digits.
                // Shapes that have a checksum (DNI/NIE: 8 digits + letter) must pass it.
                let dni_shape =
                    val.len() == 9 && letters == 1 && val.as_bytes()[8].is_ascii_alphabetic();
                let shaped = !spaced_only
                    && !dni_shape
                    && (6..=12).contains(&val.len())
                    && digits >= 5
                    && letters <= 3;
                if checksum || shaped {
                    out.push(Candidate::new(kind, vs, ve, score::CUED_ID));
                }
            } else if digits >= 4
                && val.len() >= 5
                && val.len() <= 24
                && letters <= val.len() / 2 + 2
            {
                out.push(Candidate::new(kind, vs, ve, score::CUED_ID));
            }
        }
    }
}

/// End of an id value: alphanumerics with inner `-`, `/`, `.` and single spaces between digit groups.
fn id_value_end(text: &str, vs: usize) -> usize {
    let b = text.as_bytes();
    let mut e = token_end(text, vs, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '/' | '.')
    });
    // Allow "943 476 5919", "86 095 742 719": single spaces between digit groups.
    while e + 1 < b.len() && b[e] == b' ' && b[e + 1].is_ascii_digit() && b[e - 1].is_ascii_digit()
    {
        let ne = token_end(text, e + 1, |c| c.is_ascii_digit());
        if ne - vs > 16 {
            break;
        }
        e = ne;
    }
    while e > vs && matches!(b[e - 1], b'.' | b'-' | b'/') {
        e -= 1;
    }
    e
}

#[cfg(test)]
mod tests {
    use crate::EntityType::*;
    use crate::detector::test_support::*;

    #[test]
    fn ssns() {
        finds("SSN 536-22-1234.", Ssn, "536-22-1234");
        finds("social security number: 536221234", Ssn, "536221234");
        none_of("536221234", Ssn); // plain 9 digits need a cue
        none_of(
            "SSN 666-12-3456, 000-12-3456, 912-12-3456, 536-00-1234, 536-22-0000",
            Ssn,
        );
    }

    #[test]
    fn national_ids() {
        finds("DNI 12345678Z", NationalId, "12345678Z");
        finds("NIE X1234567L", NationalId, "X1234567L");
        finds(
            "codice fiscale RSSMRA85T10A562S",
            NationalId,
            "RSSMRA85T10A562S",
        );
        finds(
            "NIR 1 85 05 78 006 084 91",
            NationalId,
            "1 85 05 78 006 084 91",
        );
        finds("BSN: 111222333", NationalId, "111222333");
        finds("Steuer-ID 86095742719", NationalId, "86095742719");
        finds("NHS number 943 476 5919", NationalId, "943 476 5919");
        finds("NI number AB 12 34 56 C", NationalId, "AB 12 34 56 C");
        none_of("DNI 12345678A", NationalId);
        none_of("BSN: 111222334", NationalId);
        none_of("RSSMRA85T10A562T", NationalId);
    }

    #[test]
    fn medical_and_health_plan_ids() {
        finds("MRN: 00482913", MedicalRecordNumber, "00482913");
        finds(
            "Ricoverato ieri, cartella clinica n. QV7730412.",
            MedicalRecordNumber,
            "QV7730412",
        );
        finds(
            "Patientennummer P-2024-18822",
            MedicalRecordNumber,
            "P-2024-18822",
        );
        finds(
            "historia clínica 405-580-433",
            MedicalRecordNumber,
            "405-580-433",
        );
        finds("Member ID: XHP928374651", HealthPlanId, "XHP928374651");
        finds("Versichertennummer A123456780", HealthPlanId, "A123456780");
        none_of("MRN pending", MedicalRecordNumber);
        none_of("patient id unknown", MedicalRecordNumber);
    }
}
