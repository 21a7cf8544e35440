//! `vstar bench`: UNet forward time per call at batch 2 for fixed configs (random weights,
//! fixed seed), the same configs tools/ref/bench_unet.py times in diffusers/PyTorch; and a
//! LoRA training step (rank 4 on every attention projection, AdamW) on the Toyland UNet at
//! batch 1 and 4, which tools/ref/bench_lora_step.py times in diffusers + peft.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use std::time::Instant;
use vstar_nn::config::UNetConfig;
use vstar_nn::models::UNet;
use vstar_nn::Ctx;

/// (name, config, latent side, context length) - keep in sync with tools/ref/bench_unet.py.
fn configs() -> Vec<(&'static str, serde_json::Value, usize, usize)> {
    vec![
        (
            "tiny (sd15-tiny: 32/64 ch, 16x16 latents)",
            serde_json::json!({
                "block_out_channels": [32, 64], "layers_per_block": 2,
                "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
                "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
                "cross_attention_dim": 32, "attention_head_dim": 8, "norm_num_groups": 32
            }),
            16,
            77,
        ),
        (
            "small (Toyland-sized: 64/128 ch, 8x8 latents, head dim 32)",
            serde_json::json!({
                "block_out_channels": [64, 128], "layers_per_block": 1,
                "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
                "cross_attention_dim": 128, "attention_head_dim": [2, 4], "norm_num_groups": 32
            }),
            8,
            77,
        ),
    ]
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

/// Seconds per LoRA training step (forward, MSE loss, backward, AdamW) at `batch`.
fn lora_step(iters: usize, batch: usize) -> Result<f64> {
    let dev = Device::Cpu;
    let cfg: UNetConfig = serde_json::from_value(vstar_toyland::pretrain::unet_config())?;
    let (unet, _) = frozen_unet(&cfg, &dev)?;
    let targets = vstar_train::params::lora::DEFAULT_TARGETS.map(String::from).to_vec();
    let config = vstar_train::params::lora::LoraConfig { rank: 4, alpha: 4.0, targets, text_encoder: false };
    let lora = vstar_train::params::lora::LoraSet::attach_to(&unet.slots, None, config, 0, &dev)?;
    let vars = lora.vars().into_iter().map(|(_, v, m)| (v, m)).collect();
    let mut opt =
        vstar_train::optim::AdamW::new(vars, vstar_train::optim::AdamWConfig { lr: 1e-4, ..Default::default() })?;
    let side = cfg.sample_size.unwrap_or(8);
    let x = Tensor::randn(0f32, 1.0, (batch, 4, side, side), &dev)?;
    let target = Tensor::randn(0f32, 1.0, (batch, 4, side, side), &dev)?;
    let c = Tensor::randn(
        0f32,
        1.0,
        (batch, vstar_toyland::pretrain::CONTEXT, cfg.blocks()?[0].cross_attention_dim),
        &dev,
    )?;
    let t = Tensor::new(&vec![500f32; batch][..], &dev)?;
    let mut step = || -> Result<()> {
        let loss = (unet.forward(&x, &t, &c, None, &mut Ctx::default())? - &target)?.sqr()?.mean_all()?;
        opt.step(&loss.backward()?)?;
        Ok(())
    };
    for _ in 0..2 {
        step()?;
    }
    let start = Instant::now();
    for _ in 0..iters {
        step()?;
    }
    Ok(start.elapsed().as_secs_f64() / iters as f64)
}

pub fn run(iters: usize) -> Result<()> {
    let dev = Device::Cpu;
    println!(
        "UNet forward, batch 2, f32, {} thread(s), mean of {iters} calls after 2 warm-up calls",
        candle_core::utils::get_num_threads()
    );
    for (name, cfg, side, ctx_len) in configs() {
        let cfg: UNetConfig = serde_json::from_value(cfg)?;
        let (unet, params) = frozen_unet(&cfg, &dev)?;
        let x = Tensor::randn(0f32, 1.0, (2, 4, side, side), &dev)?;
        let c = Tensor::randn(0f32, 1.0, (2, ctx_len, cfg.blocks()?[0].cross_attention_dim), &dev)?;
        let t = Tensor::new(&[500f32], &dev)?;
        for _ in 0..2 {
            unet.forward(&x, &t, &c, None, &mut Ctx::default())?;
        }
        let start = Instant::now();
        for _ in 0..iters {
            unet.forward(&x, &t, &c, None, &mut Ctx::default())?;
        }
        let ms = start.elapsed().as_secs_f64() * 1000.0 / iters as f64;
        println!("  {name}: {:.2} M params, {ms:.1} ms per call", params as f64 / 1e6);
    }
    println!("LoRA training step on the Toyland UNet (rank 4, attention q/k/v/out, AdamW), mean of {iters} after 2");
    for batch in [1, 4] {
        println!("  batch {batch}: {:.1} ms per step", lora_step(iters, batch)? * 1000.0);
    }
    Ok(())
}
