//! DPM-Solver++ 2M (Lu et al. 2022), as diffusers' `DPMSolverMultistepScheduler` with its
//! defaults: algorithm "dpmsolver++", solver_order 2, solver_type "midpoint",
//! lower_order_final true, final_sigmas_type "zero", euler_at_final false (optional Karras
//! sigmas).

use candle_core::{Result, Tensor};

use super::{
    alphas_cumprod as make_alphas_cumprod, check_index, err, f32r, interp, karras_sigmas, lin2, linspace,
    log_sigmas_f32, sigma_for_timestep, sigma_to_t, to_f32, train_sigmas, PredictionType, Scheduler, SchedulerConfig,
    SchedulerKind, TimestepSpacing,
};

/// `(alpha_t, sigma_t)` of the VP process for a k-diffusion sigma.
fn alpha_sigma(sigma: f64) -> (f64, f64) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

fn lambda(sigma: f64) -> f64 {
    let (a, s) = alpha_sigma(sigma);
    a.ln() - s.ln()
}

/// diffusers' `DPMSolverMultistepScheduler` (DPM-Solver++ 2M, data prediction).
/// The first step of a run (any start index) and the last step are first order; the others
/// use the x0 prediction of the step just before (kept from the previous `step` call, which
/// must have been at `step_index - 1`).
#[derive(Debug, Clone)]
pub struct DpmPp2m {
    config: SchedulerConfig,
    alphas_cumprod: Vec<f64>,
    train_sigmas: Vec<f64>,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    /// `(step_index, x0 prediction)` of the last step taken.
    last: Option<(usize, Tensor)>,
}

impl DpmPp2m {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Self> {
        let n = num_inference_steps;
        let t_train = config.num_train_timesteps;
        if n == 0 || n > t_train {
            return Err(err(format!("num_inference_steps must be in 1..={t_train} (num_train_timesteps), got {n}")));
        }
        let alphas_cumprod = make_alphas_cumprod(config)?;
        let train = train_sigmas(&alphas_cumprod);
        // lambda_min_clipped = -inf: the last timestep is num_train_timesteps.
        let last = t_train;
        let mut timesteps: Vec<f64> = match config.spacing_for(SchedulerKind::DpmPp2m) {
            TimestepSpacing::Linspace => {
                let v = linspace(0.0, (last - 1) as f64, n + 1);
                v.into_iter().rev().take(n).map(|x| x.round_ties_even()).collect()
            }
            TimestepSpacing::Leading => {
                let ratio = last / (n + 1);
                (1..=n).rev().map(|i| (i * ratio + config.steps_offset) as f64).collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = t_train as f64 / n as f64;
                let len = (last as f64 / ratio).ceil() as usize;
                (0..len).map(|i| (last as f64 - i as f64 * ratio).round_ties_even() - 1.0).collect()
            }
        };
        let mut sigmas: Vec<f64>;
        if config.use_karras_sigmas {
            sigmas = karras_sigmas(train[0], train[train.len() - 1], n);
            let log_sigmas = log_sigmas_f32(&train);
            timesteps = sigmas
                .iter()
                .map(|&s| {
                    let t = sigma_to_t(s, &log_sigmas);
                    if config.beta_schedule == super::BetaSchedule::SquaredcosCapV2 {
                        t
                    } else {
                        t.round_ties_even()
                    }
                })
                .collect();
            // diffusers stores these as int64 timesteps.
            timesteps = timesteps.into_iter().map(|t| t.trunc()).collect();
        } else {
            sigmas = timesteps.iter().map(|&t| interp(t, &train)).collect();
        }
        sigmas.push(0.0);
        let sigmas = sigmas.into_iter().map(f32r).collect();
        Ok(Self { config: config.clone(), alphas_cumprod, train_sigmas: train, timesteps, sigmas, last: None })
    }

    /// Sigmas, one per timestep plus the final 0.
    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }

    /// Forget the stored model output (the next step is first order).
    pub fn reset(&mut self) {
        self.last = None;
    }

    fn convert_model_output(&self, model_output: &Tensor, sample: &Tensor, sigma: f64) -> Result<Tensor> {
        let (alpha, sig) = alpha_sigma(sigma);
        match self.config.prediction_type {
            PredictionType::Epsilon => lin2(sample, 1.0 / alpha, model_output, -sig / alpha),
            PredictionType::VPrediction => lin2(sample, alpha, model_output, -sig),
            PredictionType::Sample => Ok(model_output.clone()),
        }
    }
}

impl Scheduler for DpmPp2m {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }
    fn scale_model_input(&self, sample: &Tensor, _step_index: usize) -> Result<Tensor> {
        Ok(sample.clone())
    }
    fn step(
        &mut self,
        model_output: &Tensor,
        step_index: usize,
        sample: &Tensor,
        _noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        let n = self.timesteps.len();
        check_index(step_index, n)?;
        let dtype = model_output.dtype();
        let sample = to_f32(sample)?;
        let (s0, t) = (self.sigmas[step_index], self.sigmas[step_index + 1]);
        let m0 = self.convert_model_output(&to_f32(model_output)?, &sample, s0)?;
        let (alpha_t, sigma_t) = alpha_sigma(t);
        let (_, sigma_s0) = alpha_sigma(s0);
        let h = lambda(t) - lambda(s0);
        // exp(-h) - 1; at the final sigma 0, h = inf and this is -1.
        let em1 = (-h).exp() - 1.0;
        let prev_m = match &self.last {
            Some((i, m)) if *i + 1 == step_index && step_index >= 1 => Some(m.clone()),
            _ => None,
        };
        let first_order = step_index == n - 1 || prev_m.is_none();
        let ratio = if sigma_t == 0.0 { 0.0 } else { sigma_t / sigma_s0 };
        let prev = if first_order {
            lin2(&sample, ratio, &m0, -alpha_t * em1)?
        } else {
            let m1 = prev_m.expect("checked above");
            let s1 = self.sigmas[step_index - 1];
            let h0 = lambda(s0) - lambda(s1);
            let r0 = h0 / h;
            let d1 = ((&m0 - &m1)? * (1.0 / r0))?;
            let x = lin2(&sample, ratio, &m0, -alpha_t * em1)?;
            lin2(&x, 1.0, &d1, -0.5 * alpha_t * em1)?
        };
        self.last = Some((step_index, m0));
        prev.to_dtype(dtype)
    }
    fn needs_noise(&self) -> bool {
        false
    }
    fn add_noise(&self, original: &Tensor, noise: &Tensor, timestep: f64) -> Result<Tensor> {
        let sigma = sigma_for_timestep(&self.timesteps, &self.sigmas, &self.train_sigmas, timestep)?;
        let (alpha, sig) = alpha_sigma(sigma);
        let dtype = original.dtype();
        lin2(&to_f32(original)?, alpha, &to_f32(noise)?, sig)?.to_dtype(dtype)
    }
    fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }
    fn config(&self) -> &SchedulerConfig {
        &self.config
    }
}
