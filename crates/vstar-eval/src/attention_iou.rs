//! How well the class word's cross-attention finds the subject. Generated images have no
//! ground truth, so this is measured on renders, whose subject masks the renderer gives: each
//! render is VAE-encoded, noised to the middle step of the sampling schedule and passed once
//! through the base UNet with its full caption, recording the class word; Image-Alchemy's own
//! mask code (`vstar_diffusion::alchemy::attention_mask`) turns the maps into a mask at image
//! size, compared with the render's mask by IoU.

use crate::toyland_check::held_out;
use candle_core::{Error, Result, Tensor};
use image::GrayImage;
use vstar_diffusion::alchemy::attention_mask;
use vstar_diffusion::colour_mask;
use vstar_diffusion::noise::NoiseSource;
use vstar_diffusion::scheduler::{self, SchedulerConfig, SchedulerKind};
use vstar_diffusion::{images, pipeline, sampler};
use vstar_nn::layers::AttentionHooks;
use vstar_nn::model::Model;
use vstar_nn::Ctx;
use vstar_toyland::caption::{canonical, Elements, MentionSet};
use vstar_toyland::render::render;

/// Mask thresholds on the min-max normalised map (`vstar alchemy --mask-threshold`, default 0.5).
pub const THRESHOLDS: [f32; 3] = [0.3, 0.5, 0.7];

#[derive(Debug, Clone, serde::Serialize)]
pub struct ThresholdIou {
    pub threshold: f32,
    pub iou: f64,
    /// Mean share of the image the attention mask covers.
    pub area: f64,
    /// The same after `colour_mask::refine` on the render's colours.
    pub refined_iou: f64,
    pub refined_area: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AttentionIou {
    pub renders: usize,
    /// The timestep the renders were noised to.
    pub timestep: f64,
    /// Mean share of the image the ground-truth masks cover.
    pub truth_area: f64,
    pub by_threshold: Vec<ThresholdIou>,
}

/// Inside = at least half coverage (render masks are anti-aliased, 0..255).
pub(crate) fn inside(v: u8) -> bool {
    v >= 128
}

fn area(m: &GrayImage) -> f64 {
    m.pixels().filter(|p| inside(p.0[0])).count() as f64 / (m.width() * m.height()).max(1) as f64
}

/// Intersection over union of two masks of one size; 1 when both are empty.
pub fn iou(a: &GrayImage, b: &GrayImage) -> Result<f64> {
    if a.dimensions() != b.dimensions() {
        return Err(Error::Msg(format!(
            "IoU of masks of different sizes: {:?} and {:?}",
            a.dimensions(),
            b.dimensions()
        )));
    }
    let (mut both, mut either) = (0usize, 0usize);
    for (p, q) in a.pixels().zip(b.pixels()) {
        let (x, y) = (inside(p.0[0]), inside(q.0[0]));
        both += (x && y) as usize;
        either += (x || y) as usize;
    }
    Ok(if either == 0 { 1.0 } else { both as f64 / either as f64 })
}

/// Mean IoU over `renders` held-out renders (those of `vstar toyland check`) at each of
/// `THRESHOLDS`, with the base model (adapters at scale 0, as in Image-Alchemy's stage 1).
pub fn measure(model: &Model, renders: usize, steps: usize, seed: u64) -> Result<AttentionIou> {
    let dev = &model.device;
    let side = pipeline::native_side(model) as u32;
    let cfg: SchedulerConfig = serde_json::from_value(model.scheduler_config.clone())
        .map_err(|e| Error::Msg(format!("scheduler config: {e}")))?;
    let sched = scheduler::build(SchedulerKind::Ddim, &cfg, steps)?;
    let step = sched.timesteps().len() / 2;
    let t = sched.timesteps()[step];
    let tok = &model.text[0].tokenizer;
    let mut noise = NoiseSource::new(seed);
    let (mut sums, mut truth_area) = (vec![[0.0; 4]; THRESHOLDS.len()], 0.0);
    let (specs, _) = held_out(renders);
    for spec in &specs {
        let r = render(spec, side);
        let class = spec.instance.superclass.word();
        let caption = canonical(&Elements::of(spec, &MentionSet::all()), Some(class), None);
        let pos = tok
            .find(&caption, class)?
            .ok_or_else(|| Error::Msg(format!("the class word {class:?} is not a token of {caption:?}")))?;
        let z = sampler::encode(model, &images::from_rgb(&r.image, dev)?.unsqueeze(0)?)?;
        let z = sched.scale_model_input(&sched.add_noise(&z, &noise.randn(z.shape(), dev)?, t)?, step)?;
        let cond = pipeline::encode_prompt(model, &caption)?;
        let mut hooks = AttentionHooks::recording(vec![pos]);
        let mut ctx = Ctx::new(Some(Tensor::new(&[0f32], dev)?), Some(&mut hooks));
        model.unet.forward(&z, &Tensor::new(&[t as f32], dev)?, &cond.context, cond.added.as_ref(), &mut ctx)?;
        let (_, _, h, w) = z.dims4()?;
        let map = hooks
            .mean_map(h, w)?
            .ok_or_else(|| Error::Msg("the UNet recorded no cross-attention maps (has it cross-attention?)".into()))?;
        for (s, &th) in sums.iter_mut().zip(&THRESHOLDS) {
            let m = attention_mask(std::slice::from_ref(&map), side, th)?;
            let refined = colour_mask::refine(&r.image, &m);
            for (acc, v) in s.iter_mut().zip([iou(&m, &r.mask)?, area(&m), iou(&refined, &r.mask)?, area(&refined)]) {
                *acc += v;
            }
        }
        truth_area += area(&r.mask);
    }
    let n = renders.max(1) as f64;
    Ok(AttentionIou {
        renders,
        timestep: t,
        truth_area: truth_area / n,
        by_threshold: THRESHOLDS
            .iter()
            .zip(sums)
            .map(|(&threshold, [i, a, ri, ra])| ThresholdIou {
                threshold,
                iou: i / n,
                area: a / n,
                refined_iou: ri / n,
                refined_area: ra / n,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A square of `s` pixels at (x0, y0) in a 16 x 16 mask, coverage `v` inside.
    fn square(x0: u32, y0: u32, s: u32, v: u8) -> GrayImage {
        GrayImage::from_fn(16, 16, |x, y| {
            image::Luma([if (x0..x0 + s).contains(&x) && (y0..y0 + s).contains(&y) { v } else { 0 }])
        })
    }

    #[test]
    fn iou_of_hand_made_masks() {
        let truth = square(4, 4, 8, 255);
        assert_eq!(iou(&truth, &truth).unwrap(), 1.0);
        let inverted = GrayImage::from_fn(16, 16, |x, y| image::Luma([255 - truth.get_pixel(x, y).0[0]]));
        assert_eq!(iou(&inverted, &truth).unwrap(), 0.0);
        // Shifted by 4 columns: 32 of 64 pixels shared, 96 in the union.
        assert!((iou(&square(8, 4, 8, 255), &truth).unwrap() - 32.0 / 96.0).abs() < 1e-12);
        // Anti-aliased coverage counts from half on; two empty masks agree.
        assert_eq!(iou(&square(4, 4, 8, 128), &truth).unwrap(), 1.0);
        assert_eq!(iou(&square(4, 4, 8, 127), &GrayImage::new(16, 16)).unwrap(), 1.0);
        assert!(iou(&truth, &GrayImage::new(8, 8)).unwrap_err().to_string().contains("different sizes"));
    }
}
