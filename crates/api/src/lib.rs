//! OpenAI wire format.
