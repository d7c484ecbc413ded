//! Secrets: provider key shapes, JWTs, PEM private keys, passwords and high-entropy tokens after a cue.

use crate::checksum::entropy;
use crate::cues::{CueKind, Cues};
use crate::detector::{Candidate, score};
use crate::text::{next_char, prev_char, skip_separator, token_end};
use crate::{CurateError, EntityType};
use regex::Regex;

pub(crate) struct Secrets {
    providers: Regex,
    jwt: Regex,
    pem: Regex,
}

const PROVIDERS: &[&str] = &[
    // OpenAI (project, service-account, admin and legacy keys), Anthropic
    r"sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_\-]{20,}",
    r"sk-ant-(?:api|admin)\d\d-[A-Za-z0-9_\-]{20,}",
    r"sk-[A-Za-z0-9]{32,}",
    // GitHub
    r"gh[pousr]_[A-Za-z0-9]{30,}",
    r"github_pat_[A-Za-z0-9_]{40,}",
    // AWS access key ids
    r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}",
    // Slack tokens and webhooks
    r"xox[abposr]-[A-Za-z0-9\-]{10,}",
    r"xapp-\d-[A-Za-z0-9\-]{10,}",
    r"https://hooks\.slack\.com/services/T[A-Za-z0-9]+/B[A-Za-z0-9]+/[A-Za-z0-9]+",
    // Stripe
    r"(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}",
    r"whsec_[A-Za-z0-9]{24,}",
    // Google API keys and OAuth access tokens
    r"AIza[0-9A-Za-z_\-]{35}",
    r"ya29\.[0-9A-Za-z_\-]{20,}",
    // GitLab, Hugging Face, npm, PyPI, SendGrid, Shopify, DigitalOcean, Mailgun, Twilio, Anthropic-style
    r"glpat-[A-Za-z0-9_\-]{20,}",
    r"hf_[A-Za-z0-9]{30,}",
    r"npm_[A-Za-z0-9]{36}",
    r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{20,}",
    r"SG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}",
    r"shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}",
    r"dop_v1_[a-f0-9]{64}",
    r"key-[0-9a-zA-Z]{32}",
    r"SK[0-9a-fA-F]{32}",
];

fn compile(name: &str, pat: &str) -> Result<Regex, CurateError> {
    Regex::new(pat).map_err(|e| CurateError::pattern(name, e))
}

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '/' | '=' | '.' | '~')
}

impl Secrets {
    pub(crate) fn new() -> Result<Self, CurateError> {
        Ok(Secrets {
            providers: compile("api_key", &PROVIDERS.join("|"))?,
            jwt: compile(
                "jwt",
                r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",
            )?,
            pem: compile(
                "private_key",
                r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\z)",
            )?,
        })
    }

    pub(crate) fn find(&self, text: &str, cues: &Cues, out: &mut Vec<Candidate>) {
        for m in self.providers.find_iter(text) {
            let (s, e) = (m.start(), m.end());
            if prev_char(text, s).is_some_and(|c| c.is_ascii_alphanumeric()) {
                continue;
            }
            if next_char(text, e).is_some_and(|c| c.is_ascii_alphanumeric()) {
                continue;
            }
            let t = m.as_str();
            // Generic shapes must look random: letters and digits mixed.
            let has_digit = t.bytes().any(|b| b.is_ascii_digit());
            let has_alpha = t.bytes().skip(4).any(|b| b.is_ascii_alphabetic());
            if !(t.starts_with("https://") || has_digit && has_alpha) {
                continue;
            }
            out.push(Candidate::new(EntityType::ApiKey, s, e, score::API_KEY));
        }
        if text.contains("eyJ") {
            for m in self.jwt.find_iter(text) {
                if prev_char(text, m.start()).is_some_and(|c| c.is_ascii_alphanumeric()) {
                    continue;
                }
                out.push(Candidate::new(
                    EntityType::Jwt,
                    m.start(),
                    m.end(),
                    score::JWT,
                ));
            }
        }
        if text.contains("PRIVATE KEY") {
            for m in self.pem.find_iter(text) {
                out.push(Candidate::new(
                    EntityType::PrivateKey,
                    m.start(),
                    m.end(),
                    score::PRIVATE_KEY,
                ));
            }
        }
        self.cued(text, cues, out);
    }

    /// A token after `token`, `api_key=`, `Bearer`, `password:` … that looks like a secret.
    fn cued(&self, text: &str, cues: &Cues, out: &mut Vec<Candidate>) {
        for c in &cues.list {
            let password = match c.kind {
                CueKind::Secret => false,
                CueKind::Password => true,
                _ => continue,
            };
            let bearer = text[c.start..c.end].eq_ignore_ascii_case("bearer");
            let vs = if bearer && text[c.end..].starts_with(' ') {
                Some(c.end + 1)
            } else {
                skip_separator(text, c.end, 8)
            };
            let Some(vs) = vs else { continue };
            // Passwords need an explicit separator (`password: x`, `password=x`, `password is x`).
            let sep = &text[c.end..vs];
            if password
                && !(sep.contains([':', '=', '"'])
                    || sep.contains("is")
                    || sep.contains("est")
                    || sep.contains("ist"))
            {
                continue;
            }
            let mut ve = if password {
                token_end(text, vs, |ch| {
                    !ch.is_whitespace() && !matches!(ch, '"' | '\'' | ',' | '\\' | '}' | ')' | ';')
                })
            } else {
                token_end(text, vs, token_char)
            };
            while ve > vs
                && matches!(text.as_bytes()[ve - 1], b'.' | b',' | b'=' | b'-')
                && !password
            {
                ve -= 1;
                if text[vs..ve].ends_with('=') {
                    // keep base64 padding
                    break;
                }
            }
            // A sentence-ending full stop is not part of the password.
            if password
                && ve - vs > 6
                && text.as_bytes()[ve - 1] == b'.'
                && text[ve..].chars().next().is_none_or(char::is_whitespace)
            {
                ve -= 1;
            }
            let v = &text[vs..ve];
            if password {
                if password_like(v) {
                    out.push(Candidate::new(
                        EntityType::Password,
                        vs,
                        ve,
                        score::PASSWORD,
                    ));
                }
            } else if secret_like(v) {
                out.push(Candidate::new(
                    EntityType::ApiKey,
                    vs,
                    ve,
                    score::CUED_SECRET,
                ));
            }
        }
    }
}

/// A token after a secret cue: long, mixed, high entropy, not a plain word or URL.
pub(crate) fn secret_like(v: &str) -> bool {
    let n = v.len();
    if !(12..=512).contains(&n) || v.contains("://") {
        return false;
    }
    let digits = v.bytes().filter(u8::is_ascii_digit).count();
    let alpha = v.bytes().filter(u8::is_ascii_alphabetic).count();
    if alpha == 0
        || (digits == 0
            && !(v.bytes().any(|b| b.is_ascii_uppercase())
                && v.bytes().any(|b| b.is_ascii_lowercase())
                && n >= 20))
    {
        return false;
    }
    let h = entropy(v);
    (n >= 16 && h >= 3.0) || (n >= 12 && h >= 3.3)
}

/// A password after `password:`: no spaces, 6+ characters, not masked, not a plain word.
pub(crate) fn password_like(v: &str) -> bool {
    let n = v.chars().count();
    if !(6..=128).contains(&n) {
        return false;
    }
    let first = v.chars().next().unwrap_or('*');
    if v.chars().all(|c| c == first)
        || v.starts_with('<')
        || v.starts_with('{')
        || v.starts_with('$')
    {
        return false;
    }
    let digit = v.chars().any(|c| c.is_ascii_digit());
    let symbol = v.chars().any(|c| !c.is_alphanumeric());
    let upper = v.chars().skip(1).any(char::is_uppercase);
    let lower = v.chars().any(char::is_lowercase);
    digit || symbol || (upper && lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(secret_like("9f8A7b6C5d4E3f2a1B0c"));
        assert!(!secret_like("configuration"));
        assert!(!secret_like("abc"));
        assert!(password_like("hunter22!"));
        assert!(!password_like("********"));
        assert!(!password_like("required"));
    }
}

#[cfg(test)]
mod detect_tests {
    use crate::EntityType::*;
    use crate::detector::test_support::*;

    #[test]
    fn provider_keys() {
        for key in [
            "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7dEf0h",
            "sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7dEf0hIj2kLm5n",
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "gho_16C7e42F292c6912E7710c838347Ae178B4a",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123",
            "AKIAIOSFODNN7EXAMPLE",
            "ASIAY34FZKBOKMUTVV7A",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "rk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "pk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
            "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        ] {
            finds(&format!("export KEY={key}"), ApiKey, key);
        }
    }

    #[test]
    fn jwts_and_private_keys() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        finds(&format!("Authorization: Bearer {jwt}"), Jwt, jwt);
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1b2c3d4\nAbCdEf==\n-----END RSA PRIVATE KEY-----";
        finds(&format!("key:\n{pem}\nthanks"), PrivateKey, pem);
        none_of(
            "-----BEGIN PUBLIC KEY-----\nMIIBIjANBg\n-----END PUBLIC KEY-----",
            PrivateKey,
        );
    }

    #[test]
    fn cued_secrets_and_passwords() {
        finds(
            "api_key = \"9f8A7b6C5d4E3f2a1B0c7D\"",
            ApiKey,
            "9f8A7b6C5d4E3f2a1B0c7D",
        );
        finds(
            "my token: Zq81xLm02Kd93nVb47Ty",
            ApiKey,
            "Zq81xLm02Kd93nVb47Ty",
        );
        finds(
            "\"client_secret\": \"aB3dE5gH7jK9mN1pQ3sT5v\"",
            ApiKey,
            "aB3dE5gH7jK9mN1pQ3sT5v",
        );
        finds("password: Tr0ub4dor&3", Password, "Tr0ub4dor&3");
        finds("Passwort: Sommer2024!", Password, "Sommer2024!");
        finds("mot de passe : tK!HKUQP$OkO", Password, "tK!HKUQP$OkO");
        none_of("the password is required", Password);
        none_of("password: ********", Password);
        none_of("reset your password via the link", Password);
        // Hashes and commit ids without a secret cue are not secrets.
        nothing(
            "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 and sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        );
        none_of("token expired yesterday", ApiKey);
    }
}
