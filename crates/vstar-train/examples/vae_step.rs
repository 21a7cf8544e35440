//! Benchmark: one AdamW training step of a Toyland-sized AutoencoderKL at batch 32 (MSE + KL),
//! the figure Toyland pretraining is planned from. PyTorch on this machine: ~0.6 s/step for
//! the (32,64,64) VAE at 32 px (TOYLAND.md).
//!     cargo run --release -p vstar-train --example vae_step
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use vstar_nn::config::VaeConfig;
use vstar_nn::models::Vae;
use vstar_train::optim::{AdamW, AdamWConfig};
fn main() {
    vstar_nn::alloc::keep_freed_memory();
    let dev = Device::Cpu;
    for (side, chans) in [(32usize, "[32, 64, 64]")] {
        let cfg: VaeConfig = serde_json::from_str(&format!(
            r#"{{"block_out_channels": {chans}, "latent_channels": 4, "norm_num_groups": 32, "layers_per_block": 1}}"#
        ))
        .unwrap();
        let vm = VarMap::new();
        let vae = Vae::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        let mut opt =
            AdamW::new(vm.all_vars().into_iter().map(|v| (v, 1.0)).collect(), AdamWConfig::default()).unwrap();
        let x = Tensor::randn(0f32, 0.5, (32, 3, side, side), &dev).unwrap();
        let t0 = std::time::Instant::now();
        for _ in 0..3 {
            let d = vae.encode(&x).unwrap();
            let z = d.sample(&Tensor::randn(0f32, 1.0, d.mean.shape(), &dev).unwrap()).unwrap();
            let rec = vae.decode(&z).unwrap();
            let loss =
                ((rec - &x).unwrap().sqr().unwrap().mean_all().unwrap() + (d.kl().unwrap() * 1e-6).unwrap()).unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        println!("VAE {chans} at {side}px batch 32: {:.2} s/step", t0.elapsed().as_secs_f64() / 3.0);
    }
}
