//! `vstar eval RUN_DIR`: how well a `vstar train` run on Toyland keeps its subject and the
//! prompt. The run's adapters sample ToyBooth prompts with the placeholder (CFG, fixed seeds);
//! the base model samples the same prompts with the class word alone, from the same seeds.
//! Identity = cosine of the identity oracle's embedding to the run's training images'
//! centroid; recall = share of each prompt's context elements the attribute oracle finds.

use crate::bench::{judge_method, Bench, EvalPrompt};
use crate::demo::prompts;
use crate::demo::MethodResult;
use crate::judges::{centroid, Judges};
use candle_core::{Device, Error, Result, Tensor};
use std::path::{Path, PathBuf};
use vstar_diffusion::guidance::build::MethodParams;
use vstar_diffusion::images;
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

/// One model's scores over the prompt set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scores {
    pub identity: f64,
    pub recall: f64,
    pub superclass: f64,
}

impl From<&MethodResult> for Scores {
    fn from(r: &MethodResult) -> Self {
        Self { identity: r.identity, recall: r.recall, superclass: r.superclass }
    }
}

fn record(run: &Path) -> Result<serde_json::Value> {
    let p = run.join("vstar.json");
    let text = std::fs::read_to_string(&p).map_err(|e| {
        Error::Msg(format!("{}: cannot read ({e}); RUN_DIR must be a `vstar train` output", p.display()))
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Msg(format!("{}: {e}", p.display())))
}

fn field<'a>(rec: &'a serde_json::Value, run: &Path, key: &str) -> Result<&'a serde_json::Value> {
    rec.get(key)
        .filter(|v| !v.is_null())
        .ok_or_else(|| Error::Msg(format!("{}: vstar.json has no `{key}`", run.display())))
}

fn str_list(v: &serde_json::Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// The user's prompts (elements read from their wording), else ToyBooth's prompt set.
fn eval_prompts(custom: &[String], token: &str, class: Superclass, n: usize) -> Result<Vec<EvalPrompt>> {
    if custom.is_empty() {
        return Ok(prompts(n).iter().map(|p| EvalPrompt::from_toybooth(p, class, token)).collect());
    }
    custom.iter().map(|c| EvalPrompt::from_text(c, token)).collect()
}

/// The base model on the clean prompts ("superclass" = CFG with the class word alone), or
/// the fine-tuned one on the placeholder prompts ("concept").
fn score(model: &Model, bench: &Bench, tuned: bool, guidance: f64, log: &mut dyn FnMut(&str)) -> Result<Scores> {
    let (label, method) = if tuned { ("fine-tuned", "concept") } else { ("base", "superclass") };
    let r = judge_method(model, bench, label, method, &MethodParams { guidance, ..Default::default() })?;
    log(&format!(
        "  {}: identity {:.3}, recall {:.3}, superclass {:.2}",
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
    log: &mut dyn FnMut(&str),
) -> Result<serde_json::Value> {
    let rec = record(run)?;
    let dir = match model_dir {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from(field(&rec, run, "base_model")?.as_str().unwrap_or_default()),
    };
    if !vstar_toyland::pretrain::is_complete(&dir) {
        return Err(Error::Msg(format!(
            "{}: not a pretrained Toyland folder with oracles; `vstar eval` judges with Toyland's oracles (pass --model)",
            dir.display()
        )));
    }
    let token = field(&rec, run, "token")?.as_str().unwrap_or_default().to_string();
    let class_word = field(&rec, run, "class")?.as_str().unwrap_or_default().to_string();
    let class =
        Superclass::ALL.iter().copied().find(|s| s.word() == class_word).ok_or_else(|| {
            Error::Msg(format!("{}: class {class_word:?} is not a Toyland superclass", run.display()))
        })?;
    let dev = Device::Cpu;
    let judges = Judges::load(&dir, &dev)?;
    let refs: Vec<Tensor> = str_list(field(&rec, run, "images")?)
        .iter()
        .map(|f| images::from_rgb(&images::load(Path::new(f), 32, 32)?, &dev))
        .collect::<Result<_>>()?;
    if refs.is_empty() {
        return Err(Error::Msg(format!("{}: vstar.json lists no training images", run.display())));
    }
    let subject = centroid(&judges, &Tensor::stack(&refs, 0)?)?;
    let prompts = eval_prompts(custom, &token, class, size.prompts)?;
    let mut model = Model::load(&dir, &dev)?;
    log(&format!("{}: base model", run.display()));
    let files = vstar_nn::adapters::run_files(run)?;
    let eval_dir = run.join("eval");
    let bench = Bench {
        judges: &judges,
        class,
        token: &token,
        prompts: &prompts,
        centroid: &subject,
        images_per_prompt: size.images_per_prompt,
        steps: size.steps,
        seeds: &[0],
        out: &eval_dir,
    };
    let base = score(&model, &bench, false, size.guidance, log)?;
    for f in &files {
        vstar_nn::adapters::load_adapter(f, &mut model, 1.0)?;
    }
    let tuned = score(&model, &bench, true, size.guidance, log)?;
    let out = serde_json::json!({
        "run": run.display().to_string(),
        "method": rec.get("method"),
        "steps": rec.get("steps"),
        "train_seconds": rec.get("train_seconds"),
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
