//! PALP's prompt-alignment term (METHODS.md section 3): from the personalized prediction's
//! clean estimate x0_hat, re-noise at t', take the score-distillation direction
//! `g = G_a(x_t', y_c; W0) - G_b(x_t', y_P; W1)` without gradient, and descend along
//! `g * d(x0_hat)/d(W1)` through the surrogate `mean(stop_grad(g * rescale) * x0_hat)`.
//! The four no-gradient rows (null/clean with the pretrained weights, null/personal with the
//! fine-tuned ones) run as ONE batched UNet call with per-row adapter scales 0, 0, 1, 1.

use crate::denoise::Denoise;
use candle_core::{Result, Tensor};

/// PALP's settings. `sds` swaps the personalized branch for the noise (plain SDS, ablation).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PalpConfig {
    /// The target prompt with the placeholder ("a sketch of V* dog in the city").
    pub target: String,
    /// Guidance of the pretrained, clean-prompt branch (G_a).
    pub alpha: f64,
    /// Guidance of the personalized branch (G_b).
    pub beta: f64,
    /// Weight of the alignment term against the denoising loss.
    pub weight: f64,
    /// Re-noise x0_hat with the training noise (true, the paper's choice) or fresh noise.
    pub same_noise: bool,
    /// Multiply g by sqrt(abar_t)/sqrt(1-abar_t) (uniform updates across timesteps).
    pub rescale: bool,
    pub sds: bool,
}

impl PalpConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.alpha > 0.0 && self.beta > 0.0) {
            candle_core::bail!("--palp-alpha and --palp-beta must be positive (paper: 7.5 and 1.0, or 15 and 7.5)");
        }
        if !(self.weight >= 0.0 && self.weight.is_finite()) {
            candle_core::bail!("--palp-weight must be a non-negative number");
        }
        Ok(())
    }
}

/// The four UNet predictions at x_t' (each (B, ..)): pretrained null and clean-prompt rows,
/// fine-tuned null and personalization-prompt rows.
pub struct Branches {
    pub null_w0: Tensor,
    pub clean_w0: Tensor,
    pub null_w1: Tensor,
    pub personal_w1: Tensor,
}

/// `g`: G_a - G_b, or G_a - noise for the SDS variant; detached.
pub fn direction(c: &PalpConfig, e: &Branches, noise: &Tensor) -> Result<Tensor> {
    let ga = (&e.null_w0 + ((&e.clean_w0 - &e.null_w0)? * c.alpha)?)?;
    let gb = if c.sds { noise.clone() } else { (&e.null_w1 + ((&e.personal_w1 - &e.null_w1)? * c.beta)?)? };
    Ok((ga - gb)?.detach())
}

/// The surrogate loss whose gradient is `g * rescale(t) * d(x0_hat)/dW` (mean over elements).
pub fn surrogate(c: &PalpConfig, d: &Denoise, g: &Tensor, x0_hat: &Tensor, t: &[usize]) -> Result<Tensor> {
    let g = if c.rescale { g.broadcast_mul(&d.column(g, t, |ab| ab.sqrt() / (1.0 - ab).sqrt())?)? } else { g.clone() };
    (g.detach() * x0_hat)?.mean_all()
}

/// x_t' = sqrt(abar_t') x0_hat + sqrt(1 - abar_t') n, detached (no gradient through it).
pub fn renoise(d: &Denoise, x0_hat: &Tensor, n: &Tensor, t_prime: &[usize]) -> Result<Tensor> {
    Ok(d.noisy_and_target(&x0_hat.detach(), n, t_prime)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use vstar_diffusion::scheduler::SchedulerConfig;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v, (1, v.len()), &Device::Cpu).unwrap()
    }

    fn cfg(sds: bool, rescale: bool) -> PalpConfig {
        PalpConfig { target: String::new(), alpha: 7.5, beta: 1.0, weight: 1.0, same_noise: true, rescale, sds }
    }

    /// g = (1-a) n0 + a c0 - ((1-b) n1 + b p1) on hand-made numbers; SDS uses the noise.
    #[test]
    fn direction_follows_the_equation() {
        let e = Branches {
            null_w0: t(&[1., 0.]),
            clean_w0: t(&[2., 1.]),
            null_w1: t(&[0., 1.]),
            personal_w1: t(&[1., 3.]),
        };
        let g = direction(&cfg(false, true), &e, &t(&[9., 9.])).unwrap().to_vec2::<f32>().unwrap();
        // G_a = 1 + 7.5*1 = 8.5, 0 + 7.5*1 = 7.5; G_b = 0 + 1*1 = 1, 1 + 1*2 = 3.
        assert_eq!(g, vec![vec![7.5, 4.5]]);
        let g = direction(&cfg(true, true), &e, &t(&[9., 9.])).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(g, vec![vec![-0.5, -1.5]]);
    }

    /// d(surrogate)/d(theta) = mean-normalised g * rescale * d(x0_hat)/d(theta), with x0_hat
    /// from an epsilon prediction `theta`: d(x0_hat)/d(theta) = -sqrt(1-ab)/sqrt(ab).
    #[test]
    fn surrogate_gradient_is_g_times_dx0() {
        let d = Denoise::new(&SchedulerConfig::stable_diffusion(), None).unwrap();
        let theta = Var::from_tensor(&t(&[0.3, -0.2])).unwrap();
        let xt = t(&[0.5, 0.1]);
        let ts = [400usize];
        let x0 = d.x0_estimate(&xt, theta.as_tensor(), &ts).unwrap();
        let g = t(&[2.0, -1.0]);
        let ab = d.alpha_bar(400);
        for rescale in [false, true] {
            let loss = surrogate(&cfg(false, rescale), &d, &g, &x0, &ts).unwrap();
            let grad = loss.backward().unwrap().get(theta.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
            let r = if rescale { ab.sqrt() / (1.0 - ab).sqrt() } else { 1.0 };
            let dx0 = -(1.0 - ab).sqrt() / ab.sqrt();
            for (i, gi) in [2.0, -1.0].iter().enumerate() {
                let want = gi * r * dx0 / 2.0;
                assert!((grad[0][i] as f64 - want).abs() < 1e-5, "{rescale}: {} vs {want}", grad[0][i]);
            }
        }
    }
}
