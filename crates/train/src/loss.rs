//! Fused cross-entropy: the negative log-likelihood of one target per row of `[n, vocab]`
//! logits, with a backward pass `g · (softmax − onehot)`.
//!
//! candle's composition (`log_softmax` then `gather`) keeps several `[n, vocab]` tensors alive
//! for the backward pass and runs each of them single-threaded; this op keeps none (the
//! backward recomputes the softmax from the logits, which the graph holds anyway) and runs
//! its rows in parallel in the compute pool.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use downshift_slm::nn::contiguous_slice;
use rayon::prelude::*;

use crate::error::Result;

/// Per-row NLL of `targets` (u32 `[n]`) under `logits` (f32 `[n, vocab]`): `[n]`.
pub fn cross_entropy_rows(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logits = logits.contiguous()?;
    let targets = targets.to_dtype(DType::U32)?.contiguous()?;
    Ok(logits.apply_op2(&targets, CrossEntropy)?)
}

/// Checks shapes and returns `(n, vocab)`.
fn dims(logits: &Layout, targets: &Layout) -> candle_core::Result<(usize, usize)> {
    let (n, vocab) = logits.shape().dims2()?;
    if targets.shape().dims() != [n] {
        candle_core::bail!(
            "cross-entropy: {n} rows of logits but targets of shape {:?}",
            targets.shape()
        );
    }
    Ok((n, vocab))
}

/// `max` and `ln Σ exp(x − max)` of a row.
fn log_sum_exp(row: &[f32]) -> (f32, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
    (max, sum.ln())
}

fn check_target(t: u32, vocab: usize) -> candle_core::Result<usize> {
    let t = t as usize;
    if t >= vocab {
        candle_core::bail!("cross-entropy: target {t} outside a vocabulary of {vocab}");
    }
    Ok(t)
}

struct CrossEntropy;

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, vocab) = dims(l1, l2)?;
        let x = contiguous_slice::<f32>(s1, l1, "cross-entropy: logits")?;
        let t = contiguous_slice::<u32>(s2, l2, "cross-entropy: targets")?;
        let targets = t
            .iter()
            .map(|&t| check_target(t, vocab))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut out = vec![0f32; n];
        downshift_slm::threads::run(|| {
            out.par_iter_mut()
                .zip(x.par_chunks(vocab.max(1)))
                .zip(targets.par_iter())
                .for_each(|((o, row), &t)| {
                    let (max, lse) = log_sum_exp(row);
                    *o = lse - (row[t] - max);
                });
        });
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let g = logits.apply_op3_no_bwd(targets, &grad, &CrossEntropyGrad)?;
        Ok((Some(g), None))
    }
}

/// `g[i] · (softmax(x[i]) − onehot(t[i]))`.
struct CrossEntropyGrad;

impl CustomOp3 for CrossEntropyGrad {
    fn name(&self) -> &'static str {
        "cross-entropy-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, vocab) = dims(l1, l2)?;
        let x = contiguous_slice::<f32>(s1, l1, "cross-entropy: logits")?;
        let t = contiguous_slice::<u32>(s2, l2, "cross-entropy: targets")?;
        let g = contiguous_slice::<f32>(s3, l3, "cross-entropy: gradient")?;
        if g.len() != n {
            candle_core::bail!("cross-entropy: gradient of {} for {n} rows", g.len());
        }
        let targets = t
            .iter()
            .map(|&t| check_target(t, vocab))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut out = vec![0f32; n * vocab];
        downshift_slm::threads::run(|| {
            out.par_chunks_mut(vocab.max(1))
                .zip(x.par_chunks(vocab.max(1)))
                .zip(targets.par_iter().zip(g.par_iter()))
                .for_each(|((o, row), (&t, &g))| {
                    let (max, lse) = log_sum_exp(row);
                    let shift = max + lse;
                    for (o, &v) in o.iter_mut().zip(row) {
                        *o = g * (v - shift).exp();
                    }
                    o[t] -= g;
                });
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{D, Device, Var};

    fn reference(logits: &Tensor, targets: &Tensor) -> Tensor {
        let n = targets.dim(0).unwrap();
        let logp = candle_nn::ops::log_softmax(logits, D::Minus1).unwrap();
        logp.gather(&targets.reshape((n, 1)).unwrap(), 1)
            .unwrap()
            .squeeze(1)
            .unwrap()
            .neg()
            .unwrap()
    }

    #[test]
    fn matches_log_softmax_and_its_gradient() {
        let dev = Device::Cpu;
        let vals: Vec<f32> = (0..5 * 37)
            .map(|i| ((i * 7919 % 101) as f32 - 50.0) / 9.0)
            .collect();
        let x = Var::from_vec(vals, (5, 37), &dev).unwrap();
        let t = Tensor::from_vec(vec![0u32, 36, 5, 5, 17], 5, &dev).unwrap();
        let w = Tensor::from_vec(vec![1f32, -2.0, 0.5, 3.0, 1.5], 5, &dev).unwrap();

        let ours = cross_entropy_rows(x.as_tensor(), &t).unwrap();
        let theirs = reference(x.as_tensor(), &t);
        let d = (&ours - &theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-5, "loss differs by {d}");

        let g1 = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (g1, g2) = (g1.get(&x).unwrap(), g2.get(&x).unwrap());
        let d = (g1 - g2)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-5, "gradient differs by {d}");
    }

    #[test]
    fn refuses_targets_outside_the_vocabulary_and_shape_mismatches() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 4), DType::F32, &dev).unwrap();
        let err = cross_entropy_rows(&x, &Tensor::new(&[1u32, 4], &dev).unwrap()).unwrap_err();
        assert!(err.to_string().contains("target 4 outside"), "{err}");
        let err = cross_entropy_rows(&x, &Tensor::new(&[1u32], &dev).unwrap()).unwrap_err();
        assert!(err.to_string().contains("2 rows"), "{err}");
    }
}
