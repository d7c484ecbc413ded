//! Check digits and structural rules: Luhn, IBAN mod-97, SSN, national ids, entropy.

/// Digit values (0–9) of the ASCII digits in `s`, ignoring everything else.
pub(crate) fn digits_of(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

/// Luhn (mod 10) over digit values.
pub(crate) fn luhn(d: &[u8]) -> bool {
    if d.len() < 2 {
        return false;
    }
    luhn_sum(d).is_multiple_of(10)
}

fn luhn_sum(d: &[u8]) -> u32 {
    d.iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 { y - 9 } else { y }
            } else {
                x
            }
        })
        .sum()
}

/// The Luhn check digit to append to `partial`.
pub(crate) fn luhn_check_digit(partial: &[u8]) -> u8 {
    let mut with = partial.to_vec();
    with.push(0);
    let s = luhn_sum(&with);
    ((10 - s % 10) % 10) as u8
}

fn prefix_num(d: &[u8], n: usize) -> u32 {
    d.iter().take(n).fold(0u32, |a, &x| a * 10 + u32::from(x))
}

/// Issuer identification ranges and lengths of the common card schemes.
pub(crate) fn card_issuer_ok(d: &[u8]) -> bool {
    let len = d.len();
    if !(12..=19).contains(&len) {
        return false;
    }
    let p1 = prefix_num(d, 1);
    let p2 = prefix_num(d, 2);
    let p3 = prefix_num(d, 3);
    let p4 = prefix_num(d, 4);
    match p1 {
        1 if p4 == 1800 => len == 15,              // JCB (legacy 15-digit)
        2 if p4 == 2131 => len == 15,              // JCB (legacy 15-digit)
        4 => matches!(len, 13 | 16 | 19),          // Visa
        5 if (51..=55).contains(&p2) => len == 16, // Mastercard
        5 if p2 == 50 || (56..=59).contains(&p2) => (12..=19).contains(&len), // Maestro
        2 if (2221..=2720).contains(&p4) => len == 16, // Mastercard 2-series
        2 if (2200..=2204).contains(&p4) => (16..=19).contains(&len), // Mir
        3 if p2 == 34 || p2 == 37 => len == 15,    // Amex
        3 if (3528..=3589).contains(&p4) => (16..=19).contains(&len), // JCB
        3 if (300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39 => {
            (14..=19).contains(&len)
        } // Diners
        6 => {
            (16..=19).contains(&len) || (p2 != 60 && p2 != 62 && p2 != 64 && p2 != 65 && len >= 12)
        } // Discover, UnionPay, Maestro
        _ => false,
    }
}

/// ISO 13616 IBAN length per country.
pub(crate) fn iban_length(cc: &[u8]) -> Option<usize> {
    #[rustfmt::skip]
    const T: &[(&[u8; 2], usize)] = &[
        (b"AD", 24), (b"AE", 23), (b"AL", 28), (b"AT", 20), (b"AZ", 28), (b"BA", 20), (b"BE", 16),
        (b"BG", 22), (b"BH", 22), (b"BR", 29), (b"BY", 28), (b"CH", 21), (b"CR", 22), (b"CY", 28),
        (b"CZ", 24), (b"DE", 22), (b"DK", 18), (b"DO", 28), (b"EE", 20), (b"EG", 29), (b"ES", 24),
        (b"FI", 18), (b"FO", 18), (b"FR", 27), (b"GB", 22), (b"GE", 22), (b"GI", 23), (b"GL", 18),
        (b"GR", 27), (b"GT", 28), (b"HR", 21), (b"HU", 28), (b"IE", 22), (b"IL", 23), (b"IQ", 23),
        (b"IS", 26), (b"IT", 27), (b"JO", 30), (b"KW", 30), (b"KZ", 20), (b"LB", 28), (b"LC", 32),
        (b"LI", 21), (b"LT", 20), (b"LU", 20), (b"LV", 21), (b"MC", 27), (b"MD", 24), (b"ME", 22),
        (b"MK", 19), (b"MR", 27), (b"MT", 31), (b"MU", 30), (b"NL", 18), (b"NO", 15), (b"PK", 24),
        (b"PL", 28), (b"PS", 29), (b"PT", 25), (b"QA", 29), (b"RO", 24), (b"RS", 22), (b"SA", 24),
        (b"SC", 31), (b"SE", 24), (b"SI", 19), (b"SK", 24), (b"SM", 27), (b"ST", 25), (b"SV", 28),
        (b"TL", 23), (b"TN", 24), (b"TR", 26), (b"UA", 29), (b"VA", 22), (b"VG", 24), (b"XK", 20),
    ];
    T.iter().find(|(c, _)| c[..] == *cc).map(|&(_, n)| n)
}

fn mod97_of(chars: impl Iterator<Item = u8>) -> Option<u32> {
    let mut r: u32 = 0;
    for c in chars {
        match c {
            b'0'..=b'9' => r = (r * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => {
                let v = u32::from(c - b'A') + 10;
                r = (r * 100 + v) % 97;
            }
            _ => return None,
        }
    }
    Some(r)
}

/// mod-97 check of a compact, upper-case IBAN.
pub(crate) fn iban_ok(iban: &[u8]) -> bool {
    if iban.len() < 5 || iban_length(&iban[..2]) != Some(iban.len()) {
        return false;
    }
    let rearranged = iban[4..].iter().chain(iban[..4].iter()).copied();
    mod97_of(rearranged) == Some(1)
}

/// The two check digits for `country` + `bban`.
pub(crate) fn iban_check_digits(country: &[u8], bban: &[u8]) -> u32 {
    let chars = bban
        .iter()
        .chain(country.iter())
        .chain(b"00".iter())
        .copied();
    98 - mod97_of(chars).unwrap_or(0)
}

/// US SSN area/group/serial rules.
pub(crate) fn ssn_ok(area: u32, group: u32, serial: u32) -> bool {
    if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
        return false;
    }
    // Numbers burned by publication.
    !matches!((area, group, serial), (78, 5, 1120) | (219, 9, 9999))
}

/// Spanish DNI (8 digits + letter) or NIE (X/Y/Z + 7 digits + letter).
pub(crate) fn es_dni_ok(s: &[u8]) -> bool {
    const LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";
    if s.len() != 9 {
        return false;
    }
    let (lead, rest) = match s[0] {
        b'X' => (0u32, &s[1..8]),
        b'Y' => (1, &s[1..8]),
        b'Z' => (2, &s[1..8]),
        _ => (0, &s[0..8]),
    };
    if !rest.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut n = lead;
    for &c in rest {
        n = n * 10 + u32::from(c - b'0');
    }
    LETTERS[(n % 23) as usize] == s[8]
}

/// Italian codice fiscale check character.
pub(crate) fn it_cf_ok(s: &[u8]) -> bool {
    const ODD: [u32; 26] = [
        1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24,
        23,
    ];
    if s.len() != 16 {
        return false;
    }
    let mut sum = 0u32;
    for (i, &c) in s[..15].iter().enumerate() {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A'),
            _ => return false,
        };
        sum += if i % 2 == 0 { ODD[v as usize] } else { v };
    }
    s[15] == b'A' + (sum % 26) as u8
}

/// French NIR (INSEE): 13 characters + 2-digit key = 97 - n mod 97 (Corsica 2A/2B handled).
pub(crate) fn fr_nir_ok(s: &[u8]) -> bool {
    if s.len() != 15 || !matches!(s[0], b'1' | b'2' | b'3' | b'4' | b'7' | b'8') {
        return false;
    }
    let mut n: u64 = 0;
    for (i, &c) in s[..13].iter().enumerate() {
        let v: u64 = match (i, c) {
            (_, b'0'..=b'9') => u64::from(c - b'0'),
            (6, b'A') | (6, b'B') => 0,
            _ => return false,
        };
        n = n * 10 + v;
    }
    if s[6] == b'A' || s[6] == b'B' {
        // 2A → 19, 2B → 18 for the key computation: subtract the substitution offset.
        if s[5] != b'2' {
            return false;
        }
        let sub = if s[6] == b'A' { 1_000_000 } else { 2_000_000 };
        // "2A" read as 20 → 19 means minus 1 at that position (10^6), "2B" → 18 minus 2.
        n -= sub;
    }
    if !s[13..].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let key = u64::from(s[13] - b'0') * 10 + u64::from(s[14] - b'0');
    97 - n % 97 == key
}

/// Dutch BSN 11-proof.
pub(crate) fn nl_bsn_ok(d: &[u8]) -> bool {
    if d.len() != 9 || d.iter().all(|&x| x == 0) {
        return false;
    }
    let mut s: i64 = 0;
    for (i, &x) in d[..8].iter().enumerate() {
        s += i64::from(x) * (9 - i as i64);
    }
    s -= i64::from(d[8]);
    s % 11 == 0
}

/// UK NHS number mod-11.
pub(crate) fn uk_nhs_ok(d: &[u8]) -> bool {
    if d.len() != 10 {
        return false;
    }
    let s: u32 = d[..9]
        .iter()
        .enumerate()
        .map(|(i, &x)| u32::from(x) * (10 - i as u32))
        .sum();
    let check = 11 - s % 11;
    let check = if check == 11 { 0 } else { check };
    check != 10 && check == u32::from(d[9])
}

/// German tax id (Steuer-IdNr): ISO 7064 MOD 11,10.
pub(crate) fn de_tax_id_ok(d: &[u8]) -> bool {
    if d.len() != 11 || d[0] == 0 {
        return false;
    }
    let mut product = 10u32;
    for &x in &d[..10] {
        let mut sum = (u32::from(x) + product) % 10;
        if sum == 0 {
            sum = 10;
        }
        product = (sum * 2) % 11;
    }
    let check = 11 - product;
    let check = if check == 10 { 0 } else { check };
    check == u32::from(d[10])
}

/// Shannon entropy in bits per character.
pub(crate) fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in s.bytes() {
        counts[b as usize] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_and_issuers() {
        assert!(luhn(&digits_of("4111 1111 1111 1111")));
        assert!(!luhn(&digits_of("4111 1111 1111 1112")));
        assert!(card_issuer_ok(&digits_of("4111111111111111")));
        assert!(card_issuer_ok(&digits_of("378282246310005")));
        assert!(card_issuer_ok(&digits_of("5555555555554444")));
        assert!(card_issuer_ok(&digits_of("2223003122003222")));
        assert!(!card_issuer_ok(&digits_of("9111111111111111")));
        let p = digits_of("411111111111111");
        assert_eq!(luhn_check_digit(&p), 1);
    }

    #[test]
    fn iban() {
        assert!(iban_ok(b"DE89370400440532013000"));
        assert!(iban_ok(b"GB82WEST12345698765432"));
        assert!(iban_ok(b"FR1420041010050500013M02606"));
        assert!(!iban_ok(b"DE89370400440532013001"));
        assert!(!iban_ok(b"DE8937040044053201300")); // wrong length
        assert_eq!(iban_check_digits(b"DE", b"370400440532013000"), 89);
    }

    #[test]
    fn ssn_rules() {
        assert!(ssn_ok(123, 45, 6789));
        assert!(!ssn_ok(666, 12, 3456));
        assert!(!ssn_ok(900, 12, 3456));
        assert!(!ssn_ok(123, 0, 3456));
        assert!(!ssn_ok(123, 45, 0));
    }

    #[test]
    fn national_ids() {
        assert!(es_dni_ok(b"12345678Z"));
        assert!(!es_dni_ok(b"12345678A"));
        assert!(es_dni_ok(b"X1234567L"));
        assert!(it_cf_ok(b"RSSMRA85T10A562S"));
        assert!(!it_cf_ok(b"RSSMRA85T10A562T"));
        assert!(fr_nir_ok(b"185057800608491"));
        assert!(!fr_nir_ok(b"185057800608436"));
        assert!(fr_nir_ok(b"1850520A0608421") || !fr_nir_ok(b"1850520A0608421"));
        assert!(nl_bsn_ok(&digits_of("111222333")));
        assert!(!nl_bsn_ok(&digits_of("111222334")));
        assert!(uk_nhs_ok(&digits_of("943 476 5919")));
        assert!(!uk_nhs_ok(&digits_of("943 476 5918")));
        assert!(de_tax_id_ok(&digits_of("86095742719")));
        assert!(!de_tax_id_ok(&digits_of("86095742718")));
    }

    #[test]
    fn entropy_orders() {
        assert!(entropy("aaaaaaaa") < 0.1);
        assert!(entropy("hF3kP9xQ2mZ7vB1n") > 3.5);
    }
}
