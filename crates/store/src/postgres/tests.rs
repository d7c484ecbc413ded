//! Tests of what only the PostgreSQL store has (the generic suite is in `crate::tests`).
use super::*;
use crate::pg_testing::TestDatabase;
use crate::{CallPayload, CallRecord, Keyring, Source};

#[test]
fn passwords_stay_out_of_messages() {
    assert_eq!(
        redacted("postgres://app:s3cret@db:5432/log"),
        "postgres://app:***@db:5432/log"
    );
    assert_eq!(redacted("postgres://app@db/log"), "postgres://app@db/log");
    assert_eq!(redacted("postgres://db/log"), "postgres://db/log");
    let err = PgStore::connect("mysql://app:s3cret@db/log")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsupported store URL"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    // Nothing listens on port 1: a clear error, without the password, within the timeout.
    let opts = PgOptions {
        connect_timeout: Duration::from_secs(2),
        ..PgOptions::default()
    };
    let err = PgStore::connect_with("postgres://app:s3cret@127.0.0.1:1/log", &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn migrations_run_once_and_a_newer_schema_is_refused() {
    let Some(db) = TestDatabase::create("migrations_run_once_and_a_newer_schema_is_refused") else {
        return;
    };
    // Replicas starting together: the advisory lock lets one migrate, the others see it done.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| PgStore::connect(&db.url).unwrap());
        }
    });
    let store = PgStore::connect(&db.url).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    let applied: i64 = store
        .query_opt("SELECT COUNT(*) FROM downshift_schema", &[])
        .unwrap()
        .unwrap()
        .get(0);
    assert_eq!(applied, MIGRATIONS.len() as i64);
    store.probe_write().unwrap();
    store
        .execute(
            "INSERT INTO downshift_schema (version, applied_ms) VALUES (99, 0)",
            &[],
        )
        .unwrap();
    let err = PgStore::connect(&db.url).unwrap_err().to_string();
    assert!(err.contains("newer"), "{err}");
}

/// The server stores ciphertext only: the prompt is nowhere in the row, and the row decrypts
/// with the key file.
#[test]
fn the_database_never_sees_plaintext() {
    let Some(db) = TestDatabase::create("the_database_never_sees_plaintext") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ring, _) = Keyring::load_or_create(&dir.path().join("k.json")).unwrap();
    let secret = "the launch code is 0000-PLAINTEXT";
    let call = ring
        .seal(&CallRecord {
            meta: CallMeta::new("c1", 1, "m", Source::Gateway),
            payload: CallPayload {
                request: format!("{{\"messages\":[{{\"content\":\"{secret}\"}}]}}").into_bytes(),
                response: b"{}".to_vec(),
            },
        })
        .unwrap();
    let store = PgStore::connect(&db.url).unwrap();
    assert_eq!(store.insert_calls(std::slice::from_ref(&call)).unwrap(), 1);
    let rows = store
        .query("SELECT row_to_json(calls)::text FROM calls", &[])
        .unwrap();
    let raw: String = rows[0].get(0);
    assert!(!raw.contains("PLAINTEXT"), "{raw}");
    let payload: Vec<u8> = store
        .query_opt("SELECT payload FROM calls", &[])
        .unwrap()
        .unwrap()
        .get(0);
    assert!(!payload.windows(9).any(|w| w == b"PLAINTEXT"));
    let back = ring.open(&store.get_call("c1").unwrap().unwrap()).unwrap();
    assert!(String::from_utf8(back.request).unwrap().contains(secret));
}

/// A statement that waits for a lock longer than `lock_timeout` fails as busy (the gateway
/// answers 503), instead of hanging the request.
#[test]
fn a_held_lock_times_out_as_busy() {
    let Some(db) = TestDatabase::create("a_held_lock_times_out_as_busy") else {
        return;
    };
    let store = PgStore::connect(&db.url).unwrap();
    let quick = PgStore::connect_with(
        &db.url,
        &PgOptions {
            lock_timeout: Duration::from_millis(200),
            ..PgOptions::default()
        },
    )
    .unwrap();
    let mut holder = postgres::Client::connect(&db.url, NoTls).unwrap();
    let mut tx = holder.transaction().unwrap();
    tx.batch_execute("LOCK TABLE task_policies IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let t0 = std::time::Instant::now();
    let err = quick.set_policy(&Policy::new("t1", "cli")).unwrap_err();
    assert!(err.is_busy(), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    tx.rollback().unwrap();
    store.set_policy(&Policy::new("t1", "cli")).unwrap();
}

/// `url` with `param` appended to its query.
fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

/// Whether this session's connection is encrypted (PostgreSQL's own view).
fn encrypted(store: &PgStore) -> bool {
    store
        .query_opt(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .unwrap()
        .get(0)
}

#[test]
fn tls_is_used_and_checked_as_sslmode_asks() {
    let Some(db) = TestDatabase::create("tls_is_used_and_checked_as_sslmode_asks") else {
        return;
    };
    let plain = PgStore::connect(&db.url).unwrap();
    assert!(!encrypted(&plain), "no sslmode: plain TCP");
    let setting = |name: &str| -> String {
        plain
            .query_opt(&format!("SHOW {name}"), &[])
            .unwrap()
            .unwrap()
            .get(0)
    };
    if setting("ssl") != "on" {
        // The server is not ours to reconfigure (Debian's cluster has ssl = on by default).
        eprintln!("skipping the TLS half: the test server runs with ssl = off");
        return;
    }
    let required = PgStore::connect(&with_param(&db.url, "sslmode=require")).unwrap();
    assert!(encrypted(&required), "sslmode=require");

    // The server's own certificate as the CA: verify-ca passes; verify-full under a name the
    // certificate cannot carry is refused with a clear error. `hostaddr` keeps the address.
    let cert = setting("ssl_cert_file");
    if std::fs::metadata(&cert).is_err() {
        eprintln!("skipping the certificate checks: cannot read the server's {cert}");
        return;
    }
    let addr = db.url.split_once('@').map_or("", |(_, r)| r);
    let host_port = &addr[..addr.find('/').unwrap_or(addr.len())];
    let (host, _) = host_port.rsplit_once(':').unwrap_or((host_port, ""));
    let other_name = db
        .url
        .replacen(&format!("@{host}"), "@downshift-wrong-name.invalid", 1);
    let ca = |mode: &str, url: &str| {
        with_param(
            url,
            &format!("sslmode={mode}&sslrootcert={cert}&hostaddr={host}"),
        )
    };
    let opts = PgOptions {
        connect_timeout: Duration::from_secs(2),
        ..PgOptions::default()
    };
    let chain = PgStore::connect_with(&ca("verify-ca", &other_name), &opts).unwrap();
    assert!(encrypted(&chain), "verify-ca");
    let err = PgStore::connect_with(&ca("verify-full", &other_name), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("certificate not valid for name") && err.contains("sslmode"),
        "{err}"
    );
    // A CA file that did not sign the server's certificate: refused by verify-ca too.
    let dir = tempfile::tempdir().unwrap();
    let stranger = dir.path().join("other-ca.pem");
    std::fs::write(&stranger, OTHER_CA).unwrap();
    let url = with_param(
        &other_name,
        &format!(
            "sslmode=verify-ca&sslrootcert={}&hostaddr={host}",
            stranger.display()
        ),
    );
    let err = PgStore::connect_with(&url, &opts).unwrap_err().to_string();
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
}

/// A self-signed CA certificate that signed nothing the test server holds (generated once with
/// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=unrelated-ca`).
const OTHER_CA: &str = "\
-----BEGIN CERTIFICATE-----
MIIBhTCCASugAwIBAgIUQb2cZkqAj04aREGuwrb9/U3AUzIwCgYIKoZIzj0EAwIw
FzEVMBMGA1UEAwwMdW5yZWxhdGVkLWNhMCAXDTI2MTIwNzE3MzQxOFoYDzIxMjYx
MTEzMTczNDE4WjAXMRUwEwYDVQQDDAx1bnJlbGF0ZWQtY2EwWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAATqVGq5045H1LjoDyLLfbC+NNbe10mp3co9icbvHsOLY+Wv
NCXOa/0Rce+o+21X4rsO/xuJGvvjCBDAY+EuB3fko1MwUTAdBgNVHQ4EFgQUQQG4
tOi5EJdCKYKSaoCQyeR4up0wHwYDVR0jBBgwFoAUQQG4tOi5EJdCKYKSaoCQyeR4
up0wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiBYWotHddYKgX9X
GGzMUGGgUAfmGl/OutuiF6k4tF1uzgIhAN+UOEKJE5LTC73zKR5NQlLktkxijyAP
U7UI89xY2jvC
-----END CERTIFICATE-----
";

#[test]
fn a_server_that_refuses_tls_gives_a_clear_error() {
    // A stand-in server that answers PostgreSQL's TLS request with "N" (no TLS), as one with
    // ssl = off does.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut request = [0u8; 8];
            if conn.read_exact(&mut request).is_ok() {
                let _ = conn.write_all(b"N");
            }
        }
    });
    let opts = PgOptions {
        connect_timeout: Duration::from_secs(1),
        ..PgOptions::default()
    };
    let url = format!("postgres://app:s3cret@{addr}/log?sslmode=require");
    let err = PgStore::connect_with(&url, &opts).unwrap_err().to_string();
    assert!(err.contains("server does not support TLS"), "{err}");
    assert!(err.contains("ssl = on"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}
