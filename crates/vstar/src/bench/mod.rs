//! `vstar bench`: for the Toyland UNet and for one SD-1.5-shaped level, forward and LoRA
//! training-step time at batch 1, 2, 4 and 8 (random weights, fixed seed), FLOPs per forward as
//! the layers count them, achieved GFLOP/s as a share of the GEMM peak measured in the same
//! run, peak memory; and Toyland sampling (30 DDIM steps with CFG) on the shipped weights.
//! `--reference PYTHON` runs tools/ref/bench_torch.py on the same spec in diffusers/PyTorch
//! and prints the ratios, so both sides are measured on one machine in one run.

pub mod machine;
mod reference;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use std::collections::BTreeMap;
use std::time::Instant;
use vstar_diffusion::guidance::{Cfg, PromptKind};
use vstar_diffusion::pipeline;
use vstar_nn::config::UNetConfig;
use vstar_nn::models::UNet;
use vstar_nn::Ctx;
use vstar_train::step_grads::{default_parts, share, StepGrads};

/// Issue 8 asks for batch 1, 2 and 8; the training issue for the LoRA step at batch 4.
pub const BATCHES: [usize; 4] = [1, 2, 4, 8];
const SAMPLING_STEPS: usize = 30;
const GUIDANCE: f64 = 7.5;

/// A benchmarked UNet: name, diffusers config, latent side, context length, and how many
/// timed calls each measurement averages (the reference script reads the same numbers).
#[derive(serde::Serialize)]
pub struct Subject {
    name: &'static str,
    config: serde_json::Value,
    side: usize,
    context: usize,
    reps: usize,
}

/// The benchmarked UNets, or only the one named `only`.
fn subjects(iters: usize, only: Option<&str>) -> Result<Vec<Subject>> {
    let all = vec![
        Subject {
            name: "toyland",
            config: vstar_toyland::pretrain::unet_config(),
            side: 8,
            context: vstar_toyland::pretrain::CONTEXT,
            reps: iters,
        },
        Subject {
            // SD 1.5's outermost level (320 channels, 2 layers, 8 heads, 768-wide context)
            // on 32x32 latents (256 px), with its mid block.
            name: "sd15-level",
            config: serde_json::json!({
                "_class_name": "UNet2DConditionModel",
                "block_out_channels": [320], "layers_per_block": 2,
                "down_block_types": ["CrossAttnDownBlock2D"], "up_block_types": ["CrossAttnUpBlock2D"],
                "cross_attention_dim": 768, "attention_head_dim": 8, "norm_num_groups": 32,
                "sample_size": 32
            }),
            side: 32,
            context: 77,
            // ~100x the Toyland UNet's work: fewer repeats keep the run short.
            reps: (iters / 5).max(1),
        },
    ];
    let names: Vec<_> = all.iter().map(|s| s.name).collect();
    let picked: Vec<_> = all.into_iter().filter(|s| only.is_none_or(|o| o == s.name)).collect();
    if picked.is_empty() {
        anyhow::bail!("--only {}: no such benchmark; use one of {}", only.unwrap_or_default(), names.join(", "));
    }
    Ok(picked)
}

/// Random weights for `cfg`, rebuilt from plain tensors (no Vars), as a loaded model is.
fn frozen_unet(cfg: &UNetConfig, dev: &Device) -> Result<(UNet, usize)> {
    let vm = VarMap::new();
    UNet::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, dev))?;
    let params: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
    let frozen: std::collections::HashMap<String, Tensor> =
        vm.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect();
    Ok((UNet::new(cfg, VarBuilder::from_tensors(frozen, DType::F32, dev))?, params))
}

/// Mean seconds of `f` over `iters` calls after one warm-up, and the peak memory meanwhile.
fn time(iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
    f()?;
    machine::reset_peak_memory();
    let start = Instant::now();
    for _ in 0..iters {
        f()?;
    }
    Ok((start.elapsed().as_secs_f64() / iters as f64, machine::peak_memory_mib()))
}

/// One timed figure, keyed as the reference script keys it.
pub struct Figure {
    pub key: String,
    pub seconds: f64,
}

fn inputs(s: &Subject, cfg: &UNetConfig, batch: usize, dev: &Device) -> Result<(Tensor, Tensor, Tensor)> {
    let x = Tensor::randn(0f32, 1.0, (batch, 4, s.side, s.side), dev)?;
    let c = Tensor::randn(0f32, 1.0, (batch, s.context, cfg.blocks()?[0].cross_attention_dim), dev)?;
    let t = Tensor::new(&vec![500f32; batch][..], dev)?;
    Ok((x, c, t))
}

/// A second copy of the UNet with LoRA (rank 4 on every attention projection) and AdamW, for
/// training steps, split over threads by batch rows as `vstar train` splits them; the forward
/// timings use the plain copy.
struct LoraUnet {
    unet: UNet,
    opt: vstar_train::optim::AdamW,
}

impl LoraUnet {
    fn new(cfg: &UNetConfig, dev: &Device) -> Result<Self> {
        use vstar_train::params::lora::{LoraConfig, LoraSet, DEFAULT_TARGETS};
        let (unet, _) = frozen_unet(cfg, dev)?;
        let targets = DEFAULT_TARGETS.map(String::from).to_vec();
        let config = LoraConfig { rank: 4, alpha: 4.0, targets, text_encoder: false };
        let lora = LoraSet::attach_to(&unet.slots, None, config, 0, dev)?;
        let vars = lora.vars().into_iter().map(|(_, v, m)| (v, m)).collect();
        let opt =
            vstar_train::optim::AdamW::new(vars, vstar_train::optim::AdamWConfig { lr: 1e-4, ..Default::default() })?;
        Ok(Self { unet, opt })
    }

    /// Seconds per training step (MSE to a random target) at these inputs.
    fn step_time(&mut self, (x, c, t): &(Tensor, Tensor, Tensor), iters: usize) -> Result<(f64, f64)> {
        let target = Tensor::randn(0f32, 1.0, x.shape(), x.device())?;
        let b = x.dim(0)?;
        time(iters, || {
            // As `vstar train` runs it: one group of rows per thread.
            let step = StepGrads::by_rows(b, default_parts(), |r| {
                let rows = |x: &Tensor| x.narrow(0, r.start, r.len());
                let pred = self.unet.forward(&rows(x)?, &rows(t)?, &rows(c)?, None, &mut Ctx::default())?;
                Ok((((pred - rows(&target)?)?.sqr()?.mean_all()? * share(&r, b))?, vec![]))
            })?;
            self.opt.step(&step.grads)?;
            Ok(())
        })
    }
}

pub fn run(iters: usize, reference: Option<&str>, only: Option<&str>, rounds: usize) -> Result<()> {
    if rounds == 0 {
        anyhow::bail!("--rounds 0: give at least 1");
    }
    machine::start_counting();
    let root = vstar_nn::locate::resolve_model(None)?;
    let (mut ours, mut theirs) = (vec![], vec![]);
    for r in 1..=rounds {
        if rounds > 1 {
            println!("\n## Round {r} of {rounds}");
        }
        if let Some(python) = reference {
            theirs.push(reference::measure(python, &subjects(iters, only)?, &root)?);
        }
        ours.push(measure(iters, only, &root)?);
    }
    if !theirs.is_empty() {
        reference::print(&ours, &theirs);
    }
    Ok(())
}

/// vstar's side: prints every figure and returns the timed ones.
fn measure(iters: usize, only: Option<&str>, root: &std::path::Path) -> Result<Vec<Figure>> {
    let dev = Device::Cpu;
    let threads = candle_core::utils::get_num_threads();
    let (peak, n) = machine::gemm_peak_gflops()?;
    println!("f32, {threads} thread(s); GEMM peak {peak:.1} GFLOP/s (best square product, n = {n})");
    let mut figures = vec![];
    let mem = |m: f64| format!(", peak heap {m:.0} MiB");
    for s in subjects(iters, only)? {
        let cfg: UNetConfig = serde_json::from_value(s.config.clone())?;
        let (unet, params) = frozen_unet(&cfg, &dev)?;
        let mut lora = LoraUnet::new(&cfg, &dev)?;
        let reps = s.reps;
        println!(
            "{} UNet ({:.2} M params, {}x{} latents, {} context tokens), mean of {reps}:",
            s.name,
            params as f64 / 1e6,
            s.side,
            s.side,
            s.context
        );
        for batch in BATCHES {
            let input = inputs(&s, &cfg, batch, &dev)?;
            let (x, c, t) = &input;
            let (_, flops) = vstar_nn::flops::count(|| unet.forward(x, t, c, None, &mut Ctx::default()));
            let (fwd, fwd_mem) = time(reps, || Ok(unet.forward(x, t, c, None, &mut Ctx::default()).map(|_| ())?))?;
            let (step, step_mem) = lora.step_time(&input, reps)?;
            let gflops = flops as f64 / fwd / 1e9;
            println!(
                "  batch {batch}: forward {:.1} ms ({:.3} GFLOP, {gflops:.1} GFLOP/s = {:.1}% of peak{}); LoRA step {:.1} ms{}",
                fwd * 1e3,
                flops as f64 / 1e9,
                100.0 * gflops / peak,
                mem(fwd_mem),
                step * 1e3,
                mem(step_mem)
            );
            figures.push(Figure { key: format!("forward/{}/{batch}", s.name), seconds: fwd });
            figures.push(Figure { key: format!("lora_step/{}/{batch}", s.name), seconds: step });
        }
    }
    let model = vstar_nn::model::Model::load(root, &dev)?;
    let mut by_kind = BTreeMap::new();
    by_kind.insert(PromptKind::Concept, pipeline::encode_prompt(&model, reference::SAMPLING_PROMPT)?);
    let cfg = Cfg { scale: GUIDANCE };
    let mut seed = 0;
    let (sample, sample_mem) = time(3, || {
        seed += 1;
        Ok(pipeline::txt2img(&model, &cfg, by_kind.clone(), 1, seed, SAMPLING_STEPS).map(|_| ())?)
    })?;
    println!(
        "Toyland sampling, shipped weights, one image, {SAMPLING_STEPS} DDIM steps, CFG {GUIDANCE}: {:.3} s (mean of 3){}",
        sample,
        mem(sample_mem)
    );
    figures.push(Figure { key: "sample/toyland".into(), seconds: sample });
    Ok(figures)
}
