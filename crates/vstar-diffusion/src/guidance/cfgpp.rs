//! CFG++ (Chung et al. 2024) and PG++: with DDIM, take x0 from the guided prediction
//! `o_g = o(null) + l (o(c) - o(null))` (l in [0, 1], paper 0.4) but renoise with the
//! unconditional prediction `o(null)` instead of `o_g`. PG++ runs the null row with the
//! adapter at scale omega, as PG does.
//!
//! A DDIM step (eta 0) is `x_prev = k x_t - A o + B o` for the model output o, with A the
//! output's weight in sqrt(abar_prev) * x0 and B its weight in the renoising term. CFG++ wants
//! `-A o_g + B o_null`, which the ordinary DDIM step produces from the single output
//! `o* = (B o_null - A o_g) / (B - A)`: so CFG++ needs no sampler changes, only DDIM's
//! per-step (A, B).

use super::cfg::cfg_combine;
use super::{Branch, Guidance, PromptKind};
use crate::scheduler::{Ddim, PredictionType, Scheduler};
use candle_core::{Error, Result, Tensor};

#[derive(Debug, Clone)]
pub struct CfgPlusPlus {
    pub scale: f64,
    /// Adapter scale of the null row: 1 = CFG++, < 1 = PG++.
    pub omega: f32,
    /// (A, B) per DDIM step.
    mix: Vec<(f64, f64)>,
}

impl CfgPlusPlus {
    pub fn new(scale: f64, omega: f32, ddim: &Ddim) -> Result<Self> {
        let cfg = ddim.config();
        if cfg.clip_sample || ddim.eta() != 0.0 {
            return Err(Error::Msg("cfg++ / pg++ need deterministic DDIM without clip_sample".into()));
        }
        let mix = (0..ddim.timesteps().len())
            .map(|i| {
                let c = ddim.coeffs(i)?;
                let (at, ap) = (c.alpha_prod_t, c.alpha_prod_prev);
                Ok(match cfg.prediction_type {
                    PredictionType::Epsilon => (ap.sqrt() * (1.0 - at).sqrt() / at.sqrt(), (1.0 - ap).sqrt()),
                    PredictionType::VPrediction => (ap.sqrt() * (1.0 - at).sqrt(), (1.0 - ap).sqrt() * at.sqrt()),
                    PredictionType::Sample => {
                        return Err(Error::Msg("cfg++ needs an epsilon or v-prediction model".into()))
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { scale, omega, mix })
    }
}

impl Guidance for CfgPlusPlus {
    fn name(&self) -> &'static str {
        if self.omega == 1.0 {
            "cfg++"
        } else {
            "pg++"
        }
    }

    fn branches(&self, _: usize, _: usize) -> Vec<Branch> {
        vec![Branch::new(PromptKind::Null, self.omega), Branch::new(PromptKind::Concept, 1.0)]
    }

    fn combine(&self, step: usize, _: usize, eps: &[Tensor]) -> Result<Tensor> {
        let guided = cfg_combine(&eps[0], &eps[1], self.scale)?;
        let (a, b) = self.mix[step];
        (&eps[0] * (b / (b - a)))? - (guided * (a / (b - a)))?
    }

    fn params(&self) -> serde_json::Value {
        serde_json::json!({ "guidance": self.scale, "omega": self.omega })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::SchedulerConfig;
    use candle_core::Device;

    /// One DDIM step on the combined output equals sqrt(abar_prev) x0(o_g) +
    /// sqrt(1 - abar_prev) eps(o_null), for epsilon and v-prediction.
    #[test]
    fn the_ddim_step_takes_x0_from_guided_and_noise_from_null() {
        let dev = Device::Cpu;
        for pred in [PredictionType::Epsilon, PredictionType::VPrediction] {
            let mut cfg = SchedulerConfig::stable_diffusion();
            cfg.prediction_type = pred;
            let mut ddim = Ddim::new(&cfg, 10).unwrap();
            let g = CfgPlusPlus::new(0.4, 1.0, &ddim).unwrap();
            let x = Tensor::new(&[0.3f32, -1.2, 0.8], &dev).unwrap();
            let (on, oc) =
                (Tensor::new(&[0.1f32, 0.5, -0.2], &dev).unwrap(), Tensor::new(&[0.4f32, -0.3, 0.6], &dev).unwrap());
            for i in [0, 4, 9] {
                let c = ddim.coeffs(i).unwrap();
                let guided = cfg_combine(&on, &oc, 0.4).unwrap();
                let (x0, _) = ddim.predict(&guided, i, &x).unwrap();
                let (_, eps_null) = ddim.predict(&on, i, &x).unwrap();
                let want = ((x0 * c.alpha_prod_prev.sqrt()).unwrap()
                    + (eps_null * (1.0 - c.alpha_prod_prev).sqrt()).unwrap())
                .unwrap();
                let out = g.combine(i, 10, &[on.clone(), oc.clone()]).unwrap();
                let got = ddim.step(&out, i, &x, None).unwrap();
                let d = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(d < 1e-5, "{pred:?} step {i}: {d}");
            }
        }
    }

    #[test]
    fn pg_plus_plus_at_omega_one_is_cfg_plus_plus() {
        let ddim = Ddim::new(&SchedulerConfig::stable_diffusion(), 10).unwrap();
        let (a, b) = (CfgPlusPlus::new(0.4, 1.0, &ddim).unwrap(), CfgPlusPlus::new(0.4, 0.3, &ddim).unwrap());
        assert_eq!(a.branches(2, 10)[1], b.branches(2, 10)[1]);
        assert_eq!((a.name(), b.name(), b.branches(2, 10)[0].adapter_scale), ("cfg++", "pg++", 0.3));
    }
}
