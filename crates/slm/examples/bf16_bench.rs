//! Throughput of the bf16 products ([`downshift_slm::bf16::Bf16Matrix`]) against the f32
//! product of the same shapes (the `gemm` crate, what the f32 training path runs), on
//! SmolLM2-135M's training shapes (1024 activation rows). Prints one JSON line per shape.
//!
//! `cargo run --release -p downshift-slm --example bf16_bench [-- --threads T --reps N]`

use std::time::Instant;

use candle_core::{Device, Tensor};
use downshift_slm::Weight;
use downshift_slm::bf16::Bf16Matrix;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn values(n: usize, seed: &str) -> Vec<f32> {
    downshift_slm::testing::portable_values(seed, n, 0.5, 0.0)
}

/// Median seconds of `reps` calls of `f`.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads = arg("--threads", 2);
    let reps = arg("--reps", 5);
    downshift_slm::threads::set_num_threads(threads);
    let m = 1024;
    // (name, out, in): q|k|v fused, o, gate|up fused, down, and the LM head on 512 rows
    for (name, rows, cols, m) in [
        ("qkv", 960, 576, m),
        ("o", 576, 576, m),
        ("gate_up", 3072, 576, m),
        ("down", 576, 1536, m),
        ("lm_head", 49152, 576, 512),
    ] {
        let w = values(rows * cols, name);
        let x = values(m * cols, "x");
        let g = values(m * rows, "g");
        let b = Bf16Matrix::from_f32(&w, rows, cols).ok_or("shape")?;
        let dense = Weight::Dense(Tensor::from_vec(w, (rows, cols), &Device::Cpu)?);
        let xt = Tensor::from_vec(x.clone(), (m, cols), &Device::Cpu)?;
        let mut out = vec![0f32; m * rows];
        let mut dx = vec![0f32; m * cols];
        let fwd_bf16 = time(reps, || {
            downshift_slm::threads::run(|| b.matmul(&x, m, &mut out));
        });
        let bwd_bf16 = time(reps, || {
            downshift_slm::threads::run(|| b.matmul_grad(&g, m, &mut dx));
        });
        let fwd_f32 = time(reps, || {
            let _ = dense.matmul_t(&xt);
        });
        let gflop = 2.0 * (m * rows * cols) as f64 / 1e9;
        println!(
            "{}",
            serde_json::json!({
                "shape": name, "m": m, "out": rows, "in": cols, "threads": threads,
                "bf16_available": downshift_slm::bf16::available(),
                "f32_fwd_gflops": gflop / fwd_f32,
                "bf16_fwd_gflops": gflop / fwd_bf16,
                "bf16_bwd_gflops": gflop / bwd_bf16,
                "fwd_speedup": fwd_f32 / fwd_bf16,
            })
        );
    }
    Ok(())
}
