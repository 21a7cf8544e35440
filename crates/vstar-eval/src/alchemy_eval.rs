//! `vstar eval-alchemy RUN_DIR`: Image-Alchemy's two-stage generation judged on ToyBooth.
//! Per ToyBooth prompt and seed: stage 1 (the base model's scene with the class word), the final
//! image with each blur (Gaussian, exponential decay), and plain sampling with the run's LoRA
//! (CFG, the same placeholder prompt, the same seed). Recall = share of the prompt's context
//! elements the attribute oracle finds in the whole image. Identity = the identity oracle's
//! cosine to the run's training images, in the subject region: every row is cropped with the
//! stage-1 attention mask of its seed, the mask alchemy blurs, so all rows are judged on the same
//! region (plain sampling starts from the same noise, and Toyland centres its subject). The
//! attention mask itself is scored by IoU on renders (`attention_iou`).

use crate::attention_iou::{self, inside, AttentionIou};
use crate::bench::EvalPrompt;
use crate::demo::prompts as toybooth_prompts;
use crate::judges::{mean, similarity, Tally, SIDE};
use crate::train_run::TrainRun;
use candle_core::{Device, Error, Result};
use image::{GrayImage, RgbImage};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vstar_diffusion::alchemy::{run as alchemy, AlchemyConfig, AlchemyOutput, Segment};
use vstar_diffusion::blur::Blur;
use vstar_diffusion::guidance::{Cfg, PromptKind};
use vstar_diffusion::{images, pipeline};
use vstar_nn::model::Model;

#[derive(Debug, Clone, serde::Serialize)]
pub struct AlchemyEvalSize {
    pub prompts: usize,
    pub images_per_prompt: usize,
    /// Image k of prompt i has seed `seed * 1000 + 100 * (k + 1) + i`.
    pub seed: u64,
    /// Renders for the attention-mask IoU.
    pub renders: usize,
    pub steps: usize,
    pub guidance: f64,
    /// Stage 2's img2img strength and the attention-mask threshold (`vstar alchemy`'s defaults).
    pub strength: f64,
    pub threshold: f32,
    pub lambda: f32,
}

impl Default for AlchemyEvalSize {
    /// A few minutes on 2 cores.
    fn default() -> Self {
        Self {
            prompts: 6,
            images_per_prompt: 2,
            seed: 0,
            renders: 64,
            steps: 30,
            guidance: 5.0,
            strength: 0.6,
            threshold: 0.5,
            lambda: 5.0,
        }
    }
}

/// One kind of image's scores over every prompt and seed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub images: String,
    pub recall: f64,
    /// In the subject crop (the stage-1 mask).
    pub identity_crop: f64,
    pub identity_whole: f64,
    pub superclass: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AlchemyEval {
    pub run: PathBuf,
    pub size: AlchemyEvalSize,
    pub prompts: Vec<String>,
    pub rows: Vec<Row>,
    /// Mean share of the image the subject crops cover (diffuse masks give the whole image).
    pub crop_area: f64,
    pub attention: AttentionIou,
}

/// The square (x, y, side) around the mask's bounding box, the whole image for an empty mask:
/// the subject region, framed as in the references, which the subject fills.
fn crop_box(mask: &GrayImage) -> (u32, u32, u32) {
    let (w, h) = mask.dimensions();
    let (x0, y0, x1, y1) = mask
        .enumerate_pixels()
        .filter(|(_, _, p)| inside(p.0[0]))
        .fold((w, h, 0, 0), |(a, b, c, d), (x, y, _)| (a.min(x), b.min(y), c.max(x + 1), d.max(y + 1)));
    let (mut s, mut cx, mut cy) = (w.min(h), 0, 0);
    if x1 > x0 {
        s = (x1 - x0).max(y1 - y0).min(s);
        cx = ((x0 + x1) / 2).saturating_sub(s / 2).min(w - s);
        cy = ((y0 + y1) / 2).saturating_sub(s / 2).min(h - s);
    }
    (cx, cy, s)
}

/// The crop resized to the oracles' input.
fn subject_crop(img: &RgbImage, (x, y, s): (u32, u32, u32)) -> RgbImage {
    images::resize_crop(&image::imageops::crop_imm(img, x, y, s, s).to_image(), SIDE as u32, SIDE as u32)
}

/// Stage 1 turns the adapters off by their per-row scale and stage 2 is the fine-tuned model:
/// a run needs weights (LoRA, DreamBooth, SVDiff, Custom Diffusion), not only learned tokens.
fn check_usable(loaded: &[(PathBuf, String)]) -> Result<()> {
    // `load_adapter`'s own description of an embedding file.
    if loaded.iter().all(|(_, what)| what.starts_with("textual inversion")) {
        let files: Vec<String> = loaded.iter().map(|(f, _)| f.display().to_string()).collect();
        return Err(Error::Msg(format!(
            "{}: textual inversion only; Image-Alchemy needs a LoRA-like weight adapter for stage 2 \
             (train the run with --method lora, lora-ti, dreambooth or svdiff)",
            files.join(", ")
        )));
    }
    Ok(())
}

/// The scores of one row, image by image.
#[derive(Default)]
struct Acc {
    tally: Tally,
    crop: Vec<f64>,
}

/// The rows, in table order: label and image file suffix.
const ROWS: [(&str, &str); 4] = [
    ("stage 1: base model, class word", "stage1"),
    ("plain LoRA sampling, placeholder", "lora"),
    ("alchemy final, Gaussian blur", "gauss"),
    ("alchemy final, exp-decay blur", "exp_decay"),
];

/// Evaluates a run folder; images go to `RUN_DIR/eval_alchemy/`, the result to
/// `RUN_DIR/eval_alchemy.json`.
pub fn run(
    run: &Path,
    model_dir: Option<&Path>,
    size: &AlchemyEvalSize,
    log: &mut dyn FnMut(&str),
) -> Result<AlchemyEval> {
    if size.prompts == 0 || size.images_per_prompt == 0 || size.renders == 0 {
        return Err(Error::Msg("--prompts, --images-per-prompt and --renders must be at least 1".into()));
    }
    let dev = Device::Cpu;
    let tr = TrainRun::open(run, model_dir, &dev)?;
    let mut model = tr.base_model(&dev)?;
    check_usable(&tr.attach(&mut model)?)?;
    let prompts: Vec<EvalPrompt> =
        toybooth_prompts(size.prompts).iter().map(|p| EvalPrompt::from_toybooth(p, tr.class, &tr.token)).collect();
    log(&format!("{}: attention-mask IoU on {} renders", run.display(), size.renders));
    let attention = attention_iou::measure(&model, size.renders, size.steps, size.seed)?;
    let out = run.join("eval_alchemy");
    let mut acc: Vec<Acc> = ROWS.iter().map(|_| Acc::default()).collect();
    let mut crop_area = vec![];
    for (pi, p) in prompts.iter().enumerate() {
        log(&format!("  {}", p.concept));
        for k in 0..size.images_per_prompt {
            let seed = size.seed * 1000 + 100 * (k as u64 + 1) + pi as u64;
            // Stage 1 depends on the seed alone: both blurs start from the same scene and mask.
            let gauss = two_stage(&model, &tr, p, size, Blur::Gauss, seed)?;
            let exp = two_stage(&model, &tr, p, size, Blur::ExpDecay { lambda: size.lambda }, seed)?;
            let plain = plain_lora(&model, p, size, seed)?;
            let file = |suffix: &str| out.join(format!("{pi:02}_{k}_{suffix}.png"));
            images::save_png(&file("mask"), &image::DynamicImage::ImageLuma8(gauss.mask.clone()).to_rgb8())?;
            let bbox = crop_box(&gauss.mask);
            crop_area.push((bbox.2 * bbox.2) as f64 / (gauss.mask.width() * gauss.mask.height()) as f64);
            for (a, ((_, suffix), img)) in
                acc.iter_mut().zip(ROWS.iter().zip([&gauss.scene, &plain, &gauss.result, &exp.result]))
            {
                images::save_png(&file(suffix), img)?;
                let whole = images::from_rgb(img, &dev)?.unsqueeze(0)?;
                a.tally.add(&tr.judges, &whole, tr.class, &p.elements, &tr.centroid)?;
                let crop = images::from_rgb(&subject_crop(img, bbox), &dev)?.unsqueeze(0)?;
                a.crop.extend(similarity(&tr.judges, &crop, &tr.centroid)?);
            }
        }
    }
    let rows = ROWS
        .iter()
        .zip(&acc)
        .map(|((label, _), a)| Row {
            images: label.to_string(),
            recall: a.tally.recall_mean(),
            identity_crop: mean(&a.crop),
            identity_whole: a.tally.identity_mean(),
            superclass: a.tally.superclass_rate(),
        })
        .collect();
    let e = AlchemyEval {
        run: run.to_path_buf(),
        size: size.clone(),
        prompts: prompts.iter().map(|p| p.concept.clone()).collect(),
        rows,
        crop_area: mean(&crop_area),
        attention,
    };
    let json = serde_json::to_string_pretty(&e).map_err(|e| Error::Msg(format!("eval_alchemy.json: {e}")))?;
    images::write_atomic(&run.join("eval_alchemy.json"), json.as_bytes())?;
    Ok(e)
}

fn two_stage(
    model: &Model,
    tr: &TrainRun,
    p: &EvalPrompt,
    size: &AlchemyEvalSize,
    blur: Blur,
    seed: u64,
) -> Result<AlchemyOutput> {
    let c = AlchemyConfig {
        prompt: p.concept.clone(),
        token: tr.token.clone(),
        class: tr.class.word().to_string(),
        segment: Segment::Attention { threshold: size.threshold, colours: true },
        blur,
        strength: size.strength,
        steps: size.steps,
        guidance: size.guidance,
        seed,
        composite: false,
        // One flat scene must not stop the evaluation: its whole image is the subject region.
        allow_empty_mask: true,
    };
    alchemy(model, &c)
}

fn plain_lora(model: &Model, p: &EvalPrompt, size: &AlchemyEvalSize, seed: u64) -> Result<RgbImage> {
    let by_kind = BTreeMap::from([(PromptKind::Concept, pipeline::encode_prompt(model, &p.concept)?)]);
    let (imgs, _) = pipeline::txt2img(model, &Cfg { scale: size.guidance }, by_kind, 1, seed, size.steps)?;
    images::to_rgb(&imgs.get(0)?)
}

impl AlchemyEval {
    /// The two markdown tables: the images' scores, then the attention mask's IoU.
    pub fn markdown(&self) -> String {
        let s = &self.size;
        let mut t = format!(
            "| images ({} prompts x {} seeds) | scene prompt-element recall | identity, subject crop \
             (stage-1 attention mask, every row) | identity, whole image | superclass |\n|---|---|---|---|---|\n",
            self.prompts.len(),
            s.images_per_prompt
        );
        for r in &self.rows {
            t += &format!(
                "| {} | {:.3} | {:.3} | {:.3} | {:.2} |\n",
                r.images, r.recall, r.identity_crop, r.identity_whole, r.superclass
            );
        }
        t += &format!("\nThe subject crops cover {:.0}% of the image on average.\n", 100.0 * self.crop_area);
        let a = &self.attention;
        t += &format!(
            "\n| attention-mask threshold | mean IoU vs ground truth ({} renders, t = {}) | mask area | \
             IoU, colour-refined | area, colour-refined | truth area |\n|---|---|---|---|---|---|\n",
            a.renders, a.timestep
        );
        for b in &a.by_threshold {
            t += &format!(
                "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
                b.threshold, b.iou, b.area, b.refined_iou, b.refined_area, a.truth_area
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(f: impl Fn(u32, u32) -> bool) -> GrayImage {
        GrayImage::from_fn(32, 32, |x, y| image::Luma([if f(x, y) { 255 } else { 0 }]))
    }

    #[test]
    fn crops_are_squares_around_the_mask_inside_the_image() {
        // A 6 x 10 box: a 10-pixel square on its centre.
        assert_eq!(crop_box(&mask(|x, y| (10..16).contains(&x) && (4..14).contains(&y))), (8, 4, 10));
        // At the border the square slides back into the image.
        assert_eq!(crop_box(&mask(|x, y| x >= 28 && y < 8)), (24, 0, 8));
        // Wider than tall, spanning the image: the whole image.
        assert_eq!(crop_box(&mask(|_, y| y < 4)), (0, 0, 32));
        assert_eq!(crop_box(&GrayImage::new(32, 32)), (0, 0, 32));
    }

    #[test]
    fn a_run_of_learned_tokens_only_is_refused_naming_its_files() {
        let ti = (PathBuf::from("run/learned_embeds.safetensors"), "textual inversion: <immen>".to_string());
        let err = check_usable(std::slice::from_ref(&ti)).unwrap_err().to_string();
        assert!(err.contains("run/learned_embeds.safetensors") && err.contains("--method lora"), "{err}");
        let lora = (PathBuf::from("run/pytorch_lora_weights.safetensors"), "LoRA, 8 layers".to_string());
        assert!(check_usable(&[lora, ti]).is_ok());
    }
}
