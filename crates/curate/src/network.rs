//! Email addresses, URLs with credentials, IP and MAC addresses.

use crate::checksum::entropy;
use crate::cues::{CueKind, Cues};
use crate::detector::{Candidate, score};
use crate::text::{next_char, prev_char, trim_end_by};
use crate::{CurateError, EntityType};
use regex::Regex;
use std::net::Ipv6Addr;

pub(crate) struct Network {
    email: Regex,
    url: Regex,
    ipv4: Regex,
    ipv6: Regex,
    mac: Regex,
}

const SECRET_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "id_token",
    "refresh_token",
    "auth",
    "auth_token",
    "authorization",
    "api_key",
    "apikey",
    "api-key",
    "key",
    "secret",
    "client_secret",
    "password",
    "passwd",
    "pwd",
    "pass",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-security-token",
    "x-amz-credential",
    "x-goog-signature",
    "x-goog-credential",
    "code",
    "session",
    "sessionid",
    "session_id",
    "sid",
    "jwt",
    "private_token",
    "access_key",
    "secret_key",
    "apitoken",
    "api_token",
    "sas",
    "sv_sig",
    "oauth_token",
    "oauth_signature",
    "ticket",
    "credential",
];

const FILE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "css", "js", "ts", "json", "map", "pdf",
];

fn compile(name: &str, pat: &str) -> Result<Regex, CurateError> {
    Regex::new(pat).map_err(|e| CurateError::pattern(name, e))
}

impl Network {
    pub(crate) fn new() -> Result<Self, CurateError> {
        Ok(Network {
            email: compile("email", r"[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.\p{L}{2,24}")?,
            url: compile("url", r"(?i)[a-z][a-z0-9+.\-]{1,15}://[^\s<>`\\]+")?,
            ipv4: compile("ipv4", r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")?,
            ipv6: compile("ipv6", r"[0-9A-Fa-f.:]*:[0-9A-Fa-f.:]*:[0-9A-Fa-f.:%]*")?,
            mac: compile(
                "mac",
                r"[0-9A-Fa-f]{2}(?:[:\-][0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}",
            )?,
        })
    }

    pub(crate) fn find(&self, text: &str, cues: &Cues, out: &mut Vec<Candidate>) {
        let bytes = text.as_bytes();
        if memchr_any(bytes, b'@') {
            self.emails(text, out);
        }
        if text.contains("://") {
            self.urls(text, out);
        }
        if memchr_any(bytes, b'.') {
            self.ipv4s(text, cues, out);
        }
        if memchr_any(bytes, b':') {
            self.ipv6s(text, out);
        }
        if memchr_any(bytes, b':') || memchr_any(bytes, b'-') || memchr_any(bytes, b'.') {
            self.macs(text, cues, out);
        }
    }

    fn emails(&self, text: &str, out: &mut Vec<Candidate>) {
        for m in self.email.find_iter(text) {
            let mut s = m.start();
            let e = m.end();
            // Local part may not start with a dot.
            while s < e && text.as_bytes()[s] == b'.' {
                s += 1;
            }
            let Some(at) = text[s..e].find('@') else {
                continue;
            };
            if at == 0 {
                continue;
            }
            let tld = text[s..e].rsplit('.').next().unwrap_or("");
            if FILE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(tld)) {
                continue;
            }
            if next_char(text, e).is_some_and(|c| c.is_alphanumeric()) {
                continue;
            }
            out.push(Candidate::new(EntityType::Email, s, e, score::EMAIL));
        }
    }

    fn urls(&self, text: &str, out: &mut Vec<Candidate>) {
        for m in self.url.find_iter(text) {
            let s = m.start();
            let mut e = trim_end_by(text, s, m.end(), |c| {
                matches!(
                    c,
                    '.' | ',' | ';' | ':' | '!' | '?' | ')' | ']' | '}' | '\'' | '"' | '*' | '>'
                )
            });
            // Stop at a quote (the URL is inside a JSON string or quoted text).
            if let Some(q) = text[s..e].find(['"', '\'']) {
                e = s + q;
            }
            let url = &text[s..e];
            let kind = if url_has_credentials(url) {
                Some(EntityType::UrlWithCredentials)
            } else {
                None
            };
            let sc = if kind.is_some() {
                score::URL_CREDENTIALS
            } else {
                score::URL_BLOCK
            };
            out.push(Candidate {
                kind,
                start: s,
                end: e,
                score: sc,
            });
        }
    }

    fn ipv4s(&self, text: &str, cues: &Cues, out: &mut Vec<Candidate>) {
        for m in self.ipv4.find_iter(text) {
            let (s, e) = (m.start(), m.end());
            if prev_char(text, s)
                .is_some_and(|c| c.is_alphanumeric() || c == '.' || c == '_' || c == '-')
            {
                continue;
            }
            let mut after = text[e..].chars();
            match after.next() {
                Some(c) if c.is_alphanumeric() || c == '_' => continue,
                Some('.') if after.next().is_some_and(|c| c.is_ascii_digit()) => continue,
                _ => {}
            }
            let ok = m.as_str().split('.').all(|o| {
                o.parse::<u16>().is_ok_and(|v| v <= 255) && !(o.len() > 1 && o.starts_with('0'))
            });
            if !ok || cues.before_same_line(text, CueKind::Version, s, 12) {
                continue;
            }
            out.push(Candidate::new(EntityType::IpAddress, s, e, score::IP));
        }
    }

    fn ipv6s(&self, text: &str, out: &mut Vec<Candidate>) {
        for m in self.ipv6.find_iter(text) {
            let s = m.start();
            let mut e = m.end();
            if prev_char(text, s).is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if next_char(text, e).is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            // Trailing sentence punctuation: "… at fe80::1." or "host 2001:db8::1:".
            for _ in 0..2 {
                let cand = &text[s..e];
                if parse_v6(cand) {
                    break;
                }
                if cand.ends_with('.') || (cand.ends_with(':') && !cand.ends_with("::")) {
                    e -= 1;
                }
            }
            let cand = &text[s..e];
            if cand.len() < 6 || !parse_v6(cand) {
                continue;
            }
            let groups = cand.split(':').filter(|g| !g.is_empty()).count();
            if groups < 2 {
                continue;
            }
            out.push(Candidate::new(EntityType::IpAddress, s, e, score::IP));
        }
    }

    fn macs(&self, text: &str, cues: &Cues, out: &mut Vec<Candidate>) {
        for m in self.mac.find_iter(text) {
            let (s, e) = (m.start(), m.end());
            let hexish = |c: char| c.is_ascii_alphanumeric() || c == ':' || c == '-' || c == '_';
            if prev_char(text, s).is_some_and(hexish) || next_char(text, e).is_some_and(hexish) {
                continue;
            }
            let t = m.as_str();
            if t.len() == 17 {
                let sep = t.as_bytes()[2];
                if !t.bytes().skip(2).step_by(3).all(|b| b == sep) {
                    continue;
                }
                let has_letter = t.bytes().any(|b| b.is_ascii_alphabetic());
                if sep == b'-' && !has_letter && !cues.before(CueKind::Mac, s, 30) {
                    continue;
                }
            } else if next_char(text, e) == Some('.')
                && text[e + 1..].starts_with(|c: char| c.is_ascii_hexdigit())
            {
                continue;
            }
            out.push(Candidate::new(EntityType::MacAddress, s, e, score::MAC));
        }
    }
}

fn parse_v6(s: &str) -> bool {
    let s = s.split('%').next().unwrap_or(s);
    s.parse::<Ipv6Addr>().is_ok()
}

fn memchr_any(bytes: &[u8], b: u8) -> bool {
    bytes.contains(&b)
}

/// Does a URL carry a user:password, a token as user, or a secret-looking query parameter?
pub(crate) fn url_has_credentials(url: &str) -> bool {
    let Some(rest) = url.split_once("://").map(|(_, r)| r) else {
        return false;
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    if let Some(at) = authority.rfind('@') {
        let userinfo = &authority[..at];
        if let Some((user, pass)) = userinfo.split_once(':') {
            if !pass.is_empty() && !user.is_empty() || pass.len() >= 8 {
                return true;
            }
        } else if userinfo.len() >= 16 && entropy(userinfo) >= 3.0 {
            return true;
        }
    }
    let Some(q) = rest.find('?') else {
        return false;
    };
    let query = &rest[q + 1..];
    let query = query.split('#').next().unwrap_or(query);
    query.split(['&', ';']).any(|kv| {
        let Some((k, v)) = kv.split_once('=') else {
            return false;
        };
        let k = k.to_ascii_lowercase();
        let secret_key = SECRET_PARAMS.contains(&k.as_str())
            || k.ends_with("_token")
            || k.ends_with("_secret")
            || k.ends_with("_key")
            || k.ends_with("signature");
        secret_key
            && v.len() >= 8
            && v.bytes()
                .any(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_urls() {
        assert!(url_has_credentials(
            "postgres://admin:s3cr3t@db.internal:5432/app"
        ));
        assert!(url_has_credentials(
            "https://api.example.com/v1/data?api_key=9f8A7b6C5d4E3f2a"
        ));
        assert!(url_has_credentials(
            "https://ghp_a1B2c3D4e5F6g7H8i9J0k@github.com/org/repo.git"
        ));
        assert!(!url_has_credentials(
            "https://example.com/docs?page=2&lang=en"
        ));
        assert!(!url_has_credentials("https://user@example.com/"));
        assert!(!url_has_credentials("https://example.com/search?key=value"));
    }
}

#[cfg(test)]
mod detect_tests {
    use crate::EntityType::*;
    use crate::detector::test_support::*;

    #[test]
    fn emails() {
        finds(
            "mail me: jane.doe+news@example.co.uk.",
            Email,
            "jane.doe+news@example.co.uk",
        );
        finds(
            "Kontakt: jürgen.müller@beispiel-gmbh.de",
            Email,
            "jürgen.müller@beispiel-gmbh.de",
        );
        none_of("icon@2x.png and @mention and user@localhost", Email);
        none_of("npm install left-pad@1.3.0", Email);
    }

    #[test]
    fn ip_addresses() {
        finds("server at 192.168.1.10:8080", IpAddress, "192.168.1.10");
        finds(
            "from 2001:db8:85a3::8a2e:370:7334 today",
            IpAddress,
            "2001:db8:85a3::8a2e:370:7334",
        );
        finds(
            "link-local fe80::1ff:fe23:4567:890a",
            IpAddress,
            "fe80::1ff:fe23:4567:890a",
        );
        none_of("version 1.2.3.4 is out", IpAddress);
        none_of("256.1.1.1 and 1.2.3 and 01.02.03.04", IpAddress);
        none_of("at 10:22:33 use std::vec::Vec", IpAddress);
    }

    #[test]
    fn mac_addresses() {
        finds("MAC 00:1A:2B:3C:4D:5E", MacAddress, "00:1A:2B:3C:4D:5E");
        finds("hw 00-1a-2b-3c-4d-5e", MacAddress, "00-1a-2b-3c-4d-5e");
        finds("cisco 001a.2b3c.4d5e", MacAddress, "001a.2b3c.4d5e");
        none_of("00:1A:2B-3C:4D:5E", MacAddress);
        none_of("id 12-34-56-78-90-12", MacAddress);
    }

    #[test]
    fn urls_with_credentials() {
        finds(
            "DATABASE_URL=postgres://admin:s3cr3t@db.internal:5432/app.",
            UrlWithCredentials,
            "postgres://admin:s3cr3t@db.internal:5432/app",
        );
        finds(
            "GET https://api.example.com/v1/data?api_key=9f8A7b6C5d4E3f2a1B0c&x=1",
            UrlWithCredentials,
            "https://api.example.com/v1/data?api_key=9f8A7b6C5d4E3f2a1B0c&x=1",
        );
        none_of(
            "see https://example.com/docs?page=2 and https://user@example.com/",
            UrlWithCredentials,
        );
        nothing("see https://en.wikipedia.org/wiki/John_Smith");
    }
}
