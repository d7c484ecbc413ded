//! The training path is differentiable: LoRA gradients through `forward_train` match finite
//! differences (a tiny Llama, and the Qwen3 and Gemma 3 parity fixtures), and the packed
//! quantized matmul passes gradients to its input.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use downshift_slm::quant::PackedMatrix;
use downshift_slm::{AdapterSel, Llama, LlamaConfig, Lora, Weight};

fn rand(shape: &[usize], seed: u64, scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).expect("tensor")
}

fn tiny() -> Llama {
    let (vocab, h, ff, layers, nh, nkv) = (50usize, 32usize, 48usize, 2usize, 4usize, 2usize);
    let hd = h / nh;
    let cfg = LlamaConfig::from_hf_json(&serde_json::json!({
        "model_type": "llama", "vocab_size": vocab, "hidden_size": h, "intermediate_size": ff,
        "num_hidden_layers": layers, "num_attention_heads": nh, "num_key_value_heads": nkv,
        "rms_norm_eps": 1e-5, "max_position_embeddings": 64, "tie_word_embeddings": true
    }))
    .expect("cfg");
    let mut t: HashMap<String, Tensor> = HashMap::new();
    t.insert(
        "model.embed_tokens.weight".into(),
        rand(&[vocab, h], 1, 0.5),
    );
    t.insert(
        "model.norm.weight".into(),
        rand(&[h], 2, 1.0).affine(0.1, 1.0).expect("a"),
    );
    for i in 0..layers {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        let s = 10 * i as u64;
        t.insert(
            p("self_attn.q_proj.weight"),
            rand(&[nh * hd, h], s + 3, 0.2),
        );
        t.insert(
            p("self_attn.k_proj.weight"),
            rand(&[nkv * hd, h], s + 4, 0.2),
        );
        t.insert(
            p("self_attn.v_proj.weight"),
            rand(&[nkv * hd, h], s + 5, 0.2),
        );
        t.insert(
            p("self_attn.o_proj.weight"),
            rand(&[h, nh * hd], s + 6, 0.2),
        );
        t.insert(p("mlp.gate_proj.weight"), rand(&[ff, h], s + 7, 0.2));
        t.insert(p("mlp.up_proj.weight"), rand(&[ff, h], s + 8, 0.2));
        t.insert(p("mlp.down_proj.weight"), rand(&[h, ff], s + 9, 0.2));
        t.insert(
            p("input_layernorm.weight"),
            rand(&[h], s + 10, 0.1).affine(1.0, 1.0).expect("a"),
        );
        t.insert(
            p("post_attention_layernorm.weight"),
            rand(&[h], s + 11, 0.1).affine(1.0, 1.0).expect("a"),
        );
    }
    Llama::from_hf_tensors(cfg, &|n: &str| t.get(n).cloned()).expect("model")
}

#[test]
fn lora_gradients_match_finite_differences() {
    lora_gradients(tiny());
}

/// The same check with the analytic gradients computed through a frozen base in bf16
/// ([`Weight::Bf16`]: forward and backward products with bf16 operands, the AVX-512 BF16
/// kernel or AMX where the CPU has them), against finite differences of the f32 network.
/// (Finite differences of the bf16 network itself measure nothing: rounding every product's
/// input makes its loss a step function at 2⁻⁹ relative, noise that ±eps turns into errors
/// larger than the gradients.) Tolerance 10% (2% in f32): the rounding of the activations and
/// output gradients, ≤ 2⁻⁹ relative each, bounded by sums of magnitudes that the random
/// weights make much larger than the gradients themselves (measured: up to ~6%).
#[test]
fn lora_gradients_match_finite_differences_with_bf16_products() {
    let path = if downshift_slm::bf16::available() {
        "AVX-512 BF16 kernel"
    } else if downshift_slm::amx::available() {
        "AMX tiles"
    } else {
        "portable path (no bf16 dot products on this CPU)"
    };
    eprintln!("bf16 products: {path}");
    lora_gradients_within(tiny(), 1e-1, |m| {
        let conv = |l: &mut downshift_slm::Linear| l.weight = l.weight.to_bf16().expect("bf16");
        for b in &mut m.blocks {
            b.qkv.iter_mut().chain(b.gate_up.iter_mut()).for_each(conv);
            conv(&mut b.o);
            conv(&mut b.down);
        }
        conv(&mut m.lm_head);
        assert!(matches!(m.blocks[1].down.weight, Weight::Bf16(_)));
    });
}

#[test]
fn lora_gradients_qwen3() {
    let m = Llama::from_hf_dir(common::arch("qwen3")).expect("qwen3 fixture");
    lora_gradients(m);
}

#[test]
fn lora_gradients_gemma3() {
    // post norms, GeGLU, scaled embeddings and the sliding-window mask (window 5 < 8 tokens)
    let m = Llama::from_hf_dir(common::arch("gemma3")).expect("gemma3 fixture");
    lora_gradients(m);
}

fn lora_gradients(m: Llama) {
    lora_gradients_within(m, 2e-2, |_| {});
}

/// Analytic LoRA gradients (of `m` changed by `analytic`, sharing its LoRA matrices) against
/// central differences of `m`, within `rel` of the larger of the two (or of 0.1).
fn lora_gradients_within(mut m: Llama, rel: f32, analytic: impl Fn(&mut Llama)) {
    let r = 4;
    let mut vars = Vec::new();
    for (layer, name) in [
        (0usize, "q_proj"),
        (0, "v_proj"),
        (1, "down_proj"),
        (1, "up_proj"),
    ] {
        let (lin, off, len) = m.projection_mut(layer, name).expect("projection");
        let inp = lin.in_features();
        let a = Var::from_tensor(&rand(&[r, inp], 100 + layer as u64, 0.3)).expect("a");
        let b = Var::from_tensor(&rand(&[len, r], 200 + layer as u64, 0.3)).expect("b");
        lin.loras.push(Lora {
            adapter: 0,
            out_offset: off,
            a: a.as_tensor().clone(),
            b: b.as_tensor().clone(),
            scale: 2.0,
        });
        vars.push((name, a, b));
    }
    let ids = Tensor::new(&[[3u32, 7, 1, 42, 9, 0, 17, 5]], &Device::Cpu).expect("ids");
    let w = rand(&[1, 8, m.config.vocab_size], 999, 1.0);
    let loss = |m: &Llama| -> Tensor {
        (m.forward_train(&ids, AdapterSel::One(0)).expect("forward") * &w)
            .expect("mul")
            .sum_all()
            .expect("sum")
    };
    let mut ma = m.clone();
    analytic(&mut ma);
    let grads = loss(&ma).backward().expect("backward");
    let eps = 1e-2f32;
    for (name, a, b) in &vars {
        for (var, which) in [(a, "A"), (b, "B")] {
            let g = grads.get(var.as_tensor()).expect("gradient present");
            let gv: Vec<f32> = g.flatten_all().expect("f").to_vec1().expect("v");
            let base: Vec<f32> = var
                .as_tensor()
                .flatten_all()
                .expect("f")
                .to_vec1()
                .expect("v");
            for idx in [0usize, base.len() / 2, base.len() - 1] {
                let mut plus = base.clone();
                plus[idx] += eps;
                let mut minus = base.clone();
                minus[idx] -= eps;
                let shape = var.as_tensor().shape().clone();
                var.set(&Tensor::from_vec(plus, shape.clone(), &Device::Cpu).expect("t"))
                    .expect("set");
                let lp = loss(&m).to_scalar::<f32>().expect("s");
                var.set(&Tensor::from_vec(minus, shape.clone(), &Device::Cpu).expect("t"))
                    .expect("set");
                let lm = loss(&m).to_scalar::<f32>().expect("s");
                var.set(&Tensor::from_vec(base.clone(), shape, &Device::Cpu).expect("t"))
                    .expect("set");
                let fd = (lp - lm) / (2.0 * eps);
                let tol = rel * fd.abs().max(gv[idx].abs()).max(0.1);
                assert!(
                    (fd - gv[idx]).abs() < tol,
                    "{name} {which}[{idx}]: analytic {} vs numeric {fd}",
                    gv[idx]
                );
            }
        }
    }
}

#[test]
fn packed_matmul_passes_gradients_to_its_input() {
    let (rows, cols) = (24usize, 64usize);
    let w = rand(&[rows, cols], 5, 1.0);
    let wv: Vec<f32> = w.flatten_all().expect("f").to_vec1().expect("v");
    let packed = Weight::Packed(Arc::new(
        PackedMatrix::quantize_q8_0(&wv, rows, cols).expect("pack"),
    ));
    let deq = packed.dequantize().expect("deq");
    let x = Var::from_tensor(&rand(&[3, cols], 6, 1.0)).expect("x");
    let r = rand(&[3, rows], 7, 1.0);
    let y = packed.matmul_t(x.as_tensor()).expect("y");
    let g = (y * &r)
        .expect("m")
        .sum_all()
        .expect("s")
        .backward()
        .expect("bwd");
    let gx = g.get(x.as_tensor()).expect("grad");
    let want = r.matmul(&deq).expect("mm");
    let d = (gx - want)
        .expect("d")
        .abs()
        .expect("a")
        .max_all()
        .expect("m")
        .to_dtype(DType::F32)
        .expect("f")
        .to_scalar::<f32>()
        .expect("s");
    assert!(d < 1e-4, "{d}");
}
