//! DDIM (Song et al.), as diffusers' DDIMScheduler; eta = 0 is deterministic.

use super::config::{Prediction, SchedulerConfig, Spacing};
use super::{add_noise_at, Scheduler};
use candle_core::{Result, Tensor};

pub struct Ddim {
    config: SchedulerConfig,
    alphas_cumprod: Vec<f64>,
    final_alpha: f64,
    timesteps: Vec<f64>,
    step_ratio: usize,
    prediction: Prediction,
    pub eta: f64,
}

/// (x0, eps) from a model output at cumulative alpha `a`.
pub fn x0_and_eps(pred: Prediction, model_output: &Tensor, sample: &Tensor, a: f64) -> Result<(Tensor, Tensor)> {
    let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
    match pred {
        Prediction::Epsilon => Ok((((sample - (model_output * sb)?)? / sa)?, model_output.clone())),
        Prediction::Sample => Ok((model_output.clone(), ((sample - (model_output * sa)?)? / sb)?)),
        Prediction::V => Ok((((sample * sa)? - (model_output * sb)?)?, ((model_output * sa)? + (sample * sb)?)?)),
    }
}

impl Ddim {
    pub fn new(config: &SchedulerConfig, steps: usize, eta: f64) -> Result<Self> {
        let alphas_cumprod = config.alphas_cumprod()?;
        let n = config.num_train_timesteps;
        let timesteps: Vec<f64> = match config.spacing()? {
            Spacing::Linspace => (0..steps)
                .rev()
                .map(|i| if steps == 1 { 0.0 } else { (i as f64 * (n - 1) as f64 / (steps - 1) as f64).round() })
                .collect(),
            Spacing::Leading => (0..steps).rev().map(|i| (i * (n / steps) + config.steps_offset) as f64).collect(),
            Spacing::Trailing => {
                let r = n as f64 / steps as f64;
                (0..steps).map(|i| (n as f64 - i as f64 * r).round() - 1.0).collect()
            }
        };
        let final_alpha = if config.set_alpha_to_one { 1.0 } else { alphas_cumprod[0] };
        Ok(Self {
            prediction: config.prediction()?,
            config: config.clone(),
            alphas_cumprod,
            final_alpha,
            timesteps,
            step_ratio: n / steps,
            eta,
        })
    }

    /// Cumulative alpha at the step after `step_index` (diffusers: t - T/N, or the final alpha).
    pub fn alpha_prev(&self, step_index: usize) -> f64 {
        let prev = self.timesteps[step_index] as i64 - self.step_ratio as i64;
        if prev >= 0 {
            self.alphas_cumprod[prev as usize]
        } else {
            self.final_alpha
        }
    }

    pub fn alpha(&self, step_index: usize) -> f64 {
        self.alphas_cumprod[self.timesteps[step_index] as usize]
    }
}

impl Scheduler for Ddim {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }
    fn scale_model_input(&self, sample: &Tensor, _: usize) -> Result<Tensor> {
        Ok(sample.clone())
    }
    fn needs_noise(&self) -> bool {
        self.eta > 0.0
    }
    fn step(&mut self, model_output: &Tensor, i: usize, sample: &Tensor, noise: Option<&Tensor>) -> Result<Tensor> {
        let (a, ap) = (self.alpha(i), self.alpha_prev(i));
        let (mut x0, eps) = x0_and_eps(self.prediction, model_output, sample, a)?;
        if self.config.clip_sample {
            let r = self.config.clip_sample_range as f32;
            x0 = x0.clamp(-r, r)?;
        }
        let variance = (1.0 - ap) / (1.0 - a) * (1.0 - a / ap);
        let std = self.eta * variance.sqrt();
        let prev = ((x0 * ap.sqrt())? + (eps * (1.0 - ap - std * std).sqrt())?)?;
        match (std > 0.0, noise) {
            (true, Some(n)) => prev + (n * std)?,
            (true, None) => candle_core::bail!("DDIM with eta > 0 needs noise for each step"),
            _ => Ok(prev),
        }
    }
    fn add_noise(&self, original: &Tensor, noise: &Tensor, timestep: f64) -> Result<Tensor> {
        add_noise_at(&self.alphas_cumprod, original, noise, timestep)
    }
    fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }
    fn config(&self) -> &SchedulerConfig {
        &self.config
    }
}
