//! Image-Alchemy's two-stage generation. Stage 1: the base model (adapters at scale 0) renders
//! the prompt with the placeholder removed (class word only), recording the class word's
//! cross-attention maps. The subject is segmented (those maps, or a user mask), its region
//! blurred (Gaussian or exponential decay), and stage 2 runs img2img with the adapter and the
//! placeholder prompt; optionally the result is composited back through the mask.

use crate::blur::{blur_subject, Blur};
use crate::colour_mask;
use crate::guidance::build::superclass_prompt;
use crate::guidance::{cfg_combine, Branch, Cfg, Guidance, PromptKind};
use crate::noise::NoiseSource;
use crate::sampler::{self, Cost, Prompts, Start};
use crate::scheduler::{self, SchedulerConfig, SchedulerKind};
use crate::{images, pipeline};
use candle_core::{Error, Result, Tensor};
use image::{GrayImage, RgbImage};
use std::collections::BTreeMap;
use std::sync::Mutex;
use vstar_nn::layers::AttentionHooks;
use vstar_nn::model::Model;

/// Turns the stage-1 scene and its coarse attention mask into the subject mask.
pub type Segmenter = Box<dyn Fn(&RgbImage, &GrayImage) -> Result<GrayImage> + Send + Sync>;

pub enum Segment {
    /// The class word's cross-attention in stage 1, normalised and thresholded; `colours`:
    /// narrowed to the scene's colour groups concentrated inside it (`colour_mask`).
    Attention { threshold: f32, colours: bool },
    /// A user mask (white = subject), the image's size.
    Mask(GrayImage),
    /// A segmenter (SAM) called with the stage-1 scene and the attention mask at `threshold`
    /// (no colour step), whose bounding box it takes as the prompt.
    Sam { threshold: f32, segment: Segmenter },
}

pub struct AlchemyConfig {
    pub prompt: String,
    pub token: String,
    pub class: String,
    pub segment: Segment,
    pub blur: Blur,
    pub strength: f64,
    pub steps: usize,
    pub guidance: f64,
    pub seed: u64,
    pub composite: bool,
    /// With an empty mask, blur the whole image instead of failing.
    pub allow_empty_mask: bool,
}

pub struct AlchemyOutput {
    pub scene_prompt: String,
    pub scene: RgbImage,
    pub mask: GrayImage,
    pub blurred: RgbImage,
    pub result: RgbImage,
    pub composite: Option<RgbImage>,
    pub cost: Cost,
}

/// Stage 1's guidance: CFG with the adapters off, recording the class word's maps.
struct BaseScene {
    scale: f64,
    class_pos: usize,
    maps: Mutex<Vec<Tensor>>,
}

impl Guidance for BaseScene {
    fn name(&self) -> &'static str {
        "alchemy-stage1"
    }
    fn branches(&self, _: usize, _: usize) -> Vec<Branch> {
        vec![Branch::new(PromptKind::Null, 0.0), Branch::new(PromptKind::Superclass, 0.0)]
    }
    fn hooks(&self, _: usize, _: usize, _: usize) -> Option<AttentionHooks> {
        Some(AttentionHooks::recording(vec![self.class_pos]))
    }
    fn combine(&self, _: usize, _: usize, eps: &[Tensor]) -> Result<Tensor> {
        cfg_combine(&eps[0], &eps[1], self.scale)
    }
    fn combine_hooked(
        &self,
        step: usize,
        steps: usize,
        eps: &[Tensor],
        hooks: Option<&AttentionHooks>,
    ) -> Result<Tensor> {
        let (n, _, h, w) = eps[0].dims4()?;
        if let Some(m) = hooks.map(|k| k.mean_map(h, w)).transpose()?.flatten() {
            self.maps.lock().unwrap().push(m.narrow(0, n, n)?);
        }
        self.combine(step, steps, eps)
    }
    fn params(&self) -> serde_json::Value {
        serde_json::json!({ "guidance": self.scale })
    }
}

/// Mean map over steps -> min-max normalised -> image size -> thresholded mask.
pub fn attention_mask(maps: &[Tensor], side: u32, threshold: f32) -> Result<GrayImage> {
    let mean = (Tensor::stack(maps, 0)?.sum(0)? / maps.len() as f64)?; // (1, 1, h, w)
    let up = mean.upsample_bilinear2d(side as usize, side as usize, false)?.flatten_all()?.to_vec1::<f32>()?;
    let (lo, hi) = up.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let norm: Vec<u8> = up.iter().map(|v| if hi > lo && (v - lo) / (hi - lo) >= threshold { 255 } else { 0 }).collect();
    Ok(GrayImage::from_raw(side, side, norm).expect("mask size"))
}

pub fn run(model: &Model, c: &AlchemyConfig) -> Result<AlchemyOutput> {
    if !(c.strength > 0.0 && c.strength <= 1.0) {
        return Err(Error::Msg(format!("--strength must be in (0, 1], got {}", c.strength)));
    }
    let scene_prompt = superclass_prompt(&c.prompt, &c.token)?;
    let tok = &model.text[0].tokenizer;
    let class_pos = tok.find(&scene_prompt, &c.class)?.ok_or_else(|| {
        Error::Msg(format!("the class word {:?} is not in the scene prompt {scene_prompt:?}: put it after the placeholder (\"a {} {}\")", c.class, c.token, c.class))
    })?;
    let side = pipeline::native_side(model) as u32;
    if let Segment::Mask(m) = &c.segment {
        if m.dimensions() != (side, side) {
            return Err(Error::Msg(format!(
                "the mask is {:?}, the images are {side}x{side}: resize it",
                m.dimensions()
            )));
        }
    }

    // Stage 1: the scene with the class word, base model.
    let stage1 = BaseScene { scale: c.guidance, class_pos, maps: Mutex::default() };
    let mut by_kind = BTreeMap::new();
    by_kind.insert(PromptKind::Superclass, pipeline::encode_prompt(model, &scene_prompt)?);
    let (scene_t, cost1) = pipeline::txt2img(model, &stage1, by_kind, 1, c.seed, c.steps)?;
    let scene = images::to_rgb(&scene_t.get(0)?)?;

    // Segment and blur.
    let coarse = |threshold: f32| attention_mask(&stage1.maps.lock().unwrap(), side, threshold);
    let mut mask = match &c.segment {
        Segment::Mask(m) => m.clone(),
        Segment::Attention { threshold, colours: true } => colour_mask::refine(&scene, &coarse(*threshold)?),
        Segment::Attention { threshold, colours: false } => coarse(*threshold)?,
        Segment::Sam { threshold, segment } => segment(&scene, &coarse(*threshold)?)?,
    };
    if mask.pixels().all(|p| p.0[0] < 128) {
        if !c.allow_empty_mask {
            return Err(Error::Msg(
                "the subject mask is empty: pass a mask, or --allow-empty-mask to blur the whole image".into(),
            ));
        }
        mask = GrayImage::from_pixel(side, side, image::Luma([255]));
    }
    let blurred = blur_subject(&scene, &mask, c.blur);

    // Stage 2: img2img with the adapter and the placeholder prompt.
    let sched_cfg: SchedulerConfig = serde_json::from_value(model.scheduler_config.clone())
        .map_err(|e| Error::Msg(format!("scheduler config: {e}")))?;
    let mut sched = scheduler::build(SchedulerKind::Ddim, &sched_cfg, c.steps)?;
    let mut prompts = BTreeMap::new();
    prompts.insert(PromptKind::Null, model.encode_negative(None, 1, (side as usize, side as usize))?);
    prompts.insert(PromptKind::Concept, pipeline::encode_prompt(model, &c.prompt)?);
    let latents = sampler::encode(model, &images::from_rgb(&blurred, &model.device)?.unsqueeze(0)?)?;
    let mut noise = NoiseSource::new(c.seed ^ 0x2);
    let start = Start::Image { noise: noise.randn(latents.shape(), &model.device)?, latents, strength: c.strength };
    let out = sampler::sample(
        model,
        sched.as_mut(),
        &Cfg { scale: c.guidance },
        &Prompts { by_kind: prompts },
        start,
        &mut noise,
        |_, _| {},
    )?;
    let result = images::to_rgb(&sampler::decode(model, &out.latents)?.get(0)?)?;
    let composite = c.composite.then(|| {
        let mut o = scene.clone();
        for (x, y, p) in o.enumerate_pixels_mut() {
            if mask.get_pixel(x, y).0[0] >= 128 {
                *p = *result.get_pixel(x, y);
            }
        }
        o
    });
    let cost =
        Cost { unet_calls: cost1.unet_calls + out.cost.unet_calls, unet_rows: cost1.unet_rows + out.cost.unet_rows };
    Ok(AlchemyOutput { scene_prompt, scene, mask, blurred, result, composite, cost })
}
