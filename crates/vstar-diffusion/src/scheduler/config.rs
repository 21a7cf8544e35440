//! Scheduler configuration, read from a diffusers `scheduler/scheduler_config.json`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use super::SchedulerKind;

fn bad_value(key: &str, value: &str, allowed: &[&str]) -> String {
    format!(
        "scheduler config: invalid value {value:?} for key `{key}`; allowed values: {}",
        allowed.join(", ")
    )
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $key:literal, { $($(#[$vmeta:meta])* $variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// All accepted spellings, as in diffusers' configs.
            pub const NAMES: &'static [&'static str] = &[$($s),+];
            /// The diffusers spelling.
            pub fn as_str(&self) -> &'static str {
                match self { $(Self::$variant => $s),+ }
            }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok(Self::$variant),)+
                    other => Err(bad_value($key, other, Self::NAMES)),
                }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_enum!(
    /// `beta_schedule`.
    BetaSchedule, "beta_schedule", {
        Linear => "linear",
        ScaledLinear => "scaled_linear",
        SquaredcosCapV2 => "squaredcos_cap_v2",
    }
);
string_enum!(
    /// `prediction_type`: what the UNet predicts.
    PredictionType, "prediction_type", {
        Epsilon => "epsilon",
        VPrediction => "v_prediction",
        Sample => "sample",
    }
);
string_enum!(
    /// `timestep_spacing`.
    TimestepSpacing, "timestep_spacing", {
        Leading => "leading",
        Trailing => "trailing",
        Linspace => "linspace",
    }
);

/// A diffusers scheduler config. Missing keys take diffusers' defaults (those of
/// `DDIMScheduler`; see [`SchedulerConfig::timestep_spacing`] for the one key whose default
/// depends on the scheduler). Unknown keys are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct SchedulerConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trained_betas: Option<Vec<f64>>,
    pub prediction_type: PredictionType,
    /// `None` when the key is absent: diffusers then uses each scheduler's own default,
    /// `leading` for DDIM/DDPM and `linspace` for Euler, Euler ancestral and DPM-Solver++
    /// (SD 1.x configs have no such key). Use [`SchedulerConfig::spacing_for`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestep_spacing: Option<TimestepSpacing>,
    pub steps_offset: usize,
    pub set_alpha_to_one: bool,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    /// Euler / DPM-Solver++ only: Karras sigmas.
    pub use_karras_sigmas: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            prediction_type: PredictionType::Epsilon,
            timestep_spacing: None,
            steps_offset: 0,
            set_alpha_to_one: true,
            clip_sample: true,
            clip_sample_range: 1.0,
            use_karras_sigmas: false,
        }
    }
}

impl SchedulerConfig {
    /// Stable Diffusion 1.x/2.x base config (scaled_linear 0.00085..0.012, steps_offset 1,
    /// set_alpha_to_one false, clip_sample false, spacing left to the scheduler's default).
    pub fn stable_diffusion() -> Self {
        Self {
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            steps_offset: 1,
            set_alpha_to_one: false,
            clip_sample: false,
            ..Self::default()
        }
    }

    /// Parse the JSON text of a `scheduler_config.json`.
    pub fn from_json_str(s: &str) -> candle_core::Result<Self> {
        serde_json::from_str(s).map_err(|e| candle_core::Error::Msg(format!("{e}")))
    }

    /// Read a `scheduler_config.json` file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> candle_core::Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            candle_core::Error::Msg(format!("reading scheduler config {}: {e}", path.display()))
        })?;
        Self::from_json_str(&text).map_err(|e| {
            candle_core::Error::Msg(format!("scheduler config {}: {e}", path.display()))
        })
    }

    /// The timestep spacing a given scheduler uses with this config (diffusers' per-scheduler
    /// default when the key is absent).
    pub fn spacing_for(&self, kind: SchedulerKind) -> TimestepSpacing {
        self.timestep_spacing.unwrap_or(match kind {
            SchedulerKind::Ddim | SchedulerKind::Ddpm => TimestepSpacing::Leading,
            _ => TimestepSpacing::Linspace,
        })
    }
}

/// What the JSON may hold; checked and converted into [`SchedulerConfig`].
#[derive(Deserialize)]
struct RawConfig {
    num_train_timesteps: Option<usize>,
    beta_start: Option<f64>,
    beta_end: Option<f64>,
    beta_schedule: Option<String>,
    trained_betas: Option<Vec<f64>>,
    prediction_type: Option<String>,
    timestep_spacing: Option<String>,
    steps_offset: Option<usize>,
    set_alpha_to_one: Option<bool>,
    clip_sample: Option<bool>,
    clip_sample_range: Option<f64>,
    use_karras_sigmas: Option<bool>,
    // Keys that change the math in ways not implemented: refuse rather than differ silently.
    thresholding: Option<bool>,
    rescale_betas_zero_snr: Option<bool>,
}

impl TryFrom<RawConfig> for SchedulerConfig {
    type Error = String;
    fn try_from(r: RawConfig) -> Result<Self, String> {
        let d = SchedulerConfig::default();
        if r.thresholding == Some(true) {
            return Err("scheduler config: `thresholding: true` is not supported".into());
        }
        if r.rescale_betas_zero_snr == Some(true) {
            return Err("scheduler config: `rescale_betas_zero_snr: true` is not supported".into());
        }
        let c = SchedulerConfig {
            num_train_timesteps: r.num_train_timesteps.unwrap_or(d.num_train_timesteps),
            beta_start: r.beta_start.unwrap_or(d.beta_start),
            beta_end: r.beta_end.unwrap_or(d.beta_end),
            beta_schedule: match r.beta_schedule {
                Some(s) => s.parse()?,
                None => d.beta_schedule,
            },
            trained_betas: r.trained_betas,
            prediction_type: match r.prediction_type {
                Some(s) => s.parse()?,
                None => d.prediction_type,
            },
            timestep_spacing: match r.timestep_spacing {
                Some(s) => Some(s.parse()?),
                None => None,
            },
            steps_offset: r.steps_offset.unwrap_or(d.steps_offset),
            set_alpha_to_one: r.set_alpha_to_one.unwrap_or(d.set_alpha_to_one),
            clip_sample: r.clip_sample.unwrap_or(d.clip_sample),
            clip_sample_range: r.clip_sample_range.unwrap_or(d.clip_sample_range),
            use_karras_sigmas: r.use_karras_sigmas.unwrap_or(d.use_karras_sigmas),
        };
        c.validate()?;
        Ok(c)
    }
}

impl SchedulerConfig {
    /// Range checks on the numeric keys.
    pub fn validate(&self) -> Result<(), String> {
        if self.num_train_timesteps < 2 {
            return Err(format!(
                "scheduler config: `num_train_timesteps` must be >= 2, got {}",
                self.num_train_timesteps
            ));
        }
        if let Some(b) = &self.trained_betas {
            if b.len() != self.num_train_timesteps {
                return Err(format!(
                    "scheduler config: `trained_betas` has {} values, `num_train_timesteps` is {}",
                    b.len(),
                    self.num_train_timesteps
                ));
            }
        }
        if !(self.beta_start > 0.0 && self.beta_end > 0.0 && self.beta_end < 1.0) {
            return Err(format!(
                "scheduler config: need 0 < beta_start, beta_end < 1, got {} and {}",
                self.beta_start, self.beta_end
            ));
        }
        Ok(())
    }
}
