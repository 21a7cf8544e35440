//! `vstar toyland pretrain`: trains Toyland's miniature Stable Diffusion and its judges with
//! vstar's own model code, in stages, into a diffusers-layout folder:
//!
//! 1. `vae/` - AutoencoderKL, 32 px renders to 8x8x4 latents;
//! 2. a CLIP text transformer trained contrastively against an image tower;
//! 3. `unet/` and `text_encoder/` - the text-to-image UNet on the frozen VAE's latents, trained
//!    with the text encoder started from (2) (epsilon, min-SNR, EMA, 10% empty captions for
//!    classifier-free guidance);
//! 4. `oracles/attribute`, `oracles/identity` - judges trained on renders (the attribute oracle
//!    on their VAE round trips too), never on generated images;
//! 5. `oracles/eval_clip` - a second CLIP (other seed and sizes) for CLIP-T / CLIP-I stand-ins.
//!
//! Every stage checkpoints under `<out>/.checkpoints/<stage>` and skips itself once its
//! weights are written, so an interrupted run picks up where it stopped.

mod clip_stage;
pub mod contrastive;
pub mod data;
mod layout;
mod oracle_stage;
pub mod store;
pub mod tower;
mod unet_stage;
mod vae_stage;

pub use clip_stage::Clip;
pub use clip_stage::CONTEXT;
pub use layout::Layout;
pub use oracle_stage::{class_name, targets as oracle_targets, AttributeOracle, IdentityOracle, HEADS};
pub use unet_stage::config as unet_config;

use candle_core::{Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use vstar_train::optim::AdamWConfig;
use vstar_train::run::{Run, RunConfig};
use vstar_train::step_grads::StepGrads;

/// Step counts and batch sizes. `full` is what the shipped weights come from; `smoke` runs
/// every stage for a few steps (tests).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recipe {
    pub vae_steps: usize,
    pub clip_steps: usize,
    /// The UNet's phases, (steps, peak learning rate) each: every phase after the first is a
    /// warm restart from the one before.
    pub unet_phases: Vec<(usize, f64)>,
    pub attribute_steps: usize,
    pub identity_steps: usize,
    pub eval_clip_steps: usize,
    pub vae_batch: usize,
    /// Batch of the UNet and CLIP stages.
    pub batch: usize,
    /// The attribute oracle's batch.
    pub oracle_batch: usize,
    /// The identity oracle's batch: half as many instances, each seen twice.
    pub identity_batch: usize,
    pub checkpoint_every: usize,
    pub log_every: usize,
}

impl Recipe {
    pub fn full() -> Self {
        Self {
            vae_steps: 1600,
            clip_steps: 300,
            unet_phases: vec![(3600, 1.5e-3), (3600, 9e-4), (3600, 9e-4), (3600, 9e-4)],
            attribute_steps: 16000,
            identity_steps: 16000,
            eval_clip_steps: 300,
            vae_batch: 16,
            batch: 48,
            oracle_batch: 32,
            identity_batch: 32,
            checkpoint_every: 100,
            log_every: 25,
        }
    }

    pub fn smoke() -> Self {
        Self {
            vae_steps: 3,
            clip_steps: 3,
            unet_phases: vec![(3, 5e-4), (2, 3e-4)],
            attribute_steps: 3,
            identity_steps: 3,
            eval_clip_steps: 3,
            vae_batch: 2,
            batch: 4,
            oracle_batch: 4,
            identity_batch: 4,
            checkpoint_every: 2,
            log_every: 1,
        }
    }
}

/// One pretraining run: where it writes, its seed and recipe, and where progress goes.
pub struct Pretrain<'a> {
    pub out: PathBuf,
    pub seed: u64,
    pub recipe: Recipe,
    pub log: &'a dyn Fn(&str),
    pub dev: Device,
}

/// A stage's trainable model: built from a VarBuilder, trained by a step function.
pub(crate) struct StageSpec<'s> {
    pub name: &'s str,
    /// Stage number: seeds its data stream and its initialisation.
    pub id: u64,
    /// Where the trained weights go (several folders when one stage trains several models).
    pub outputs: Vec<Output<'s>>,
    /// Starting weights by var name, in place of the seeded initialisation.
    pub init: HashMap<String, Tensor>,
    pub steps: usize,
    pub optim: AdamWConfig,
    pub ema: Option<f64>,
}

/// One folder of a stage's result: the vars named `prefix...`, written without the prefix.
pub(crate) struct Output<'s> {
    pub prefix: &'s str,
    pub dir: PathBuf,
    pub file: &'s str,
    pub config: serde_json::Value,
}

impl<'s> Output<'s> {
    /// All of the stage's vars in one folder.
    pub fn whole(dir: PathBuf, file: &'s str, config: serde_json::Value) -> Vec<Self> {
        vec![Self { prefix: "", dir, file, config }]
    }

    fn load(&self, dev: &Device) -> Result<Option<HashMap<String, Tensor>>> {
        Ok(store::load(&self.dir, self.file, dev)?
            .map(|w| w.into_iter().map(|(k, v)| (format!("{}{k}", self.prefix), v)).collect()))
    }

    fn save(&self, weights: &HashMap<String, Tensor>) -> Result<()> {
        let mine = weights
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(self.prefix).map(|k| (k.to_string(), v.clone())))
            .collect();
        store::save(&self.dir, self.file, &self.config, &mine)
    }
}

/// The weights of every output, if all were written.
pub(crate) fn load_outputs(outputs: &[Output], dev: &Device) -> Result<Option<HashMap<String, Tensor>>> {
    let mut all = HashMap::new();
    for o in outputs {
        match o.load(dev)? {
            Some(w) => all.extend(w),
            None => return Ok(None),
        }
    }
    Ok(Some(all))
}

impl Pretrain<'_> {
    /// Only the judges (attribute, identity, eval_clip), which depend on no other stage but the
    /// VAE (the attribute oracle's round trips): a second process can train them while `run` is
    /// busy with the UNet; `run` then finds them done and skips them.
    pub fn run_judges(&self, names: &[String]) -> Result<()> {
        let layout = Layout::new(&self.out);
        layout.write_static_files()?;
        for n in names {
            match n.as_str() {
                "attribute" => {
                    let vae = vae_stage::load(&layout, &self.dev)?.ok_or_else(|| {
                        candle_core::Error::Msg(format!(
                            "--only attribute: {} is not trained yet; the attribute oracle also learns from \
                             VAE round trips, so start it once the main pretrain has finished its VAE stage",
                            layout.vae().display()
                        ))
                    })?;
                    oracle_stage::train_attribute(self, &layout, &vae)?
                }
                "identity" => oracle_stage::train_identity(self, &layout)?,
                "eval_clip" => clip_stage::train_eval(self, &layout)?,
                other => candle_core::bail!("--only {other}: valid stages are attribute, identity, eval_clip"),
            }
        }
        Ok(())
    }

    pub fn run(&self) -> Result<Layout> {
        let started = std::time::Instant::now();
        let layout = Layout::new(&self.out);
        layout.write_static_files()?;
        let vae = vae_stage::train(self, &layout)?;
        let text = clip_stage::train_conditioning(self, &layout)?;
        unet_stage::train(self, &layout, &vae, text)?;
        oracle_stage::train_attribute(self, &layout, &vae)?;
        oracle_stage::train_identity(self, &layout)?;
        clip_stage::train_eval(self, &layout)?;
        let _ = std::fs::remove_dir_all(layout.checkpoints());
        (self.log)(&format!(
            "pretraining done in {:.1} min in this process, {:.1} min of training over all stages and \
             resumes ({}): {}",
            started.elapsed().as_secs_f64() / 60.0,
            layout.total_seconds()? / 60.0,
            layout.times().display(),
            self.out.display()
        ));
        Ok(layout)
    }

    /// Trains `build`'s model with `step` unless its outputs already exist; returns the final
    /// (EMA when set) weights, by var name, either way.
    pub(crate) fn stage<M>(
        &self,
        spec: StageSpec,
        build: impl Fn(VarBuilder) -> Result<M>,
        mut step: impl FnMut(&M, usize) -> Result<StepGrads>,
    ) -> Result<HashMap<String, Tensor>> {
        if let Some(w) = load_outputs(&spec.outputs, &self.dev)? {
            (self.log)(&format!("{}: already trained ({})", spec.name, spec.outputs[0].dir.display()));
            return Ok(w);
        }
        let vm = VarMap::new();
        let vb =
            vstar_train::init::seeded_builder(&vm, self.seed ^ (spec.id << 32), candle_core::DType::F32, &self.dev);
        let model = build(vb)?;
        let vars = store::named_vars(&vm);
        for (name, t) in &spec.init {
            let var = vars.iter().find(|(n, _, _)| n == name).map(|(_, v, _)| v);
            var.ok_or_else(|| candle_core::Error::Msg(format!("{}: init names no var `{name}`", spec.name)))?.set(t)?;
        }
        let params: usize = vars.iter().map(|(_, v, _)| v.elem_count()).sum();
        (self.log)(&format!("{}: {:.2} M parameters, {} steps", spec.name, params as f64 / 1e6, spec.steps));
        let config = RunConfig {
            name: spec.name.to_string(),
            steps: spec.steps,
            optim: spec.optim,
            ema_decay: spec.ema,
            checkpoint_every: self.recipe.checkpoint_every,
            log_every: self.recipe.log_every,
            dir: self.out.join(".checkpoints").join(spec.name),
            loss_log: None,
        };
        let mut run = Run::new(vars, config)?;
        run.train(&mut |l| (self.log)(l), |s| step(&model, s))?;
        let seconds = run.train_seconds();
        (self.log)(&format!("{}: trained in {:.1} min", spec.name, seconds / 60.0));
        let record =
            serde_json::json!({ "stage": spec.name, "steps": spec.steps, "seed": self.seed, "seconds": seconds });
        Layout::new(&self.out).write_time(spec.name, &record)?;
        let weights = run.weights();
        for o in &spec.outputs {
            o.save(&weights)?;
        }
        // What was written (f16), not the f32 in memory: later stages then see the same weights
        // whether this stage ran now or in an earlier, interrupted process.
        load_outputs(&spec.outputs, &self.dev)?
            .ok_or_else(|| candle_core::Error::Msg(format!("{}: not written", spec.outputs[0].dir.display())))
    }
}

/// AdamW with warmup and cosine decay over `steps`.
pub(crate) fn optim(lr: f64, steps: usize) -> AdamWConfig {
    let warmup = (steps / 20).max(1);
    AdamWConfig { lr, warmup_steps: warmup, cosine_steps: Some(steps - warmup), ..Default::default() }
}

/// Rough check that a folder is a finished pretraining output.
pub fn is_complete(dir: &Path) -> bool {
    Layout::new(dir).is_complete()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attribute oracle learns from VAE round trips: alone, before the VAE exists, it is
    /// refused with the folder it waits for, and writes no oracle.
    #[test]
    fn attribute_oracle_alone_needs_the_vae() {
        let out = std::env::temp_dir().join(format!("vstar-judges-no-vae-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let p = Pretrain { out: out.clone(), seed: 1, recipe: Recipe::smoke(), log: &|_| {}, dev: Device::Cpu };
        let err = p.run_judges(&["attribute".to_string()]).unwrap_err().to_string();
        assert!(
            err.contains("--only attribute") && err.contains(&Layout::new(&out).vae().display().to_string()),
            "{err}"
        );
        assert!(!Layout::new(&out).oracle("attribute").exists());
        let _ = std::fs::remove_dir_all(&out);
    }

    /// Two linears under `a.` and `b.`: each lands in its own folder without its prefix, `a.`
    /// starts from the given weights, and a rerun reads both back instead of training. `b.`
    /// starts from the seed: the same in another folder, not with another seed.
    #[test]
    fn a_stage_splits_its_outputs_by_prefix_and_starts_from_init() {
        let out = std::env::temp_dir().join(format!("vstar-stage-outputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let start = Tensor::new(&[[0.5f32, -0.25], [1.0, 2.0]], &Device::Cpu).unwrap();
        let stage = |out: &Path, seed: u64| {
            let p = Pretrain { out: out.to_path_buf(), seed, recipe: Recipe::smoke(), log: &|_| {}, dev: Device::Cpu };
            let spec = StageSpec {
                name: "two",
                id: 99,
                outputs: vec![
                    Output { prefix: "a.", dir: out.join("a"), file: "w.safetensors", config: serde_json::json!({}) },
                    Output { prefix: "b.", dir: out.join("b"), file: "w.safetensors", config: serde_json::json!({}) },
                ],
                init: HashMap::from([("a.weight".to_string(), start.clone())]),
                steps: 2,
                // lr 0: the weights stay where they started.
                optim: AdamWConfig { lr: 0.0, ..Default::default() },
                ema: None,
            };
            p.stage(
                spec,
                |vb| {
                    let a = candle_nn::linear_no_bias(2, 2, vb.pp("a"))?;
                    let b = candle_nn::linear_no_bias(2, 2, vb.pp("b"))?;
                    Ok((a, b))
                },
                |(a, b), _| {
                    let x = Tensor::ones((1, 2), candle_core::DType::F32, &Device::Cpu)?;
                    let y = candle_nn::Module::forward(b, &candle_nn::Module::forward(a, &x)?)?;
                    StepGrads::whole(&y.sqr()?.mean_all()?, vec![])
                },
            )
            .unwrap()
        };
        let trained = stage(&out, 1);
        let a = store::load(&out.join("a"), "w.safetensors", &Device::Cpu).unwrap().unwrap();
        let b = store::load(&out.join("b"), "w.safetensors", &Device::Cpu).unwrap().unwrap();
        assert_eq!(a.keys().collect::<Vec<_>>(), ["weight"]);
        assert_eq!(b.keys().collect::<Vec<_>>(), ["weight"]);
        assert_eq!(a["weight"].to_vec2::<f32>().unwrap(), start.to_vec2::<f32>().unwrap());
        assert_ne!(b["weight"].to_vec2::<f32>().unwrap(), start.to_vec2::<f32>().unwrap());
        let w = |t: &HashMap<String, Tensor>| t["b.weight"].to_vec2::<f32>().unwrap();
        let again = stage(&out, 1);
        assert_eq!(trained["a.weight"].to_vec2::<f32>().unwrap(), again["a.weight"].to_vec2::<f32>().unwrap());
        assert_eq!(w(&trained), w(&again));
        assert_eq!(w(&trained), w(&stage(&out.join("same-seed"), 1)));
        assert_ne!(w(&trained), w(&stage(&out.join("other-seed"), 2)));
        let _ = std::fs::remove_dir_all(&out);
    }
}
