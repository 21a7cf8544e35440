//! Noise schedulers matching diffusers' timesteps and coefficients.

mod config;
pub mod ddim;

pub use config::{Prediction, SchedulerConfig, Spacing};

use candle_core::{Error, Result, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    Ddim,
    Ddpm,
    Euler,
    EulerAncestral,
    DpmPp2m,
}

impl std::str::FromStr for SchedulerKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "ddim" => Ok(Self::Ddim),
            "ddpm" => Ok(Self::Ddpm),
            "euler" => Ok(Self::Euler),
            "euler-a" => Ok(Self::EulerAncestral),
            "dpmpp-2m" => Ok(Self::DpmPp2m),
            other => Err(format!("unknown scheduler {other:?}; valid: ddim, ddpm, euler, euler-a, dpmpp-2m")),
        }
    }
}

pub trait Scheduler: Send {
    /// Timesteps for the UNet, largest first.
    fn timesteps(&self) -> &[f64];
    fn init_noise_sigma(&self) -> f64;
    fn scale_model_input(&self, sample: &Tensor, step_index: usize) -> Result<Tensor>;
    /// One step. Stochastic schedulers take fresh noise (same shape as sample) from the caller.
    fn step(
        &mut self,
        model_output: &Tensor,
        step_index: usize,
        sample: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Tensor>;
    fn needs_noise(&self) -> bool;
    /// Forward-diffuses a clean sample to timestep t (img2img, training).
    fn add_noise(&self, original: &Tensor, noise: &Tensor, timestep: f64) -> Result<Tensor>;
    fn alphas_cumprod(&self) -> &[f64];
    fn config(&self) -> &SchedulerConfig;
}

pub fn build(kind: SchedulerKind, config: &SchedulerConfig, steps: usize) -> Result<Box<dyn Scheduler>> {
    if steps == 0 || steps > config.num_train_timesteps {
        return Err(Error::Msg(format!("--steps must be between 1 and {}, got {steps}", config.num_train_timesteps)));
    }
    match kind {
        SchedulerKind::Ddim => Ok(Box::new(ddim::Ddim::new(config, steps, 0.0)?)),
        other => Err(Error::Msg(format!("scheduler {other:?} is not available yet; use ddim"))),
    }
}

/// sqrt(abar) x0 + sqrt(1 - abar) noise at an integer training timestep.
pub fn add_noise_at(alphas_cumprod: &[f64], original: &Tensor, noise: &Tensor, timestep: f64) -> Result<Tensor> {
    let a = alphas_cumprod[timestep.round() as usize];
    (original * a.sqrt())? + (noise * (1.0 - a).sqrt())?
}
