//! `/ui/login` and `/ui/logout`: an API key in, an `HttpOnly`, `SameSite=Strict` cookie out.

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use downshift_store::Permission;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;

use super::COOKIE;
use crate::GatewayError;
use crate::server::AppState;

/// How long the cookie lives (12 hours); the key itself may be revoked sooner.
const MAX_AGE_S: u32 = 12 * 3600;

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let page: Markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Log in · downshift" }
                style { (PreEscaped("body{font:14px system-ui,sans-serif;background:#f6f7f9;color:#1d2433}form{max-width:420px;margin:12vh auto;background:#fff;border:1px solid #dde2ea;border-radius:6px;padding:22px}input{width:100%;padding:6px;margin:8px 0 14px;font:13px ui-monospace,monospace}button{background:#2f5fb3;color:#fff;border:0;border-radius:4px;padding:7px 14px}.err{color:#b3261e}")) }
            }
            body {
                form method="post" action="/ui/login" #login {
                    h1 style="font-size:18px" { "downshift" }
                    p { "Log in with an API key of role " b { "analyst" } " or " b { "admin" } " (" code { "downshift keys create --role analyst" } ")." }
                    @if let Some(e) = error { p.err #error { (e) } }
                    label for="key" { "API key" }
                    input #key type="password" name="key" autocomplete="off" autofocus required;
                    button type="submit" { "Log in" }
                }
            }
        }
    };
    (status, page).into_response()
}

pub async fn form() -> Response {
    login_page(StatusCode::OK, None)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    key: String,
}

/// Checks the key as the admin API would and keeps it in the cookie.
pub async fn submit(State(s): State<Arc<AppState>>, Form(f): Form<LoginForm>) -> Response {
    let key = f.key.trim();
    // Keys are `dsk_` and letters/digits; anything a cookie cannot hold as is, is not one.
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
    {
        return login_page(StatusCode::UNAUTHORIZED, Some("invalid API key"));
    }
    let mut h = HeaderMap::new();
    let Ok(v) = HeaderValue::from_str(&format!("Bearer {key}")) else {
        return login_page(StatusCode::UNAUTHORIZED, Some("invalid API key"));
    };
    h.insert(header::AUTHORIZATION, v);
    let principal = match s.auth.authenticate(&h).await {
        Ok(p) => p,
        Err(e @ (GatewayError::MissingKey | GatewayError::InvalidKey)) => {
            return login_page(StatusCode::UNAUTHORIZED, Some(&e.to_string()));
        }
        Err(e) => return super::error_page(e),
    };
    if let Err(e) = principal.require(Permission::ReadMetadata, "use the web UI") {
        return login_page(StatusCode::FORBIDDEN, Some(&e.to_string()));
    }
    let cookie =
        format!("{COOKIE}={key}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={MAX_AGE_S}");
    let mut r = Redirect::to("/ui").into_response();
    match HeaderValue::from_str(&cookie) {
        Ok(v) => {
            r.headers_mut().insert(header::SET_COOKIE, v);
            r
        }
        Err(_) => login_page(StatusCode::UNAUTHORIZED, Some("invalid API key")),
    }
}

/// Forgets the cookie.
pub async fn logout() -> Response {
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("downshift_ui=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}
