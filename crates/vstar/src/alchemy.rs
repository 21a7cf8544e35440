//! `vstar alchemy`: Image-Alchemy's two-stage generation; every stage saved.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Instant;
use vstar_diffusion::alchemy::{run as alchemy, AlchemyConfig, Segment, Segmenter};
use vstar_diffusion::blur::Blur;
use vstar_diffusion::images;
use vstar_nn::model::Model;
use vstar_nn::models::vision::sam::{mask_box, Sam};

#[derive(Args, Debug)]
pub struct AlchemyArgs {
    /// The prompt with the placeholder ("a photo of immen dog in the snow").
    #[arg(long)]
    prompt: String,
    #[arg(long)]
    class: String,
    /// The subject's adapter file or `vstar train` folder (its vstar.json gives the placeholder
    /// unless --token is given).
    #[arg(long)]
    adapter: PathBuf,
    #[arg(long)]
    token: Option<String>,
    #[arg(long)]
    model: Option<String>,
    /// attention (the class word's cross-attention in stage 1), mask:FILE (white = subject) or
    /// sam:DIR (a transformers SamModel folder such as facebook/sam-vit-base: SAM segments the
    /// stage-1 scene, prompted with the bounding box of the attention mask at --mask-threshold).
    #[arg(long, default_value = "attention")]
    segment: String,
    /// Share of the normalised attention map counted as subject.
    #[arg(long, default_value_t = 0.5)]
    mask_threshold: f32,
    /// Keep the attention mask as it is, without narrowing it to the subject's colours
    /// (the attention maps are coarse: 4x4 on Toyland; on 64 renders the colour step raised
    /// the mask's IoU with the truth from 0.31 to 0.43).
    #[arg(long)]
    no_colour_refine: bool,
    /// gauss or exp-decay.
    #[arg(long, default_value = "exp-decay", value_parser = ["gauss", "exp-decay"])]
    blur: String,
    #[arg(long, default_value_t = 5.0)]
    lambda: f32,
    /// img2img strength of stage 2, in (0, 1].
    #[arg(long, default_value_t = 0.6)]
    strength: f64,
    #[arg(long, default_value_t = 30)]
    steps: usize,
    #[arg(long, default_value_t = 5.0)]
    guidance: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write the result pasted into the scene through the mask.
    #[arg(long)]
    composite: bool,
    /// With an empty mask, blur the whole image instead of stopping.
    #[arg(long)]
    allow_empty_mask: bool,
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: AlchemyArgs) -> Result<()> {
    let started = Instant::now();
    let segment = if a.segment == "attention" {
        Segment::Attention { threshold: a.mask_threshold, colours: !a.no_colour_refine }
    } else if let Some(f) = a.segment.strip_prefix("mask:") {
        let m = image::open(f).with_context(|| format!("--segment mask:{f}: cannot read the mask image"))?;
        Segment::Mask(m.to_luma8())
    } else if let Some(dir) = a.segment.strip_prefix("sam:") {
        let sam = Sam::load(Path::new(dir), &candle_core::Device::Cpu)
            .with_context(|| format!("--segment sam:{dir}: cannot load the SAM checkpoint"))?;
        // An empty attention mask gives no box: it is passed on, and reported as empty.
        let segment: Segmenter = Box::new(move |scene, coarse| match mask_box(coarse) {
            Some(prompt) => sam.segment(scene, prompt),
            None => Ok(coarse.clone()),
        });
        Segment::Sam { threshold: a.mask_threshold, segment }
    } else {
        bail!("--segment {}: use attention, mask:FILE or sam:DIR", a.segment);
    };
    let files = crate::adapters::expand(std::slice::from_ref(&a.adapter))?;
    let token = match &a.token {
        Some(t) => t.clone(),
        None => crate::adapters::record_field(&files, "token").with_context(|| {
            format!("--adapter {}: no vstar.json with the token beside it; pass --token", a.adapter.display())
        })?,
    };
    let root = vstar_nn::locate::resolve_model(a.model.as_deref())?;
    let mut model = Model::load(&root, &candle_core::Device::Cpu)?;
    crate::adapters::load_all(&mut model, &files)?;
    let blur = if a.blur == "gauss" { Blur::Gauss } else { Blur::ExpDecay { lambda: a.lambda } };
    let c = AlchemyConfig {
        prompt: a.prompt.clone(),
        token,
        class: a.class.clone(),
        segment,
        blur,
        strength: a.strength,
        steps: a.steps,
        guidance: a.guidance,
        seed: a.seed,
        composite: a.composite,
        allow_empty_mask: a.allow_empty_mask,
    };
    let o = alchemy(&model, &c)?;
    images::save_png(&a.out.join("1_scene.png"), &o.scene)?;
    let mask_rgb = image::DynamicImage::ImageLuma8(o.mask.clone()).to_rgb8();
    images::save_png(&a.out.join("2_mask.png"), &mask_rgb)?;
    images::save_png(&a.out.join("3_blurred.png"), &o.blurred)?;
    images::save_png(&a.out.join("4_final.png"), &o.result)?;
    if let Some(comp) = &o.composite {
        images::save_png(&a.out.join("5_composite.png"), comp)?;
    }
    let sidecar = serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>(),
        "model": root.display().to_string(),
        "adapter": a.adapter.display().to_string(),
        "prompt": a.prompt, "scene_prompt": o.scene_prompt, "class": a.class,
        "segment": a.segment, "mask_threshold": a.mask_threshold, "colour_refine": !a.no_colour_refine, "blur": blur, "strength": a.strength, "steps": a.steps,
        "guidance": a.guidance, "seed": a.seed,
        "unet_cost": o.cost, "wall_time_s": started.elapsed().as_secs_f64(),
        "vstar_version": env!("CARGO_PKG_VERSION"),
    });
    images::write_atomic(&a.out.join("alchemy.json"), serde_json::to_string_pretty(&sidecar)?.as_bytes())?;
    println!("{}", a.out.join("4_final.png").display());
    Ok(())
}
