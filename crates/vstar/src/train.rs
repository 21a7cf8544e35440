//! `vstar train`: personalize a model on a subject's images.

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use vstar_nn::adapters::lora::LoraFormat;
use vstar_nn::model::Model;
use vstar_train::palp::PalpConfig;
use vstar_train::personalize::{train, Subject, TrainSpec};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Folder of the subject's images (png/jpg, any size).
    #[arg(long)]
    images: PathBuf,
    /// The placeholder token: a rare word of the vocabulary (lora, dreambooth, svdiff), or a
    /// new token such as "<v*>" (ti, lora-ti, custom learn its embedding).
    #[arg(long)]
    token: String,
    /// The subject's class word (e.g. dog); also the init word of learned embeddings.
    #[arg(long)]
    class: String,
    /// lora | ti | lora-ti | dreambooth (attention) | dreambooth-full (every linear, conv and norm gain) |
    /// svdiff | custom
    #[arg(long, default_value = "lora")]
    method: String,
    #[arg(long)]
    model: Option<String>,
    #[arg(long, default_value_t = 400)]
    steps: usize,
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// LoRA rank (lora, lora-ti).
    #[arg(long, default_value_t = 4)]
    rank: usize,
    /// LoRA alpha (default: the rank, i.e. scale 1).
    #[arg(long)]
    alpha: Option<f64>,
    /// LoRA target layers, comma-separated suffixes (default: attn1/attn2 to_q, to_k, to_v,
    /// to_out.0; e.g. attn2.to_k,attn2.to_v).
    #[arg(long, value_delimiter = ',')]
    targets: Option<Vec<String>>,
    /// Also train LoRA on the text encoder's attention projections (lora, lora-ti).
    #[arg(long)]
    train_text_encoder: bool,
    /// Textual-inversion vectors (ti).
    #[arg(long, default_value_t = 1)]
    vectors: usize,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Prior preservation: this many class images ("a photo of a <class>") from the base
    /// model, generated once into --class-images (default OUT/class_images; one subfolder
    /// per class word when --subject flags bring several classes).
    #[arg(long, default_value_t = 0)]
    prior_images: usize,
    #[arg(long, default_value_t = 1.0)]
    prior_weight: f64,
    #[arg(long)]
    class_images: Option<PathBuf>,
    /// Multi-subject: a further subject as IMAGES_DIR:TOKEN:CLASS (repeatable); each step
    /// trains one subject drawn at random, with its own "a photo of TOKEN CLASS".
    #[arg(long = "subject", value_parser = parse_subject)]
    subjects: Vec<Subject>,
    /// PALP: the target prompt with the token(s) ("a sketch of <v*> dog in the city").
    #[arg(long)]
    palp: Option<String>,
    /// PALP's guidance of the pretrained clean-prompt branch.
    #[arg(long, default_value_t = 7.5)]
    palp_alpha: f64,
    /// PALP's guidance of the personalized branch.
    #[arg(long, default_value_t = 1.0)]
    palp_beta: f64,
    /// Weight of the alignment term. Its gradient is |g| (about 0.9 on Toyland) per element
    /// against the denoising loss's 2|eps - pred| (about 0.45), so at 1 it outweighs the
    /// subject: on Toyland weight 1 lowered the target's recall below LoRA+TI's on both
    /// targets tried (0.635 -> 0.375, 0.844 -> 0.698), 0.1 did not (tools/toyland/methods.sh).
    #[arg(long, default_value_t = 0.1)]
    palp_weight: f64,
    /// Re-noise with fresh noise instead of the training noise (ablation).
    #[arg(long)]
    palp_iid_noise: bool,
    /// Drop the sqrt(abar)/sqrt(1-abar) rescaling (ablation).
    #[arg(long)]
    palp_no_rescale: bool,
    /// Plain score distillation instead of PALP's personalized branch (ablation).
    #[arg(long)]
    palp_sds: bool,
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
    let mut model = Model::load(&root, &candle_core::Device::Cpu)?;
    let palp = a.palp.map(|target| PalpConfig {
        target,
        alpha: a.palp_alpha,
        beta: a.palp_beta,
        weight: a.palp_weight,
        same_noise: !a.palp_iid_noise,
        rescale: !a.palp_no_rescale,
        sds: a.palp_sds,
    });
    let spec = TrainSpec {
        steps: a.steps,
        lr: a.lr,
        rank: a.rank,
        alpha: a.alpha,
        targets: a.targets,
        text_encoder: a.train_text_encoder,
        vectors: a.vectors,
        batch: a.batch,
        seed: a.seed,
        prior_images: a.prior_images,
        prior_weight: a.prior_weight,
        class_images: a.class_images,
        palp,
        more_subjects: a.subjects,
        format,
        ..TrainSpec::new(&a.images, &a.token, &a.class, &a.method, &a.out)
    };
    let done = train(&mut model, &spec, &mut |l| eprintln!("{l}"))?;
    eprintln!("trained in {:.1} s", done.seconds);
    for f in &done.files {
        println!("{}", f.display());
    }
    Ok(())
}

/// `--subject DIR:TOKEN:CLASS` (the folder may itself hold ':'; token and class may not).
fn parse_subject(v: &str) -> std::result::Result<Subject, String> {
    let mut parts = v.rsplitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(class), Some(token), Some(dir)) if !dir.is_empty() && !token.is_empty() && !class.is_empty() => {
            Ok(Subject { images: PathBuf::from(dir), token: token.into(), class: class.into() })
        }
        _ => Err(format!("{v:?}: expected IMAGES_DIR:TOKEN:CLASS, e.g. out/toyland/toybooth/cat_a:<kitty>:cat")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_flag_parses_and_refuses_clearly() {
        let s = parse_subject("C:/data/cat:a:<kit>:cat").unwrap();
        assert_eq!((s.images, s.token.as_str(), s.class.as_str()), (PathBuf::from("C:/data/cat:a"), "<kit>", "cat"));
        for bad in ["dir:<kit>", "dir::cat", ":<kit>:cat", "dir"] {
            assert!(parse_subject(bad).unwrap_err().contains("expected IMAGES_DIR:TOKEN:CLASS"), "{bad}");
        }
    }
}
