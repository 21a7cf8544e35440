//! `scheduler/scheduler_config.json` with diffusers' defaults.

use candle_core::{Error, Result};
use serde::{Deserialize, Serialize};

fn d_1000() -> usize {
    1000
}
fn d_bs() -> f64 {
    0.0001
}
fn d_be() -> f64 {
    0.02
}
fn d_linear() -> String {
    "linear".into()
}
fn d_eps() -> String {
    "epsilon".into()
}
fn d_leading() -> String {
    "leading".into()
}
fn d_true() -> bool {
    true
}
fn d_one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchedulerConfig {
    #[serde(default = "d_1000")]
    pub num_train_timesteps: usize,
    #[serde(default = "d_bs")]
    pub beta_start: f64,
    #[serde(default = "d_be")]
    pub beta_end: f64,
    #[serde(default = "d_linear")]
    pub beta_schedule: String,
    #[serde(default)]
    pub trained_betas: Option<Vec<f64>>,
    #[serde(default = "d_eps")]
    pub prediction_type: String,
    #[serde(default = "d_leading")]
    pub timestep_spacing: String,
    #[serde(default)]
    pub steps_offset: usize,
    #[serde(default = "d_true")]
    pub set_alpha_to_one: bool,
    #[serde(default = "d_true")]
    pub clip_sample: bool,
    #[serde(default = "d_one")]
    pub clip_sample_range: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prediction {
    Epsilon,
    V,
    Sample,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spacing {
    Leading,
    Trailing,
    Linspace,
}

fn bad(key: &str, value: &str, allowed: &str) -> Error {
    Error::Msg(format!("scheduler config `{key}` = {value:?} is not supported; use one of {allowed}"))
}

impl SchedulerConfig {
    pub fn prediction(&self) -> Result<Prediction> {
        match self.prediction_type.as_str() {
            "epsilon" => Ok(Prediction::Epsilon),
            "v_prediction" => Ok(Prediction::V),
            "sample" => Ok(Prediction::Sample),
            v => Err(bad("prediction_type", v, "epsilon, v_prediction, sample")),
        }
    }

    pub fn spacing(&self) -> Result<Spacing> {
        match self.timestep_spacing.as_str() {
            "leading" => Ok(Spacing::Leading),
            "trailing" => Ok(Spacing::Trailing),
            "linspace" => Ok(Spacing::Linspace),
            v => Err(bad("timestep_spacing", v, "leading, trailing, linspace")),
        }
    }

    /// Cumulative alpha products, computed in f32 as diffusers does (so coefficients match).
    pub fn alphas_cumprod(&self) -> Result<Vec<f64>> {
        let n = self.num_train_timesteps;
        let betas: Vec<f32> = match (&self.trained_betas, self.beta_schedule.as_str()) {
            (Some(b), _) => b.iter().map(|&x| x as f32).collect(),
            (None, "linear") => linspace(self.beta_start as f32, self.beta_end as f32, n),
            (None, "scaled_linear") => linspace((self.beta_start as f32).sqrt(), (self.beta_end as f32).sqrt(), n)
                .iter()
                .map(|b| b * b)
                .collect(),
            (None, "squaredcos_cap_v2") => {
                let f = |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0).cos().powi(2);
                (0..n)
                    .map(|i| (1.0 - f((i + 1) as f64 / n as f64) / f(i as f64 / n as f64)).min(0.999) as f32)
                    .collect()
            }
            (None, v) => return Err(bad("beta_schedule", v, "linear, scaled_linear, squaredcos_cap_v2")),
        };
        let mut acc = 1f32;
        Ok(betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc as f64
            })
            .collect())
    }
}

/// torch.linspace in f32.
fn linspace(a: f32, b: f32, n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![a];
    }
    let step = (b - a) / (n - 1) as f32;
    // torch fills the first half from the start and the second half from the end.
    let half = n / 2;
    (0..n).map(|i| if i < half { a + step * i as f32 } else { b - step * (n - 1 - i) as f32 }).collect()
}
