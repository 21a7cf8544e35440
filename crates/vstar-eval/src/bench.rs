//! One sampling configuration judged over a prompt set: the shared core of `vstar demo`,
//! `vstar eval` and `vstar sweep`. Same seeds for every configuration, so images compare one
//! to one; every image saved; identity and element recall from the Toyland oracles.

use crate::demo::MethodResult;
use crate::judges::{Judges, Tally};
use crate::real_metrics::{RealMetrics, RealTally};
use candle_core::{Result, Tensor};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use vstar_diffusion::guidance::build::{self, superclass_prompt, MethodParams, SamplerSetup};
use vstar_diffusion::guidance::PromptKind;
use vstar_diffusion::sampler::Cost;
use vstar_diffusion::scheduler::{SchedulerConfig, SchedulerKind};
use vstar_diffusion::{images, pipeline};
use vstar_nn::model::Model;
use vstar_toyland::caption::Elements;
use vstar_toyland::superclass::Superclass;
use vstar_toyland::toybooth::Prompt;

/// A prompt with the placeholder, its clean (superclass) form, and the elements it asks for.
#[derive(Debug, Clone)]
pub struct EvalPrompt {
    pub concept: String,
    pub clean: String,
    pub elements: Elements,
}

impl EvalPrompt {
    pub fn from_toybooth(p: &Prompt, class: Superclass, token: &str) -> Self {
        Self { concept: p.text(class, Some(token)), clean: p.text(class, None), elements: p.elements }
    }

    /// A user's prompt in Toyland's wording (its elements read from the words); a template's
    /// `{}` (a prompt-set line) becomes "<token> <class>".
    pub fn from_text(text: &str, token: &str, class: Superclass) -> Result<Self> {
        let text = crate::prompt_sets::fill(text, &format!("{token} {}", class.word()));
        Ok(Self { clean: superclass_prompt(&text, token)?, elements: Elements::parse(&text), concept: text })
    }
}

/// What stays fixed across the configurations of one comparison (the model may change:
/// adapters attached between calls).
pub struct Bench<'a> {
    pub judges: &'a Judges,
    pub class: Superclass,
    pub token: &'a str,
    pub prompts: &'a [EvalPrompt],
    /// The subject's unit identity centroid.
    pub centroid: &'a Tensor,
    pub images_per_prompt: usize,
    pub steps: usize,
    /// Each seed samples every prompt once (image seed = seed * 1000 + 100 + prompt index).
    pub seeds: &'a [u64],
    /// Images go to `out/images/<label>/`.
    pub out: &'a Path,
    /// CLIP-T / CLIP-I / DINO with the user's encoders, when given.
    pub real: Option<&'a RealMetrics>,
}

/// Samples every prompt and seed with `method` and judges the images. `label` names the
/// configuration (its image folder).
pub fn judge_method(
    model: &Model,
    b: &Bench,
    label: &str,
    method: &str,
    params: &MethodParams,
) -> Result<MethodResult> {
    let t0 = Instant::now();
    let sched: SchedulerConfig = serde_json::from_value(model.scheduler_config.clone())
        .map_err(|e| candle_core::Error::Msg(format!("scheduler config: {e}")))?;
    let setup = SamplerSetup { kind: SchedulerKind::Ddim, config: &sched, steps: b.steps };
    let tok = &model.text[0].tokenizer;
    let (mut tally, mut real, mut files, mut cost, mut used) =
        (Tally::default(), RealTally::default(), vec![], Cost::default(), serde_json::Value::Null);
    let folder = label.replace(['+', '/', ' '], "_");
    for (pi, p) in b.prompts.iter().enumerate() {
        let positions = (tok.find(&p.clean, b.class.word())?.unwrap_or(1), tok.find(&p.concept, b.token)?.unwrap_or(1));
        let g = build::build(method, &MethodParams { token_positions: Some(positions), ..params.clone() }, &setup)?;
        used = g.params();
        let mut by_kind = BTreeMap::new();
        by_kind.insert(PromptKind::Concept, pipeline::encode_prompt(model, &p.concept)?);
        by_kind.insert(PromptKind::Superclass, pipeline::encode_prompt(model, &p.clean)?);
        let mut row = vec![];
        for &s in b.seeds {
            let seed = s * 1000 + 100 + pi as u64;
            let (imgs, c) = pipeline::txt2img(model, g.as_ref(), by_kind.clone(), b.images_per_prompt, seed, b.steps)?;
            cost = c;
            let rgb = (0..tally.add(b.judges, &imgs, b.class, &p.elements, b.centroid)?.len())
                .map(|k| images::to_rgb(&imgs.get(k)?))
                .collect::<Result<Vec<_>>>()?;
            if let Some(m) = b.real {
                real.add(m.score(&rgb, &p.clean)?);
            }
            for (k, img) in rgb.iter().enumerate() {
                let f = format!("images/{folder}/{pi:02}_s{s}_{k}.png");
                images::save_png(&b.out.join(&f), img)?;
                row.push(f);
            }
        }
        files.push(row);
    }
    let n = tally.recall.len().max(1) as f64;
    Ok(MethodResult {
        method: label.to_string(),
        params: used,
        identity: tally.identity_mean(),
        recall: tally.recall_mean(),
        superclass: tally.superclass_rate(),
        real: real.means(),
        cost_per_image: cost,
        seconds_per_image: t0.elapsed().as_secs_f64() / n,
        images: files,
    })
}
