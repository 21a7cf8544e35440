//! ProFusion's fusion sampling as the sampling study runs it: each step first refines z_t
//! (`refine_repeats` times) with the concept-guided prediction `e = eps(null) + w_ref dC`,
//! `sigma = r sqrt(ddim_variance(t, t_prev))`, fresh noise n:
//! `z_t <- z_t - e sigma^2 sqrt(1-abar_t)/(1-abar_prev)
//!         + sigma n sqrt((1-abar_t)(2 - 2 abar_prev - sigma^2))/(1-abar_prev)`,
//! then takes an ordinary DDIM step with the mixed prediction. r = 0 leaves z_t unchanged:
//! mixed sampling at twice the UNet calls. DDIM only (t_prev = t - T/N).

use super::cfg::cfg_combine;
use super::{Branch, Guidance, Mixed, PromptKind};
use crate::scheduler::{Ddim, PredictionType, Scheduler};
use candle_core::{Error, Result, Tensor};

#[derive(Debug, Clone)]
pub struct ProFusion {
    pub mixed: Mixed,
    pub w_ref: f64,
    pub r: f64,
    pub refine_repeats: usize,
    /// Per step: (abar_t, abar_prev, DDIM variance).
    coeffs: Vec<(f64, f64, f64)>,
    prediction: PredictionType,
}

impl ProFusion {
    pub fn new(mixed: Mixed, w_ref: f64, r: f64, refine_repeats: usize, ddim: &Ddim) -> Result<Self> {
        let prediction = ddim.config().prediction_type;
        if prediction == PredictionType::Sample {
            return Err(Error::Msg("profusion needs an epsilon or v-prediction model".into()));
        }
        let coeffs = (0..ddim.timesteps().len())
            .map(|i| ddim.coeffs(i).map(|c| (c.alpha_prod_t, c.alpha_prod_prev, c.variance)))
            .collect::<Result<_>>()?;
        Ok(Self { mixed, w_ref, r, refine_repeats, coeffs, prediction })
    }
}

impl Guidance for ProFusion {
    fn name(&self) -> &'static str {
        "profusion"
    }
    fn branches(&self, step: usize, steps: usize) -> Vec<Branch> {
        self.mixed.branches(step, steps)
    }
    fn combine(&self, step: usize, steps: usize, eps: &[Tensor]) -> Result<Tensor> {
        self.mixed.combine(step, steps, eps)
    }
    fn refines(&self, _: usize, _: usize) -> usize {
        self.refine_repeats
    }
    fn refine_branches(&self) -> Vec<Branch> {
        vec![Branch::new(PromptKind::Null, 1.0), Branch::new(PromptKind::Concept, 1.0)]
    }
    fn refine(&self, step: usize, z: &Tensor, eps: &[Tensor], noise: &Tensor) -> Result<Tensor> {
        let (at, ap, var) = self.coeffs[step];
        let sigma = self.r * var.sqrt();
        if sigma == 0.0 {
            return Ok(z.clone());
        }
        let out = cfg_combine(&eps[0], &eps[1], self.w_ref)?;
        let e = match self.prediction {
            PredictionType::VPrediction => ((out * at.sqrt())? + (z * (1.0 - at).sqrt())?)?,
            _ => out,
        };
        let a = sigma * sigma * (1.0 - at).sqrt() / (1.0 - ap);
        let b = sigma * ((1.0 - at) * (2.0 - 2.0 * ap - sigma * sigma)).max(0.0).sqrt() / (1.0 - ap);
        (z - (e * a)?)? + (noise * b)?
    }
    fn params(&self) -> serde_json::Value {
        serde_json::json!({
            "ws": self.mixed.ws, "wc": self.mixed.wc, "w_ref": self.w_ref, "r": self.r,
            "refine_repeats": self.refine_repeats
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::SchedulerConfig;
    use candle_core::Device;

    #[test]
    fn refine_follows_its_equation_and_r_zero_is_identity() {
        let dev = Device::Cpu;
        let ddim = Ddim::new(&SchedulerConfig::stable_diffusion(), 10).unwrap();
        let z = Tensor::new(&[0.5f32, -1.0], &dev).unwrap();
        let (null, con) = (Tensor::new(&[0.1f32, 0.2], &dev).unwrap(), Tensor::new(&[0.3f32, -0.2], &dev).unwrap());
        let n = Tensor::new(&[1.0f32, -0.5], &dev).unwrap();
        let mixed = Mixed { ws: 3.5, wc: 3.5 };
        let p0 = ProFusion::new(mixed.clone(), 5.0, 0.0, 1, &ddim).unwrap();
        assert_eq!(
            p0.refine(3, &z, &[null.clone(), con.clone()], &n).unwrap().to_vec1::<f32>().unwrap(),
            vec![0.5, -1.0]
        );
        let p = ProFusion::new(mixed, 5.0, 0.5, 1, &ddim).unwrap();
        let c = ddim.coeffs(3).unwrap();
        let (at, ap) = (c.alpha_prod_t, c.alpha_prod_prev);
        let sigma = 0.5 * c.variance.sqrt();
        let got = p.refine(3, &z, &[null, con], &n).unwrap().to_vec1::<f32>().unwrap();
        for (k, (zv, (nu, co))) in [0.5f64, -1.0].iter().zip([(0.1f64, 0.3f64), (0.2, -0.2)]).enumerate() {
            let e = nu + 5.0 * (co - nu);
            let nv = [1.0, -0.5][k];
            let want = zv - e * sigma * sigma * (1.0 - at).sqrt() / (1.0 - ap)
                + sigma * nv * ((1.0 - at) * (2.0 - 2.0 * ap - sigma * sigma)).sqrt() / (1.0 - ap);
            assert!((got[k] as f64 - want).abs() < 1e-5, "{} vs {want}", got[k]);
        }
    }
}
