//! Scheduler configuration, read from a diffusers `scheduler/scheduler_config.json`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use super::SchedulerKind;

fn bad_value(key: &str, value: &str, allowed: &[&str]) -> String {
    format!("scheduler config: invalid value {value:?} for key `{key}`; allowed values: {}", allowed.join(", "))
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
#[serde(try_from = "serde_json::Value")]
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
        let text = std::fs::read_to_string(path)
            .map_err(|e| candle_core::Error::Msg(format!("reading scheduler config {}: {e}", path.display())))?;
        Self::from_json_str(&text)
            .map_err(|e| candle_core::Error::Msg(format!("scheduler config {}: {e}", path.display())))
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

/// Read one key of the JSON object with a message naming the key on a type error.
fn get<T: serde::de::DeserializeOwned>(
    map: &serde_json::Map<String, serde_json::Value>,
    key: &str,
    expected: &str,
) -> Result<Option<T>, String> {
    match map.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|_| format!("scheduler config: key `{key}` must be {expected}, got {v}")),
    }
}

fn get_enum<T: FromStr<Err = String>>(
    map: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Option<T>, String> {
    match get::<String>(map, key, "a string")? {
        Some(s) => s.parse().map(Some),
        None => Ok(None),
    }
}

impl TryFrom<serde_json::Value> for SchedulerConfig {
    type Error = String;
    fn try_from(v: serde_json::Value) -> Result<Self, String> {
        let serde_json::Value::Object(m) = v else {
            return Err(format!("scheduler config must be a JSON object, got {v}"));
        };
        let d = SchedulerConfig::default();
        // Keys that change the math in ways not implemented: refuse rather than differ silently.
        for key in ["thresholding", "rescale_betas_zero_snr"] {
            if get::<bool>(&m, key, "a boolean")? == Some(true) {
                return Err(format!("scheduler config: `{key}: true` is not supported"));
            }
        }
        let c = SchedulerConfig {
            num_train_timesteps: get(&m, "num_train_timesteps", "a positive integer")?.unwrap_or(d.num_train_timesteps),
            beta_start: get(&m, "beta_start", "a number")?.unwrap_or(d.beta_start),
            beta_end: get(&m, "beta_end", "a number")?.unwrap_or(d.beta_end),
            beta_schedule: get_enum(&m, "beta_schedule")?.unwrap_or(d.beta_schedule),
            trained_betas: get(&m, "trained_betas", "a list of numbers or null")?,
            prediction_type: get_enum(&m, "prediction_type")?.unwrap_or(d.prediction_type),
            timestep_spacing: get_enum(&m, "timestep_spacing")?,
            steps_offset: get(&m, "steps_offset", "a non-negative integer")?.unwrap_or(d.steps_offset),
            set_alpha_to_one: get(&m, "set_alpha_to_one", "a boolean")?.unwrap_or(d.set_alpha_to_one),
            clip_sample: get(&m, "clip_sample", "a boolean")?.unwrap_or(d.clip_sample),
            clip_sample_range: get(&m, "clip_sample_range", "a number")?.unwrap_or(d.clip_sample_range),
            use_karras_sigmas: get(&m, "use_karras_sigmas", "a boolean")?.unwrap_or(d.use_karras_sigmas),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{build, Scheduler};
    use candle_core::{Device, Tensor};

    const SD15: &str = r#"{
        "_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0",
        "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
        "num_train_timesteps": 1000, "set_alpha_to_one": false, "skip_prk_steps": true,
        "steps_offset": 1, "trained_betas": null, "clip_sample": false
    }"#;

    fn msg(json: &str) -> String {
        SchedulerConfig::from_json_str(json).unwrap_err().to_string()
    }

    #[test]
    fn parses_sd15_config_with_defaults() {
        let c = SchedulerConfig::from_json_str(SD15).unwrap();
        assert_eq!(c.beta_schedule, BetaSchedule::ScaledLinear);
        assert_eq!(c.prediction_type, PredictionType::Epsilon);
        assert_eq!(c.timestep_spacing, None);
        assert_eq!(c.spacing_for(SchedulerKind::Ddim), TimestepSpacing::Leading);
        assert_eq!(c.spacing_for(SchedulerKind::Euler), TimestepSpacing::Linspace);
        assert_eq!(c.spacing_for(SchedulerKind::DpmPp2m), TimestepSpacing::Linspace);
        assert_eq!(c.steps_offset, 1);
        assert!(!c.set_alpha_to_one && !c.clip_sample);
        assert_eq!(c.clip_sample_range, 1.0);
        assert_eq!(c, SchedulerConfig::stable_diffusion());
        // Round trip through Serialize.
        let back = SchedulerConfig::from_json_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        // Empty object: all diffusers (DDIMScheduler) defaults.
        assert_eq!(SchedulerConfig::from_json_str("{}").unwrap(), SchedulerConfig::default());
    }

    #[test]
    fn bad_enum_values_name_key_and_allowed_values() {
        let m = msg(r#"{"beta_schedule": "cosine"}"#);
        assert!(m.contains("beta_schedule") && m.contains("\"cosine\""), "{m}");
        assert!(m.contains("scaled_linear") && m.contains("squaredcos_cap_v2"), "{m}");
        let m = msg(r#"{"prediction_type": "flow_prediction"}"#);
        assert!(m.contains("prediction_type") && m.contains("v_prediction"), "{m}");
        let m = msg(r#"{"timestep_spacing": "uniform"}"#);
        assert!(m.contains("timestep_spacing") && m.contains("trailing"), "{m}");
    }

    #[test]
    fn bad_numbers_and_unsupported_options() {
        assert!(msg(r#"{"num_train_timesteps": 1}"#).contains("num_train_timesteps"));
        assert!(msg(r#"{"num_train_timesteps": -5}"#).contains("num_train_timesteps"));
        assert!(msg(r#"{"beta_end": 1.5}"#).contains("beta"));
        let m = msg(r#"{"beta_schedule": 3}"#);
        assert!(m.contains("beta_schedule") && m.contains("string"), "{m}");
        let m = msg(r#"{"clip_sample": "no"}"#);
        assert!(m.contains("clip_sample") && m.contains("boolean"), "{m}");
        assert!(msg(r#"{"num_train_timesteps": 3, "trained_betas": [0.1]}"#).contains("trained_betas"));
        assert!(msg(r#"{"thresholding": true}"#).contains("thresholding"));
        assert!(msg(r#"{"rescale_betas_zero_snr": true}"#).contains("rescale_betas_zero_snr"));
        assert!(msg("[1, 2]").contains("object"));
    }

    #[test]
    fn scheduler_kind_names() {
        for k in SchedulerKind::ALL {
            assert_eq!(k.name().parse::<SchedulerKind>().unwrap(), k);
            assert_eq!(k.to_string(), k.name());
        }
        assert_eq!("Euler-A".parse::<SchedulerKind>().unwrap(), SchedulerKind::EulerAncestral);
        let e = "pndm".parse::<SchedulerKind>().unwrap_err().to_string();
        assert!(e.contains("pndm") && e.contains("ddim, ddpm, euler, euler-a, dpmpp-2m"), "{e}");
    }

    #[test]
    fn step_errors() {
        let c = SchedulerConfig::stable_diffusion();
        assert!(build(SchedulerKind::Ddim, &c, 0).is_err());
        assert!(build(SchedulerKind::Euler, &c, 1001).is_err());
        let x = Tensor::zeros((1, 4, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        for kind in SchedulerKind::ALL {
            let mut s = build(kind, &c, 10).unwrap();
            assert!(s.step(&x, 10, &x, None).is_err(), "{kind}: index out of range");
            if s.needs_noise() {
                let e = s.step(&x, 0, &x, None).unwrap_err().to_string();
                assert!(e.contains("noise"), "{kind}: {e}");
            } else {
                s.step(&x, 0, &x, None).unwrap();
            }
        }
        let mut d = crate::scheduler::Ddim::with_eta(&c, 10, 0.5).unwrap();
        assert!(d.needs_noise() && d.step(&x, 0, &x, None).is_err());
        assert!(crate::scheduler::Ddim::with_eta(&c, 10, -1.0).is_err());
    }
}
