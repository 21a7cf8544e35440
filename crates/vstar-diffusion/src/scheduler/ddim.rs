//! DDIM (Song et al. 2021), as diffusers' `DDIMScheduler`, plus free functions on
//! `alphas_cumprod` for methods that need DDIM internals (ProFusion, CFG++, PALP).
//!
//! Notation: `abar_t = alphas_cumprod[t]`; the step from `t` goes to
//! `t_prev = t - num_train_timesteps / num_inference_steps` (diffusers' rule for every spacing);
//! `abar_prev` is `final_alpha_cumprod` when `t_prev < 0`.

use candle_core::{Result, Tensor};

use super::{
    alphas_cumprod as make_alphas_cumprod, check_index, check_noise, discrete_timesteps, err, lin2, to_f32,
    PredictionType, Scheduler, SchedulerConfig, SchedulerKind,
};

/// `abar` used when the previous timestep is below 0: 1 if `set_alpha_to_one`, else `abar_0`.
pub fn final_alpha_cumprod(alphas_cumprod: &[f64], set_alpha_to_one: bool) -> f64 {
    if set_alpha_to_one {
        1.0
    } else {
        alphas_cumprod[0]
    }
}

/// DDIM's previous timestep: `t - num_train_timesteps / num_inference_steps` (integer division).
pub fn prev_timestep(timestep: i64, num_train_timesteps: usize, num_inference_steps: usize) -> i64 {
    timestep - (num_train_timesteps / num_inference_steps) as i64
}

/// `abar_t`; a timestep below 0 gives `final_alpha_cumprod`.
pub fn alpha_prod(alphas_cumprod: &[f64], timestep: i64, final_alpha_cumprod: f64) -> f64 {
    if timestep < 0 {
        final_alpha_cumprod
    } else {
        alphas_cumprod[timestep as usize]
    }
}

/// `abar_prev` for the DDIM step from `timestep` (see [`prev_timestep`]).
pub fn alpha_prod_prev(
    alphas_cumprod: &[f64],
    timestep: i64,
    num_inference_steps: usize,
    final_alpha_cumprod: f64,
) -> f64 {
    let prev = prev_timestep(timestep, alphas_cumprod.len(), num_inference_steps);
    alpha_prod(alphas_cumprod, prev, final_alpha_cumprod)
}

/// DDIM variance `sigma_t^2 / eta^2 = (1-abar_prev)/(1-abar_t) * (1 - abar_t/abar_prev)`.
pub fn ddim_variance(alpha_prod_t: f64, alpha_prod_prev: f64) -> f64 {
    (1.0 - alpha_prod_prev) / (1.0 - alpha_prod_t) * (1.0 - alpha_prod_t / alpha_prod_prev)
}

/// Predicted clean sample `x0` and noise `eps` from a model output at `abar_t`.
pub fn pred_x0_eps(
    model_output: &Tensor,
    sample: &Tensor,
    alpha_prod_t: f64,
    prediction_type: PredictionType,
) -> Result<(Tensor, Tensor)> {
    let (sa, sb) = (alpha_prod_t.sqrt(), (1.0 - alpha_prod_t).sqrt());
    Ok(match prediction_type {
        PredictionType::Epsilon => {
            let x0 = lin2(sample, 1.0 / sa, model_output, -sb / sa)?;
            (x0, model_output.clone())
        }
        PredictionType::Sample => {
            let eps = lin2(sample, 1.0 / sb, model_output, -sa / sb)?;
            (model_output.clone(), eps)
        }
        PredictionType::VPrediction => {
            let x0 = lin2(sample, sa, model_output, -sb)?;
            let eps = lin2(model_output, sa, sample, sb)?;
            (x0, eps)
        }
    })
}

/// Predicted `x0` only (see [`pred_x0_eps`]).
pub fn pred_x0(
    model_output: &Tensor,
    sample: &Tensor,
    alpha_prod_t: f64,
    prediction_type: PredictionType,
) -> Result<Tensor> {
    Ok(pred_x0_eps(model_output, sample, alpha_prod_t, prediction_type)?.0)
}

/// Predicted `eps` only (see [`pred_x0_eps`]).
pub fn pred_eps(
    model_output: &Tensor,
    sample: &Tensor,
    alpha_prod_t: f64,
    prediction_type: PredictionType,
) -> Result<Tensor> {
    Ok(pred_x0_eps(model_output, sample, alpha_prod_t, prediction_type)?.1)
}

/// The DDIM update from `x0`, `eps`:
/// `sqrt(abar_prev) x0 + sqrt(1 - abar_prev - std^2) eps + std * noise`,
/// `std = eta * sqrt(ddim_variance)`. `noise` is required when `std_dev > 0`.
pub fn ddim_update(
    x0: &Tensor,
    eps: &Tensor,
    alpha_prod_prev: f64,
    std_dev: f64,
    noise: Option<&Tensor>,
) -> Result<Tensor> {
    let dir = (1.0 - alpha_prod_prev - std_dev * std_dev).max(0.0).sqrt();
    let prev = lin2(x0, alpha_prod_prev.sqrt(), eps, dir)?;
    if std_dev > 0.0 {
        let n = check_noise(noise, x0, "DDIM with eta > 0")?;
        let n = n.to_dtype(prev.dtype())?.affine(std_dev, 0.0)?;
        prev + n
    } else {
        Ok(prev)
    }
}

/// Everything one DDIM step uses, for a given step index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdimStepCoeffs {
    pub timestep: i64,
    pub prev_timestep: i64,
    pub alpha_prod_t: f64,
    pub alpha_prod_prev: f64,
    /// [`ddim_variance`] (not multiplied by eta).
    pub variance: f64,
}

/// diffusers' `DDIMScheduler`. `eta` defaults to 0 (deterministic); with `eta > 0` each step
/// needs caller noise.
#[derive(Debug, Clone)]
pub struct Ddim {
    config: SchedulerConfig,
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    timesteps: Vec<f64>,
    num_inference_steps: usize,
    eta: f64,
}

impl Ddim {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Self> {
        let alphas_cumprod = make_alphas_cumprod(config)?;
        let spacing = config.spacing_for(SchedulerKind::Ddim);
        let timesteps = discrete_timesteps(config, spacing, num_inference_steps)?;
        let final_alpha_cumprod = final_alpha_cumprod(&alphas_cumprod, config.set_alpha_to_one);
        Ok(Self {
            config: config.clone(),
            alphas_cumprod,
            final_alpha_cumprod,
            timesteps,
            num_inference_steps,
            eta: 0.0,
        })
    }

    /// Same as [`Ddim::new`] with DDIM's `eta` (0 = deterministic DDIM, 1 = DDPM-like).
    pub fn with_eta(config: &SchedulerConfig, num_inference_steps: usize, eta: f64) -> Result<Self> {
        let mut s = Self::new(config, num_inference_steps)?;
        s.set_eta(eta)?;
        Ok(s)
    }

    pub fn set_eta(&mut self, eta: f64) -> Result<()> {
        if !(eta >= 0.0 && eta.is_finite()) {
            return Err(err(format!("DDIM eta must be >= 0, got {eta}")));
        }
        self.eta = eta;
        Ok(())
    }

    pub fn eta(&self) -> f64 {
        self.eta
    }

    pub fn num_inference_steps(&self) -> usize {
        self.num_inference_steps
    }

    pub fn final_alpha_cumprod(&self) -> f64 {
        self.final_alpha_cumprod
    }

    /// Coefficients of the step at `step_index`.
    pub fn coeffs(&self, step_index: usize) -> Result<DdimStepCoeffs> {
        check_index(step_index, self.timesteps.len())?;
        let t = self.timesteps[step_index] as i64;
        let prev = prev_timestep(t, self.config.num_train_timesteps, self.num_inference_steps);
        let alpha_prod_t = alpha_prod(&self.alphas_cumprod, t, self.final_alpha_cumprod);
        let alpha_prod_prev = alpha_prod(&self.alphas_cumprod, prev, self.final_alpha_cumprod);
        Ok(DdimStepCoeffs {
            timestep: t,
            prev_timestep: prev,
            alpha_prod_t,
            alpha_prod_prev,
            variance: ddim_variance(alpha_prod_t, alpha_prod_prev),
        })
    }

    /// `(x0, eps)` predicted at `step_index` (x0 clipped if the config says `clip_sample`).
    pub fn predict(&self, model_output: &Tensor, step_index: usize, sample: &Tensor) -> Result<(Tensor, Tensor)> {
        let c = self.coeffs(step_index)?;
        let (x0, eps) =
            pred_x0_eps(&to_f32(model_output)?, &to_f32(sample)?, c.alpha_prod_t, self.config.prediction_type)?;
        let x0 = if self.config.clip_sample {
            let r = self.config.clip_sample_range;
            x0.clamp(-r, r)?
        } else {
            x0
        };
        Ok((x0, eps))
    }

    /// One DDIM step with an explicit `eta` (ignores the scheduler's own).
    pub fn step_eta(
        &self,
        model_output: &Tensor,
        step_index: usize,
        sample: &Tensor,
        eta: f64,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        let c = self.coeffs(step_index)?;
        let (x0, eps) = self.predict(model_output, step_index, sample)?;
        let std_dev = eta * c.variance.sqrt();
        ddim_update(&x0, &eps, c.alpha_prod_prev, std_dev, noise)?.to_dtype(model_output.dtype())
    }
}

impl Scheduler for Ddim {
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
        self.step_eta(model_output, step_index, sample, self.eta, noise)
    }
    fn needs_noise(&self) -> bool {
        self.eta > 0.0
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

/// `sqrt(abar_t) x0 + sqrt(1 - abar_t) noise` at an integer train timestep (fractional
/// timesteps are rounded).
pub fn add_noise_vp(alphas_cumprod: &[f64], original: &Tensor, noise: &Tensor, timestep: f64) -> Result<Tensor> {
    let t = timestep.round();
    if !(t >= 0.0 && (t as usize) < alphas_cumprod.len()) {
        return Err(err(format!("add_noise: timestep {timestep} outside 0..{}", alphas_cumprod.len())));
    }
    let a = alphas_cumprod[t as usize];
    let dtype = original.dtype();
    lin2(&to_f32(original)?, a.sqrt(), &to_f32(noise)?, (1.0 - a).sqrt())?.to_dtype(dtype)
}
