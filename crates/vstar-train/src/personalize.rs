//! `vstar train`: teach a model a subject from a few images. One loop for every parameter
//! set (params/): cached subject latents -> noise at a random timestep -> the UNet with the
//! trainable deltas / token rows -> denoising loss (+ prior preservation on cached class
//! images, + PALP's alignment term) -> AdamW, checkpointed and resumable.

use crate::denoise::{t_tensor, Denoise};
use crate::optim::AdamWConfig;
use crate::palp::{self, Branches, PalpConfig};
use crate::params::{SetSpec, Trainable, METHODS};
use crate::prior;
use crate::run::{Run, RunConfig};
use crate::step_grads::{Metrics, StepGrads};
use crate::subject::SubjectImages;
use candle_core::{Error, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::time::Instant;
use vstar_diffusion::guidance::build::superclass_prompt;
use vstar_diffusion::images::write_atomic;
use vstar_diffusion::noise::NoiseSource;
use vstar_diffusion::pipeline::native_side;
use vstar_diffusion::scheduler::SchedulerConfig;
use vstar_nn::adapters::lora::LoraFormat;
use vstar_nn::model::Model;
use vstar_nn::Ctx;

/// One subject of a run: its images, placeholder token and class word.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Subject {
    pub images: PathBuf,
    pub token: String,
    pub class: String,
}

impl Subject {
    /// DreamBooth's instance prompt.
    pub fn instance_prompt(&self) -> String {
        format!("a photo of {} {}", self.token, self.class)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainSpec {
    pub images: PathBuf,
    pub token: String,
    pub class: String,
    pub method: String,
    pub steps: usize,
    pub lr: f64,
    pub rank: usize,
    /// LoRA alpha (None = rank), target suffixes (None = all attention projections), and
    /// whether the text encoder gets LoRA too.
    pub alpha: Option<f64>,
    pub targets: Option<Vec<String>>,
    pub text_encoder: bool,
    /// Textual-inversion vectors for `ti`.
    pub vectors: usize,
    pub batch: usize,
    pub seed: u64,
    /// Prior preservation: class images (0 = off), their loss weight, their folder.
    pub prior_images: usize,
    pub prior_weight: f64,
    pub class_images: Option<PathBuf>,
    pub palp: Option<PalpConfig>,
    /// Multi-subject runs: the subjects after the first (`--subject DIR:TOKEN:CLASS`), each
    /// with its own images, placeholder and instance prompt, all in one parameter set.
    pub more_subjects: Vec<Subject>,
    pub out: PathBuf,
    #[serde(skip)]
    pub format: LoraFormat,
}

impl TrainSpec {
    /// A spec with the defaults of `vstar train` for the given essentials.
    pub fn new(images: &Path, token: &str, class: &str, method: &str, out: &Path) -> Self {
        Self {
            images: images.to_path_buf(),
            token: token.into(),
            class: class.into(),
            method: method.into(),
            steps: 400,
            lr: 1e-4,
            rank: 4,
            alpha: None,
            targets: None,
            text_encoder: false,
            vectors: 1,
            batch: 1,
            seed: 0,
            prior_images: 0,
            prior_weight: 1.0,
            class_images: None,
            palp: None,
            more_subjects: vec![],
            out: out.to_path_buf(),
            format: LoraFormat::Diffusers,
        }
    }

    /// Every subject: `images`/`token`/`class`, then `more_subjects`.
    pub fn subjects(&self) -> Vec<Subject> {
        let first = Subject { images: self.images.clone(), token: self.token.clone(), class: self.class.clone() };
        std::iter::once(first).chain(self.more_subjects.iter().cloned()).collect()
    }

    /// PALP's clean target prompt: the target with every placeholder removed.
    fn clean_target(&self, target: &str) -> Result<String> {
        self.subjects().iter().try_fold(target.to_string(), |p, s| {
            superclass_prompt(&p, &s.token).map_err(|_| {
                Error::Msg(format!("--palp {target:?}: the target prompt must contain the token {:?}", s.token))
            })
        })
    }

    /// What the method trains.
    pub fn set_spec(&self) -> SetSpec {
        SetSpec {
            method: self.method.clone(),
            subjects: self.subjects().into_iter().map(|s| (s.token, s.class)).collect(),
            rank: self.rank,
            alpha: self.alpha,
            targets: self.targets.clone(),
            text_encoder: self.text_encoder,
            vectors: self.vectors,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Msg(m));
        if !METHODS.contains(&self.method.as_str()) {
            return bad(format!("--method {}: valid methods are {}", self.method, METHODS.join(", ")));
        }
        let subjects = self.subjects();
        for (i, s) in subjects.iter().enumerate() {
            if s.token.trim().is_empty() || s.token.contains(char::is_whitespace) {
                return bad(format!("--token {:?}: must be one word", s.token));
            }
            if s.class.trim().is_empty() || s.class.contains(char::is_whitespace) {
                return bad(format!("--class {:?}: must name the subject's class word, one word (e.g. dog)", s.class));
            }
            if subjects[..i].iter().any(|o| o.token == s.token) {
                return bad(format!("--subject: the token {:?} is used by two subjects; give each its own", s.token));
            }
        }
        if !(self.lr > 0.0 && self.lr < 1.0) {
            return bad(format!("--lr {}: must be in (0, 1)", self.lr));
        }
        if self.steps == 0 || self.batch == 0 {
            return bad("--steps and --batch must be at least 1".into());
        }
        if self.rank == 0 || self.rank > 1024 {
            return bad(format!("--rank {}: must be in 1..=1024", self.rank));
        }
        if self.alpha.is_some_and(|a| !(a > 0.0 && a.is_finite())) {
            return bad("--alpha must be a positive number".into());
        }
        if self.text_encoder && !matches!(self.method.as_str(), "lora" | "lora-ti") {
            return bad(format!(
                "--train-text-encoder: only lora and lora-ti train text-encoder LoRA, not {}",
                self.method
            ));
        }
        if self.vectors == 0 || self.vectors > 16 {
            return bad(format!("--vectors {}: must be in 1..=16", self.vectors));
        }
        if !(self.prior_weight >= 0.0 && self.prior_weight.is_finite()) {
            return bad(format!("--prior-weight {}: must be a non-negative number", self.prior_weight));
        }
        if let Some(p) = &self.palp {
            p.validate()?;
            self.clean_target(&p.target)?;
        }
        Ok(())
    }
}

/// What a finished run reports.
pub struct Trained {
    /// The main adapter file (what `vstar sample --adapter` takes), then the others.
    pub files: Vec<PathBuf>,
    pub seconds: f64,
}

/// Cached latents of a folder of images, sampled per step.
fn draw(
    images: &SubjectImages,
    model: &Model,
    rng: &mut ChaCha8Rng,
    noise: &mut NoiseSource,
    b: usize,
) -> Result<Tensor> {
    let mut rows = vec![];
    for _ in 0..b {
        let i = rng.random_range(0..images.len());
        let d = if rng.random_bool(0.5) { &images.flipped } else { &images.latents };
        rows.push((d.mean.get(i)?, d.logvar.get(i)?));
    }
    let mean = Tensor::stack(&rows.iter().map(|r| &r.0).collect::<Vec<_>>(), 0)?;
    let logvar = Tensor::stack(&rows.iter().map(|r| &r.1).collect::<Vec<_>>(), 0)?;
    let z = (&mean + (logvar * 0.5)?.exp()?.mul(&noise.randn(mean.shape(), &model.device)?)?)?;
    model.vae.scale_latents(&z)
}

fn timesteps(rng: &mut ChaCha8Rng, d: &Denoise, b: usize) -> Vec<usize> {
    (0..b).map(|_| rng.random_range(0..d.train_timesteps())).collect()
}

pub fn train(model: &mut Model, spec: &TrainSpec, log: &mut dyn FnMut(&str)) -> Result<Trained> {
    spec.validate()?;
    if model.family == vstar_nn::model::Family::Sdxl {
        return Err(Error::Msg(format!(
            "--model {}: training on SDXL (two text encoders, size conditioning) is not supported yet; \
             SD 1.x / 2.x folders and Toyland are",
            model.root.display()
        )));
    }
    let started = Instant::now();
    let set = spec.set_spec();
    let subjects = spec.subjects();
    let side = native_side(model);
    let mut images = vec![];
    for s in &subjects {
        let pieces = model.text[0].tokenizer.tokens(&s.token)?.len();
        if !set.learns_token() && pieces != 1 {
            log(&format!(
                "warning: --token {:?} is {pieces} tokens in this vocabulary; a rare single token binds better",
                s.token
            ));
        }
        let imgs = SubjectImages::load(&s.images, model, side)?;
        log(&format!("{} images of {} from {}", imgs.len(), s.token, s.images.display()));
        images.push(imgs);
    }
    std::fs::create_dir_all(&spec.out).map_err(|e| Error::Msg(format!("--out {}: {e}", spec.out.display())))?;
    let encode = |model: &Model, p: &str| -> Result<Tensor> { Ok(model.encode(&[p], (side, side), None)?.context) };
    // Class images and PALP's pretrained-branch prompts come from the base model: before any
    // trainable delta or token is attached.
    // One class-image set per distinct class word (a subfolder each when there are several).
    let mut class_words: Vec<&str> = vec![];
    for s in &subjects {
        if !class_words.contains(&s.class.as_str()) {
            class_words.push(&s.class);
        }
    }
    let mut priors = vec![];
    if spec.prior_images > 0 {
        let root = spec.class_images.clone().unwrap_or_else(|| spec.out.join("class_images"));
        for (i, &word) in class_words.iter().enumerate() {
            let dir = if class_words.len() == 1 { root.clone() } else { root.join(word) };
            let seed = spec.seed + 10_000 + 1000 * i as u64;
            let dir = prior::ensure_class_images(model, word, spec.prior_images, &dir, seed, log)?;
            priors.push((SubjectImages::load(&dir, model, side)?, prior::class_prompt(word)));
        }
    }
    // Subject k's prior set.
    let prior_of: Vec<usize> =
        subjects.iter().map(|s| class_words.iter().position(|w| *w == s.class).expect("listed")).collect();
    let palp_w0 = match &spec.palp {
        Some(p) => Some((encode(model, "")?, encode(model, &spec.clean_target(&p.target)?)?)),
        None => None,
    };
    let sched: SchedulerConfig = serde_json::from_value(model.scheduler_config.clone())
        .map_err(|e| Error::Msg(format!("scheduler config: {e}")))?;
    let denoise = Denoise::new(&sched, None)?;
    let trainable = Trainable::attach(model, &set, spec.seed)?;
    let model: &Model = model;
    let prompts: Vec<String> = subjects.iter().map(Subject::instance_prompt).collect();
    // Prompts through the fine-tuned text encoder: encoded once unless its output trains.
    let fixed = |p: &str| -> Result<Option<Tensor>> {
        if trainable.trains_text() {
            Ok(None)
        } else {
            Ok(Some(encode(model, p)?))
        }
    };
    // Only what this run uses: the class prompt with prior preservation, "" with PALP.
    let fixed_contexts = prompts.iter().map(|p| fixed(p)).collect::<Result<Vec<_>>>()?;
    let fixed_class = priors.iter().map(|(_, p)| fixed(p)).collect::<Result<Vec<_>>>()?;
    let fixed_null = if spec.palp.is_some() { fixed("")? } else { None };
    let current = |fixed: &Option<Tensor>, p: &str| match fixed {
        Some(c) => Ok(c.clone()),
        None => encode(model, p),
    };
    let config = RunConfig {
        name: "train".into(),
        steps: spec.steps,
        optim: AdamWConfig { lr: spec.lr, ..Default::default() },
        ema_decay: None,
        checkpoint_every: (spec.steps / 5).max(1),
        log_every: (spec.steps / 20).max(1),
        dir: spec.out.join("checkpoints"),
        loss_log: Some(spec.out.join("loss.csv")),
    };
    let mut run = Run::new(trainable.vars(), config)?;
    let b = spec.batch;
    run.train(log, |step| {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed ^ (step as u64).wrapping_mul(0x9E37_79B9));
        let mut noise = NoiseSource::new(rng.random());
        // Multi-subject: each step trains one subject, drawn uniformly (PALP's recipe).
        let k = if subjects.len() > 1 { rng.random_range(0..subjects.len()) } else { 0 };
        let context = current(&fixed_contexts[k], &prompts[k])?;
        let z = draw(&images[k], model, &mut rng, &mut noise, b)?;
        let t = timesteps(&mut rng, &denoise, b);
        let eps = noise.randn(z.shape(), &model.device)?;
        let (xt, target) = denoise.noisy_and_target(&z, &eps, &t)?;
        // Instance rows, then class rows with prior preservation: one UNet batch, whose rows
        // the loss weighs 1/b (instance) and prior_weight/b (class).
        let (mut x_all, mut t_all, mut ctx_all, mut target_all) =
            (xt.clone(), t.clone(), context.repeat((b, 1, 1))?, target);
        let mut coef = vec![1.0 / b as f32; b];
        if let Some((imgs, class_prompt)) = priors.get(prior_of[k]) {
            let class_ctx = current(&fixed_class[prior_of[k]], class_prompt)?;
            let zc = draw(imgs, model, &mut rng, &mut noise, b)?;
            let tc = timesteps(&mut rng, &denoise, b);
            let (xc, target_c) = denoise.noisy_and_target(&zc, &noise.randn(zc.shape(), &model.device)?, &tc)?;
            x_all = Tensor::cat(&[&x_all, &xc], 0)?;
            t_all.extend(&tc);
            ctx_all = Tensor::cat(&[&ctx_all, &class_ctx.repeat((b, 1, 1))?], 0)?;
            target_all = Tensor::cat(&[&target_all, &target_c], 0)?;
            coef.extend(vec![spec.prior_weight as f32 / b as f32; b]);
        }
        let with_prior = t_all.len() > b;
        // PALP's draws, made before the UNet runs as before; its term needs the whole batch's
        // prediction, so it runs in one part.
        let palp_draws = match &spec.palp {
            Some(p) => {
                let t_prime = timesteps(&mut rng, &denoise, b);
                let n = if p.same_noise { eps.clone() } else { noise.randn(z.shape(), &model.device)? };
                Some((p, t_prime, n))
            }
            None => None,
        };
        let parts = if palp_draws.is_some() { 1 } else { crate::step_grads::default_parts() };
        StepGrads::by_rows(t_all.len(), parts, |r| {
            let rows = |x: &Tensor| x.narrow(0, r.start, r.len());
            let tr = &t_all[r.clone()];
            let pred = model.unet.forward(
                &rows(&x_all)?,
                &t_tensor(tr, &model.device)?,
                &rows(&ctx_all)?,
                None,
                &mut Ctx::default(),
            )?;
            let row_loss = denoise.row_losses(&pred, &rows(&target_all)?, tr)?;
            let mut loss = (&row_loss * Tensor::new(&coef[r.clone()], &model.device)?)?.sum_all()?;
            let mut metrics: Metrics = vec![];
            if with_prior {
                let class_rows = r.start.max(b)..r.end;
                let class_sum = if class_rows.is_empty() {
                    0.0
                } else {
                    row_loss.narrow(0, class_rows.start - r.start, class_rows.len())?.sum_all()?.to_scalar::<f32>()?
                        as f64
                };
                metrics.push(("prior", class_sum / b as f64));
            }
            if let (Some((p, t_prime, n)), Some((null_w0, clean_w0))) = (&palp_draws, &palp_w0) {
                let pred = pred.narrow(0, 0, b)?;
                let null_w1 = current(&fixed_null, "")?.detach();
                let x0_hat = denoise.x0_estimate(&xt, &pred, &t)?;
                let x_tp = palp::renoise(&denoise, &x0_hat, n, t_prime)?;
                let rows = |c: &Tensor| c.repeat((b, 1, 1));
                let ctx =
                    Tensor::cat(&[&rows(null_w0)?, &rows(clean_w0)?, &rows(&null_w1)?, &rows(&context.detach())?], 0)?;
                let scale: Vec<f32> = [0f32, 0., 1., 1.].iter().flat_map(|&s| std::iter::repeat_n(s, b)).collect();
                let mut ctx_rows = Ctx::new(Some(Tensor::from_vec(scale, 4 * b, &model.device)?), None);
                let tp4: Vec<usize> = (0..4).flat_map(|_| t_prime.iter().copied()).collect();
                let x4 = Tensor::cat(&[&x_tp, &x_tp, &x_tp, &x_tp], 0)?;
                let e = model.unet.forward(&x4, &t_tensor(&tp4, &model.device)?, &ctx, None, &mut ctx_rows)?.detach();
                let part = |i: usize| e.narrow(0, i * b, b);
                let branches =
                    Branches { null_w0: part(0)?, clean_w0: part(1)?, null_w1: part(2)?, personal_w1: part(3)? };
                let g = palp::direction(p, &branches, n)?;
                let align = palp::surrogate(p, &denoise, &g, &x0_hat, &t)?;
                metrics.push(("align_g", g.sqr()?.mean_all()?.sqrt()?.to_scalar::<f32>()? as f64));
                loss = (loss + (align * p.weight)?)?;
            }
            Ok((loss, metrics))
        })
    })?;
    let files = trainable.save(model, &spec.out, spec.format)?;
    let seconds = started.elapsed().as_secs_f64();
    let record = serde_json::json!({
        "base_model": model.root.display().to_string(),
        "token": spec.token,
        "class": spec.class,
        "instance_prompt": prompts[0],
        "subjects": subjects,
        "method": spec.method,
        "hyperparameters": spec,
        "lora": trainable.lora.as_ref().map(|l| &l.config),
        "format": format!("{:?}", spec.format).to_lowercase(),
        "adapter": files.first().and_then(|f| f.file_name()).map(|f| f.to_string_lossy().to_string()),
        "files": files.iter().filter_map(|f| f.file_name()).map(|f| f.to_string_lossy().to_string()).collect::<Vec<_>>(),
        "steps": run.step(),
        "train_seconds": seconds,
        "images": images[0].files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "vstar_version": env!("CARGO_PKG_VERSION"),
    });
    write_atomic(&spec.out.join("vstar.json"), serde_json::to_string_pretty(&record).expect("json").as_bytes())?;
    Ok(Trained { files, seconds })
}
