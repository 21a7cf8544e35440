//! `vstar eval RUN_DIR`: how well a `vstar train` run on Toyland keeps its subject and the
//! prompt. The run's adapters sample ToyBooth prompts with the placeholder (CFG, fixed seeds);
//! the base model samples the same prompts with the class word alone, from the same seeds.
//! Identity = cosine of the identity oracle's embedding to the run's training images'
//! centroid; recall = share of each prompt's context elements the attribute oracle finds.

use crate::bench::{judge_method, Bench, EvalPrompt};
use crate::demo::prompts;
use crate::demo::MethodResult;
use crate::train_run::TrainRun;
use candle_core::{Device, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vstar_diffusion::guidance::build::MethodParams;
use vstar_nn::model::Model;
use vstar_toyland::superclass::Superclass;

#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalSize {
    pub prompts: usize,
    pub images_per_prompt: usize,
    pub steps: usize,
    pub guidance: f64,
}

impl EvalSize {
    pub fn full() -> Self {
        Self { prompts: 8, images_per_prompt: 2, steps: 30, guidance: 5.0 }
    }
}

/// The user's real encoders (transformers folders), each optional.
#[derive(Debug, Clone, Default)]
pub struct EncoderDirs {
    pub clip: Option<PathBuf>,
    pub dino: Option<PathBuf>,
}

/// One model's scores over the prompt set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scores {
    pub identity: f64,
    pub recall: f64,
    pub superclass: f64,
    /// CLIP-T / CLIP-I / DINO means, when encoders were given.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub real: BTreeMap<String, f64>,
}

impl From<&MethodResult> for Scores {
    fn from(r: &MethodResult) -> Self {
        Self { identity: r.identity, recall: r.recall, superclass: r.superclass, real: r.real.clone() }
    }
}

/// The user's prompts (elements read from their wording), else ToyBooth's prompt set.
fn eval_prompts(custom: &[String], token: &str, class: Superclass, n: usize) -> Result<Vec<EvalPrompt>> {
    if custom.is_empty() {
        return Ok(prompts(n).iter().map(|p| EvalPrompt::from_toybooth(p, class, token)).collect());
    }
    custom.iter().map(|c| EvalPrompt::from_text(c, token, class)).collect()
}

/// The base model on the clean prompts ("superclass" = CFG with the class word alone), or
/// the fine-tuned one on the placeholder prompts ("concept").
fn score(model: &Model, bench: &Bench, tuned: bool, guidance: f64, log: &mut dyn FnMut(&str)) -> Result<Scores> {
    let (label, method) = if tuned { ("fine-tuned", "concept") } else { ("base", "superclass") };
    let r = judge_method(model, bench, label, method, &MethodParams { guidance, ..Default::default() })?;
    let real: String = r.real.iter().map(|(k, v)| format!(", {k} {v:.3}")).collect();
    log(&format!(
        "  {}: identity {:.3}, recall {:.3}, superclass {:.2}{real}",
        if tuned { "fine-tuned, placeholder prompts" } else { "base model, class prompts" },
        r.identity,
        r.recall,
        r.superclass
    ));
    Ok(Scores::from(&r))
}

/// Evaluates a run folder on `custom` prompts (with the placeholder) or, when empty,
/// ToyBooth's; writes `RUN_DIR/eval.json` and returns its content.
pub fn run(
    run: &Path,
    model_dir: Option<&Path>,
    size: &EvalSize,
    custom: &[String],
    encoders: &EncoderDirs,
    log: &mut dyn FnMut(&str),
) -> Result<serde_json::Value> {
    let dev = Device::Cpu;
    let tr = TrainRun::open(run, model_dir, &dev)?;
    let prompts = eval_prompts(custom, &tr.token, tr.class, size.prompts)?;
    let real = tr.real_metrics(encoders.clip.as_deref(), encoders.dino.as_deref(), &dev)?;
    let mut model = tr.base_model(&dev)?;
    log(&format!("{}: base model", run.display()));
    let eval_dir = run.join("eval");
    let bench = Bench {
        judges: &tr.judges,
        class: tr.class,
        token: &tr.token,
        prompts: &prompts,
        centroid: &tr.centroid,
        images_per_prompt: size.images_per_prompt,
        steps: size.steps,
        seeds: &[0],
        out: &eval_dir,
        real: real.as_ref(),
    };
    let base = score(&model, &bench, false, size.guidance, log)?;
    tr.attach(&mut model)?;
    let tuned = score(&model, &bench, true, size.guidance, log)?;
    let out = serde_json::json!({
        "run": run.display().to_string(),
        "method": tr.record.get("method"),
        "steps": tr.record.get("steps"),
        "train_seconds": tr.record.get("train_seconds"),
        "size": size,
        "prompts": prompts.iter().map(|p| &p.concept).collect::<Vec<_>>(),
        "base": base,
        "fine_tuned": tuned,
    });
    vstar_diffusion::images::write_atomic(
        &run.join("eval.json"),
        serde_json::to_string_pretty(&out).expect("json").as_bytes(),
    )?;
    Ok(out)
}
