//! The training path against PyTorch: parameter gradients of the tiny SD-1.5-like VAE and
//! UNet for a fixed batch (tools/ref/train_grads.py) - custom conv/GroupNorm/bias backward and
//! the differentiable softmax/layer-norm paths, every parameter compared. Batch 2: this test
//! found the VAE attention giving wrong rows >= 1 (a transposed batched matmul in candle).

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use std::path::PathBuf;
use vstar_nn::config::{UNetConfig, VaeConfig};
use vstar_nn::models::{UNet, Vae};
use vstar_nn::Ctx;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// Fresh Vars (the caller loads the fixture's weights into them after building).
fn vars() -> (VarMap, VarBuilder<'static>) {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    (vm, vb)
}

fn compare(vm: &VarMap, grads: &candle_core::backprop::GradStore, want: &std::collections::HashMap<String, Tensor>) {
    let data = vm.data().lock().unwrap();
    // Gradients that are zero in exact arithmetic (a conv bias feeding a GroupNorm with one
    // channel per group cancels) are float noise in both frameworks: errors are measured
    // against max(own scale, 1e-3 x the largest gradient of the model).
    let global = want
        .iter()
        .filter(|(k, _)| k.starts_with("grad."))
        .map(|(_, v)| v.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap())
        .fold(0f32, f32::max);
    let mut worst = (0f32, String::new());
    let mut n = 0;
    for (name, var) in data.iter() {
        let w = want.get(&format!("grad.{name}")).unwrap_or_else(|| panic!("PyTorch has no gradient for {name}"));
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient reached {name}"));
        let scale = w.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-3 * global);
        let e = (g - w).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() / scale;
        if e > worst.0 {
            worst = (e, name.clone());
        }
        n += 1;
    }
    println!("{n} parameters, worst relative gradient error {:.2e} ({})", worst.0, worst.1);
    assert!(worst.0 < 1e-3, "gradient of {} off by {:.2e} (relative to its max)", worst.1, worst.0);
}

#[test]
fn vae_gradients_match_pytorch() {
    let dir = fixtures().join("sd15-tiny/vae");
    let cfg = VaeConfig::from_file(&dir.join("config.json")).unwrap();
    let (mut vm, vb) = vars();
    let vae = Vae::new(&cfg, vb).unwrap();
    vm.load(dir.join("diffusion_pytorch_model.safetensors")).unwrap();
    let want = candle_core::safetensors::load(fixtures().join("train-grads/vae.safetensors"), &Device::Cpu).unwrap();
    let x = &want["x"];
    let rec = vae.decode(&vae.encode(x).unwrap().mean).unwrap();
    let loss = (rec - x).unwrap().sqr().unwrap().mean_all().unwrap();
    let l = loss.to_scalar::<f32>().unwrap();
    let lw = want["loss"].to_vec1::<f32>().unwrap()[0];
    assert!((l - lw).abs() < 1e-5 * lw.abs().max(1.0), "loss {l} vs {lw}");
    compare(&vm, &loss.backward().unwrap(), &want);
}

/// A denoising loss through the UNet in `dir` against PyTorch's gradients in `grads`.
fn check_unet(dir: PathBuf, grads: &str) {
    let cfg = UNetConfig::from_file(&dir.join("config.json")).unwrap();
    let (mut vm, vb) = vars();
    let unet = UNet::new(&cfg, vb).unwrap();
    vm.load(dir.join("diffusion_pytorch_model.safetensors")).unwrap();
    let want = candle_core::safetensors::load(fixtures().join("train-grads").join(grads), &Device::Cpu).unwrap();
    let pred = unet.forward(&want["z"], &want["t"], &want["ctx"], None, &mut Ctx::default()).unwrap();
    let loss = (pred - &want["target"]).unwrap().sqr().unwrap().mean_all().unwrap();
    let l = loss.to_scalar::<f32>().unwrap();
    let lw = want["loss"].to_vec1::<f32>().unwrap()[0];
    assert!((l - lw).abs() < 1e-5 * lw.abs().max(1.0), "loss {l} vs {lw}");
    compare(&vm, &loss.backward().unwrap(), &want);
}

#[test]
fn unet_gradients_match_pytorch() {
    check_unet(fixtures().join("sd15-tiny/unet"), "unet.safetensors");
}

/// `addition_embed_type: "text"`: the pooled text joins the time embedding.
#[test]
fn unet_with_text_addition_embedding_matches_pytorch() {
    check_unet(fixtures().join("train-grads/unet-text-embed"), "unet-text-embed.safetensors");
}
