//! Whole-image conveniences over the sampler for evaluation code: txt2img with a guidance
//! method and DDIM at the model's native size, images back in [0, 1].

use crate::guidance::{Guidance, PromptKind};
use crate::noise::NoiseSource;
use crate::sampler::{self, Cost, Prompts, Start};
use crate::scheduler::{self, SchedulerConfig, SchedulerKind};
use candle_core::{Result, Tensor};
use std::collections::BTreeMap;
use vstar_nn::model::{Conditioning, Model};

/// The model's default image side in pixels.
pub fn native_side(model: &Model) -> usize {
    model.unet.config.sample_size.unwrap_or(64) * model.vae.config.downsample_factor()
}

/// `n` images of the prompts in `by_kind` (Null is added as ""), seeded, DDIM with `steps`.
pub fn txt2img(
    model: &Model,
    guidance: &dyn Guidance,
    mut by_kind: BTreeMap<PromptKind, Conditioning>,
    n: usize,
    seed: u64,
    steps: usize,
) -> Result<(Tensor, Cost)> {
    let side = native_side(model);
    if !by_kind.contains_key(&PromptKind::Null) {
        by_kind.insert(PromptKind::Null, model.encode_negative(None, 1, (side, side))?);
    }
    let cfg: SchedulerConfig = serde_json::from_value(model.scheduler_config.clone())
        .map_err(|e| candle_core::Error::Msg(format!("scheduler config: {e}")))?;
    let mut sched = scheduler::build(SchedulerKind::Ddim, &cfg, steps)?;
    let (c, h, w) = model.latent_shape(side, side)?;
    let mut noise = NoiseSource::new(seed);
    let z = noise.randn((n, c, h, w), &model.device)?;
    let out =
        sampler::sample(model, sched.as_mut(), guidance, &Prompts { by_kind }, Start::Noise(z), &mut noise, |_, _| {})?;
    Ok((sampler::decode(model, &out.latents)?, out.cost))
}

/// Conditioning for one prompt at the model's native size.
pub fn encode_prompt(model: &Model, prompt: &str) -> Result<Conditioning> {
    let side = native_side(model);
    model.encode(&[prompt], (side, side), None)
}
