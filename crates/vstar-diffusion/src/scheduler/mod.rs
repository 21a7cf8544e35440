//! Noise schedulers matching diffusers (DDIM, DDPM, Euler, Euler ancestral, DPM-Solver++ 2M).
//!
//! All schedule arithmetic follows diffusers, including its float32 roundings of betas,
//! `alphas_cumprod`, sigmas and timesteps, so results agree with diffusers to float tolerance.
//! Step coefficients are computed in f64; tensor arithmetic runs in f32 (inputs of other dtypes
//! are upcast and the result cast back, as diffusers does).

pub mod config;
pub mod ddim;
pub mod ddpm;
pub mod dpm;
pub mod euler;

use candle_core::{DType, Result, Tensor};
use std::fmt;
use std::str::FromStr;

pub use config::{BetaSchedule, PredictionType, SchedulerConfig, TimestepSpacing};
pub use ddim::Ddim;
pub use ddpm::Ddpm;
pub use dpm::DpmPp2m;
pub use euler::Euler;

/// The interface every scheduler implements. Step indices are absolute positions in
/// [`Scheduler::timesteps`]; a run may start at any index (img2img).
pub trait Scheduler: Send {
    /// Timesteps for the UNet, largest first (f64: linspace spacing gives fractional ones for Euler).
    fn timesteps(&self) -> &[f64];
    /// Scale of the initial noise (1 for the DDPM family; sigma_max for Euler-type ones).
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }
    /// The UNet input at a step (identity for the DDPM family; Euler-type ones divide by sigma).
    fn scale_model_input(&self, sample: &Tensor, _step_index: usize) -> Result<Tensor> {
        Ok(sample.clone())
    }
    /// One step. Stochastic schedulers take fresh noise (same shape as sample) from the caller.
    fn step(
        &mut self,
        model_output: &Tensor,
        step_index: usize,
        sample: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Tensor>;
    fn needs_noise(&self) -> bool;
    /// Forward-diffuse a clean sample to timestep t (img2img, training).
    fn add_noise(&self, original: &Tensor, noise: &Tensor, timestep: f64) -> Result<Tensor>;
    fn alphas_cumprod(&self) -> &[f64];
    fn config(&self) -> &SchedulerConfig;
}

/// The schedulers `build` can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    Ddim,
    Ddpm,
    Euler,
    EulerAncestral,
    DpmPp2m,
}

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 5] = [
        SchedulerKind::Ddim,
        SchedulerKind::Ddpm,
        SchedulerKind::Euler,
        SchedulerKind::EulerAncestral,
        SchedulerKind::DpmPp2m,
    ];

    /// Command-line name: `ddim`, `ddpm`, `euler`, `euler-a`, `dpmpp-2m`.
    pub fn name(&self) -> &'static str {
        match self {
            SchedulerKind::Ddim => "ddim",
            SchedulerKind::Ddpm => "ddpm",
            SchedulerKind::Euler => "euler",
            SchedulerKind::EulerAncestral => "euler-a",
            SchedulerKind::DpmPp2m => "dpmpp-2m",
        }
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SchedulerKind {
    type Err = candle_core::Error;
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|k| k.name() == lower).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
            candle_core::Error::Msg(format!("unknown scheduler {s:?}; valid names: {}", names.join(", ")))
        })
    }
}

/// Make a scheduler with its timesteps set for `num_inference_steps`.
pub fn build(kind: SchedulerKind, config: &SchedulerConfig, num_inference_steps: usize) -> Result<Box<dyn Scheduler>> {
    Ok(match kind {
        SchedulerKind::Ddim => Box::new(Ddim::new(config, num_inference_steps)?),
        SchedulerKind::Ddpm => Box::new(Ddpm::new(config, num_inference_steps)?),
        SchedulerKind::Euler => Box::new(Euler::new(config, num_inference_steps)?),
        SchedulerKind::EulerAncestral => Box::new(Euler::ancestral(config, num_inference_steps)?),
        SchedulerKind::DpmPp2m => Box::new(DpmPp2m::new(config, num_inference_steps)?),
    })
}

// ---------------------------------------------------------------------------------------------
// Shared schedule arithmetic (diffusers-exact, including its float32 roundings).

pub(crate) fn err(msg: impl Into<String>) -> candle_core::Error {
    candle_core::Error::Msg(msg.into())
}

/// Rounds through f32, where diffusers computes in float32.
pub(crate) fn f32r(x: f64) -> f64 {
    x as f32 as f64
}

/// Betas as diffusers makes them (a float32 tensor), widened to f64.
pub fn betas(config: &SchedulerConfig) -> Result<Vec<f64>> {
    config.validate().map_err(err)?;
    let n = config.num_train_timesteps;
    if let Some(b) = &config.trained_betas {
        return Ok(b.iter().map(|&x| f32r(x)).collect());
    }
    // torch.linspace(start, end, n, dtype=float32): f32 endpoints and step, evaluated from
    // both ends, as torch's CPU kernel does.
    let linspace = |start: f64, end: f64| -> Vec<f64> {
        let (s, e) = (f32r(start), f32r(end));
        let step = ((e as f32 - s as f32) / (n - 1) as f32) as f64;
        let half = n / 2;
        (0..n).map(|i| if i < half { f32r(s + step * i as f64) } else { f32r(e - step * (n - i - 1) as f64) }).collect()
    };
    Ok(match config.beta_schedule {
        BetaSchedule::Linear => linspace(config.beta_start, config.beta_end),
        BetaSchedule::ScaledLinear => {
            linspace(config.beta_start.sqrt(), config.beta_end.sqrt()).into_iter().map(|b| f32r(b * b)).collect()
        }
        BetaSchedule::SquaredcosCapV2 => {
            let abar = |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0).cos().powi(2);
            (0..n)
                .map(|i| {
                    let t1 = i as f64 / n as f64;
                    let t2 = (i + 1) as f64 / n as f64;
                    f32r((1.0 - abar(t2) / abar(t1)).min(0.999))
                })
                .collect()
        }
    })
}

/// `alphas_cumprod` as diffusers computes it (float32 values; torch accumulates in f64).
pub fn alphas_cumprod(config: &SchedulerConfig) -> Result<Vec<f64>> {
    let mut acc = 1.0f64;
    Ok(betas(config)?
        .into_iter()
        .map(|b| {
            acc *= f32r(1.0 - b);
            f32r(acc)
        })
        .collect())
}

/// Training sigmas `sqrt((1 - abar) / abar)`, float32 as in diffusers, index = train timestep.
pub(crate) fn train_sigmas(alphas_cumprod: &[f64]) -> Vec<f64> {
    alphas_cumprod
        .iter()
        .map(|&a| {
            let a = a as f32;
            (((1.0f32 - a) / a).sqrt()) as f64
        })
        .collect()
}

/// numpy's `np.interp(x, arange(len(fp)), fp)`.
pub(crate) fn interp(x: f64, fp: &[f64]) -> f64 {
    let last = fp.len() - 1;
    if x <= 0.0 {
        return fp[0];
    }
    if x >= last as f64 {
        return fp[last];
    }
    let j = x.floor() as usize;
    let slope = fp[j + 1] - fp[j];
    slope * (x - j as f64) + fp[j]
}

/// numpy `np.arange(start, stop, step)` for float arguments.
fn arange_f(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil().max(0.0) as usize;
    (0..len).map(|i| start + i as f64 * step).collect()
}

/// numpy `np.linspace(start, stop, num)` (float64).
pub(crate) fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

/// Integer timesteps of DDIM/DDPM `set_timesteps`, largest first.
pub(crate) fn discrete_timesteps(config: &SchedulerConfig, spacing: TimestepSpacing, n: usize) -> Result<Vec<f64>> {
    let t = config.num_train_timesteps;
    check_steps(n, t)?;
    Ok(match spacing {
        TimestepSpacing::Linspace => {
            linspace(0.0, (t - 1) as f64, n).into_iter().rev().map(|x| x.round_ties_even()).collect()
        }
        TimestepSpacing::Leading => {
            let ratio = t / n;
            (0..n).rev().map(|i| (i * ratio + config.steps_offset) as f64).collect()
        }
        TimestepSpacing::Trailing => {
            arange_f(t as f64, 0.0, -(t as f64 / n as f64)).into_iter().map(|x| x.round_ties_even() - 1.0).collect()
        }
    })
}

/// Float32 timesteps of the Euler schedulers' `set_timesteps`, largest first.
pub(crate) fn euler_timesteps(config: &SchedulerConfig, spacing: TimestepSpacing, n: usize) -> Result<Vec<f64>> {
    let t = config.num_train_timesteps;
    check_steps(n, t)?;
    Ok(match spacing {
        TimestepSpacing::Linspace => linspace(0.0, (t - 1) as f64, n).into_iter().rev().map(f32r).collect(),
        TimestepSpacing::Leading => {
            let ratio = t / n;
            (0..n).rev().map(|i| f32r((i * ratio) as f64) + config.steps_offset as f64).map(f32r).collect()
        }
        TimestepSpacing::Trailing => arange_f(t as f64, 0.0, -(t as f64 / n as f64))
            .into_iter()
            .map(|x| f32r(x.round_ties_even()) - 1.0)
            .map(f32r)
            .collect(),
    })
}

fn check_steps(n: usize, t: usize) -> Result<()> {
    if n == 0 || n > t {
        return Err(err(format!("num_inference_steps must be in 1..={t} (num_train_timesteps), got {n}")));
    }
    Ok(())
}

/// diffusers' `_sigma_to_t`: fractional train timestep of a sigma, by linear interpolation in
/// log-sigma (log_sigmas are float32 as in diffusers).
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let n = log_sigmas.len();
    let mut low = 0usize;
    for (i, &l) in log_sigmas.iter().enumerate() {
        if log_sigma - l >= 0.0 {
            low = i;
        }
    }
    let low = low.min(n - 2);
    let high = low + 1;
    let (lo, hi) = (log_sigmas[low], log_sigmas[high]);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * high as f64
}

pub(crate) fn log_sigmas_f32(train_sigmas: &[f64]) -> Vec<f64> {
    train_sigmas.iter().map(|&s| (s as f32).ln() as f64).collect()
}

/// Karras et al. (2022) sigmas, rho = 7, from `sigma_max` down to `sigma_min`.
pub(crate) fn karras_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    let rho = 7.0;
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    linspace(0.0, 1.0, n).into_iter().map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho)).collect()
}

/// Find `t` in a schedule the way diffusers' `index_for_timestep` does (the second match when
/// a timestep appears twice).
/// The k-diffusion sigma at a timestep: the schedule's own where the timestep is in it,
/// otherwise interpolated from the training sigmas (img2img and training at any t).
pub(crate) fn sigma_for_timestep(timesteps: &[f64], sigmas: &[f64], train_sigmas: &[f64], t: f64) -> Result<f64> {
    match index_for_timestep(timesteps, t) {
        Some(i) => Ok(sigmas[i]),
        None if (0.0..=(train_sigmas.len() - 1) as f64).contains(&t) => Ok(f32r(interp(t, train_sigmas))),
        None => Err(err(format!("add_noise: timestep {t} out of range"))),
    }
}

pub(crate) fn index_for_timestep(timesteps: &[f64], t: f64) -> Option<usize> {
    let hits: Vec<usize> = timesteps.iter().enumerate().filter(|(_, &x)| x == t).map(|(i, _)| i).collect();
    match hits.len() {
        0 => None,
        1 => Some(hits[0]),
        _ => Some(hits[1]),
    }
}

pub(crate) fn check_index(step_index: usize, len: usize) -> Result<()> {
    if step_index >= len {
        return Err(err(format!("step index {step_index} out of range: the schedule has {len} steps")));
    }
    Ok(())
}

/// `a * x + b * y` (f64 coefficients).
pub(crate) fn lin2(x: &Tensor, a: f64, y: &Tensor, b: f64) -> Result<Tensor> {
    x.affine(a, 0.0)? + y.affine(b, 0.0)?
}

/// Upcast to f32 for the step arithmetic.
pub(crate) fn to_f32(x: &Tensor) -> Result<Tensor> {
    x.to_dtype(DType::F32)
}

pub(crate) fn check_noise<'a>(noise: Option<&'a Tensor>, sample: &Tensor, who: &str) -> Result<&'a Tensor> {
    let n = noise.ok_or_else(|| {
        err(format!("{who}: this step is stochastic and needs fresh noise (same shape as the sample)"))
    })?;
    if n.dims() != sample.dims() {
        return Err(err(format!("{who}: noise shape {:?} differs from sample shape {:?}", n.dims(), sample.dims())));
    }
    Ok(n)
}
