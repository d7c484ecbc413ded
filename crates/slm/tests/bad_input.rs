//! Malformed inputs give clear errors, never panics.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod common;

use downshift_slm::gguf::writer;
use downshift_slm::{Error, Gguf, Llama, LocalModel, MetaValue};

fn meta(arch: &str) -> Vec<(&'static str, MetaValue)> {
    vec![
        ("general.architecture", MetaValue::String(arch.into())),
        ("llama.embedding_length", MetaValue::U32(64)),
        ("llama.attention.head_count", MetaValue::U32(2)),
        ("llama.feed_forward_length", MetaValue::U32(128)),
        ("llama.block_count", MetaValue::U32(1)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            MetaValue::F32(1e-5),
        ),
    ]
}

#[test]
fn truncated_files_are_reported() {
    let bytes = std::fs::read(common::smollm2_path()).expect("model");
    for cut in [
        0usize,
        3,
        7,
        23,
        1000,
        200_000,
        1_700_000,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        match Gguf::from_bytes(bytes[..cut].to_vec()) {
            Err(Error::Truncated { .. }) | Err(Error::NotGguf(_)) | Err(Error::Corrupt(_)) => {}
            Err(e) => panic!("cut at {cut}: unexpected error {e}"),
            Ok(_) => panic!("cut at {cut}: accepted a truncated file"),
        }
    }
    let e = Gguf::from_bytes(bytes[..bytes.len() / 2].to_vec()).expect_err("truncated");
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn corrupt_headers_are_reported() {
    let bytes = std::fs::read(common::smollm2_path()).expect("model");
    let mut bad = bytes[..4096].to_vec();
    bad[0] = b'X';
    assert!(matches!(Gguf::from_bytes(bad), Err(Error::NotGguf(_))));
    let mut bad = bytes[..4096].to_vec();
    bad[4] = 9; // version
    assert!(matches!(Gguf::from_bytes(bad), Err(Error::GgufVersion(9))));
    let mut bad = bytes[..4096].to_vec();
    bad[16..24].copy_from_slice(&u64::MAX.to_le_bytes()); // metadata count
    assert!(matches!(Gguf::from_bytes(bad), Err(Error::Corrupt(_))));
    // random garbage after a valid magic must never panic
    let mut state = 1u64;
    for _ in 0..200 {
        let mut b = b"GGUF\x03\x00\x00\x00".to_vec();
        for _ in 0..256 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            b.push((state >> 56) as u8);
        }
        let _ = Gguf::from_bytes(b);
    }
    // flipping bytes in the real header must never panic either
    for i in (8..4096).step_by(7) {
        let mut b = bytes[..8192].to_vec();
        b[i] ^= 0xA5;
        let _ = Gguf::from_bytes(b);
    }
}

#[test]
fn unknown_quant_type_is_reported() {
    let img = writer::write(
        &meta("llama"),
        &[("token_embd.weight", vec![64, 10], 99, vec![0u8; 64])],
    );
    match Gguf::from_bytes(img) {
        Err(Error::UnknownQuantType { tensor, id }) => {
            assert_eq!(tensor, "token_embd.weight");
            assert_eq!(id, 99);
        }
        other => panic!("expected UnknownQuantType, got {other:?}"),
    }
}

#[test]
fn unknown_architecture_is_reported() {
    let img = writer::write(&meta("mamba"), &[]);
    let g = Gguf::from_bytes(img).expect("parse");
    let e = Llama::from_gguf(&g).expect_err("mamba");
    assert!(
        matches!(e, Error::UnknownArchitecture(ref a) if a == "mamba"),
        "{e}"
    );
}

#[test]
fn missing_tensors_and_bad_shapes_are_reported() {
    let g = Gguf::from_bytes(writer::write(&meta("llama"), &[])).expect("parse");
    let e = Llama::from_gguf(&g).expect_err("no tensors");
    assert!(e.to_string().contains("token_embd.weight"), "{e}");
    // embedding of the wrong width (F32 type 0)
    let img = writer::write(
        &meta("llama"),
        &[("token_embd.weight", vec![32, 10], 0, vec![0u8; 32 * 10 * 4])],
    );
    let g = Gguf::from_bytes(img).expect("parse");
    let e = Llama::from_gguf(&g).expect_err("bad shape");
    assert!(matches!(e, Error::TensorShape { .. }), "{e}");
}

#[test]
fn missing_model_file_is_an_io_error() {
    let e = LocalModel::load("/nonexistent/model.gguf").expect_err("missing");
    assert!(matches!(e, Error::Io { .. }), "{e}");
    let dir = tempfile::tempdir().expect("tmp");
    let e = LocalModel::load(dir.path()).expect_err("empty dir");
    assert!(e.to_string().contains("neither a .gguf"), "{e}");
}

#[test]
fn models_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<LocalModel>();
    assert_send_sync::<Llama>();
    assert_send_sync::<downshift_slm::Tokenizer>();
    assert_send_sync::<downshift_slm::ChatTemplate>();
}
