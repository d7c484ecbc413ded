//! The specialist contract on SmolLM2: one adapter folder, opened by `Specialist::open`, gives
//! the same prompt whichever way it is attached, and refuses what does not fit.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod common;

use downshift_slm::testing::write_specialist;
use downshift_slm::{
    AdapterSel, ChatTemplate, Error, LocalModel, PromptTransform, Specialist, SpecialistMeta,
    SpecialistTemplate,
};
use serde_json::{Value, json};

const SYSTEM: &str = "You are the weather desk of the travel agency, answering with tools only.";

fn request() -> (Vec<Value>, Vec<Value>) {
    let messages = vec![
        json!({"role": "system", "content": format!("{SYSTEM} The customer is Ada.")}),
        json!({"role": "user", "content": "Weather in Oslo tomorrow?"}),
    ];
    let tools = vec![
        json!({"type": "function", "function": {"name": "get_weather",
        "description": "Forecast for a city", "parameters": {"type": "object",
        "properties": {"city": {"type": "string"}}, "required": ["city"]}}}),
    ];
    (messages, tools)
}

fn transform() -> PromptTransform {
    PromptTransform::pruning(Some(SYSTEM.into())).with_tool_names(true)
}

#[test]
fn one_folder_renders_one_prompt_however_it_is_attached() {
    let path = common::smollm2_path();
    let mut lm = LocalModel::load(&path).expect("load");
    let dir = tempfile::tempdir().expect("tmp");
    let template = SpecialistTemplate::for_base(&lm.template);
    // SmolLM2's own template has no place for tools: the canonical one is chosen
    assert_eq!(template, SpecialistTemplate::Canonical);
    write_specialist(
        dir.path(),
        &path.display().to_string(),
        &lm.model,
        transform(),
        template,
    )
    .expect("write");

    let (messages, tools) = request();
    let (m_json, t_json) = (
        serde_json::to_string(&messages).unwrap(),
        serde_json::to_string(&tools).unwrap(),
    );
    // What the contract says the prompt is: the transform, then the canonical template.
    let (tm, tt) = transform().apply(&messages, Some(&tools)).unwrap();
    assert!(tt.is_none());
    let expected = ChatTemplate::canonical()
        .unwrap()
        .render_json(&serde_json::to_string(&tm).unwrap(), None, true)
        .unwrap();
    assert!(expected.contains("Tools: get_weather"), "{expected}");
    assert!(expected.contains("The customer is Ada."), "{expected}");
    assert!(!expected.contains(SYSTEM) && !expected.contains("Forecast"));

    // local/<name>:<adapter> and `generate --adapter`: load_adapter, then render by adapter
    let a = lm.load_adapter(dir.path()).expect("load adapter");
    let via_load = lm
        .render_prompt_for(AdapterSel::One(a), &m_json, Some(&t_json))
        .unwrap();
    // routing and `eval`: open, attach, render with the recipe
    let s = Specialist::open(dir.path()).expect("open");
    assert_eq!(s.trained_meta().unwrap().chat_template, template);
    let b = lm.attach_specialist(&s).expect("attach");
    assert_ne!(a, b);
    let via_recipe = lm
        .prompt_recipe(b)
        .expect("recipe")
        .render(&messages, Some(&tools))
        .unwrap();
    assert_eq!(via_load, expected);
    assert_eq!(via_recipe, expected);
    // the base alone still sees the whole request, schemas described in its system message
    let base = lm
        .render_prompt_for(AdapterSel::None, &m_json, Some(&t_json))
        .unwrap();
    assert_eq!(base, lm.render_prompt(&m_json, Some(&t_json)).unwrap());
    assert!(base.contains(SYSTEM) && base.contains("Forecast"), "{base}");

    // a plain PEFT folder (no metadata) renders like the base
    std::fs::remove_file(dir.path().join(SpecialistMeta::FILE)).unwrap();
    let plain = lm.load_adapter(dir.path()).expect("plain PEFT");
    assert!(lm.prompt_recipe(plain).is_none());
    assert_eq!(
        lm.render_prompt_for(AdapterSel::One(plain), &m_json, Some(&t_json))
            .unwrap(),
        base
    );
    let e = Specialist::open(dir.path())
        .unwrap()
        .trained_meta()
        .map(|_| ())
        .unwrap_err();
    assert!(e.to_string().contains("not an adapter written by"), "{e}");
}

#[test]
fn another_base_or_a_newer_transform_is_refused() {
    let path = common::smollm2_path();
    let mut lm = LocalModel::load(&path).expect("load");
    let dir = tempfile::tempdir().expect("tmp");
    let future = PromptTransform {
        version: PromptTransform::VERSION + 1,
        ..transform()
    };
    write_specialist(
        dir.path(),
        "smollm2",
        &lm.model,
        future,
        SpecialistTemplate::Canonical,
    )
    .expect("write");
    // attaching works; rendering refuses the transform it cannot apply
    let id = lm.load_adapter(dir.path()).expect("attach");
    let (messages, _) = request();
    let e = lm
        .render_prompt_for(
            AdapterSel::One(id),
            &serde_json::to_string(&messages).unwrap(),
            None,
        )
        .unwrap_err();
    assert!(matches!(e, Error::TransformVersion(v) if v == PromptTransform::VERSION + 1));

    // metadata naming another base's fingerprint: refused before anything is attached
    let p = dir.path().join(SpecialistMeta::FILE);
    let text = std::fs::read_to_string(&p).unwrap();
    let mut meta: Value = serde_json::from_str(&text).unwrap();
    meta["base_fingerprint"] = json!("qwen2:vocab151936:hidden896");
    std::fs::write(&p, meta.to_string()).unwrap();
    let e = lm.load_adapter(dir.path()).unwrap_err();
    assert!(matches!(e, Error::OtherBase(_)), "{e}");
    assert!(e.to_string().contains("qwen2:vocab151936"), "{e}");
    // nothing was attached: the next adapter takes the next id
    std::fs::write(&p, text).unwrap();
    assert_eq!(lm.load_adapter(dir.path()).expect("attach"), id + 1);
}
