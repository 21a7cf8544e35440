//! `vstar demo`: the main job on Toyland in one command - personalize a ToyBooth subject with
//! a LoRA, sample it with every guidance method from the same seeds, judge every image with
//! the oracles (identity similarity to the subject, prompt-element recall), and write a
//! report (HTML page, JSON and CSV) with the cost of each method.

use crate::bench::{judge_method, Bench, EvalPrompt};
use crate::judges::{centroid, Judges};
use crate::report;
use candle_core::{Device, Result, Tensor};
use std::path::{Path, PathBuf};
use std::time::Instant;
use vstar_diffusion::guidance::build::{self, MethodParams};
use vstar_diffusion::images;
use vstar_diffusion::sampler::Cost;
use vstar_nn::model::Model;
use vstar_toyland::toybooth::{complex_prompts, dreambooth_prompts, Prompt, Subject};
use vstar_train::personalize::{train, TrainSpec};

/// Sizes of a demo run; `quick` for tests.
#[derive(Debug, Clone)]
pub struct DemoSize {
    pub train_steps: usize,
    /// Methods to run (None = every method).
    pub methods: Option<Vec<String>>,
    pub prompts: usize,
    pub images_per_prompt: usize,
    pub steps: usize,
}

impl DemoSize {
    pub fn full() -> Self {
        Self { train_steps: 400, methods: None, prompts: 8, images_per_prompt: 2, steps: 30 }
    }
    pub fn quick() -> Self {
        Self { train_steps: 2, methods: None, prompts: 1, images_per_prompt: 1, steps: 4 }
    }
}

/// One method's results over the prompt set.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MethodResult {
    pub method: String,
    pub params: serde_json::Value,
    /// Mean cosine similarity of the identity oracle's embedding to the subject's references.
    pub identity: f64,
    /// Mean fraction of the prompt's context elements the attribute oracle finds.
    pub recall: f64,
    /// Share of images whose superclass is right.
    pub superclass: f64,
    /// Means of the real-encoder metrics (clip_t, clip_i, dino) when encoders were given.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub real: std::collections::BTreeMap<String, f64>,
    pub cost_per_image: Cost,
    pub seconds_per_image: f64,
    /// Image files, by prompt.
    pub images: Vec<Vec<String>>,
}

pub const TOKEN: &str = "immen";
pub const SUBJECT: &str = "dog_a";

/// The demo's prompts: complex ones first (where the trade-off shows), then single-element ones.
pub fn prompts(n: usize) -> Vec<Prompt> {
    let (c, d) = (complex_prompts(), dreambooth_prompts());
    let mut v: Vec<Prompt> = c.into_iter().take(n.div_ceil(2)).collect();
    v.extend(d.into_iter().step_by(3).take(n - v.len()));
    v
}

fn params_for(method: &str) -> MethodParams {
    let guidance = if method.ends_with("++") { 0.4 } else { 5.0 };
    MethodParams { guidance, t_sw: 5, ..Default::default() }
}

fn subject_centroid(judges: &Judges, s: &Subject, dev: &Device) -> Result<Tensor> {
    let refs = ((vstar_toyland::pretrain::data::images(&s.references, dev)? + 1.0)? / 2.0)?;
    centroid(judges, &refs)
}

pub fn run(model_dir: &Path, out: &Path, size: DemoSize, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let started = Instant::now();
    let dev = Device::Cpu;
    let mut model = Model::load(model_dir, &dev)?;
    let judges = Judges::load(model_dir, &dev)?;
    let tb = vstar_toyland::manifest();
    let subject = tb.subject(SUBJECT).expect("ToyBooth has dog_a").clone();
    let class = subject.superclass;

    // 1. The subject's reference images, and a LoRA trained on them.
    let refs = out.join("subject");
    for (i, spec) in subject.references.iter().enumerate() {
        images::save_png(&refs.join(format!("{i}.png")), &vstar_toyland::render(spec, 32).image)?;
    }
    let spec = TrainSpec {
        steps: size.train_steps,
        lr: 5e-4,
        batch: 4,
        ..TrainSpec::new(&refs, TOKEN, class.word(), "lora", &out.join("lora"))
    };
    log(&format!("1/3 training a LoRA on ToyBooth subject {SUBJECT} ({} steps)", size.train_steps));
    let _ = std::fs::remove_dir_all(&spec.out);
    let trained = train(&mut model, &spec, &mut |l| log(&format!("    {l}")))?; // attaches the LoRA to `model`

    // 2. Every method on the prompt set, same seeds.
    let centroid = subject_centroid(&judges, &subject, &dev)?;
    let prompts: Vec<EvalPrompt> =
        prompts(size.prompts).iter().map(|p| EvalPrompt::from_toybooth(p, class, TOKEN)).collect();
    let bench = Bench {
        judges: &judges,
        class,
        token: TOKEN,
        prompts: &prompts,
        centroid: &centroid,
        images_per_prompt: size.images_per_prompt,
        steps: size.steps,
        seeds: &[0],
        out,
        real: None,
    };
    let methods: Vec<&str> = match &size.methods {
        Some(m) => m.iter().map(String::as_str).collect(),
        None => build::METHODS.iter().copied().filter(|m| *m != "cfg").collect(),
    };
    let mut results = vec![];
    for (mi, &method) in methods.iter().enumerate() {
        let r = judge_method(&model, &bench, method, method, &params_for(method))?;
        log(&format!(
            "2/3 [{}/{}] {method}: identity {:.3}, recall {:.3}, {} UNet rows/image, {:.2} s/image",
            mi + 1,
            methods.len(),
            r.identity,
            r.recall,
            r.cost_per_image.unet_rows,
            r.seconds_per_image
        ));
        results.push(r);
    }

    // 3. The papers' claims against these numbers, and the report.
    let claims = crate::claims::check(&results);
    for c in &claims {
        let verdict = match c.reproduced {
            Some(true) => "reproduced",
            Some(false) => "NOT reproduced",
            None => "not measured",
        };
        log(&format!("    claim ({}): {} - {verdict} [{}]", c.paper, c.claim, c.evidence));
    }
    let summary = serde_json::json!({
        "model": model_dir.display().to_string(),
        "subject": SUBJECT,
        "token": TOKEN,
        "lora": trained.files[0].display().to_string(),
        "train_seconds": trained.seconds,
        "prompts": prompts.iter().map(|p| &p.concept).collect::<Vec<_>>(),
        "images_per_prompt": size.images_per_prompt,
        "sampling_steps": size.steps,
        "total_seconds": started.elapsed().as_secs_f64(),
        "results": results,
        "claims": claims,
    });
    let page = report::write(out, &summary, &results)?;
    log(&format!("3/3 report written in {:.0} s total", started.elapsed().as_secs_f64()));
    Ok(page)
}
