//! The denoising objective shared by pretraining and every personalization method: noise
//! latents at per-row timesteps, the regression target for the model's prediction type, and
//! optional min-SNR-gamma weighting (Hang et al. 2023).

use candle_core::{Device, Result, Tensor};
use vstar_diffusion::scheduler::config::{PredictionType, SchedulerConfig};

pub struct Denoise {
    alphas_cumprod: Vec<f64>,
    prediction: PredictionType,
    /// min-SNR gamma; None = plain MSE.
    pub min_snr_gamma: Option<f64>,
}

impl Denoise {
    pub fn new(config: &SchedulerConfig, min_snr_gamma: Option<f64>) -> Result<Self> {
        Ok(Self {
            alphas_cumprod: vstar_diffusion::scheduler::alphas_cumprod(config)?,
            prediction: config.prediction_type,
            min_snr_gamma,
        })
    }

    pub fn train_timesteps(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// abar_t of the training schedule.
    pub fn alpha_bar(&self, t: usize) -> f64 {
        self.alphas_cumprod[t]
    }

    /// A per-row column (B, 1, ..) of f(abar_t) shaped to broadcast against `like`.
    pub fn column(&self, like: &Tensor, t: &[usize], f: impl Fn(f64) -> f64) -> Result<Tensor> {
        let v: Vec<f32> = t.iter().map(|&t| f(self.alphas_cumprod[t]) as f32).collect();
        let mut shape = vec![1; like.rank()];
        shape[0] = t.len();
        Tensor::from_vec(v, shape, like.device())
    }

    /// The clean estimate x0_hat from noisy `xt` and the model's prediction at `t`.
    pub fn x0_estimate(&self, xt: &Tensor, pred: &Tensor, t: &[usize]) -> Result<Tensor> {
        let (a, s) = (self.column(xt, t, |ab| ab.sqrt())?, self.column(xt, t, |ab| (1.0 - ab).sqrt())?);
        match self.prediction {
            PredictionType::Epsilon => (xt - pred.broadcast_mul(&s)?)?.broadcast_div(&a),
            PredictionType::VPrediction => xt.broadcast_mul(&a)? - pred.broadcast_mul(&s)?,
            PredictionType::Sample => Ok(pred.clone()),
        }
    }

    /// (noisy latents, target) for clean `x0` (B, ...), `noise` like it, one timestep per row.
    pub fn noisy_and_target(&self, x0: &Tensor, noise: &Tensor, t: &[usize]) -> Result<(Tensor, Tensor)> {
        let (a, s) = (self.column(x0, t, |ab| ab.sqrt())?, self.column(x0, t, |ab| (1.0 - ab).sqrt())?);
        let noisy = (x0.broadcast_mul(&a)? + noise.broadcast_mul(&s)?)?;
        let target = match self.prediction {
            PredictionType::Epsilon => noise.clone(),
            PredictionType::VPrediction => (noise.broadcast_mul(&a)? - x0.broadcast_mul(&s)?)?,
            PredictionType::Sample => x0.clone(),
        };
        Ok((noisy, target))
    }

    /// Mean over rows of the per-row MSE, weighted by min-SNR when set.
    pub fn loss(&self, pred: &Tensor, target: &Tensor, t: &[usize]) -> Result<Tensor> {
        self.row_losses(pred, target, t)?.mean_all()
    }

    /// Each row's (weighted) loss, whose mean is `loss`.
    pub fn row_losses(&self, pred: &Tensor, target: &Tensor, t: &[usize]) -> Result<Tensor> {
        let per_row = (pred - target)?.sqr()?.flatten_from(1)?.mean(1)?;
        let Some(gamma) = self.min_snr_gamma else { return Ok(per_row) };
        let w: Vec<f32> = t
            .iter()
            .map(|&t| {
                let ab = self.alphas_cumprod[t];
                let snr = ab / (1.0 - ab);
                let w = match self.prediction {
                    PredictionType::VPrediction => snr.min(gamma) / (snr + 1.0),
                    PredictionType::Epsilon => snr.min(gamma) / snr,
                    PredictionType::Sample => snr.min(gamma),
                };
                w as f32
            })
            .collect();
        per_row * Tensor::from_vec(w, t.len(), pred.device())?
    }
}

/// Timesteps as the UNet takes them: an f32 tensor (B,).
pub fn t_tensor(t: &[usize], dev: &Device) -> Result<Tensor> {
    Tensor::from_vec(t.iter().map(|&t| t as f32).collect::<Vec<_>>(), t.len(), dev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// At one timestep, the noisy sample and v-target follow their formulas; min-SNR weights a
    /// low-noise row below 1 for epsilon.
    #[test]
    fn follows_the_formulas() {
        let mut cfg = SchedulerConfig::stable_diffusion();
        let dev = Device::Cpu;
        let x0 = Tensor::new(&[[1f32, 2.0]], &dev).unwrap();
        let n = Tensor::new(&[[0.5f32, -1.0]], &dev).unwrap();
        let ab = vstar_diffusion::scheduler::alphas_cumprod(&cfg).unwrap()[10];
        let d = Denoise::new(&cfg, Some(5.0)).unwrap();
        let (xt, target) = d.noisy_and_target(&x0, &n, &[10]).unwrap();
        let want = [ab.sqrt() + 0.5 * (1.0 - ab).sqrt(), 2.0 * ab.sqrt() - (1.0 - ab).sqrt()];
        for (g, w) in xt.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6);
        }
        assert_eq!(target.to_vec2::<f32>().unwrap(), n.to_vec2::<f32>().unwrap());
        let zero = d.loss(&target, &target, &[10]).unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(zero, 0.0);
        let l = d.loss(&(&target + 1.0).unwrap(), &target, &[10]).unwrap().to_scalar::<f32>().unwrap() as f64;
        let snr = ab / (1.0 - ab);
        assert!((l - 5.0 / snr).abs() < 1e-5, "{l}");
        cfg.prediction_type = PredictionType::VPrediction;
        let (_, v) = Denoise::new(&cfg, None).unwrap().noisy_and_target(&x0, &n, &[10]).unwrap();
        let want_v = 0.5 * ab.sqrt() - (1.0 - ab).sqrt();
        assert!((v.to_vec2::<f32>().unwrap()[0][0] as f64 - want_v).abs() < 1e-6);
    }
}
