//! Benchmark: one AdamW training step of the Toyland-sized UNet (8x8x4 latents, (64,128)
//! channels, cross-attention at 4x4 only) at batch 64. PyTorch on this machine: ~0.54 s/step
//! (TOYLAND.md).
//!     cargo run --release -p vstar-train --example unet_step
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use vstar_nn::config::UNetConfig;
use vstar_nn::models::UNet;
use vstar_nn::Ctx;
use vstar_train::optim::{AdamW, AdamWConfig};
fn main() {
    vstar_nn::alloc::keep_freed_memory();
    let dev = Device::Cpu;
    let cfg: UNetConfig = serde_json::from_value(serde_json::json!({
        "block_out_channels": [64, 128], "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "cross_attention_dim": 128, "attention_head_dim": [2, 4], "norm_num_groups": 32
    }))
    .unwrap();
    let vm = VarMap::new();
    let unet = UNet::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
    let mut opt = AdamW::new(vm.all_vars().into_iter().map(|v| (v, 1.0)).collect(), AdamWConfig::default()).unwrap();
    let b = 64;
    let x = Tensor::randn(0f32, 1.0, (b, 4, 8, 8), &dev).unwrap();
    let c = Tensor::randn(0f32, 1.0, (b, 24, 128), &dev).unwrap();
    let t = Tensor::rand(0f32, 1000.0, b, &dev).unwrap();
    for i in 0..3 {
        let t0 = std::time::Instant::now();
        let y = unet.forward(&x, &t, &c, None, &mut Ctx::default()).unwrap();
        let t1 = t0.elapsed();
        let g = (y - &x).unwrap().sqr().unwrap().mean_all().unwrap().backward().unwrap();
        let t2 = t0.elapsed();
        opt.step(&g).unwrap();
        println!(
            "step {i}: fwd {:.3} s, +bwd {:.3} s, total {:.3} s",
            t1.as_secs_f64(),
            t2.as_secs_f64(),
            t0.elapsed().as_secs_f64()
        );
    }
}
