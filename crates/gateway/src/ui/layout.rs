//! The page shell (navigation, style) and the number formats every page shares.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::Viewer;

/// The style sheet, inline: the pages load nothing from anywhere else.
const STYLE: &str = r#"
:root{--fg:#1d2433;--mut:#5c6577;--line:#dde2ea;--bg:#f6f7f9;--card:#fff;--llm:#4e79a7;--spec:#59a14f;--fb:#e15759;--acc:#2f5fb3}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;align-items:center;gap:18px;padding:10px 22px;background:#1d2433;color:#fff}
header b{font-size:16px;letter-spacing:.3px}header a{color:#cfd8ea;text-decoration:none}header a.on{color:#fff;font-weight:600}
header .who{margin-left:auto;color:#aab4c8;font-size:12px}header form{display:inline}header button{background:none;border:1px solid #56607a;color:#cfd8ea;border-radius:4px;padding:2px 8px;cursor:pointer}
main{padding:18px 22px;max-width:1280px}h1{font-size:20px;margin:4px 0 14px}h2{font-size:15px;margin:0 0 10px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:14px}
.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:12px 14px;margin-bottom:14px}
.kpis{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:14px}.kpi{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:10px 14px;min-width:150px}
.kpi .v{font-size:20px;font-weight:600}.kpi .l{color:var(--mut);font-size:12px}
table{border-collapse:collapse;width:100%;background:var(--card)}th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;color:var(--mut);font-weight:600;white-space:nowrap}th a{color:inherit}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.mut{color:var(--mut)}.small{font-size:12px}code,pre{font:12px/1.4 ui-monospace,Menlo,Consolas,monospace}pre{white-space:pre-wrap;word-break:break-word;background:#f1f3f6;padding:8px;border-radius:4px;max-height:360px;overflow:auto}
.badge{display:inline-block;padding:0 6px;border-radius:9px;font-size:12px;background:#e8ecf3}.badge.on{background:#d9f0d5}.badge.shadow{background:#fdf1d6}.badge.canary{background:#e0e9fa}
form.filters{display:flex;flex-wrap:wrap;gap:8px;align-items:end;margin-bottom:12px}form.filters label{display:flex;flex-direction:column;font-size:12px;color:var(--mut)}
input,select,button{font:inherit;padding:4px 6px}button.primary{background:var(--acc);color:#fff;border:0;border-radius:4px;padding:6px 12px;cursor:pointer}
.warn{background:#fff4e5;border:1px solid #f3c98b;padding:8px 12px;border-radius:6px}.err{color:#b3261e}
svg text{font:11px system-ui,sans-serif;fill:#5c6577}svg .title{font-size:12px;fill:#1d2433}
.legend span{display:inline-flex;align-items:center;gap:4px;margin-right:12px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;border-radius:2px}
"#;

/// A full page: navigation, who is logged in, and `body`.
pub fn page(title: &str, active: &str, viewer: &Viewer, body: Markup) -> Markup {
    let nav = [
        ("overview", "/ui", "Overview"),
        ("tasks", "/ui/tasks", "Tasks"),
        ("training", "/ui/training", "Training runs"),
        ("calls", "/ui/calls", "Calls"),
    ];
    let who = match &viewer.principal.key_id {
        Some(id) => format!("{} · key {id}", viewer.role().as_str()),
        None => format!("{} · no authentication", viewer.role().as_str()),
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · downshift" }
                style { (PreEscaped(STYLE)) }
            }
            body data-role=(viewer.role().as_str()) {
                header {
                    b { "downshift" }
                    @for (id, href, label) in nav {
                        a.on[id == active] href=(href) { (label) }
                    }
                    span.who #who { (who) }
                    form method="post" action="/ui/logout" { button type="submit" { "Log out" } }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// A page without navigation (login, errors).
pub fn bare(title: &str, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · downshift" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header { b { "downshift" } }
                main {
                    h1 { (title) }
                    p #message { (message) }
                    p { a href="/ui" { "Back to the overview" } " · " a href="/ui/login" { "Log in" } }
                }
            }
        }
    }
}

/// `0.1234` → `12.3%`.
pub fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// Dollars with cents, or four decimals below a dollar.
pub fn usd(x: f64) -> String {
    if x.abs() >= 1.0 {
        format!("${x:.2}")
    } else {
        format!("${x:.4}")
    }
}

/// Milliseconds with one decimal.
pub fn ms(x: f64) -> String {
    format!("{x:.1} ms")
}

/// RFC 3339 UTC with milliseconds, as the CLI prints times.
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// A number or `-`.
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}
