//! Realistic surrogates: fake values of the same format, deterministic from the entity's HMAC.

use crate::EntityType;
use crate::checksum::{iban_check_digits, luhn_check_digit};
use crate::lexicon::Lexicon;

/// SplitMix64 seeded from the HMAC digest.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: &[u8]) -> Self {
        let mut s = 0u64;
        for (i, b) in seed.iter().take(8).enumerate() {
            s |= u64::from(*b) << (8 * i);
        }
        Rng(s)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn digit(&mut self) -> char {
        char::from(b'0' + self.below(10) as u8)
    }
}

/// Replace digits with digits and letters with letters of the same case; keep the rest.
fn shape(s: &str, rng: &mut Rng) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_digit() {
                rng.digit()
            } else if c.is_ascii_uppercase() {
                char::from(b'A' + rng.below(26) as u8)
            } else if c.is_ascii_lowercase() {
                char::from(b'a' + rng.below(26) as u8)
            } else {
                c
            }
        })
        .collect()
}

fn ascii_lower(s: &str) -> String {
    s.chars()
        .filter_map(|c| {
            let c = match c {
                'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' => 'a',
                'é' | 'è' | 'ê' | 'ë' => 'e',
                'í' | 'ì' | 'î' | 'ï' => 'i',
                'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'ø' => 'o',
                'ú' | 'ù' | 'û' | 'ü' => 'u',
                'ñ' => 'n',
                'ç' => 'c',
                'ß' => 's',
                c => c,
            };
            c.is_ascii_alphanumeric().then(|| c.to_ascii_lowercase())
        })
        .collect()
}

/// A fake value of the same kind and format as `original`.
pub(crate) fn surrogate(kind: EntityType, original: &str, seed: &[u8], lex: &Lexicon) -> String {
    let mut rng = Rng::new(seed);
    match kind {
        EntityType::Person => {
            let words = original.split_whitespace().count();
            let given = lex.pick_given(rng.next());
            if words <= 1 {
                given.to_string()
            } else {
                format!("{given} {}", lex.pick_surname(rng.next()))
            }
        }
        EntityType::Email => {
            let given = ascii_lower(lex.pick_given(rng.next()));
            let sur = ascii_lower(lex.pick_surname(rng.next()));
            let dom = ["example.com", "example.org", "example.net"][rng.below(3) as usize];
            format!("{given}.{sur}@{dom}")
        }
        EntityType::Phone => {
            let mut seen = 0;
            original
                .chars()
                .map(|c| {
                    if c.is_ascii_digit() {
                        seen += 1;
                        match seen {
                            1..=3 => c,
                            4 => char::from(b'2' + rng.below(8) as u8),
                            _ => rng.digit(),
                        }
                    } else {
                        c
                    }
                })
                .collect()
        }
        EntityType::CreditCard => card(original, &mut rng),
        EntityType::Iban => iban(original, &mut rng),
        EntityType::Ssn => {
            let mut area = 100 + rng.below(565);
            if area == 666 {
                area = 665;
            }
            let group = 1 + rng.below(99);
            let serial = 1 + rng.below(9999);
            let sep = if original.contains('-') {
                "-"
            } else if original.contains(' ') {
                " "
            } else {
                ""
            };
            format!("{area:03}{sep}{group:02}{sep}{serial:04}")
        }
        EntityType::IpAddress => {
            if original.contains(':') {
                format!("2001:db8::{:x}:{:x}", rng.below(0xffff), rng.below(0xffff))
            } else {
                let net = ["192.0.2", "198.51.100", "203.0.113"][rng.below(3) as usize];
                format!("{net}.{}", 1 + rng.below(254))
            }
        }
        EntityType::MacAddress => {
            let upper = original.chars().any(|c| c.is_ascii_uppercase());
            let mut bytes = [0u8; 6];
            for b in &mut bytes {
                *b = rng.below(256) as u8;
            }
            bytes[0] = (bytes[0] & 0xfc) | 0x02; // locally administered, unicast
            let hex: Vec<String> = bytes
                .iter()
                .map(|b| {
                    if upper {
                        format!("{b:02X}")
                    } else {
                        format!("{b:02x}")
                    }
                })
                .collect();
            if original.len() == 14 && original.contains('.') {
                format!(
                    "{}{}.{}{}.{}{}",
                    hex[0], hex[1], hex[2], hex[3], hex[4], hex[5]
                )
            } else {
                let sep = if original.contains('-') { "-" } else { ":" };
                hex.join(sep)
            }
        }
        EntityType::ApiKey => {
            // Keep the provider prefix (`sk-proj-`, `ghp_`, `AKIA` …) so the shape stays readable.
            let cut = original
                .char_indices()
                .take(16)
                .filter(|(_, c)| matches!(c, '_' | '-'))
                .map(|(i, _)| i + 1)
                .last()
                .unwrap_or(
                    if original.starts_with("AKIA") || original.starts_with("ASIA") {
                        4
                    } else {
                        0
                    },
                );
            format!("{}{}", &original[..cut], shape(&original[cut..], &mut rng))
        }
        EntityType::Jwt => original
            .split('.')
            .map(|part| {
                if let Some(rest) = part.strip_prefix("eyJ") {
                    format!("eyJ{}", shape(rest, &mut rng))
                } else {
                    shape(part, &mut rng)
                }
            })
            .collect::<Vec<_>>()
            .join("."),
        EntityType::PrivateKey => {
            let lines: Vec<&str> = original.lines().collect();
            lines
                .iter()
                .map(|l| {
                    if l.starts_with("-----") {
                        (*l).to_string()
                    } else {
                        shape(l, &mut rng)
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        EntityType::DateOfBirth => {
            // Day and month both in 1..=12 stay valid whichever order the format uses.
            let mut runs = 0;
            let mut out = String::new();
            let mut chars = original.chars().peekable();
            while let Some(c) = chars.next() {
                if c.is_ascii_digit() {
                    let mut run = String::from(c);
                    while let Some(&d) = chars.peek() {
                        if d.is_ascii_digit() {
                            run.push(d);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    runs += 1;
                    let v = if run.len() == 4 {
                        format!("{}", 1945 + rng.below(60))
                    } else {
                        let x = 1 + rng.below(12);
                        if run.len() == 2 {
                            format!("{x:02}")
                        } else {
                            format!("{x}")
                        }
                    };
                    out.push_str(&v);
                } else {
                    out.push(c);
                }
            }
            let _ = runs;
            out
        }
        EntityType::StreetAddress => {
            const KEEP: &[&str] = &[
                "Street",
                "Avenue",
                "Road",
                "Boulevard",
                "Lane",
                "Drive",
                "Court",
                "Place",
                "Way",
                "Apt",
                "Suite",
                "Unit",
                "Via",
                "Viale",
                "Piazza",
                "Corso",
                "Calle",
                "Avenida",
                "Plaza",
                "Paseo",
                "Rue",
                "Straße",
                "Strasse",
                "Platz",
            ];
            let mut out = String::new();
            for (i, w) in original.split(' ').enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                let core = w.trim_end_matches([',', '.']);
                let tail = &w[core.len()..];
                let cap =
                    core.chars().next().is_some_and(char::is_uppercase) && core.chars().count() > 3;
                if cap && !KEEP.contains(&core) && core.chars().all(char::is_alphabetic) {
                    out.push_str(lex.pick_surname(rng.next()));
                    out.push_str(tail);
                } else if core.chars().any(|c| c.is_ascii_digit()) {
                    out.push_str(&shape(w, &mut rng));
                } else {
                    out.push_str(w);
                }
            }
            out
        }
        EntityType::UrlWithCredentials => {
            let (scheme, rest) = original.split_once("://").unwrap_or(("https", original));
            let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(auth_end);
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => format!("{}@{host}", shape(userinfo, &mut rng)),
                None => authority.to_string(),
            };
            let path = match path.split_once('?') {
                Some((p, q)) => {
                    let q: Vec<String> = q
                        .split('&')
                        .map(|kv| match kv.split_once('=') {
                            Some((k, v)) if v.len() >= 6 => format!("{k}={}", shape(v, &mut rng)),
                            _ => kv.to_string(),
                        })
                        .collect();
                    format!("{p}?{}", q.join("&"))
                }
                None => path.to_string(),
            };
            format!("{scheme}://{authority}{path}")
        }
        EntityType::MedicalRecordNumber
        | EntityType::HealthPlanId
        | EntityType::NationalId
        | EntityType::Password
        | EntityType::Custom => shape(original, &mut rng),
    }
}

fn card(original: &str, rng: &mut Rng) -> String {
    let digits: Vec<u8> = original
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    if digits.len() < 12 {
        return shape(original, rng);
    }
    let mut new: Vec<u8> = digits[..4].to_vec();
    while new.len() < digits.len() - 1 {
        new.push(rng.below(10) as u8);
    }
    let check = luhn_check_digit(&new);
    new.push(check);
    let mut it = new.into_iter();
    original
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                char::from(b'0' + it.next().unwrap_or(0))
            } else {
                c
            }
        })
        .collect()
}

fn iban(original: &str, rng: &mut Rng) -> String {
    let compact: Vec<u8> = original.bytes().filter(u8::is_ascii_alphanumeric).collect();
    if compact.len() < 5 {
        return shape(original, rng);
    }
    let country = &compact[..2];
    let bban: Vec<u8> = compact[4..]
        .iter()
        .map(|&c| {
            if c.is_ascii_digit() {
                b'0' + rng.below(10) as u8
            } else {
                b'A' + rng.below(26) as u8
            }
        })
        .collect();
    let check = iban_check_digits(country, &bban);
    let mut all: Vec<u8> = country.to_vec();
    all.extend(format!("{check:02}").bytes());
    all.extend(bban);
    let mut it = all.into_iter();
    original
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                char::from(it.next().unwrap_or(b'0'))
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::{digits_of, iban_ok, luhn};

    #[test]
    fn surrogates_keep_validity() {
        let lex = Lexicon::new();
        for seed in 0u8..20 {
            let s = [seed; 32];
            let c = surrogate(EntityType::CreditCard, "4111 1111 1111 1111", &s, &lex);
            assert!(luhn(&digits_of(&c)), "{c}");
            assert_eq!(c.len(), 19);
            let i = surrogate(EntityType::Iban, "DE89 3704 0044 0532 0130 00", &s, &lex);
            let compact: Vec<u8> = i.bytes().filter(|b| *b != b' ').collect();
            assert!(iban_ok(&compact), "{i}");
            let e = surrogate(EntityType::Email, "a@b.com", &s, &lex);
            assert!(e.contains('@'));
        }
    }
}
