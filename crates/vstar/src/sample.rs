//! `vstar sample`: txt2img and img2img with a guidance method, PNG + JSON sidecar per image.

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use vstar_diffusion::guidance::{self, build::MethodParams, MaskSource, PromptKind};
use vstar_diffusion::images;
use vstar_diffusion::noise::{load_init_noise, NoiseSource};
use vstar_diffusion::sampler::{self, Prompts, Start};
use vstar_diffusion::scheduler::{self, SchedulerConfig, SchedulerKind};
use vstar_nn::model::Model;

#[derive(Args, Debug)]
pub struct SampleArgs {
    #[arg(long)]
    prompt: String,
    /// A diffusers-layout folder, a Hugging Face cache repo id, or `toyland` (default).
    #[arg(long)]
    model: Option<String>,
    /// Adapter file (LoRA diffusers/PEFT or kohya, textual inversion diffusers or A1111, SVDiff
    /// shifts, DreamBooth or Custom Diffusion weights) or a `vstar train` output folder;
    /// repeat for several.
    #[arg(long)]
    adapter: Vec<PathBuf>,
    /// cfg, concept, superclass, mixed, switching, multi-stage, masked, profusion, photoswap, pg,
    /// autoguidance, cfg++, pg++, subject-agnostic.
    #[arg(long, default_value = "cfg")]
    method: String,
    /// The placeholder token in --prompt (default: from the adapter's vstar.json).
    #[arg(long)]
    token: Option<String>,
    /// The subject's class word; checked to be in the superclass prompt.
    #[arg(long)]
    class: Option<String>,
    /// Override the superclass prompt (default: --prompt without the placeholder).
    #[arg(long)]
    superclass_prompt: Option<String>,
    /// Superclass weight wS (mixed, multi-stage).
    #[arg(long, default_value_t = 3.5)]
    ws: f64,
    /// Concept weight wC (mixed, multi-stage).
    #[arg(long, default_value_t = 3.5)]
    wc: f64,
    /// Switch step (switching, multi-stage).
    #[arg(long, default_value_t = 5)]
    t_sw: usize,
    /// PG's null-branch adapter scale (0 pretrained .. 1 = CFG).
    #[arg(long, default_value_t = 0.25)]
    omega: f64,
    /// Autoguidance's l.
    #[arg(long, default_value_t = 2.0)]
    ag_scale: f64,
    /// Masked sampling's quantile q in (0, 1): larger = smaller subject region.
    #[arg(long, default_value_t = 0.5)]
    q: f64,
    /// Masked sampling's map: `class` (the class word in the superclass branch) or
    /// `placeholder` (the token in the concept branch).
    #[arg(long, default_value = "class", value_parser = ["class", "placeholder"])]
    mask_source: String,
    /// Masked sampling: write each step's mask as PNG next to the images.
    #[arg(long)]
    save_masks: bool,
    /// ProFusion's refinement strength r (0 = mixed sampling at twice the calls).
    #[arg(long, default_value_t = 0.3)]
    r: f64,
    /// ProFusion's concept guidance in the refinement step.
    #[arg(long, default_value_t = 7.0)]
    w_ref: f64,
    /// ProFusion's refinement passes per step.
    #[arg(long, default_value_t = 1)]
    refine_repeats: usize,
    /// Photoswap's t_SF,t_CM,t_SM: steps with copied self-attention features, cross-attention
    /// maps and self-attention maps (Photoswap's own default 10,20,25).
    #[arg(long, value_delimiter = ',', num_args = 3, default_value = "10,20,25")]
    photoswap_steps: Vec<usize>,
    /// Subject-agnostic guidance's l.
    #[arg(long, default_value_t = 1.0)]
    sag_scale: f64,
    /// Allow --omega outside [0, 1].
    #[arg(long)]
    allow_extrapolation: bool,
    #[arg(long)]
    negative: Option<String>,
    #[arg(long, default_value_t = 30)]
    steps: usize,
    #[arg(long, default_value_t = 7.5)]
    guidance: f64,
    #[arg(long, default_value = "ddim")]
    scheduler: String,
    #[arg(long, default_value_t = 0, conflicts_with = "init_noise")]
    seed: u64,
    /// safetensors file with a tensor "noise" of the latent shape (N, C, h, w).
    #[arg(long)]
    init_noise: Option<PathBuf>,
    /// img2img: start from this image instead of pure noise.
    #[arg(long)]
    init_image: Option<PathBuf>,
    /// img2img: how much of the schedule to run, in (0, 1].
    #[arg(long, default_value_t = 0.6)]
    strength: f64,
    #[arg(long, default_value_t = 1)]
    n: usize,
    #[arg(long)]
    height: Option<usize>,
    #[arg(long)]
    width: Option<usize>,
    /// FILE.png for one image, or a folder.
    #[arg(long)]
    out: PathBuf,
}

fn method_params(a: &SampleArgs) -> MethodParams {
    MethodParams {
        guidance: a.guidance,
        ws: a.ws,
        wc: a.wc,
        t_sw: a.t_sw,
        omega: a.omega,
        ag_scale: a.ag_scale,
        q: a.q,
        mask_source: match a.mask_source.as_str() {
            "placeholder" => MaskSource::Placeholder,
            _ => MaskSource::ClassWord,
        },
        token_positions: None,
        r: a.r,
        w_ref: a.w_ref,
        refine_repeats: a.refine_repeats,
        photoswap_steps: (a.photoswap_steps[0], a.photoswap_steps[1], a.photoswap_steps[2]),
        sag_scale: a.sag_scale,
        allow_extrapolation: a.allow_extrapolation,
    }
}

/// A field of the vstar.json written beside an adapter by `vstar train`.
fn from_adapter_record(a: &SampleArgs, key: &str) -> Option<String> {
    crate::adapters::record_field(&a.adapter, key)
}

/// The placeholder: --token, else the adapter's vstar.json.
fn placeholder(a: &SampleArgs) -> Option<String> {
    a.token.clone().or_else(|| from_adapter_record(a, "token"))
}

/// Masked sampling's token positions: the class word in the superclass prompt, the
/// placeholder in the prompt.
fn token_positions(a: &SampleArgs, model: &Model) -> Result<Option<(usize, usize)>> {
    if a.method != "masked" {
        return Ok(None);
    }
    let tok = &model.text[0].tokenizer;
    let class = a.class.clone().or_else(|| from_adapter_record(a, "class")).ok_or_else(|| {
        anyhow::anyhow!("--method masked needs the class word: pass --class (or an --adapter with its vstar.json)")
    })?;
    let sup = superclass_prompt(a)?;
    let placeholder = placeholder(a).unwrap_or_default();
    let cp = tok
        .find(&sup, &class)?
        .with_context(|| format!("--class {class:?} is not in the superclass prompt {sup:?}"))?;
    let tp = tok
        .find(&a.prompt, &placeholder)?
        .with_context(|| format!("the placeholder {placeholder:?} is not in --prompt {:?}", a.prompt))?;
    Ok(Some((cp, tp)))
}

/// The superclass prompt a method needs: --superclass-prompt, or the prompt without the
/// placeholder; checked to hold --class when given.
fn superclass_prompt(a: &SampleArgs) -> Result<String> {
    let p = match (&a.superclass_prompt, placeholder(a)) {
        (Some(p), _) => p.clone(),
        (None, Some(tok)) => guidance::build::superclass_prompt(&a.prompt, &tok)?,
        (None, None) => bail!(
            "--method {} needs the placeholder token: pass --token (or an --adapter with its vstar.json), or --superclass-prompt",
            a.method
        ),
    };
    if let Some(c) = &a.class {
        if !p.split_whitespace().any(|w| w == c) {
            bail!("the superclass prompt {p:?} does not contain --class {c:?}");
        }
    }
    Ok(p)
}

/// Output file for image `i`: `--out` itself for one PNG, else `DIR/000i.png`.
fn out_path(out: &Path, i: usize, n: usize) -> Result<PathBuf> {
    let is_png = out.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    match (is_png, n) {
        (true, 1) => Ok(out.to_path_buf()),
        (true, _) => bail!("--out {} is one PNG but --n is {n}: pass a folder", out.display()),
        (false, _) => Ok(out.join(format!("{i:04}.png"))),
    }
}

pub fn run(mut args: SampleArgs) -> Result<()> {
    args.adapter = crate::adapters::expand(&args.adapter)?;
    if args.n == 0 {
        bail!("--n must be at least 1");
    }
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    if !(args.strength > 0.0 && args.strength <= 1.0) {
        bail!("--strength must be in (0, 1], got {}", args.strength);
    }
    if guidance::build::is_concept_method(&args.method) {
        if let Some(tok) = placeholder(&args) {
            guidance::build::superclass_prompt(&args.prompt, &tok)?;
        }
    }
    let kind: SchedulerKind = args.scheduler.parse().map_err(|e| anyhow::anyhow!("--scheduler: {e}"))?;
    let dev = Device::Cpu;
    let root = vstar_nn::locate::resolve_model(args.model.as_deref())?;
    let mut model = Model::load(&root, &dev)?;
    for (component, names) in &model.unused {
        eprintln!(
            "warning: {component}: {} weight(s) in the file are not used by the model (e.g. {})",
            names.len(),
            names[0]
        );
    }
    crate::adapters::load_all(&mut model, &args.adapter)?;
    let sched_cfg: SchedulerConfig = serde_json::from_value(model.scheduler_config.clone()).with_context(|| {
        format!("{}: invalid scheduler config", root.join("scheduler/scheduler_config.json").display())
    })?;
    let mut sched = scheduler::build(kind, &sched_cfg, args.steps)?;
    let setup = guidance::build::SamplerSetup { kind, config: &sched_cfg, steps: args.steps };
    let mut params = method_params(&args);
    params.token_positions = token_positions(&args, &model)?;
    let guidance = guidance::build::build(&args.method, &params, &setup)?;

    let default_side = model.unet.config.sample_size.unwrap_or(64) * model.vae.config.downsample_factor();
    let (h, w) = (args.height.unwrap_or(default_side), args.width.unwrap_or(default_side));
    let (c, lh, lw) = model.latent_shape(h, w)?;
    let shape = [args.n, c, lh, lw];

    let started = Instant::now();
    let mut by_kind = BTreeMap::new();
    by_kind.insert(PromptKind::Null, model.encode_negative(args.negative.as_deref(), 1, (h, w))?);
    by_kind.insert(PromptKind::Concept, model.encode(&[&args.prompt], (h, w), None)?);
    let superclass = if guidance::build::uses(guidance.as_ref(), PromptKind::Superclass, args.steps) {
        let p = superclass_prompt(&args)?;
        by_kind.insert(PromptKind::Superclass, model.encode(&[p.as_str()], (h, w), None)?);
        Some(p)
    } else {
        None
    };
    let prompts = Prompts { by_kind };

    let mut noise = NoiseSource::new(args.seed);
    let z = match &args.init_noise {
        Some(p) => load_init_noise(p, &shape, &dev)?,
        None => noise.randn(shape.as_slice(), &dev)?,
    };
    let start = match &args.init_image {
        None => Start::Noise(z),
        Some(p) => {
            let img = images::from_rgb(&images::load(p, h as u32, w as u32)?, &dev)?.unsqueeze(0)?;
            let latents = sampler::encode(&model, &img)?.repeat((args.n, 1, 1, 1))?;
            Start::Image { latents, noise: z, strength: args.strength }
        }
    };
    let out = sampler::sample(&model, sched.as_mut(), guidance.as_ref(), &prompts, start, &mut noise, |i, n| {
        eprint!("\rsampling: step {i}/{n}");
    })?;
    eprintln!();
    let imgs = sampler::decode(&model, &out.latents)?;
    let wall = started.elapsed().as_secs_f64();

    let command: Vec<String> = std::env::args().collect();
    for i in 0..args.n {
        let path = out_path(&args.out, i, args.n)?;
        images::save_png(&path, &images::to_rgb(&imgs.get(i)?)?)?;
        if args.save_masks {
            for (step, m) in guidance.saved_masks() {
                let mask = m.get(i)?.repeat((3, 1, 1))?;
                let p = path.with_file_name(format!(
                    "{}-mask-step{step:02}.png",
                    path.file_stem().unwrap_or_default().to_string_lossy()
                ));
                images::save_png(&p, &images::to_rgb(&mask)?)?;
            }
        }
        let sidecar = serde_json::json!({
            "command": command,
            "model": root.display().to_string(),
            "adapters": args.adapter.iter().map(|a| a.display().to_string()).collect::<Vec<_>>(),
            "prompt": args.prompt,
            "negative": args.negative,
            "superclass_prompt": superclass,
            "method": guidance.name(),
            "method_params": guidance.params(),
            "seed": if args.init_noise.is_some() { serde_json::Value::Null } else { args.seed.into() },
            "init_noise": args.init_noise.as_ref().map(|p| p.display().to_string()),
            "init_image": args.init_image.as_ref().map(|p| p.display().to_string()),
            "strength": args.init_image.as_ref().map(|_| args.strength),
            "index": i,
            "scheduler": args.scheduler,
            "steps": args.steps,
            "height": h,
            "width": w,
            "unet_cost_per_image": out.cost,
            "wall_time_s": wall / args.n as f64,
            "vstar_version": env!("CARGO_PKG_VERSION"),
        });
        images::write_atomic(&path.with_extension("json"), serde_json::to_string_pretty(&sidecar)?.as_bytes())?;
        println!("{}", path.display());
    }
    Ok(())
}
