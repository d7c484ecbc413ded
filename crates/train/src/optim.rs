//! AdamW with decoupled weight decay and bias correction, linear warm-up + cosine decay,
//! gradient accumulation and global-norm clipping, over candle `Var`s (the LoRA matrices).

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// AdamW hyper-parameters (the learning rate comes from the [`Schedule`] each step).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// Decay rate of the first moment (the gradient's running mean).
    pub beta1: f64,
    /// Decay rate of the second moment (the squared gradient's running mean).
    pub beta2: f64,
    /// Added to the second moment's square root so the update never divides by zero.
    pub eps: f64,
    /// Decoupled weight decay: each step shrinks the parameters by `lr · weight_decay`.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// PyTorch's `AdamW` defaults except weight decay 0 (PEFT/TRL's default for LoRA).
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// AdamW (Loshchilov & Hutter): `p ← p − lr·wd·p − lr·m̂/(√v̂ + ε)`.
pub struct AdamW {
    /// Its hyper-parameters.
    pub config: AdamWConfig,
    params: Vec<Var>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    t: u64,
}

impl AdamW {
    /// An optimizer over `params` with zero moments and no step taken.
    pub fn new(params: Vec<Var>, config: AdamWConfig) -> Result<Self> {
        let m = params
            .iter()
            .map(|p| p.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self {
            config,
            params,
            m,
            v,
            t: 0,
        })
    }

    /// The parameters it updates, in the order gradients are given.
    pub fn params(&self) -> &[Var] {
        &self.params
    }

    /// Updates taken so far.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// One update with `grads[i]` the gradient of `params[i]`.
    pub fn step(&mut self, grads: &[Tensor], lr: f64) -> Result<()> {
        if grads.len() != self.params.len() {
            return Err(TrainError::Config(format!(
                "{} gradients for {} parameters",
                grads.len(),
                self.params.len()
            )));
        }
        self.t += 1;
        let c = &self.config;
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2 = 1.0 - c.beta2.powi(self.t as i32);
        for (i, g) in grads.iter().enumerate() {
            let m = ((&self.m[i] * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            let v = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let p = self.params[i].as_tensor();
            let m_hat = (&m / bc1)?;
            let v_hat = (&v / bc2)?;
            let upd = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
            let decayed = (p * (1.0 - lr * c.weight_decay))?;
            let next = (decayed - (upd * lr)?)?;
            self.params[i].set(&next)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// The moments and step count (for checkpoints).
    pub fn state(&self) -> (u64, &[Tensor], &[Tensor]) {
        (self.t, &self.m, &self.v)
    }

    /// Restores moments and step count saved by [`AdamW::state`].
    pub fn set_state(&mut self, t: u64, m: Vec<Tensor>, v: Vec<Tensor>) -> Result<()> {
        if m.len() != self.params.len() || v.len() != self.params.len() {
            return Err(TrainError::Config(
                "optimizer state does not match the parameters".into(),
            ));
        }
        for ((p, m), v) in self.params.iter().zip(&m).zip(&v) {
            if p.shape() != m.shape() || p.shape() != v.shape() {
                return Err(TrainError::Config(format!(
                    "optimizer state shape {:?} for a parameter of {:?}",
                    m.shape(),
                    p.shape()
                )));
            }
        }
        self.t = t;
        self.m = m;
        self.v = v;
        Ok(())
    }
}

/// Learning rate: linear warm-up from `lr/warmup` to `lr` over `warmup` steps, then cosine
/// decay to `lr·min_ratio` at step `total`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// The peak learning rate, reached at the end of the warm-up.
    pub lr: f64,
    /// Warm-up steps (0: none).
    pub warmup: usize,
    /// The step at which the decay reaches its floor; the rate stays there after it.
    pub total: usize,
    /// The floor as a share of `lr`.
    pub min_ratio: f64,
}

impl Schedule {
    /// The rate of update `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let progress = ((step - self.warmup) as f64 / span as f64).min(1.0);
        let min = self.lr * self.min_ratio;
        min + (self.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// Sums gradients over micro-batches (gradient accumulation).
#[derive(Default)]
pub struct GradAccum {
    sums: Vec<Option<Tensor>>,
}

impl GradAccum {
    /// Empty sums for `n` parameters.
    pub fn new(n: usize) -> Self {
        Self {
            sums: vec![None; n],
        }
    }

    /// Adds the gradients of `vars` found in `store` (a var the loss does not reach adds 0).
    pub fn add(&mut self, store: &GradStore, vars: &[Var]) -> Result<()> {
        for (i, v) in vars.iter().enumerate() {
            if let Some(g) = store.get(v.as_tensor()) {
                self.sums[i] = Some(match self.sums[i].take() {
                    Some(s) => (s + g)?,
                    None => g.clone(),
                });
            }
        }
        Ok(())
    }

    /// The accumulated gradients (zeros where nothing was added), resetting the sums.
    pub fn take(&mut self, vars: &[Var]) -> Result<Vec<Tensor>> {
        vars.iter()
            .zip(self.sums.iter_mut())
            .map(|(v, s)| match s.take() {
                Some(g) => Ok(g),
                None => Ok(v.as_tensor().zeros_like()?),
            })
            .collect()
    }
}

/// Scales `grads` so their global L2 norm is at most `max_norm`; returns the norm before.
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f64) -> Result<f64> {
    let mut sq = 0f64;
    for g in grads.iter() {
        sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let f = max_norm / (norm + 1e-6);
        for g in grads.iter_mut() {
            *g = (&*g * f)?;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn adamw_matches_hand_computed_steps() {
        // p = 1, g = 0.5 then g = -0.25; lr 0.1, wd 0.01
        let p = Var::from_tensor(&Tensor::new(&[1.0f32], &Device::Cpu).unwrap()).unwrap();
        let cfg = AdamWConfig {
            weight_decay: 0.01,
            ..Default::default()
        };
        let mut o = AdamW::new(vec![p.clone()], cfg).unwrap();
        o.step(&[Tensor::new(&[0.5f32], &Device::Cpu).unwrap()], 0.1)
            .unwrap();
        // step 1: m̂ = g, v̂ = g², update = g/|g| = 1 (minus ε); p = 1·(1 − 0.001) − 0.1
        let p1 = 1.0 * (1.0 - 0.1 * 0.01) - 0.1 * 0.5 / (0.5 + 1e-8);
        close(p.as_tensor().to_vec1::<f32>().unwrap()[0] as f64, p1, 1e-6);
        o.step(&[Tensor::new(&[-0.25f32], &Device::Cpu).unwrap()], 0.1)
            .unwrap();
        let m = 0.9 * (0.1 * 0.5) + 0.1 * -0.25;
        let v = 0.999 * (0.001 * 0.25) + 0.001 * 0.0625;
        let m_hat = m / (1.0 - 0.81);
        let v_hat = v / (1.0 - 0.999f64.powi(2));
        let p2 = p1 * (1.0 - 0.1 * 0.01) - 0.1 * m_hat / (v_hat.sqrt() + 1e-8);
        close(p.as_tensor().to_vec1::<f32>().unwrap()[0] as f64, p2, 1e-6);
        assert_eq!(o.steps(), 2);
    }

    #[test]
    fn schedule_warms_up_then_decays_by_cosine() {
        let s = Schedule {
            lr: 1.0,
            warmup: 4,
            total: 14,
            min_ratio: 0.1,
        };
        close(s.lr_at(0), 0.25, 1e-12);
        close(s.lr_at(3), 1.0, 1e-12);
        close(s.lr_at(4), 1.0, 1e-12);
        // half way through the decay: min + (1 - min)/2
        close(s.lr_at(9), 0.55, 1e-12);
        close(s.lr_at(14), 0.1, 1e-12);
        close(s.lr_at(100), 0.1, 1e-12);
    }

    #[test]
    fn clipping_scales_to_the_global_norm() {
        let d = Device::Cpu;
        let mut g = vec![
            Tensor::new(&[3.0f32], &d).unwrap(),
            Tensor::new(&[4.0f32], &d).unwrap(),
        ];
        let n = clip_grad_norm(&mut g, 1.0).unwrap();
        close(n, 5.0, 1e-9);
        close(g[0].to_vec1::<f32>().unwrap()[0] as f64, 0.6, 1e-5);
        close(g[1].to_vec1::<f32>().unwrap()[0] as f64, 0.8, 1e-5);
        // below the threshold nothing changes
        let n = clip_grad_norm(&mut g, 10.0).unwrap();
        close(n, 1.0, 1e-5);
        close(g[1].to_vec1::<f32>().unwrap()[0] as f64, 0.8, 1e-5);
    }

    #[test]
    fn accumulation_sums_micro_batches() {
        let d = Device::Cpu;
        let w = Var::from_tensor(&Tensor::new(&[2.0f32, -1.0], &d).unwrap()).unwrap();
        let vars = vec![w.clone()];
        let mut acc = GradAccum::new(1);
        for x in [[1.0f32, 2.0], [3.0, 4.0]] {
            let x = Tensor::new(&x, &d).unwrap();
            let loss = (w.as_tensor() * &x).unwrap().sum_all().unwrap();
            acc.add(&loss.backward().unwrap(), &vars).unwrap();
        }
        let g = acc.take(&vars).unwrap();
        assert_eq!(g[0].to_vec1::<f32>().unwrap(), vec![4.0, 6.0]);
    }
}
