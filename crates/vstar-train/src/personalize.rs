//! `vstar train`: teach a model a subject from a few images. One loop for every parameter
//! set: cached subject latents -> noise at a random timestep -> the UNet with the trainable
//! deltas -> denoising loss -> AdamW, checkpointed and resumable. (LoRA for now.)

use crate::denoise::Denoise;
use crate::lora_set::{LoraConfig, LoraSet, DEFAULT_TARGETS};
use crate::optim::AdamWConfig;
use crate::run::{Run, RunConfig};
use crate::subject::SubjectImages;
use candle_core::{Error, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::time::Instant;
use vstar_diffusion::images::write_atomic;
use vstar_diffusion::noise::NoiseSource;
use vstar_diffusion::pipeline::native_side;
use vstar_diffusion::scheduler::SchedulerConfig;
use vstar_nn::adapters::lora::LoraFormat;
use vstar_nn::model::Model;
use vstar_nn::Ctx;

#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainSpec {
    pub images: PathBuf,
    pub token: String,
    pub class: String,
    pub method: String,
    pub steps: usize,
    pub lr: f64,
    pub rank: usize,
    pub batch: usize,
    pub seed: u64,
    pub out: PathBuf,
    #[serde(skip)]
    pub format: LoraFormat,
}

impl TrainSpec {
    /// DreamBooth's instance prompt.
    pub fn instance_prompt(&self) -> String {
        format!("a photo of {} {}", self.token, self.class)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Msg(m));
        if self.method != "lora" {
            return bad(format!("--method {}: not available yet; valid now: lora", self.method));
        }
        if self.token.trim().is_empty() || self.token.contains(char::is_whitespace) {
            return bad(format!("--token {:?}: must be one word", self.token));
        }
        if self.class.trim().is_empty() {
            return bad("--class must name the subject's class word (e.g. dog)".into());
        }
        if !(self.lr > 0.0 && self.lr < 1.0) {
            return bad(format!("--lr {}: must be in (0, 1)", self.lr));
        }
        if self.steps == 0 || self.batch == 0 {
            return bad("--steps and --batch must be at least 1".into());
        }
        Ok(())
    }
}

/// What a finished run reports.
pub struct Trained {
    pub adapter: PathBuf,
    pub seconds: f64,
}

pub fn adapter_file(out: &Path, format: LoraFormat) -> PathBuf {
    match format {
        LoraFormat::Diffusers => out.join("pytorch_lora_weights.safetensors"),
        LoraFormat::Kohya => out.join("lora_kohya.safetensors"),
    }
}

pub fn train(model: &Model, spec: &TrainSpec, log: &mut dyn FnMut(&str)) -> Result<Trained> {
    spec.validate()?;
    let started = Instant::now();
    let tok = &model.text[0].tokenizer;
    let pieces = tok.tokens(&spec.token)?.len();
    if pieces != 1 {
        log(&format!(
            "warning: --token {:?} is {pieces} tokens in this vocabulary; a rare single token binds better",
            spec.token
        ));
    }
    let side = native_side(model);
    let subject = SubjectImages::load(&spec.images, model, side)?;
    log(&format!("{} images from {}", subject.len(), spec.images.display()));
    let prompt = spec.instance_prompt();
    let context = model.encode(&[prompt.as_str()], (side, side), None)?.context;
    let sched: SchedulerConfig = serde_json::from_value(model.scheduler_config.clone())
        .map_err(|e| Error::Msg(format!("scheduler config: {e}")))?;
    let denoise = Denoise::new(&sched, None)?;
    let lora = LoraSet::attach(
        model,
        LoraConfig { rank: spec.rank, alpha: spec.rank as f64, targets: DEFAULT_TARGETS.map(String::from).to_vec() },
        spec.seed,
    )?;
    std::fs::create_dir_all(&spec.out).map_err(|e| Error::Msg(format!("--out {}: {e}", spec.out.display())))?;
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
    let mut run = Run::new(lora.vars(), config)?;
    let b = spec.batch;
    let n = subject.len();
    run.train(log, |step| {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed ^ (step as u64).wrapping_mul(0x9E37_79B9));
        let mut noise = NoiseSource::new(rng.random());
        let mut rows = vec![];
        for _ in 0..b {
            let i = rng.random_range(0..n);
            let d = if rng.random_bool(0.5) { &subject.flipped } else { &subject.latents };
            rows.push((d.mean.get(i)?, d.logvar.get(i)?));
        }
        let mean = Tensor::stack(&rows.iter().map(|r| &r.0).collect::<Vec<_>>(), 0)?;
        let logvar = Tensor::stack(&rows.iter().map(|r| &r.1).collect::<Vec<_>>(), 0)?;
        let z = (&mean + (logvar * 0.5)?.exp()?.mul(&noise.randn(mean.shape(), &model.device)?)?)?;
        let z = model.vae.scale_latents(&z)?;
        let t: Vec<usize> = (0..b).map(|_| rng.random_range(0..denoise.train_timesteps())).collect();
        let (xt, target) = denoise.noisy_and_target(&z, &noise.randn(z.shape(), &model.device)?, &t)?;
        let tt = Tensor::from_vec(t.iter().map(|&t| t as f32).collect::<Vec<_>>(), b, &model.device)?;
        let ctx = context.repeat((b, 1, 1))?;
        let pred = model.unet.forward(&xt, &tt, &ctx, None, &mut Ctx::default())?;
        Ok((denoise.loss(&pred, &target, &t)?, vec![]))
    })?;
    let adapter = adapter_file(&spec.out, spec.format);
    lora.save(&adapter, spec.format)?;
    let record = serde_json::json!({
        "base_model": model.root.display().to_string(),
        "token": spec.token,
        "class": spec.class,
        "instance_prompt": prompt,
        "method": spec.method,
        "hyperparameters": spec,
        "lora": lora.config,
        "format": format!("{:?}", spec.format).to_lowercase(),
        "adapter": adapter.file_name().map(|f| f.to_string_lossy().to_string()),
        "steps": run.step(),
        "images": subject.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "vstar_version": env!("CARGO_PKG_VERSION"),
    });
    write_atomic(&spec.out.join("vstar.json"), serde_json::to_string_pretty(&record).expect("json").as_bytes())?;
    Ok(Trained { adapter, seconds: started.elapsed().as_secs_f64() })
}
