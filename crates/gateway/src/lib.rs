//! The OpenAI-compatible gateway (step S1): a byte-faithful proxy in front of any number of
//! upstream LLMs that logs every call, encrypted, without slowing the agent down; plus the mock
//! upstream used by tests, demos and benchmarks.

mod admin;
mod auth;
mod call;
pub mod config;
mod conn;
mod error;
mod events;
mod limits;
mod local;
mod metrics;
pub mod mock;
mod models;
mod proxy;
mod routing;
mod server;
mod specialist;
mod tee;
pub mod telemetry;
mod ui;
mod upstream;

pub use admin::payload_value;
pub use auth::Principal;
pub use config::{
    Balance, Deployments, LocalModelConfig, RouteConfig, RoutingConfig, ServerConfig,
    SpecialistEndpointConfig, UpstreamConfig,
};
pub use conn::ConnLimits;
pub use error::{GatewayError, SetupError};
pub use limits::{
    Limit, Limiter, LimitsConfig, PriceTable, SpendBy, SpendRow, month_start_ms, spend_report,
};
pub use local::LocalModels;
pub use proxy::ATTEMPTS_TAG;
pub use server::{AppState, ServeOptions, conn_limits, router, run};
pub use specialist::completion_sse;
pub use telemetry::TelemetryConfig;
pub use ui::UiOptions;
