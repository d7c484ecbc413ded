//! The masked view of a request: what discovery embeds, labels with and shows.
//!
//! A job is its instruction, not the values it works on, so every text discovery reads for
//! meaning or writes into task metadata goes through [`Masker::mask`] first (entities → their
//! type, quoted spans and any token with a digit normalised). The masker lives in the route
//! crate, whose centroid layer reads requests through the same view.
//!
//! [`instruction_part`] cuts the imperative head off a user turn ("Translate into French:",
//! "Summarise this in one sentence:") so the instruction outweighs the material it works on.

pub use downshift_route::mask::{MASKS, Masker, strip_masks};

/// One call as `tasks show` and the web UI show it: the masked variable input, the output's
/// shape, and the masked output (text, and each tool call by its tool and argument names — the
/// values are material). `{"call_id", "input", "output_shape", "output"}`.
pub fn masked_sample(masker: &Masker, call: &crate::CallInput) -> serde_json::Value {
    use serde_json::Value;
    let f = crate::features::extract(call);
    let message = call
        .response
        .pointer("/choices/0/message")
        .unwrap_or(&Value::Null);
    let mut output = crate::features::content_text(message.get("content").unwrap_or(&Value::Null));
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for c in calls {
            let f = c.get("function").unwrap_or(&Value::Null);
            let args: Vec<String> = f
                .get("arguments")
                .and_then(Value::as_str)
                .and_then(|a| serde_json::from_str::<Value>(a).ok())
                .and_then(|a| a.as_object().map(|o| o.keys().cloned().collect()))
                .unwrap_or_default();
            output.push_str(&format!(
                "{}({}) ",
                f.get("name").and_then(Value::as_str).unwrap_or(""),
                args.join(", ")
            ));
        }
    }
    serde_json::json!({"call_id": call.id, "input": masker.mask(&f.variable),
        "output_shape": f.output_shape(), "output": masker.mask(&output)})
}

/// The imperative head of a user turn — the router's own rule, so that discovery splits by what
/// the router reads (see [`downshift_route::instruction_head`]).
pub use downshift_route::instruction_head as instruction_part;
