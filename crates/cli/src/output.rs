//! Human output: aligned tables and times.

use anyhow::{Result, bail};

/// Prints rows under a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Runs `write` on a buffered writer for `out`, or on stdout when `out` is `None`. A file is
/// written beside its target and renamed into place, so a failed export leaves no half file.
pub fn write_output<T>(
    out: Option<&std::path::Path>,
    write: impl FnOnce(&mut dyn std::io::Write) -> Result<T>,
) -> Result<T> {
    use anyhow::Context;
    use std::io::Write;
    let Some(path) = out else {
        let mut stdout = std::io::stdout().lock();
        let v = write(&mut stdout)?;
        stdout.flush()?;
        return Ok(v);
    };
    let tmp = path.with_extension("partial");
    let f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut w = std::io::BufWriter::new(f);
    let v = match write(&mut w).and_then(|v| w.flush().map(|()| v).map_err(Into::into)) {
        Ok(v) => v,
        Err(e) => {
            drop(w);
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    drop(w);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(v)
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// A point in time: RFC 3339, a date (`2026-11-25`), or an age (`30m`, `24h`, `7d`) before now.
pub fn parse_time(s: &str) -> Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc().timestamp_millis());
    }
    let age = parse_duration_ms(s).map_err(|_| {
        anyhow::anyhow!(
            "'{s}' is not a time: use RFC 3339, YYYY-MM-DD, or an age like 30m, 24h, 7d"
        )
    })?;
    Ok(downshift_store::now_ms() - age)
}

/// A duration like `90s`, `30m`, `24h`, `7d`, `2w`, in milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64> {
    let (num, unit) = s.split_at(s.trim_end_matches(char::is_alphabetic).len());
    let n: i64 = match num.parse() {
        Ok(n) if n >= 0 => n,
        _ => bail!("'{s}' is not a duration: use a number and a unit, like 90s, 30m, 24h, 7d"),
    };
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => bail!("'{s}': unknown unit '{unit}' (s, m, h, d, w)"),
    };
    Ok(n * ms)
}

/// `k=v` → (k, v).
pub fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("'{s}' is not k=v")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_three_forms() {
        assert_eq!(parse_time("2025-01-01T00:00:00Z").unwrap(), 1735689600000);
        assert_eq!(parse_time("2025-01-01").unwrap(), 1735689600000);
        let age = downshift_store::now_ms() - parse_time("2h").unwrap();
        assert!((7_199_000..7_260_000).contains(&age));
        assert!(parse_time("soon").is_err());
        assert!(parse_time("5y").is_err());
    }

    #[test]
    fn a_failed_write_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.jsonl");
        let r: Result<()> = write_output(Some(&target), |w| {
            w.write_all(b"half a line")?;
            anyhow::bail!("disk full")
        });
        assert!(r.unwrap_err().to_string().contains("disk full"));
        assert!(!target.exists());
        assert!(!target.with_extension("partial").exists());
        write_output(Some(&target), |w| Ok(w.write_all(b"ok\n")?)).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "ok\n");
        let missing = dir.path().join("no/such/dir/out.jsonl");
        let err = write_output(Some(&missing), |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot create"), "{err}");
    }

    #[test]
    fn tags_parse() {
        assert_eq!(parse_tag("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_tag("=x").is_err());
        assert!(parse_tag("x").is_err());
    }
}
