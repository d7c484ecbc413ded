//! End-to-end: OpenTelemetry traces and Prometheus metrics. The real `downshift serve`, in front
//! of real `downshift mock-llm`s, exports its call spans over OTLP/HTTP to a receiver this test
//! runs on loopback, which decodes them with the OTLP protobuf types; `/metrics` is read with a
//! strict parser of the Prometheus text format.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;
use serde_json::Value;
use support::*;

const CHAT: &str = "/v1/chat/completions";

/// A span as received, with the `service.name` of its resource.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    span: opentelemetry_proto::tonic::trace::v1::Span,
}

/// An OTLP/HTTP trace receiver: accepts `POST /v1/traces` with a protobuf body and keeps every
/// span; anything else is answered 400 and remembered as a problem.
struct Receiver {
    addr: String,
    spans: Arc<Mutex<Vec<Received>>>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let problems = Arc::new(Mutex::new(Vec::new()));
        let (s, p) = (spans.clone(), problems.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (s, p) = (s.clone(), p.clone());
                std::thread::spawn(move || {
                    if let Err(e) = serve_one(conn, &s) {
                        p.lock().unwrap().push(e);
                    }
                });
            }
        });
        Receiver {
            addr,
            spans,
            problems,
        }
    }

    /// The spans of the calls `ids` (by `downshift.call_id`), waiting until all have come.
    fn spans_of(&self, ids: &[&str]) -> HashMap<String, Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found: HashMap<String, Received> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter_map(|r| {
                    let id = str_attr(&r.span.attributes, "downshift.call_id")?;
                    ids.contains(&id.as_str()).then(|| (id, r.clone()))
                })
                .collect();
            let problems = self.problems.lock().unwrap().clone();
            assert!(problems.is_empty(), "receiver problems: {problems:?}");
            if found.len() == ids.len() {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "spans of {ids:?} not all received; got {:?}",
                found.keys()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Reads one request (Content-Length bodies only, as the exporter sends), decodes it, answers.
fn serve_one(mut conn: std::net::TcpStream, spans: &Mutex<Vec<Received>>) -> Result<(), String> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(conn.try_clone().map_err(|e| e.to_string())?);
    let mut request_line = String::new();
    reader
        .read_line(&mut request_line)
        .map_err(|e| e.to_string())?;
    if request_line.is_empty() {
        return Ok(());
    }
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no content-length in {headers:?}"))?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    let result = if !request_line.starts_with("POST /v1/traces ") {
        Err(format!("unexpected request {request_line:?}"))
    } else if headers.get("content-type").map(String::as_str) != Some("application/x-protobuf") {
        Err(format!("not protobuf: {headers:?}"))
    } else {
        ExportTraceServiceRequest::decode(body.as_slice())
            .map_err(|e| format!("undecodable export: {e}"))
    };
    let status = if result.is_ok() {
        "200 OK"
    } else {
        "400 Bad Request"
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let export = result?;
    let mut got = spans.lock().unwrap();
    for rs in export.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| str_attr(&r.attributes, "service.name"))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                got.push(Received {
                    service: service.clone(),
                    span,
                });
            }
        }
    }
    Ok(())
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn str_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    match attr(attrs, key)? {
        Any::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attrs, key)? {
        Any::IntValue(i) => Some(*i),
        _ => None,
    }
}

fn bool_attr(attrs: &[KeyValue], key: &str) -> Option<bool> {
    match attr(attrs, key)? {
        Any::BoolValue(b) => Some(*b),
        _ => None,
    }
}

/// `serve --config FILE --no-auth` with `config` written to the data directory.
fn serve_config(data: &Path, config: &str) -> Proc {
    let file = data.join("downshift.toml");
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(&file, config).unwrap();
    let (file, d) = (file.to_str().unwrap(), data.to_str().unwrap());
    Proc::start(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            file,
            "--data-dir",
            d,
            "--no-auth",
        ],
        &[],
    )
}

/// An address nothing listens on (bound, then released).
fn closed_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap().to_string();
    drop(l);
    a
}

/// `usage` of a chat completion, or of the last chunk of a stream that carries one.
fn usage(resp: &Resp) -> (i64, i64) {
    let sse = resp
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let body = if sse {
        resp.text()
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .rfind(|v| v["usage"].is_object())
            .expect("a chunk with usage")
    } else {
        resp.json()
    };
    (
        body["usage"]["prompt_tokens"].as_i64().unwrap(),
        body["usage"]["completion_tokens"].as_i64().unwrap(),
    )
}

fn call_id(resp: &Resp) -> String {
    resp.header("x-downshift-call-id")
        .expect("a call id")
        .to_owned()
}

#[test]
fn call_spans_reach_an_otlp_collector_with_the_genai_attributes_and_metrics_follow_the_calls() {
    let collector = Receiver::start();
    let good = mock(&[]);
    let bad = mock(&["--fail-rate", "1"]);
    let down = closed_port();
    let dir = tempdir();
    let gw = serve_config(
        dir.path(),
        &format!(
            "[[upstreams]]\nname = \"good\"\nbase_url = \"http://{}\"\n\
             [[upstreams]]\nname = \"bad\"\nbase_url = \"http://{}\"\n\
             [[upstreams]]\nname = \"down\"\nbase_url = \"http://{down}\"\n\
             [routing]\nbalance = \"ordered\"\n\
             [routing.models]\n\"gpt-4o-mini\" = \"good\"\n\"gpt-4o\" = [\"bad\", \"good\"]\n\"o1\" = \"down\"\n\
             [discover.prices]\n\"gpt-4o-mini\" = {{ prompt = 1.5, completion = 4.0 }}\n\
             [telemetry]\notlp_endpoint = \"http://{}\"\nservice_name = \"downshift-e2e\"\nexport_delay_ms = 50\n",
            good.addr, bad.addr, collector.addr
        ),
    );

    // Plain, inside the agent's own trace.
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let parent = "b7ad6b7169203331";
    let traceparent = format!("00-{trace_id}-{parent}-01");
    let plain = post_json(
        &gw.addr,
        CHAT,
        None,
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there"}]}"#,
        &[("traceparent", &traceparent)],
    );
    assert_eq!(plain.status, 200, "{}", plain.text());
    // Streamed, with usage in the last chunk.
    let streamed = post_json(
        &gw.addr,
        CHAT,
        None,
        r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"stream me a reply"}]}"#,
        &[],
    );
    assert_eq!(streamed.status, 200, "{}", streamed.text());
    assert!(streamed.text().contains("data: [DONE]"));
    // The first deployment fails; the second answers.
    let retried = post_json(
        &gw.addr,
        CHAT,
        None,
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"try twice"}]}"#,
        &[],
    );
    assert_eq!(retried.status, 200, "{}", retried.text());
    assert_eq!(retried.header("x-downshift-attempts"), Some("2"));
    // Nobody listens: the gateway's own error.
    let failed = post_json(
        &gw.addr,
        CHAT,
        None,
        r#"{"model":"o1","messages":[{"role":"user","content":"anyone?"}]}"#,
        &[],
    );
    assert_eq!(failed.status, 502, "{}", failed.text());

    let ids = [
        call_id(&plain),
        call_id(&streamed),
        call_id(&retried),
        call_id(&failed),
    ];
    let spans = collector.spans_of(&ids.iter().map(String::as_str).collect::<Vec<_>>());

    for (resp, stream) in [(&plain, false), (&streamed, true), (&retried, false)] {
        let r = &spans[&call_id(resp)];
        let (s, a) = (&r.span, &r.span.attributes);
        assert_eq!(r.service, "downshift-e2e");
        assert_eq!(s.kind, SpanKind::Client as i32);
        let model = str_attr(a, "gen_ai.request.model").unwrap();
        assert_eq!(s.name, format!("chat {model}"));
        assert_eq!(
            str_attr(a, "gen_ai.operation.name").as_deref(),
            Some("chat")
        );
        assert_eq!(
            str_attr(a, "gen_ai.provider.name").as_deref(),
            Some("openai")
        );
        assert_eq!(str_attr(a, "gen_ai.system").as_deref(), Some("openai"));
        let body_model = if stream {
            model.clone()
        } else {
            resp.json()["model"].as_str().unwrap().to_owned()
        };
        assert_eq!(str_attr(a, "gen_ai.response.model"), Some(body_model));
        let (input, output) = usage(resp);
        assert!(input > 0 && output > 0, "{input} {output}");
        assert_eq!(int_attr(a, "gen_ai.usage.input_tokens"), Some(input));
        assert_eq!(int_attr(a, "gen_ai.usage.output_tokens"), Some(output));
        assert_eq!(int_attr(a, "http.response.status_code"), Some(200));
        assert_eq!(str_attr(a, "downshift.route").as_deref(), Some("llm"));
        assert_eq!(str_attr(a, "downshift.upstream").as_deref(), Some("good"));
        assert_eq!(str_attr(a, "downshift.outcome").as_deref(), Some("ok"));
        assert_eq!(bool_attr(a, "downshift.stream"), Some(stream));
        assert!(str_attr(a, "downshift.task").is_none(), "routing is off");
        assert_eq!(
            s.status.as_ref().map(|st| st.code),
            Some(StatusCode::Ok as i32)
        );
        assert!(s.end_time_unix_nano > s.start_time_unix_nano);
    }

    // The agent's trace is joined.
    let p = &spans[&ids[0]].span;
    assert_eq!(hex(&p.trace_id), trace_id);
    assert_eq!(hex(&p.parent_span_id), parent);
    assert!(spans[&ids[1]].span.parent_span_id.is_empty());

    // Each attempt is an event on the call's span.
    let r = &spans[&ids[2]].span;
    assert_eq!(int_attr(&r.attributes, "downshift.attempts"), Some(2));
    let attempts: Vec<(String, Option<i64>)> = r
        .events
        .iter()
        .filter(|e| e.name == "upstream attempt")
        .map(|e| {
            (
                str_attr(&e.attributes, "downshift.upstream").unwrap(),
                int_attr(&e.attributes, "http.response.status_code"),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            ("bad".to_owned(), Some(500)),
            ("good".to_owned(), Some(200))
        ]
    );

    // The failed call: an error status and its type.
    let f = &spans[&ids[3]].span;
    assert_eq!(
        f.status.as_ref().map(|st| st.code),
        Some(StatusCode::Error as i32)
    );
    assert_eq!(
        str_attr(&f.attributes, "error.type").as_deref(),
        Some("unreachable")
    );
    assert_eq!(
        str_attr(&f.attributes, "downshift.outcome").as_deref(),
        Some("unreachable")
    );
    assert_eq!(
        int_attr(&f.attributes, "http.response.status_code"),
        Some(502)
    );
    assert!(int_attr(&f.attributes, "gen_ai.usage.input_tokens").is_none());

    // The same calls on /metrics, by model, upstream, task and route.
    let m = metrics(&gw.addr);
    let series = |name: &str, model: &str, up: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![
            ("model", model),
            ("upstream", up),
            ("task", "none"),
            ("route", "llm"),
        ];
        labels.extend_from_slice(extra);
        m.value(name, &labels)
    };
    let ok = [("outcome", "ok")];
    assert_eq!(
        series("downshift_calls_total", "gpt-4o-mini", "good", &ok),
        Some(2.0)
    );
    assert_eq!(
        series("downshift_calls_total", "gpt-4o", "good", &ok),
        Some(1.0)
    );
    assert_eq!(
        series(
            "downshift_calls_total",
            "o1",
            "down",
            &[("outcome", "unreachable")]
        ),
        Some(1.0)
    );
    let (i1, o1) = usage(&plain);
    let (i2, o2) = usage(&streamed);
    assert_eq!(
        series("downshift_input_tokens_total", "gpt-4o-mini", "good", &[]),
        Some((i1 + i2) as f64)
    );
    assert_eq!(
        series("downshift_output_tokens_total", "gpt-4o-mini", "good", &[]),
        Some((o1 + o2) as f64)
    );
    // Priced from the price table (USD per million prompt and completion tokens).
    let cost = series("downshift_cost_usd_total", "gpt-4o-mini", "good", &[]).unwrap();
    let expected = ((i1 + i2) as f64 * 1.5 + (o1 + o2) as f64 * 4.0) / 1e6;
    assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    assert_eq!(
        series(
            "downshift_call_duration_seconds_count",
            "gpt-4o-mini",
            "good",
            &[]
        ),
        Some(2.0)
    );
    // The exporter counts a batch once the receiver has answered, just after it kept the spans.
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = metrics(&gw.addr);
        if m.value("downshift_trace_spans_exported_total", &[])
            .unwrap()
            >= 4.0
        {
            break m;
        }
        assert!(Instant::now() < deadline, "exported spans were not counted");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        m.value("downshift_trace_spans_dropped_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        m.value("downshift_trace_spans_failed_total", &[]),
        Some(0.0)
    );
    gw.stop();
}

#[test]
fn metric_labels_are_capped_and_escaped_and_no_traces_leave_when_export_is_off() {
    let good = mock(&[]);
    let dir = tempdir();
    let gw = serve_config(
        dir.path(),
        &format!(
            "[[upstreams]]\nname = \"good\"\nbase_url = \"http://{}\"\n\
             [routing]\ndefault_upstream = \"good\"\n[telemetry]\nmax_label_values = 2\n",
            good.addr
        ),
    );
    for model in ["m1", "we\\\"ird\\\\name", "m3", "m4", "m1"] {
        let body =
            format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
        let resp = post_json(&gw.addr, CHAT, None, &body, &[]);
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    let m = metrics(&gw.addr);
    let calls = |model: &str| {
        m.value(
            "downshift_calls_total",
            &[
                ("model", model),
                ("upstream", "good"),
                ("task", "none"),
                ("route", "llm"),
                ("outcome", "ok"),
            ],
        )
    };
    assert_eq!(calls("m1"), Some(2.0));
    assert_eq!(calls("we\"ird\\name"), Some(1.0));
    assert_eq!(calls("other"), Some(2.0));
    assert_eq!(calls("m3"), None);
    let models: Vec<&str> = m
        .samples
        .keys()
        .filter(|(n, _)| n == "downshift_calls_total")
        .filter_map(|(_, l)| {
            l.iter()
                .find(|(k, _)| k == "model")
                .map(|(_, v)| v.as_str())
        })
        .collect();
    assert_eq!(models.len(), 3, "{models:?}");
    // Export off: no trace counters at all.
    assert_eq!(m.value("downshift_trace_spans_exported_total", &[]), None);
    gw.stop();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `/metrics`, parsed.
fn metrics(addr: &str) -> Exposition {
    let resp = get(addr, "/metrics", None);
    assert_eq!(resp.status, 200, "{}", resp.text());
    Exposition::parse(&resp.text()).unwrap_or_else(|e| panic!("invalid exposition: {e}"))
}

/// Samples of a Prometheus text exposition (format 0.0.4), checked strictly: every sample
/// belongs to a family declared by `# TYPE` before it, names and label names are valid, label
/// values use only the three escapes, no series repeats, values are numbers, and histogram
/// buckets are cumulative and end at `_count`.
struct Exposition {
    samples: BTreeMap<Series, f64>,
}

/// A sample's name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

impl Exposition {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut l: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.sort();
        self.samples.get(&(name.to_owned(), l)).copied()
    }

    fn parse(text: &str) -> Result<Exposition, String> {
        let valid_name = |n: &str, colon: bool| {
            !n.is_empty()
                && !n.starts_with(|c: char| c.is_ascii_digit())
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
        };
        let mut types: HashMap<String, String> = HashMap::new();
        let mut samples = BTreeMap::new();
        // Histogram buckets: (family, other labels) → [(le, count)] in order.
        let mut buckets: BTreeMap<Series, Vec<(f64, f64)>> = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let err = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').ok_or_else(|| err("bad TYPE"))?;
                if !valid_name(name, true)
                    || !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
                {
                    return Err(err("bad TYPE"));
                }
                if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                    return Err(err("family declared twice"));
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                if !valid_name(name, true) {
                    return Err(err("bad HELP"));
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                return Err(err("unexpected line"));
            }
            let name_end = line.find(['{', ' ']).ok_or_else(|| err("no value"))?;
            let name = &line[..name_end];
            if !valid_name(name, true) {
                return Err(err("bad metric name"));
            }
            let mut rest = &line[name_end..];
            let mut labels = Vec::new();
            if let Some(r) = rest.strip_prefix('{') {
                let mut chars = r.char_indices().peekable();
                let mut end = None;
                while let Some(&(i, c)) = chars.peek() {
                    if c == '}' {
                        end = Some(i);
                        break;
                    }
                    let start = i;
                    while chars.peek().is_some_and(|&(_, c)| c != '=') {
                        chars.next();
                    }
                    let Some((eq, _)) = chars.next() else { break };
                    let key = &r[start..eq];
                    if !valid_name(key, false) || chars.next().map(|(_, c)| c) != Some('"') {
                        return Err(err("bad label"));
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next().map(|(_, c)| c) {
                            Some('"') => break,
                            Some('\\') => match chars.next().map(|(_, c)| c) {
                                Some('\\') => value.push('\\'),
                                Some('"') => value.push('"'),
                                Some('n') => value.push('\n'),
                                _ => return Err(err("bad escape")),
                            },
                            Some('\n') | None => return Err(err("unterminated label value")),
                            Some(c) => value.push(c),
                        }
                    }
                    labels.push((key.to_owned(), value));
                    match chars.peek().map(|&(_, c)| c) {
                        Some(',') => {
                            chars.next();
                        }
                        Some('}') => {}
                        _ => return Err(err("bad label separator")),
                    }
                }
                let end = end.ok_or_else(|| err("unclosed labels"))?;
                rest = &r[end + 1..];
            }
            let value = rest.strip_prefix(' ').ok_or_else(|| err("no value"))?;
            let v: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().map_err(|_| err("bad value"))?,
            };
            let family = [("_bucket", "histogram"), ("_sum", ""), ("_count", "")]
                .iter()
                .find_map(|(suffix, only)| {
                    let base = name.strip_suffix(suffix)?;
                    let kind = types.get(base)?;
                    let fits = if only.is_empty() {
                        kind == "histogram" || kind == "summary"
                    } else {
                        kind == only
                    };
                    fits.then(|| base.to_owned())
                })
                .or_else(|| types.contains_key(name).then(|| name.to_owned()))
                .ok_or_else(|| err("sample of no declared family"))?;
            let mut sorted = labels.clone();
            sorted.sort();
            if sorted.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err(err("label repeated"));
            }
            if name.ends_with("_bucket")
                && types.get(&family).map(String::as_str) == Some("histogram")
            {
                let le = labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .ok_or_else(|| err("bucket without le"))?;
                let bound: f64 = match le.1.as_str() {
                    "+Inf" => f64::INFINITY,
                    b => b.parse().map_err(|_| err("bad le"))?,
                };
                let others: Vec<_> = sorted.iter().filter(|(k, _)| k != "le").cloned().collect();
                buckets
                    .entry((family, others))
                    .or_default()
                    .push((bound, v));
            }
            if samples.insert((name.to_owned(), sorted), v).is_some() {
                return Err(err("series repeated"));
            }
        }
        for ((family, labels), list) in &buckets {
            let ordered = list.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
            let last = list.last().copied().unwrap_or((0.0, 0.0));
            let count = samples.get(&(format!("{family}_count"), labels.clone()));
            if !ordered || last.0 != f64::INFINITY || count != Some(&last.1) {
                return Err(format!(
                    "histogram {family}{labels:?} is not cumulative: {list:?}"
                ));
            }
        }
        Ok(Exposition { samples })
    }
}
