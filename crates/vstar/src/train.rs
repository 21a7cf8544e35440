//! `vstar train`: personalize a model on a subject's images.

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use vstar_nn::adapters::lora::LoraFormat;
use vstar_nn::model::Model;
use vstar_train::personalize::{train, TrainSpec};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Folder of the subject's images (png/jpg, any size).
    #[arg(long)]
    images: PathBuf,
    /// The placeholder token (a rare word of the vocabulary, e.g. sks).
    #[arg(long)]
    token: String,
    /// The subject's class word (e.g. dog).
    #[arg(long)]
    class: String,
    /// dreambooth|lora|ti|lora-ti|svdiff|custom (lora for now).
    #[arg(long, default_value = "lora")]
    method: String,
    #[arg(long)]
    model: Option<String>,
    #[arg(long, default_value_t = 400)]
    steps: usize,
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    #[arg(long, default_value_t = 4)]
    rank: usize,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Continue from the checkpoints in --out.
    #[arg(long)]
    resume: bool,
    /// LoRA file layout: diffusers (PEFT keys) or kohya.
    #[arg(long, default_value = "diffusers")]
    format: String,
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: TrainArgs) -> Result<()> {
    let format = match a.format.as_str() {
        "diffusers" => LoraFormat::Diffusers,
        "kohya" => LoraFormat::Kohya,
        f => bail!("--format {f}: valid formats are diffusers and kohya"),
    };
    if a.out.join("checkpoints").join("latest.json").exists() && !a.resume {
        bail!(
            "--out {} holds checkpoints of an earlier run: pass --resume to continue it, or choose another --out",
            a.out.display()
        );
    }
    let root = vstar_nn::locate::resolve_model(a.model.as_deref())?;
    let model = Model::load(&root, &candle_core::Device::Cpu)?;
    let spec = TrainSpec {
        images: a.images,
        token: a.token,
        class: a.class,
        method: a.method,
        steps: a.steps,
        lr: a.lr,
        rank: a.rank,
        batch: a.batch,
        seed: a.seed,
        out: a.out,
        format,
    };
    let done = train(&model, &spec, &mut |l| eprintln!("{l}"))?;
    eprintln!("trained in {:.1} s", done.seconds);
    println!("{}", done.adapter.display());
    Ok(())
}
