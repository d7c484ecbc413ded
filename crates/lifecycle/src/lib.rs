//! The LLM-to-SLM conversion as a library (S2–S6): each stage's entry point with typed
//! inputs and results — [`dataset`] (S2, a task's curated examples), [`discover`] (S3),
//! [`select`] (S4), [`train`] and [`evaluate`] (S5) — and the orchestration above them:
//! [`cycle`], one cycle of `downshift loop` (S3–S6), and [`demo`], the whole conversion end to
//! end on loopback with the gateway and a mock teacher running in this process ([`servers`]).
//!
//! The `downshift` binary parses arguments, calls these, and prints; nothing here runs the
//! binary.

pub mod cycle;
pub mod dataset;
pub mod demo;
pub mod discover;
pub mod evaluate;
pub mod http;
pub mod model;
pub mod progress;
pub mod pull;
pub mod select;
pub mod servers;
pub mod stages;
pub mod train;

pub use cycle::{Action, LoopConfig, cycle, gate};
pub use dataset::DataSource;
pub use demo::{DemoOptions, DemoReport, Prices};
pub use stages::{Stages, TrainPlan, Trained};
