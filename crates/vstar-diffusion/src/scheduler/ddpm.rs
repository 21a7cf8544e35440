//! DDPM (Ho et al. 2020), as diffusers' `DDPMScheduler` with `variance_type = "fixed_small"`.

use candle_core::{Result, Tensor};

use super::ddim::{add_noise_vp, pred_x0};
use super::{
    alphas_cumprod as make_alphas_cumprod, check_index, check_noise, discrete_timesteps, lin2, to_f32, Scheduler,
    SchedulerConfig, SchedulerKind,
};

/// diffusers' `DDPMScheduler` (fixed_small variance). The step from `timesteps[i]` goes to
/// `timesteps[i + 1]` (or to "-1", `abar = 1`, at the end); noise is added only when `t > 0`.
#[derive(Debug, Clone)]
pub struct Ddpm {
    config: SchedulerConfig,
    alphas_cumprod: Vec<f64>,
    timesteps: Vec<f64>,
}

impl Ddpm {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Self> {
        let alphas_cumprod = make_alphas_cumprod(config)?;
        let spacing = config.spacing_for(SchedulerKind::Ddpm);
        let timesteps = discrete_timesteps(config, spacing, num_inference_steps)?;
        Ok(Self { config: config.clone(), alphas_cumprod, timesteps })
    }

    /// `(abar_t, abar_prev)` of the step at `step_index`.
    fn alphas(&self, step_index: usize) -> (i64, f64, f64) {
        let t = self.timesteps[step_index] as i64;
        let a_t = self.alphas_cumprod[t as usize];
        let a_prev = match self.timesteps.get(step_index + 1) {
            Some(&p) if p >= 0.0 => self.alphas_cumprod[p as usize],
            _ => 1.0,
        };
        (t, a_t, a_prev)
    }
}

impl Scheduler for Ddpm {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn step(
        &mut self,
        model_output: &Tensor,
        step_index: usize,
        sample: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        check_index(step_index, self.timesteps.len())?;
        let dtype = model_output.dtype();
        let sample = to_f32(sample)?;
        let (t, a_t, a_prev) = self.alphas(step_index);
        let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
        let cur_alpha = a_t / a_prev;
        let cur_beta = 1.0 - cur_alpha;
        let x0 = pred_x0(&to_f32(model_output)?, &sample, a_t, self.config.prediction_type)?;
        let x0 = if self.config.clip_sample {
            let r = self.config.clip_sample_range;
            x0.clamp(-r, r)?
        } else {
            x0
        };
        let c_x0 = a_prev.sqrt() * cur_beta / b_t;
        let c_x = cur_alpha.sqrt() * b_prev / b_t;
        let mut prev = lin2(&x0, c_x0, &sample, c_x)?;
        if t > 0 {
            let n = check_noise(noise, &sample, "DDPM")?;
            let variance = (b_prev / b_t * cur_beta).max(1e-20);
            prev = (prev + to_f32(n)?.affine(variance.sqrt(), 0.0)?)?;
        }
        prev.to_dtype(dtype)
    }
    fn needs_noise(&self) -> bool {
        true
    }
    fn add_noise(&self, original: &Tensor, noise: &Tensor, timestep: f64) -> Result<Tensor> {
        add_noise_vp(&self.alphas_cumprod, original, noise, timestep)
    }
    fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }
    fn config(&self) -> &SchedulerConfig {
        &self.config
    }
}
