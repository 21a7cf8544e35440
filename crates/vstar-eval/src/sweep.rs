//! `vstar sweep SPEC.toml --out DIR [--shard I/N]`: methods x hyperparameter grids on one
//! fine-tuned model, judged on Toyland. Each grid point (a "cell") is written to
//! `DIR/cells/<cell>.json` when done, so a stopped sweep resumes where it was and shards
//! (Slurm array tasks, Kubernetes Indexed Job pods) can share one DIR; `vstar report DIR`
//! merges whatever cells exist. Spec:
//!
//! ```toml
//! adapter = "out/lora-dog"        # a `vstar train` folder (token, class, subject from its vstar.json)
//! prompts = 8                     # ToyBooth prompts, or a list of prompts with the placeholder
//! seeds = [0, 1]
//! images_per_prompt = 2
//! steps = 30
//! [[method]]
//! name = "mixed"
//! ws = [0.0, 1.0, 3.5, 5.0, 7.0]  # a list is a grid axis; a number is fixed
//! wc = 3.5
//! ```

use crate::bench::{judge_method, Bench, EvalPrompt};
use crate::demo::{prompts as toybooth_prompts, MethodResult};
use crate::train_run::TrainRun;
use candle_core::{Device, Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vstar_diffusion::guidance::build::{MethodParams, METHODS};
use vstar_diffusion::images;

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum PromptSet {
    Toybooth(usize),
    List(Vec<String>),
    /// A shipped prompt set (`prompts/<name>.txt`) or a prompt file's path.
    Named(String),
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum Axis {
    One(f64),
    Grid(Vec<f64>),
}

/// A method and its parameters (unknown names are caught when the cells are built: serde's
/// deny_unknown_fields does not work with a flattened map).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct MethodSpec {
    pub name: String,
    #[serde(flatten)]
    pub params: BTreeMap<String, Axis>,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// A pretrained Toyland folder (default: the adapter run's base model).
    pub model: Option<PathBuf>,
    pub adapter: PathBuf,
    #[serde(default = "default_prompts")]
    pub prompts: PromptSet,
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    #[serde(default = "default_images")]
    pub images_per_prompt: usize,
    #[serde(default = "default_steps")]
    pub steps: usize,
    /// A transformers CLIPModel folder: adds CLIP-T and CLIP-I to every cell.
    pub clip: Option<PathBuf>,
    /// A transformers DINO (ViTModel) or DINOv2 folder: adds DINO to every cell.
    pub dino: Option<PathBuf>,
    pub method: Vec<MethodSpec>,
}

fn default_prompts() -> PromptSet {
    PromptSet::Toybooth(8)
}
fn default_seeds() -> Vec<u64> {
    vec![0]
}
fn default_images() -> usize {
    2
}
fn default_steps() -> usize {
    30
}

/// One grid point.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Cell {
    /// `mixed_ws=3.5` (the method, then every grid axis).
    pub id: String,
    pub method: String,
    pub params: BTreeMap<String, f64>,
}

/// Which cells this process runs: those with index % count == index.
#[derive(Debug, Clone, Copy)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// `I/N`, or with `env_count` = N the index from SLURM_ARRAY_TASK_ID or Kubernetes'
    /// JOB_COMPLETION_INDEX.
    pub fn parse(text: Option<&str>, env_count: Option<usize>) -> Result<Shard> {
        let bad = |m: String| Error::Msg(m);
        let (i, n) = match (text, env_count) {
            (Some(t), _) => {
                let (i, n) = t.split_once('/').ok_or_else(|| bad(format!("--shard {t}: write it as I/N, e.g. 0/4")))?;
                let num = |s: &str| {
                    s.trim().parse::<usize>().map_err(|_| bad(format!("--shard {t}: I and N must be numbers")))
                };
                (num(i)?, num(n)?)
            }
            (None, Some(n)) => {
                let i = ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"]
                    .iter()
                    .find_map(|k| std::env::var(k).ok())
                    .ok_or_else(|| {
                        bad("--shards: neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set".into())
                    })?;
                (
                    i.trim()
                        .parse()
                        .map_err(|_| bad(format!("shard index {i:?} from the environment is not a number")))?,
                    n,
                )
            }
            (None, None) => return Ok(Shard::ALL),
        };
        if n == 0 || i >= n {
            return Err(bad(format!("shard {i}/{n}: need 0 <= I < N")));
        }
        Ok(Shard { index: i, count: n })
    }
}

/// The line of `text` where `key` is first set (for error messages).
fn line_of(text: &str, key: &str) -> usize {
    text.lines().position(|l| l.trim_start().starts_with(key)).map_or(0, |i| i + 1)
}

impl SweepSpec {
    pub fn read(path: &Path) -> Result<(Self, Vec<Cell>)> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::Msg(format!("{}: cannot read ({e})", path.display())))?;
        let spec: SweepSpec =
            toml::from_str(&text).map_err(|e| Error::Msg(format!("{}: {}", path.display(), e.to_string().trim())))?;
        let cells =
            spec.cells().map_err(|(key, e)| Error::Msg(format!("{}:{}: {e}", path.display(), line_of(&text, &key))))?;
        for (k, ok) in [
            ("seeds", !spec.seeds.is_empty()),
            ("images_per_prompt", spec.images_per_prompt > 0),
            ("steps", spec.steps > 0),
        ] {
            if !ok {
                return Err(Error::Msg(format!(
                    "{}:{}: `{k}` must not be empty or 0",
                    path.display(),
                    line_of(&text, k)
                )));
            }
        }
        if let PromptSet::Named(set) = &spec.prompts {
            crate::prompt_sets::read(set)
                .map_err(|e| Error::Msg(format!("{}:{}: {e}", path.display(), line_of(&text, "prompts"))))?;
        }
        Ok((spec, cells))
    }

    /// Every grid point, each checked by building its parameters; errors carry the key.
    fn cells(&self) -> std::result::Result<Vec<Cell>, (String, String)> {
        let mut cells = vec![];
        for m in &self.method {
            if !METHODS.contains(&m.name.as_str()) {
                return Err(("name".into(), format!("unknown method {:?}; valid: {}", m.name, METHODS.join(", "))));
            }
            let mut points: Vec<BTreeMap<String, f64>> = vec![BTreeMap::new()];
            for (k, axis) in &m.params {
                let values = match axis {
                    Axis::One(v) => vec![*v],
                    Axis::Grid(v) if !v.is_empty() => v.clone(),
                    Axis::Grid(_) => return Err((k.clone(), format!("`{k}` is an empty list"))),
                };
                MethodParams::default().set(k, values[0]).map_err(|e| (k.clone(), e.to_string()))?;
                points = points
                    .into_iter()
                    .flat_map(|p| {
                        values.iter().map(move |v| {
                            let mut q = p.clone();
                            q.insert(k.clone(), *v);
                            q
                        })
                    })
                    .collect();
            }
            for p in points {
                let axes: String = p
                    .iter()
                    .filter(|(k, _)| matches!(m.params.get(*k), Some(Axis::Grid(_))))
                    .map(|(k, v)| format!("_{k}={v}"))
                    .collect();
                cells.push(Cell { id: format!("{}{axes}", m.name), method: m.name.clone(), params: p });
            }
        }
        if cells.is_empty() {
            return Err(("[[method]]".into(), "no [[method]] tables".into()));
        }
        Ok(cells)
    }
}

/// Runs this shard's unfinished cells; returns how many it ran and skipped.
pub fn run(spec_path: &Path, out: &Path, shard: Shard, log: &mut dyn FnMut(&str)) -> Result<(usize, usize)> {
    let (spec, cells) = SweepSpec::read(spec_path)?;
    let dev = Device::Cpu;
    let tr = TrainRun::open(&spec.adapter, spec.model.as_deref(), &dev)?;
    let (token, class, model_dir) = (&tr.token, tr.class, &tr.model_dir);
    let prompts: Vec<EvalPrompt> = match &spec.prompts {
        PromptSet::Toybooth(n) => {
            toybooth_prompts(*n).iter().map(|p| EvalPrompt::from_toybooth(p, class, token)).collect()
        }
        PromptSet::List(l) => l.iter().map(|p| EvalPrompt::from_text(p, token, class)).collect::<Result<_>>()?,
        PromptSet::Named(set) => crate::prompt_sets::read(set)?
            .iter()
            .map(|p| EvalPrompt::from_text(p, token, class))
            .collect::<Result<_>>()?,
    };
    let mut model = tr.base_model(&dev)?;
    tr.attach(&mut model)?;
    let real = tr.real_metrics(spec.clip.as_deref(), spec.dino.as_deref(), &dev)?;
    let cell_dir = out.join("cells");
    std::fs::create_dir_all(&cell_dir).map_err(|e| Error::Msg(format!("{}: {e}", cell_dir.display())))?;
    let about = serde_json::json!({
        "model": model_dir.display().to_string(), "adapter": spec.adapter.display().to_string(),
        "subject": spec.adapter.display().to_string(), "token": token,
        "prompts": prompts.iter().map(|p| &p.concept).collect::<Vec<_>>(),
        "images_per_prompt": spec.images_per_prompt * spec.seeds.len(), "sampling_steps": spec.steps,
        "cells": cells.iter().map(|c| &c.id).collect::<Vec<_>>(),
    });
    images::write_atomic(&out.join("sweep.json"), serde_json::to_string_pretty(&about).expect("json").as_bytes())?;
    let bench = Bench {
        judges: &tr.judges,
        class,
        token,
        prompts: &prompts,
        centroid: &tr.centroid,
        images_per_prompt: spec.images_per_prompt,
        steps: spec.steps,
        seeds: &spec.seeds,
        out,
        real: real.as_ref(),
    };
    let (mut ran, mut skipped) = (0, 0);
    let mine: Vec<&Cell> =
        cells.iter().enumerate().filter(|(i, _)| i % shard.count == shard.index).map(|(_, c)| c).collect();
    for (k, c) in mine.iter().enumerate() {
        let file = cell_dir.join(format!("{}.json", c.id));
        if file.exists() {
            skipped += 1;
            continue;
        }
        let mut p = MethodParams { guidance: if c.method.ends_with("++") { 0.4 } else { 5.0 }, ..Default::default() };
        for (name, v) in &c.params {
            p.set(name, *v)?;
        }
        let r = judge_method(&model, &bench, &c.id, &c.method, &p)?;
        log(&format!(
            "[{}/{}] {}: identity {:.3}, recall {:.3}, {:.2} s/image",
            k + 1,
            mine.len(),
            c.id,
            r.identity,
            r.recall,
            r.seconds_per_image
        ));
        images::write_atomic(&file, serde_json::to_string_pretty(&r).expect("json").as_bytes())?;
        ran += 1;
    }
    Ok((ran, skipped))
}

/// The cells written so far in `dir` and the ids still missing.
pub fn collect(dir: &Path) -> Result<(serde_json::Value, Vec<MethodResult>, Vec<String>)> {
    let about: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("sweep.json")).map_err(|e| {
            Error::Msg(format!("{}: no sweep.json ({e}); is this a `vstar sweep --out` folder?", dir.display()))
        })?)
        .map_err(|e| Error::Msg(format!("{}: {e}", dir.join("sweep.json").display())))?;
    let (mut results, mut missing) = (vec![], vec![]);
    for id in about["cells"].as_array().into_iter().flatten().filter_map(|c| c.as_str()) {
        let f = dir.join("cells").join(format!("{id}.json"));
        match std::fs::read_to_string(&f).ok().and_then(|t| serde_json::from_str::<MethodResult>(&t).ok()) {
            Some(r) => results.push(r),
            None => missing.push(id.to_string()),
        }
    }
    Ok((about, results, missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(prompts: &str) -> Result<(SweepSpec, Vec<Cell>)> {
        let dir = std::env::temp_dir().join(format!("vstar-sweep-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.toml", prompts.len()));
        std::fs::write(&path, format!("adapter = \"run\"\nprompts = {prompts}\n[[method]]\nname = \"cfg\"\n")).unwrap();
        SweepSpec::read(&path)
    }

    #[test]
    fn a_named_prompt_set_is_read_and_a_wrong_name_is_reported_with_its_line() {
        let (spec, _) = spec_with("\"vico_live\"").unwrap();
        let PromptSet::Named(name) = &spec.prompts else { panic!("not a named set: {:?}", spec.prompts) };
        assert_eq!(crate::prompt_sets::read(name).unwrap().len(), 31);
        let err = spec_with("\"vico_alive\"").unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("vico_alive"), "{err}");
    }

    /// The specs under docs/ stay valid: every method name and knob there is one the sweep
    /// knows, and the full sweep covers every sampling method.
    #[test]
    fn the_documented_specs_parse_and_the_full_one_covers_every_method() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        let (_, cells) = SweepSpec::read(&docs.join("sweep.toml")).unwrap();
        assert_eq!(cells.len(), 23);
        let (_, cells) = SweepSpec::read(&docs.join("sweep-full.toml")).unwrap();
        assert_eq!(cells.len(), 35);
        for m in METHODS.iter().filter(|m| **m != "cfg") {
            assert!(cells.iter().any(|c| c.method == *m), "sweep-full.toml has no {m} cell");
        }
    }
}
