//! The web UI in a real browser: headless Chromium, driven over WebDriver (chromedriver), loads
//! every page of a gateway holding real data — the BFCL trading calls imported and discovered,
//! a specialist trained and evaluated on them, live canary traffic answered by a specialist
//! endpoint, fallbacks from a specialist calling a tool it was not offered — and checks the
//! numbers against the CLI's `--json` output, the roles (an analyst sees no raw payloads and
//! no promote control; no key means the login page) and the audited, confirmed, CSRF-checked
//! policy change. Screenshots go to `<target>/tmp/ui-screenshots/`.
//!
//! Without Chromium the test is skipped with a reason, unless `CI` is set: then it fails.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const MODEL: &str = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

/// An executable on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// The browser and its driver, or why the test cannot run.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    let chrome = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|n| which(n))
        .ok_or("no chromium on PATH (apt-get install chromium chromium-driver)")?;
    let driver =
        which("chromedriver").ok_or("no chromedriver on PATH (apt-get install chromium-driver)")?;
    Ok((chrome, driver))
}

/// A chromedriver process, killed on drop.
struct Driver {
    child: Child,
    addr: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_driver(driver: &Path) -> Driver {
    let port = free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let addr = format!("127.0.0.1:{port}");
    let d = Driver { child, addr };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&d.addr).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}

/// One WebDriver session (W3C protocol: JSON over HTTP).
struct Browser<'a> {
    driver: &'a Driver,
    session: String,
    _profile: tempfile::TempDir,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One WebDriver request: (status, JSON body). chromedriver keeps the connection open, so the
/// body is read by its Content-Length.
fn wd(addr: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
    use std::io::{BufRead, BufReader, Read, Write};
    let body = if method == "GET" || method == "DELETE" {
        String::new()
    } else {
        body.to_string()
    };
    let mut s = std::net::TcpStream::connect(addr).expect("connect to chromedriver");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut len = 0usize;
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap();
        }
    }
    let mut buf = vec![0; len];
    r.read_exact(&mut buf).unwrap();
    (status, serde_json::from_slice(&buf).unwrap_or(Value::Null))
}

impl<'a> Browser<'a> {
    fn new(driver: &'a Driver, chrome: &Path) -> Browser<'a> {
        let profile = tempdir();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chrome,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--no-first-run", "--window-size=1200,1300",
                         format!("--user-data-dir={}", profile.path().display())],
            }
        }}});
        let (status, r) = wd(&driver.addr, "POST", "/session", &caps);
        assert_eq!(status, 200, "new session: {r}");
        let session = r["value"]["sessionId"].as_str().unwrap().to_owned();
        Browser {
            driver,
            session,
            _profile: profile,
        }
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let (status, r) = wd(&self.driver.addr, method, &path, &body);
        assert_eq!(status, 200, "{method} {path}: {r}");
        r["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({"url": url}));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", Value::Null)
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Runs `script` in the page and returns its value.
    fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    fn find(&self, css: &str) -> Option<String> {
        let path = format!("/session/{}/element", self.session);
        let (status, r) = wd(
            &self.driver.addr,
            "POST",
            &path,
            &json!({"using": "css selector", "value": css}),
        );
        (status == 200).then(|| r["value"][ELEMENT].as_str().unwrap().to_owned())
    }

    fn el(&self, css: &str) -> String {
        self.find(css)
            .unwrap_or_else(|| panic!("no element '{css}' on {}", self.url()))
    }

    fn text(&self, css: &str) -> String {
        let e = self.el(css);
        self.call("GET", &format!("/element/{e}/text"), Value::Null)
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn attr(&self, css: &str, name: &str) -> Option<String> {
        let e = self.el(css);
        self.call(
            "GET",
            &format!("/element/{e}/attribute/{name}"),
            Value::Null,
        )
        .as_str()
        .map(str::to_owned)
    }

    fn count(&self, css: &str) -> usize {
        self.js(&format!(
            "return document.querySelectorAll({}).length",
            json!(css)
        ))
        .as_u64()
        .unwrap() as usize
    }

    fn click(&self, css: &str) {
        let e = self.el(css);
        self.call("POST", &format!("/element/{e}/click"), json!({}));
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.el(css);
        self.call("POST", &format!("/element/{e}/clear"), json!({}));
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            json!({"text": text}),
        );
    }

    /// A PNG of the viewport, saved as `dir/name.png`.
    fn screenshot(&self, dir: &Path, name: &str) {
        let b64 = self.call("GET", "/screenshot", Value::Null);
        let png = base64_decode(b64.as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    fn login(&self, base: &str, key: &str) {
        self.goto(&format!("{base}/ui/login"));
        self.type_into("#key", key);
        self.click_to("#login button", "/ui");
    }

    /// Clicks and waits until the page's address ends with `suffix` (a click on a submit
    /// button may return before the navigation it starts has finished).
    fn click_to(&self, css: &str, suffix: &str) {
        self.click(css);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(self.url().ends_with(suffix) && self.js("return document.readyState") == "complete")
        {
            assert!(
                Instant::now() < deadline,
                "still on {} after clicking {css}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        wd(
            &self.driver.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            &Value::Null,
        );
    }
}

/// Standard base64 (what WebDriver's screenshot returns).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().filter(|c| **c == b'=').count();
        let n = chunk
            .iter()
            .take(4 - pad)
            .fold(0u32, |acc, c| (acc << 6) | val(*c))
            << (6 * pad);
        let three = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&three[..3 - pad]);
    }
    out
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The nearest-rank percentile (what the overview shows).
fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn num(s: &str) -> f64 {
    s.parse().unwrap_or_else(|_| panic!("not a number: '{s}'"))
}

/// An HTTP request with the UI cookie.
fn with_cookie(addr: &str, method: &str, path: &str, key: &str, body: &str) -> Resp {
    let cookie = format!("downshift_ui={key}");
    let mut h = vec![("Cookie", cookie.as_str())];
    if method == "POST" {
        h.push(("Content-Type", "application/x-www-form-urlencoded"));
    }
    http(addr, method, path, &h, body.as_bytes())
}

#[test]
fn the_web_ui_shows_the_cli_numbers_and_keeps_roles_apart() {
    let (chrome, chromedriver) = match browser() {
        Ok(b) => b,
        Err(why) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping the browser test: {why}");
            return;
        }
        Err(why) => panic!("CI is set but the browser test cannot run: {why}"),
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    // Real data: the BFCL trading calls, imported and discovered.
    let dir = tempdir();
    let d = dir.path().to_str().unwrap();
    let task = trading_task_in(dir.path());
    let records: Vec<Value> = trading_lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    // A specialist trained (two updates) and evaluated on the task's held-out calls.
    let adapters = dir.path().join("adapters");
    let adapter = adapters.join(&task);
    let model = repo_root().join(MODEL);
    let trained: Value = serde_json::from_str(
        ok(&[
            "train",
            "--task",
            &task,
            "--base",
            model.to_str().unwrap(),
            "--max-steps",
            "2",
            "--max-len",
            "512",
            "--tool-names",
            "--out",
            adapter.to_str().unwrap(),
            "--json",
            "--data-dir",
            d,
        ])
        .trim(),
    )
    .unwrap();
    let eval: Value = serde_json::from_str(
        ok(&[
            "eval",
            "--adapter",
            adapter.to_str().unwrap(),
            "--limit",
            "3",
            "--max-tokens",
            "32",
            "--no-base",
            "--json",
            "--data-dir",
            d,
        ])
        .trim(),
    )
    .unwrap();
    assert!(eval["calibration_curve"].is_array(), "{eval}");

    // The LLM and two specialist endpoints: one replaying the LLM's answers, one calling a
    // tool the request never offered (its answers fall back to the LLM).
    let replay = dir.path().join("calls.jsonl");
    let teacher = mock(&["--replay", replay.to_str().unwrap()]);
    let good = mock(&["--replay", replay.to_str().unwrap()]);
    let lies = unoffered_tool_answers(&records);
    let lies_file = dir.path().join("lies.jsonl");
    write_lines(&lies_file, &lies);
    let liar = mock(&["--replay", lies_file.to_str().unwrap()]);
    let cfg_path = dir.path().join("downshift.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[route]\nreload_ms = 100\n\n[loop]\nmax_trainings = 0\nadapters_dir = \"{}\"\n\n\
             [[specialists]]\nname = \"good\"\nbase_url = \"http://{}\"\nmodel = \"good-model\"\n\n\
             [[specialists]]\nname = \"liar\"\nbase_url = \"http://{}\"\nmodel = \"liar-model\"\n",
            adapters.display(),
            good.addr,
            liar.addr
        ),
    )
    .unwrap();
    let cfg = cfg_path.to_str().unwrap();
    let upstream = format!("http://{}", teacher.addr);
    let gw = Proc::start(
        &[
            "serve",
            "--config",
            cfg,
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            d,
            "--upstream",
            &upstream,
        ],
        &[],
    );
    let admin = gw.admin_key();
    let analyst = create_key(dir.path(), "analyst", "ui-analyst");
    let base = format!("http://{}", gw.addr);

    // Live traffic: canary with the good specialist, then `on` with the liar.
    let tool_calls: Vec<&Value> = records
        .iter()
        .filter(|r| r["response"]["choices"][0]["message"]["tool_calls"].is_array())
        .collect();
    let chat = |r: &Value| {
        post_json(
            &gw.addr,
            "/v1/chat/completions",
            Some(&admin),
            &r["request"].to_string(),
            &[],
        )
    };
    let promote = |args: &[&str]| {
        let mut a = vec!["promote", task.as_str(), "--data-dir", d, "--config", cfg];
        a.extend_from_slice(args);
        ok(&a);
    };
    let before = calls(dir.path(), &[]).len();
    let mut sent = 0;
    promote(&[
        "--mode",
        "canary:50",
        "--specialist",
        "good",
        "--window",
        "20",
    ]);
    // Sends the tool-call requests round and round until `n` answers satisfy `hit` (a minute at
    // most); counts what it sent.
    let mut drive = |n: usize, hit: &dyn Fn(&Resp) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut hits = 0;
        for r in tool_calls.iter().cycle() {
            let resp = chat(r);
            sent += 1;
            assert_eq!(resp.status, 200, "{}", resp.text());
            hits += usize::from(hit(&resp));
            if hits >= n || Instant::now() > deadline {
                break;
            }
        }
        hits
    };
    let by_specialist = drive(8, &|r: &Resp| {
        r.header("x-downshift-route")
            .is_some_and(|x| x.starts_with("specialist:"))
    });
    assert!(
        by_specialist >= 8,
        "the canary never reached the specialist"
    );
    promote(&[
        "--mode",
        "on",
        "--specialist",
        "liar",
        "--shadow-sample",
        "0",
    ]);
    let fallbacks = drive(3, &|r: &Resp| r.header("x-downshift-fallback").is_some());
    assert!(fallbacks >= 3, "no fallbacks");
    // Two calls from a named agent (its id is pseudonymised before it is stored).
    for r in &tool_calls[..2] {
        let resp = post_json(
            &gw.addr,
            "/v1/chat/completions",
            Some(&admin),
            &r["request"].to_string(),
            &[("x-downshift-agent", "trader-7")],
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
        sent += 1;
    }
    // Everything the gateway answered is stored before the pages are compared with the CLI.
    assert_eq!(wait_calls(dir.path(), before + sent).len(), before + sent);
    // …and so are the agreement measurements and route events (written in the background).
    let policies = || ok(&["policies", "--json", "--events", "100000", "--data-dir", d]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = policies();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = policies();
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
    }

    // No key: the pages send the browser to the login form; a bad key is a 401.
    let r = get(&gw.addr, "/ui", None);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/ui/login"));
    let r = http(
        &gw.addr,
        "POST",
        "/ui/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"key=dsk_not_a_key",
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("invalid API key"));
    assert_eq!(
        with_cookie(&gw.addr, "GET", "/ui/tasks", "dsk_wrong", "").status,
        303
    );

    let driver = start_driver(&chromedriver);
    let b = Browser::new(&driver, &chrome);
    b.goto(&format!("{base}/ui/tasks"));
    assert!(b.url().ends_with("/ui/login"), "{}", b.url());
    assert!(b.find("#login").is_some());
    b.screenshot(&shots, "login");

    // ---- the analyst ----
    b.login(&base, &analyst);
    assert!(b.url().ends_with("/ui"), "{}", b.url());
    assert_eq!(b.attr("body", "data-role").as_deref(), Some("analyst"));

    // Overview = `calls list --json` and `spend --json`.
    let all = calls(dir.path(), &[]);
    let route_of = |c: &Value| {
        if c["tags"]["downshift_route"] == "specialist" {
            "specialist"
        } else if c["tags"]["downshift_fallback"].is_string() {
            "fallback"
        } else {
            "llm"
        }
    };
    let n_spec = all.iter().filter(|c| route_of(c) == "specialist").count();
    let n_fb = all.iter().filter(|c| route_of(c) == "fallback").count();
    assert_eq!(num(&b.text("#kpi-calls")) as usize, all.len());
    assert_eq!(num(&b.text("#kpi-specialist")) as usize, n_spec);
    assert_eq!(num(&b.text("#kpi-fallback")) as usize, n_fb);
    assert_eq!(
        b.text("#kpi-specialist-share"),
        format!("{:.1}%", n_spec as f64 / all.len() as f64 * 100.0)
    );
    let mut lat: Vec<f64> = all
        .iter()
        .filter_map(|c| c["latency_us"].as_f64())
        .map(|u| u / 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    for (id, p) in [("#kpi-p50", 0.5), ("#kpi-p95", 0.95), ("#kpi-p99", 0.99)] {
        assert_eq!(
            b.text(id),
            format!("{:.1} ms", nearest_rank(&lat, p)),
            "{id}"
        );
    }
    let spend: f64 = json_lines(&ok(&[
        "spend",
        "--by",
        "model",
        "--since",
        "1970-01-01",
        "--json",
        "--data-dir",
        d,
        "--config",
        cfg,
    ]))
    .iter()
    .map(|r| r["usd"].as_f64().unwrap())
    .sum();
    let shown = b.text("#kpi-cost-without");
    let want = if spend >= 1.0 {
        format!("${spend:.2}")
    } else {
        format!("${spend:.4}")
    };
    assert_eq!(shown, want, "the LLM-only cost is the spend report's total");
    assert!(b.count("#chart-hourly rect") >= 2, "hourly bars by route");
    assert!(b.count("#chart-daily rect") >= 2);
    b.screenshot(&shots, "overview");

    // Tasks = `tasks list --json`, sortable.
    let tasks = json_lines(&ok(&["tasks", "list", "--json", "--data-dir", d]));
    b.goto(&format!("{base}/ui/tasks"));
    assert_eq!(b.count("#tasks tbody tr"), tasks.len());
    for t in &tasks {
        let id = t["id"].as_str().unwrap();
        let cell = |k: &str| {
            b.js(&format!(
                "return document.querySelector('tr[data-task=\"{id}\"] td[data-key=\"{k}\"]').dataset.value"
            ))
        };
        assert_eq!(
            num(cell("calls").as_str().unwrap()),
            t["calls"].as_f64().unwrap()
        );
        for k in ["share_calls", "share_tokens", "share_cost", "suitability"] {
            assert_eq!(
                num(cell(k).as_str().unwrap()),
                t[k].as_f64().unwrap(),
                "{id} {k}"
            );
        }
    }
    // Sorted by calls, largest first; then by label, ascending, on request.
    let order = |b: &Browser| -> Vec<String> {
        b.js("return [...document.querySelectorAll('#tasks tbody tr')].map(r => r.dataset.task)")
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    // The task ids sorted by `key` (then by id), as the page must list them.
    let sorted = |key: fn(&Value) -> String| -> Vec<String> {
        let mut t: Vec<&Value> = tasks.iter().collect();
        t.sort_by(|a, b| {
            key(a)
                .cmp(&key(b))
                .then(a["id"].as_str().cmp(&b["id"].as_str()))
        });
        t.iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // Largest first: the complement, zero-padded, sorts as the count descending.
    assert_eq!(
        order(&b),
        sorted(|t| format!("{:020}", u64::MAX - t["calls"].as_u64().unwrap()))
    );
    b.click_to("a[data-sort=\"label\"]", "sort=label&dir=desc");
    b.click_to("a[data-sort=\"label\"]", "sort=label&dir=asc");
    assert_eq!(
        order(&b),
        sorted(|t| t["label"].as_str().unwrap().to_owned())
    );
    b.screenshot(&shots, "tasks");

    // Task detail = `tasks show --json`, `eval --json`, `policies --json`.
    let shown_task: Value = serde_json::from_str(&ok(&[
        "tasks",
        "show",
        &task,
        "--samples",
        "5",
        "--json",
        "--data-dir",
        d,
    ]))
    .unwrap();
    let pol: Value = serde_json::from_str(&policies()).unwrap();
    b.goto(&format!("{base}/ui/tasks/{task}"));
    assert_eq!(b.text("#task-id"), task);
    assert_eq!(
        num(&b.text("#task-calls")),
        shown_task["calls"].as_f64().unwrap()
    );
    assert_eq!(b.text("#task-mode"), "on");
    let samples = shown_task["samples"].as_array().unwrap();
    assert_eq!(b.count("#samples tr.sample"), samples.len());
    for (i, s) in samples.iter().enumerate() {
        let input = b.js(&format!(
            "return document.querySelectorAll('#samples tr.sample')[{i}].querySelector('td:nth-child(2) pre').textContent"
        ));
        assert_eq!(input.as_str(), s["input"].as_str(), "sample {i}");
    }
    assert_eq!(b.count("#promote"), 0, "an analyst gets no promote control");
    assert_eq!(b.count("a.raw"), 0, "an analyst gets no raw payload links");
    let exact = b.js("return document.querySelector('.eval .exact').dataset.value");
    assert_eq!(
        num(exact.as_str().unwrap()),
        eval["exact_match"].as_f64().unwrap()
    );
    assert_eq!(
        b.count("#calibration-0 polyline"),
        1,
        "the calibration curve"
    );
    let agreement = &pol["agreement"][&task];
    assert_eq!(
        num(&b.attr("#agreement-window", "data-value").unwrap()) as u64,
        agreement["measurements"].as_u64().unwrap()
    );
    if let Some(m) = agreement["mean"].as_f64() {
        assert_eq!(num(&b.attr("#agreement-mean", "data-value").unwrap()), m);
    }
    assert_eq!(
        b.count("#chart-agreement line.threshold"),
        1,
        "the demotion threshold is drawn"
    );
    let cli_fallbacks = pol["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["task"] == task.as_str()
                && e["kind"] == "fallback"
                && e["detail"]["reason"] == "unoffered_tool"
        })
        .count();
    assert!(cli_fallbacks >= 3);
    assert_eq!(
        num(&b.text("#fallbacks tr[data-reason=\"unoffered_tool\"] td.n")) as usize,
        cli_fallbacks
    );
    b.screenshot(&shots, "task");

    // Raw payloads and policy changes are refused to an analyst, whatever the browser sends.
    let call_id = samples[0]["call_id"].as_str().unwrap();
    let r = with_cookie(
        &gw.addr,
        "GET",
        &format!("/ui/calls/{call_id}"),
        &analyst,
        "",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = with_cookie(
        &gw.addr,
        "POST",
        &format!("/ui/tasks/{task}/policy"),
        &analyst,
        "csrf=x&mode=off&confirm=yes",
    );
    assert_eq!(r.status, 403, "{}", r.text());

    // Calls = `calls list --json` with the same filters.
    b.goto(&format!("{base}/ui/calls?route=specialist&limit=1000"));
    let spec_calls = calls(dir.path(), &["--tag", "downshift_route=specialist"]);
    assert_eq!(
        num(&b.attr("#call-count", "data-count").unwrap()) as usize,
        spec_calls.len()
    );
    let ids =
        b.js("return [...document.querySelectorAll('#calls tr.call')].map(r => r.dataset.call)");
    let want: Vec<&str> = spec_calls
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids.as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect::<Vec<_>>(),
        want
    );
    b.goto(&format!(
        "{base}/ui/calls?route=fallback:unoffered_tool&status=ok&limit=1000"
    ));
    let fb_calls = calls(
        dir.path(),
        &[
            "--tag",
            "downshift_fallback=unoffered_tool",
            "--status",
            "ok",
        ],
    );
    assert_eq!(
        num(&b.attr("#call-count", "data-count").unwrap()) as usize,
        fb_calls.len()
    );
    // An agent by the id it sent, as `calls list --agent` takes it.
    b.goto(&format!("{base}/ui/calls?agent=trader-7&limit=1000"));
    let agent_calls = calls(dir.path(), &["--agent", "trader-7"]);
    assert_eq!(agent_calls.len(), 2);
    assert_eq!(
        num(&b.attr("#call-count", "data-count").unwrap()) as usize,
        agent_calls.len()
    );
    b.goto(&format!("{base}/ui/calls"));
    assert_eq!(b.count("#calls tr.call"), 50.min(all.len()));
    b.screenshot(&shots, "calls");

    // Training runs: the adapter's curve and settings.
    b.goto(&format!("{base}/ui/training"));
    let run = format!(".run[data-dir=\"{}\"]", adapter.display());
    assert!(
        b.find(&run).is_some(),
        "the run in {} is listed",
        adapter.display()
    );
    assert_eq!(
        b.text(&format!("{run} td.updates")),
        trained["steps"].to_string()
    );
    assert_eq!(
        b.count(&format!("{run} #loss-0 polyline")),
        2,
        "loss and validation loss"
    );
    b.screenshot(&shots, "training");

    // ---- the admin ----
    b.click_to("header form button", "/ui/login");
    b.login(&base, &admin);
    assert_eq!(b.attr("body", "data-role").as_deref(), Some("admin"));
    b.goto(&format!("{base}/ui/tasks/{task}"));
    assert!(
        b.find("#promote").is_some(),
        "an admin gets the promote control"
    );
    // A raw payload, audited.
    b.click_to(
        "a.raw",
        &format!("/ui/calls/{}", samples[0]["call_id"].as_str().unwrap()),
    );
    let raw = b.text("#raw-request");
    assert!(raw.contains("messages"), "{raw}");
    let audit = get(&gw.addr, "/admin/audit?limit=50", Some(&admin)).json();
    assert!(
        audit["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "read_raw" && e["detail"] == "web ui"),
        "{audit}"
    );
    // Demote on → shadow: confirmed on a second page, then applied as `promote` applies it.
    b.goto(&format!("{base}/ui/tasks/{task}"));
    b.js("document.querySelector('#policy-form select[name=mode]').value = 'shadow'");
    b.click_to("#policy-form button", "/policy");
    assert_eq!(b.text("#from"), "on");
    assert_eq!(b.text("#to"), "shadow");
    assert_eq!(
        serde_json::from_str::<Value>(&ok(&["policies", "--json", "--data-dir", d])).unwrap()["policies"]
            [0]["mode"],
        "on",
        "nothing changes before the confirmation"
    );
    b.screenshot(&shots, "confirm");
    b.click_to("#confirm-button", &format!("/ui/tasks/{task}"));
    assert_eq!(b.text("#task-mode"), "shadow");
    let after: Value = serde_json::from_str(&ok(&["policies", "--json", "--data-dir", d])).unwrap();
    assert_eq!(after["policies"][0]["mode"], "shadow");
    assert_eq!(after["policies"][0]["specialist"], "liar");
    let audit = get(&gw.addr, "/admin/audit?limit=50", Some(&admin)).json();
    assert!(
        audit["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "set_policy" && e["target"] == task.as_str()),
        "{audit}"
    );
    // A form from elsewhere is refused: a wrong token, or another site's Origin.
    let r = with_cookie(
        &gw.addr,
        "POST",
        &format!("/ui/tasks/{task}/policy"),
        &admin,
        "csrf=nope&mode=off&confirm=yes",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let token = b.js("return document.querySelector('#policy-form input[name=csrf]').value");
    let cookie = format!("downshift_ui={admin}");
    let form = format!("csrf={}&mode=off&confirm=yes", token.as_str().unwrap());
    let r = http(
        &gw.addr,
        "POST",
        &format!("/ui/tasks/{task}/policy"),
        &[
            ("Cookie", cookie.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", "http://evil.example"),
        ],
        form.as_bytes(),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let still: Value = serde_json::from_str(&ok(&["policies", "--json", "--data-dir", d])).unwrap();
    assert_eq!(still["policies"][0]["mode"], "shadow");
    b.goto(&format!("{base}/ui/tasks/{task}"));
    b.screenshot(&shots, "task-admin");
    drop(b);
    gw.stop();
}
