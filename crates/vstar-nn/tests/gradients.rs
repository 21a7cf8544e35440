//! Gradient coverage: backward from a denoising loss through a tiny UNet and text encoder
//! reaches every trainable tensor (LoRA A/B on every adapted layer, a learned token row) with
//! a non-zero gradient. Fused candle kernels without backward would leave some at zero/None.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use std::collections::HashMap;
use vstar_nn::config::{ClipTextConfig, UNetConfig};
use vstar_nn::layers::{Delta, Slots};
use vstar_nn::models::{ClipTextModel, UNet};
use vstar_nn::Ctx;

fn tiny_unet_config(linear: bool) -> UNetConfig {
    serde_json::from_value(serde_json::json!({
        "block_out_channels": [32, 64],
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "cross_attention_dim": 32,
        "attention_head_dim": 2,
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "use_linear_projection": linear
    }))
    .unwrap()
}

fn tiny_text_config() -> ClipTextConfig {
    serde_json::from_value(serde_json::json!({
        "vocab_size": 50, "hidden_size": 32, "intermediate_size": 40,
        "num_hidden_layers": 2, "num_attention_heads": 4, "eos_token_id": 49
    }))
    .unwrap()
}

/// LoRA vars on every adapted layer of `slots`, with B non-zero so A also gets a gradient.
fn attach_lora(slots: &Slots, rank: usize) -> Vec<(String, Var, Var)> {
    slots
        .names()
        .into_iter()
        .map(|(name, i, o)| {
            let down = Var::randn(0f32, 0.1, (rank, i), &Device::Cpu).unwrap();
            let up = Var::randn(0f32, 0.1, (o, rank), &Device::Cpu).unwrap();
            slots
                .push(&name, Delta::Lora { down: down.as_tensor().clone(), up: up.as_tensor().clone(), scale: 1.0 })
                .unwrap();
            (name, down, up)
        })
        .collect()
}

fn check_coverage(linear: bool) {
    let dev = Device::Cpu;
    // Frozen base weights: random, made once as Vars, then rebuilt from plain detached
    // tensors, as when loaded from a file.
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
    UNet::new(&tiny_unet_config(linear), vb.pp("unet")).unwrap();
    ClipTextModel::new(&tiny_text_config(), vb.pp("text")).unwrap();
    let frozen: HashMap<String, Tensor> =
        vm.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect();
    let vb = VarBuilder::from_tensors(frozen, DType::F32, &dev);
    let unet = UNet::new(&tiny_unet_config(linear), vb.pp("unet")).unwrap();
    let text = ClipTextModel::new(&tiny_text_config(), vb.pp("text")).unwrap();
    let mut vars = attach_lora(&unet.slots, 2);
    vars.extend(attach_lora(&text.slots, 2));
    let row = Var::randn(0f32, 0.02, (1, 32), &dev).unwrap();
    text.set_extra_rows(Some(row.as_tensor().clone())).unwrap();

    let ids = Tensor::new(&[[48u32, 5, 50, 7, 49, 49]], &dev).unwrap(); // 50 = the learned token
    let ctxt = text.forward(&ids, None).unwrap().last_hidden;
    let x = Tensor::randn(0f32, 1.0, (1, 4, 8, 8), &dev).unwrap();
    let t = Tensor::new(&[500f32], &dev).unwrap();
    let eps = unet.forward(&x, &t, &ctxt, None, &mut Ctx::default()).unwrap();
    let loss = eps.sqr().unwrap().mean_all().unwrap();
    let grads = loss.backward().unwrap();

    let mut missing = vec![];
    for (name, down, up) in &vars {
        for (part, v) in [("down", down), ("up", up)] {
            let ok = grads
                .get(v.as_tensor())
                .map(|g| g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0)
                .unwrap_or(false);
            if !ok {
                missing.push(format!("{name}.{part}"));
            }
        }
    }
    let g = grads.get(row.as_tensor()).expect("learned token row got no gradient");
    assert!(
        g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0,
        "learned token row has a zero gradient"
    );
    assert!(vars.len() > 20, "expected many adapted layers, found {}", vars.len());
    assert!(missing.is_empty(), "no gradient reached: {missing:?}");
}

#[test]
fn every_lora_and_token_row_gets_a_gradient_conv_projection() {
    check_coverage(false);
}

#[test]
fn every_lora_and_token_row_gets_a_gradient_linear_projection() {
    check_coverage(true);
}

#[test]
fn fused_kernels_would_break_gradients() {
    // The guard the model relies on: candle's fused softmax has no backward.
    let v = Var::randn(0f32, 1.0, (2, 3), &Device::Cpu).unwrap();
    let fused = candle_nn::ops::softmax_last_dim(v.as_tensor()).unwrap().sqr().unwrap().sum_all().unwrap();
    assert!(fused.backward().is_err() || fused.backward().unwrap().get(v.as_tensor()).is_none());
    let ours = vstar_nn::layers::ops::softmax_last(v.as_tensor()).unwrap().sqr().unwrap().sum_all().unwrap();
    assert!(ours.backward().unwrap().get(v.as_tensor()).is_some());
}
