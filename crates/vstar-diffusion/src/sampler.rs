//! The sampling loop of the architecture's flow: per step, the guidance method's rows go
//! through the UNet as one batch (adapters per row), are combined, and the scheduler steps.
//! Counts UNet calls and rows so every method's cost is measured, not guessed.

use crate::guidance::{Branch, Guidance, PromptKind};
use crate::noise::NoiseSource;
use crate::scheduler::Scheduler;
use candle_core::{Error, Result, Tensor};
use std::collections::BTreeMap;
use vstar_nn::layers::AttentionHooks;
use vstar_nn::model::{Conditioning, Model};
use vstar_nn::Ctx;

/// UNet work per image: calls and batch rows (a CFG step is 1 call, 2 rows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cost {
    pub unet_calls: usize,
    pub unet_rows: usize,
}

/// Conditioning for each prompt kind a method may ask for, one row each.
pub struct Prompts {
    pub by_kind: BTreeMap<PromptKind, Conditioning>,
}

impl Prompts {
    fn get(&self, kind: PromptKind) -> Result<&Conditioning> {
        self.by_kind
            .get(&kind)
            .ok_or_else(|| Error::Msg(format!("the method needs a {kind:?} prompt, which was not given")))
    }
}

/// Where sampling starts: pure noise (txt2img) or a noised image latent (img2img).
pub enum Start {
    Noise(Tensor),
    /// Scaled clean latents, the noise to add, and the strength in (0, 1].
    Image {
        latents: Tensor,
        noise: Tensor,
        strength: f64,
    },
}

pub struct SampleOutput {
    /// Final scaled latents (N, C, h, w).
    pub latents: Tensor,
    pub cost: Cost,
}

/// Index of the first step img2img runs (diffusers: `steps - min(int(steps * strength), steps)`).
pub fn img2img_start(steps: usize, strength: f64) -> usize {
    let init = ((steps as f64 * strength) as usize).min(steps);
    steps - init
}

fn batch_rows(branches: &[Branch], prompts: &Prompts, n: usize) -> Result<(Conditioning, Option<Tensor>)> {
    let mut parts = Vec::with_capacity(branches.len() * n);
    for b in branches {
        let c = prompts.get(b.prompt)?;
        for _ in 0..n {
            parts.push(c);
        }
    }
    let cond = Conditioning::cat(&parts)?;
    let scale = if branches.iter().all(|b| b.adapter_scale == 1.0) {
        None
    } else {
        let s: Vec<f32> = branches.iter().flat_map(|b| std::iter::repeat_n(b.adapter_scale, n)).collect();
        Some(Tensor::new(s.as_slice(), cond.context.device())?)
    };
    Ok((cond, scale))
}

/// One batched UNet call over `branches` at `latents` (n rows each): the per-branch outputs.
#[allow(clippy::too_many_arguments)]
fn call(
    model: &Model,
    scheduler: &dyn Scheduler,
    prompts: &Prompts,
    i: usize,
    latents: &Tensor,
    branches: &[Branch],
    hooks: Option<&mut AttentionHooks>,
    cost: &mut Cost,
) -> Result<Vec<Tensor>> {
    let n = latents.dim(0)?;
    let t = scheduler.timesteps()[i];
    let (cond, scale) = batch_rows(branches, prompts, n)?;
    let x = Tensor::cat(&vec![latents; branches.len()], 0)?;
    let x = scheduler.scale_model_input(&x, i)?;
    let tt = Tensor::new(&[t as f32], latents.device())?;
    let mut ctx = Ctx::new(scale, hooks);
    let eps = model.unet.forward(&x, &tt, &cond.context, cond.added.as_ref(), &mut ctx)?;
    cost.unet_calls += 1;
    cost.unet_rows += branches.len();
    (0..branches.len()).map(|k| eps.narrow(0, k * n, n)).collect()
}

/// Runs the loop. `noise`: the stream stochastic schedulers draw from.
pub fn sample(
    model: &Model,
    scheduler: &mut dyn Scheduler,
    guidance: &dyn Guidance,
    prompts: &Prompts,
    start: Start,
    noise: &mut NoiseSource,
    mut progress: impl FnMut(usize, usize),
) -> Result<SampleOutput> {
    let steps = scheduler.timesteps().len();
    let (mut latents, first) = match start {
        Start::Noise(z) => ((z * scheduler.init_noise_sigma())?, 0),
        Start::Image { latents, noise, strength } => {
            if !(strength > 0.0 && strength <= 1.0) {
                return Err(Error::Msg(format!("--strength must be in (0, 1], got {strength}")));
            }
            let first = img2img_start(steps, strength);
            if first >= steps {
                return Err(Error::Msg(format!("--strength {strength} leaves no denoising steps; raise it")));
            }
            (scheduler.add_noise(&latents, &noise, scheduler.timesteps()[first])?, first)
        }
    };
    let n = latents.dim(0)?;
    let dev = latents.device().clone();
    let mut cost = Cost::default();
    for i in first..steps {
        // Refinement passes (ProFusion) move z_t before the step's own prediction.
        for _ in 0..guidance.refines(i, steps) {
            let chunks = call(model, &*scheduler, prompts, i, &latents, &guidance.refine_branches(), None, &mut cost)?;
            latents = guidance.refine(i, &latents, &chunks, &noise.randn(latents.shape(), &dev)?)?;
        }
        let branches = guidance.branches(i, steps);
        let mut hooks = guidance.hooks(i, steps, n);
        let chunks = call(model, &*scheduler, prompts, i, &latents, &branches, hooks.as_mut(), &mut cost)?;
        let guided = guidance.combine_hooked(i, steps, &chunks, hooks.as_ref())?;
        let step_noise = if scheduler.needs_noise() { Some(noise.randn(latents.shape(), &dev)?) } else { None };
        latents = scheduler.step(&guided, i, &latents, step_noise.as_ref())?;
        progress(i + 1 - first, steps - first);
    }
    Ok(SampleOutput { latents, cost })
}

/// Scaled latents -> images (N, 3, H, W) in [0, 1].
pub fn decode(model: &Model, latents: &Tensor) -> Result<Tensor> {
    let img = model.vae.decode(&model.vae.unscale_latents(latents)?)?;
    ((img / 2.0)? + 0.5)?.clamp(0f32, 1f32)
}

/// Images (N, 3, H, W) in [0, 1] -> scaled latents (the mean of the encoder's distribution).
pub fn encode(model: &Model, images: &Tensor) -> Result<Tensor> {
    let x = ((images * 2.0)? - 1.0)?;
    model.vae.scale_latents(&model.vae.encode(&x)?.mean)
}
