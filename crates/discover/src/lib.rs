//! Step S3: find the recurring tasks in the call log without being told what they are.
//!
//! * [`embed`]: all-MiniLM-L6-v2 sentence embeddings computed natively on candle from the
//!   packaged weights (mean pooling, L2-normalised), matching sentence-transformers.
//! * [`hdbscan`]: HDBSCAN density clustering — no `k`, noise stays unassigned.

pub mod embed;
pub mod hdbscan;
