//! Stage 1: the VAE. L1 reconstruction of 32 px renders plus a small KL term; then the
//! latent scaling factor is set from the latents' spread, as SD's 0.18215 was.

use super::data::{self, item_seed};
use super::layout::{Layout, WEIGHTS_DIFFUSERS};
use super::{optim, store, Output, Pretrain, StageSpec};
use candle_core::Result;
use std::collections::HashMap;
use vstar_diffusion::noise::NoiseSource;
use vstar_nn::config::VaeConfig;
use vstar_nn::models::Vae;
use vstar_train::step_grads::{default_parts, share, StepGrads};

const STAGE: u64 = 1;
/// Weight of the mean-per-element KL against the mean-per-element reconstruction error: SD's 1e-6 on sums,
/// rescaled by latent/pixel element counts (256 / 3072). A 1e-4 weight left the posterior so
/// noisy that reconstructions stayed blurry (MSE 0.06 after 300 steps).
const KL_WEIGHT: f64 = 1e-7;

pub fn config(scaling_factor: f64) -> serde_json::Value {
    serde_json::json!({
        "_class_name": "AutoencoderKL",
        "_diffusers_version": "0.42.1",
        "in_channels": 3, "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
        "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
        "block_out_channels": [32, 64, 64],
        "layers_per_block": 1, "act_fn": "silu", "latent_channels": 4, "norm_num_groups": 32,
        "sample_size": data::SIZE, "scaling_factor": scaling_factor
    })
}

/// The trained VAE, if its stage has finished (for stages run in a second process).
pub fn load(layout: &Layout, dev: &candle_core::Device) -> Result<Option<Vae>> {
    let Some(weights) = store::load(&layout.vae(), WEIGHTS_DIFFUSERS, dev)? else { return Ok(None) };
    let cfg = VaeConfig::from_file(&layout.vae().join("config.json"))?;
    Ok(Some(Vae::new(&cfg, store::frozen(&weights, dev))?))
}

pub fn train(p: &Pretrain, layout: &Layout) -> Result<Vae> {
    let cfg: VaeConfig = serde_json::from_value(config(1.0)).expect("valid VAE config");
    let (b, dev) = (p.recipe.vae_batch, &p.dev);
    let spec = StageSpec {
        name: "vae",
        id: STAGE,
        outputs: Output::whole(layout.vae(), WEIGHTS_DIFFUSERS, config(1.0)),
        init: HashMap::new(),
        steps: p.recipe.vae_steps,
        optim: optim(1e-3, p.recipe.vae_steps),
        ema: None,
    };
    let weights = p.stage(
        spec,
        |vb| Vae::new(&cfg, vb),
        |vae, s| {
            let x = data::images(&data::captioned(p.seed, STAGE, s, b).0, dev)?;
            let latent_noise =
                NoiseSource::new(item_seed(p.seed, STAGE + 1000, s, 0)).randn(cfg.latent_shape(&x)?, dev)?;
            StepGrads::by_rows(b, default_parts(), |r| {
                let x = x.narrow(0, r.start, r.len())?;
                let d = vae.encode(&x)?;
                let z = d.sample(&latent_noise.narrow(0, r.start, r.len())?)?;
                let err = (vae.decode(&z)? - &x)?;
                // L1, as SD's VAE: sharper edges than MSE for the same steps; MSE is logged.
                let share = share(&r, b);
                let mse = err.sqr()?.mean_all()?.to_scalar::<f32>()? as f64 * share;
                let loss = ((err.abs()?.mean_all()? + (d.kl()? * KL_WEIGHT)?)? * share)?;
                Ok((loss, vec![("mse", mse)]))
            })
        },
    )?;
    // Scale latents to unit spread over a held-out batch (stage stream 2 is never trained on).
    let vae = Vae::new(&cfg, store::frozen(&weights, dev))?;
    let x = data::images(&data::captioned(p.seed, 2, 0, 64).0, dev)?;
    let mean = vae.encode(&x)?.mean;
    let std = mean.flatten_all()?.var(0)?.sqrt()?.to_scalar::<f32>()? as f64;
    let scale = 1.0 / std;
    store::save(&layout.vae(), WEIGHTS_DIFFUSERS, &config(scale), &weights)?;
    (p.log)(&format!("vae: latent scaling factor {scale:.4}"));
    let cfg: VaeConfig = serde_json::from_value(config(scale)).expect("valid VAE config");
    Vae::new(&cfg, store::frozen(&weights, dev))
}
