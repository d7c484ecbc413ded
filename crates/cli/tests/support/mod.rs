//! Test harness: runs the real `downshift` binary on loopback ports chosen by the OS, and talks
//! plain HTTP/1.1 to it so tests see the exact bytes on the wire.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_downshift");

/// A running `downshift` process, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Proc {
    pub child: Child,
    pub addr: String,
    pub lines: mpsc::Receiver<String>,
    pub first_lines: Vec<String>,
}

impl Proc {
    /// Starts `downshift ARGS` and waits for its "listening on http://ADDR" line.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Proc {
        Proc::start_logging(args, env, Stdio::inherit())
    }

    /// [`Proc::start`] with its stderr (the logs) sent to `stderr`.
    pub fn start_logging(args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Proc {
        let mut child = command(args, env)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn downshift");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut first_lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("downshift {args:?} did not start; said {first_lines:?}");
            };
            if let Some(addr) = line.split("listening on http://").nth(1) {
                let addr = addr.trim().to_owned();
                first_lines.push(line);
                wait_for_router(&addr, deadline);
                return Proc {
                    child,
                    addr,
                    lines: rx,
                    first_lines,
                };
            }
            first_lines.push(line);
        }
    }

    /// The bootstrap admin key the first `serve` printed.
    pub fn admin_key(&self) -> String {
        self.first_lines
            .iter()
            .find_map(|l| l.split("store it now): ").nth(1))
            .expect("no bootstrap admin key printed")
            .trim()
            .to_owned()
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "downshift exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("downshift did not stop on SIGTERM");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway serves while its task router builds the classifier from the log (every call goes
/// to the LLM meanwhile); tests that route want it built, so they wait for `/healthz` to stop
/// saying `"router":"building"` (the mock and other servers do not say it at all).
fn wait_for_router(addr: &str, deadline: Instant) {
    while Instant::now() < deadline {
        let r = get(addr, "/healthz", None);
        if r.status != 200 || !String::from_utf8_lossy(&r.body).contains("\"router\":\"building\"")
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the gateway at {addr} did not build its task router in time");
}

/// `downshift ARGS` with a clean environment: quiet logs, none of the user's downshift settings.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("DOWNSHIFT_LOG", "warn")
        .env_remove("DOWNSHIFT_ADMIN_KEY")
        .env_remove("DOWNSHIFT_DATA_DIR")
        .env_remove("DOWNSHIFT_KEY_FILE")
        .env_remove("DOWNSHIFT_STORE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `downshift ARGS` to completion: (exit ok, stdout, stderr).
pub fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = command(args, env).output().expect("run downshift");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `cmd` with piped stdio, writes `input` to its stdin, and waits for its output.
pub fn output_with_stdin(cmd: &mut Command, input: &str) -> std::process::Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn downshift");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for downshift")
}

/// Runs and expects success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let (success, out, err) = run(args, &[]);
    assert!(success, "downshift {args:?} failed: {err}");
    out
}

pub fn mock(extra: &[&str]) -> Proc {
    let mut args = vec!["mock-llm", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Proc::start(&args, &[])
}

pub fn serve(data: &Path, upstream: &str, extra: &[&str]) -> Proc {
    let data = data.to_str().unwrap().to_owned();
    let url = format!("http://{upstream}");
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data,
        "--upstream",
        &url,
    ];
    args.extend_from_slice(extra);
    Proc::start(&args, &[])
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request (Connection: close) and reads the whole response.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = send(addr, method, path, headers, body);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

/// Opens a connection and writes a request; the caller reads.
pub fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes).expect("write request");
    s
}

pub fn post_json(
    addr: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
    extra: &[(&str, &str)],
) -> Resp {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    headers.extend_from_slice(extra);
    http(addr, "POST", path, &headers, body.as_bytes())
}

pub fn get(addr: &str, path: &str, key: Option<&str>) -> Resp {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    http(addr, "GET", path, &headers, b"")
}

/// One request on its own connection; `None` when the gateway is gone (killed mid-burst).
/// Returns the status and the call id the gateway answered with.
pub fn try_post(addr: &str, body: &str) -> Option<(u16, Option<String>)> {
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let id = head.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("x-downshift-call-id")
            .then(|| v.trim().to_owned())
    });
    Some((status, id))
}

fn parse_response(raw: &[u8]) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        downshift_api::dechunk(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

/// A temporary data directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// `calls list --json` as parsed objects.
pub fn calls(data: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let d = data.to_str().unwrap();
    let mut args = vec![
        "calls",
        "list",
        "--json",
        "--limit",
        "100000",
        "--data-dir",
        d,
    ];
    args.extend_from_slice(extra);
    ok(&args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `calls show ID --json`: the call's metadata, decrypted request and response (and attempts).
pub fn show(data: &Path, id: &str) -> serde_json::Value {
    let out = ok(&[
        "calls",
        "show",
        id,
        "--json",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    serde_json::from_str(&out).unwrap()
}

/// `keys create --role ROLE --name NAME`: the new key's secret.
pub fn create_key(data: &Path, role: &str, name: &str) -> String {
    let d = data.to_str().unwrap();
    let out = ok(&[
        "keys",
        "create",
        "--role",
        role,
        "--name",
        name,
        "--json",
        "--data-dir",
        d,
    ]);
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits until `calls list` shows at least `n` calls (the write path is asynchronous).
pub fn wait_calls(data: &Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = calls(data, &[]);
        if c.len() >= n || Instant::now() > deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The repository root (for the fetched development data).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The BFCL multi-turn calls whose only tools are the trading API (one agent's task, 78
/// calls), as import-format JSON Lines.
pub fn trading_lines() -> Vec<String> {
    let bfcl = repo_root().join("data/bfcl/bfcl.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&bfcl)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch.sh bfcl)", bfcl.display()))
        .lines()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["metadata"]["bfcl_category"] == "multi_turn_base"
                && v["request"]["tools"].as_array().unwrap().iter().all(|t| {
                    t["function"]["description"]
                        .as_str()
                        .unwrap()
                        .contains("belongs to the trading system")
                })
        })
        .map(String::from)
        .collect();
    assert!(lines.len() > 60, "{} trading calls", lines.len());
    lines
}

/// Imports the trading calls into the data directory `dir` (kept as `dir/calls.jsonl`, the
/// mock's replay file), discovers their tasks, and returns the largest task's id.
pub fn trading_task_in(dir: &Path) -> String {
    let d = dir.to_str().unwrap();
    let file = dir.join("calls.jsonl");
    std::fs::write(&file, trading_lines().join("\n") + "\n").unwrap();
    ok(&["import", file.to_str().unwrap(), "--data-dir", d]);
    ok(&["discover", "--embedder", "hashed", "--data-dir", d]);
    let tasks: Vec<serde_json::Value> = ok(&["tasks", "list", "--json", "--data-dir", d])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let top = tasks
        .iter()
        .max_by_key(|t| t["calls"].as_u64().unwrap_or(0))
        .unwrap_or_else(|| panic!("no tasks: {tasks:?}"));
    top["id"].as_str().unwrap().to_string()
}

/// Writes records as JSON Lines.
pub fn write_lines(path: &Path, records: &[serde_json::Value]) {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// The records with every answered tool call renamed to a tool no request offers
/// (`wire_all_funds`): a specialist replaying them is refused with `unoffered_tool`.
pub fn unoffered_tool_answers(records: &[serde_json::Value]) -> Vec<serde_json::Value> {
    records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if let Some(calls) = r["response"]["choices"][0]["message"]["tool_calls"].as_array_mut()
            {
                for c in calls {
                    c["function"]["name"] = serde_json::json!("wire_all_funds");
                }
            }
            r
        })
        .collect()
}
