//! The OpenAI wire format, as downshift needs it.
//!
//! downshift is a byte-faithful proxy: it never re-serialises what an agent sent. This crate holds
//! small *views* that read the few fields the gateway needs out of raw JSON, the assembler that
//! turns a streamed response back into the object a non-streaming call would have returned, the
//! OpenAI-style error body, and the call-log import/export record formats.

mod canonical;
mod chunked;
mod error;
mod kind;
mod record;
mod request;
mod responses;
mod sse;
mod stream;

pub use canonical::{canonical_json, fnv1a64};
pub use chunked::dechunk;
pub use error::{ApiError, ErrorBody};
pub use kind::{TaskKind, UnknownTaskKind, kind_or_none};
pub use record::{ImportFormat, ImportRecord, parse_import_line};
pub use request::{RequestView, Usage, usage_of};
pub use responses::responses_as_chat;
pub use sse::SseParser;
pub use stream::{StreamAssembler, response_to_chunks};
