//! Euler discrete and Euler ancestral (Karras et al. 2022 "k-diffusion" samplers), as
//! diffusers' `EulerDiscreteScheduler` (interpolation "linear", optional Karras sigmas,
//! s_churn = 0) and `EulerAncestralDiscreteScheduler`.

use candle_core::{Result, Tensor};

use super::{
    alphas_cumprod as make_alphas_cumprod, check_index, check_noise, euler_timesteps, f32r, interp, karras_sigmas,
    lin2, log_sigmas_f32, sigma_for_timestep, sigma_to_t, to_f32, train_sigmas, PredictionType, Scheduler,
    SchedulerConfig, SchedulerKind, TimestepSpacing,
};

/// The sigma schedule shared by both Euler schedulers.
#[derive(Debug, Clone)]
struct SigmaSchedule {
    config: SchedulerConfig,
    alphas_cumprod: Vec<f64>,
    train_sigmas: Vec<f64>,
    timesteps: Vec<f64>,
    /// One per timestep plus a final 0.
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
}

impl SigmaSchedule {
    fn new(config: &SchedulerConfig, n: usize, kind: SchedulerKind, karras: bool) -> Result<Self> {
        let alphas_cumprod = make_alphas_cumprod(config)?;
        let train = train_sigmas(&alphas_cumprod);
        let spacing = config.spacing_for(kind);
        let mut timesteps = euler_timesteps(config, spacing, n)?;
        let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| interp(t, &train)).collect();
        if karras {
            let (lo, hi) = (sigmas[sigmas.len() - 1], sigmas[0]);
            sigmas = karras_sigmas(lo, hi, n);
            let log_sigmas = log_sigmas_f32(&train);
            timesteps = sigmas.iter().map(|&s| f32r(sigma_to_t(s, &log_sigmas))).collect();
        }
        let mut sigmas: Vec<f64> = sigmas.into_iter().map(f32r).collect();
        sigmas.push(0.0);
        let max = sigmas.iter().cloned().fold(0.0f64, f64::max) as f32;
        let init_noise_sigma = match spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max as f64,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt() as f64,
        };
        Ok(Self { config: config.clone(), alphas_cumprod, train_sigmas: train, timesteps, sigmas, init_noise_sigma })
    }

    fn scale_model_input(&self, sample: &Tensor, step_index: usize) -> Result<Tensor> {
        check_index(step_index, self.timesteps.len())?;
        let sigma = self.sigmas[step_index];
        sample.affine(1.0 / (sigma * sigma + 1.0).sqrt(), 0.0)
    }

    /// Predicted x0 at sigma (f32 tensors).
    fn pred_x0(&self, model_output: &Tensor, sample: &Tensor, sigma: f64) -> Result<Tensor> {
        match self.config.prediction_type {
            PredictionType::Epsilon => lin2(sample, 1.0, model_output, -sigma),
            PredictionType::VPrediction => {
                let s2 = sigma * sigma + 1.0;
                lin2(model_output, -sigma / s2.sqrt(), sample, 1.0 / s2)
            }
            PredictionType::Sample => Ok(model_output.clone()),
        }
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, timestep: f64) -> Result<Tensor> {
        let sigma = sigma_for_timestep(&self.timesteps, &self.sigmas, &self.train_sigmas, timestep)?;
        let dtype = original.dtype();
        lin2(&to_f32(original)?, 1.0, &to_f32(noise)?, sigma)?.to_dtype(dtype)
    }
}

/// diffusers' `EulerDiscreteScheduler` (deterministic: s_churn = 0) and, with `ancestral`,
/// `EulerAncestralDiscreteScheduler`, whose every step with a non-zero next sigma needs caller
/// noise (it ignores `use_karras_sigmas`, as diffusers does).
#[derive(Debug, Clone)]
pub struct Euler {
    s: SigmaSchedule,
    ancestral: bool,
}

impl Euler {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Self> {
        let s = SigmaSchedule::new(config, num_inference_steps, SchedulerKind::Euler, config.use_karras_sigmas)?;
        Ok(Self { s, ancestral: false })
    }

    pub fn ancestral(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Self> {
        let s = SigmaSchedule::new(config, num_inference_steps, SchedulerKind::EulerAncestral, false)?;
        Ok(Self { s, ancestral: true })
    }

    /// Sigmas, one per timestep plus the final 0.
    pub fn sigmas(&self) -> &[f64] {
        &self.s.sigmas
    }
}

impl Scheduler for Euler {
    fn timesteps(&self) -> &[f64] {
        &self.s.timesteps
    }
    fn init_noise_sigma(&self) -> f64 {
        self.s.init_noise_sigma
    }
    fn scale_model_input(&self, sample: &Tensor, step_index: usize) -> Result<Tensor> {
        self.s.scale_model_input(sample, step_index)
    }
    fn step(
        &mut self,
        model_output: &Tensor,
        step_index: usize,
        sample: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        check_index(step_index, self.s.timesteps.len())?;
        let dtype = model_output.dtype();
        let sample = to_f32(sample)?;
        let sigma = self.s.sigmas[step_index];
        let x0 = self.s.pred_x0(&to_f32(model_output)?, &sample, sigma)?;
        let derivative = ((&sample - &x0)? / sigma)?;
        if !self.ancestral {
            let dt = self.s.sigmas[step_index + 1] - sigma;
            return lin2(&sample, 1.0, &derivative, dt)?.to_dtype(dtype);
        }
        // float32 arithmetic, as diffusers does on its sigma tensors.
        let (from, to) = (sigma as f32, self.s.sigmas[step_index + 1] as f32);
        let up = ((to * to) * (from * from - to * to) / (from * from)).sqrt();
        let down = (to * to - up * up).sqrt();
        let prev = lin2(&sample, 1.0, &derivative, down as f64 - sigma)?;
        let prev = if up > 0.0 {
            let n = check_noise(noise, &sample, "Euler ancestral")?;
            lin2(&prev, 1.0, &to_f32(n)?, up as f64)?
        } else {
            prev
        };
        prev.to_dtype(dtype)
    }
    fn needs_noise(&self) -> bool {
        self.ancestral
    }
    fn add_noise(&self, original: &Tensor, noise: &Tensor, timestep: f64) -> Result<Tensor> {
        self.s.add_noise(original, noise, timestep)
    }
    fn alphas_cumprod(&self) -> &[f64] {
        &self.s.alphas_cumprod
    }
    fn config(&self) -> &SchedulerConfig {
        &self.s.config
    }
}
