//! HTTP/1.1 chunked transfer coding, for the small loopback clients (the demo, the tests) that
//! read whole responses off a raw socket.

/// The payload of a complete `Transfer-Encoding: chunked` body; stops at the last chunk, or at
/// the first malformed or truncated one.
pub fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(&data[..eol]);
        let size =
            usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_joined_and_extensions_ignored() {
        assert_eq!(
            dechunk(b"5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\n\r\n"),
            b"hello, world"
        );
        assert_eq!(dechunk(b"a\r\nshort"), b"");
        assert_eq!(dechunk(b""), b"");
    }
}
