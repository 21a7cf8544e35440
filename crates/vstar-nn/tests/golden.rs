//! Golden tests against diffusers/transformers: tiny random-weight SD-1.5-, SD-2.1- and
//! SDXL-like pipelines made by tools/ref/make_pipelines.py, with the reference outputs in
//! each folder's golden.safetensors. Single forwards must match to 1e-4 max abs error.

use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;
use vstar_nn::model::{Family, Model};
use vstar_nn::Ctx;

const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name)
}

fn golden(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name).join("golden.safetensors"), &Device::Cpu).unwrap()
}

fn max_err(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let b = b.to_dtype(a.dtype()).unwrap();
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn check(what: &str, pipeline: &str, ours: &Tensor, theirs: &Tensor) {
    let e = max_err(ours, theirs);
    println!("{pipeline} {what}: max abs error {e:.3e}");
    assert!(e < TOL, "{pipeline} {what}: max abs error {e} >= {TOL}");
}

fn run(pipeline: &str) {
    let dev = Device::Cpu;
    let g = golden(pipeline);
    let model = Model::load(&fixture(pipeline), &dev).unwrap();
    assert!(model.unused.is_empty(), "unused weights: {:?}", model.unused);

    // Tokenizer ids.
    let prompt = "a photo of a dog in the snow";
    let ids = model.token_ids(&[prompt]).unwrap();
    assert_eq!(
        ids[0].to_dtype(candle_core::DType::I64).unwrap().to_vec2::<i64>().unwrap(),
        g["prompt_ids"].to_vec2::<i64>().unwrap()
    );
    if model.family == Family::Sdxl {
        assert_eq!(
            ids[1].to_dtype(candle_core::DType::I64).unwrap().to_vec2::<i64>().unwrap(),
            g["prompt_ids_2"].to_vec2::<i64>().unwrap()
        );
    }

    // Text conditioning, as the pipeline's encode_prompt returns it.
    let size = (32, 32);
    let cond = model.encode(&[prompt], size, None).unwrap();
    check("text_emb", pipeline, &cond.context, &g["text_emb"]);
    let neg = model.encode(&[""], size, None).unwrap();
    if model.family == Family::Sdxl {
        check("pooled", pipeline, &cond.added.as_ref().unwrap().text_embeds, &g["pooled"]);
        check("add_time_ids", pipeline, &cond.added.as_ref().unwrap().time_ids, &g["add_time_ids"]);
    } else {
        check("text_emb_neg", pipeline, &neg.context, &g["text_emb_neg"]);
        let out = model.text[0].encoder.forward(&ids[0], None).unwrap();
        check("text_penultimate_hidden", pipeline, &out.penultimate, &g["text_penultimate_hidden"]);
        check("text_pooled", pipeline, &out.pooled, &g["text_pooled"]);
    }

    // One UNet forward on [negative, prompt] rows, with the conditioning the reference used.
    let ctx = Tensor::cat(&[&g["text_emb_neg"], &g["text_emb"]], 0).unwrap();
    let added = (model.family == Family::Sdxl).then(|| vstar_nn::models::AddedCond {
        text_embeds: Tensor::cat(&[&g["pooled_neg"], &g["pooled"]], 0).unwrap(),
        time_ids: g["add_time_ids"].repeat((2, 1)).unwrap(),
    });
    let t = g["unet_t"].to_dtype(candle_core::DType::F32).unwrap();
    let eps = model.unet.forward(&g["unet_in"], &t, &ctx, added.as_ref(), &mut Ctx::default()).unwrap();
    check("unet_out", pipeline, &eps, &g["unet_out"]);

    // VAE encode / decode.
    let dist = model.vae.encode(&g["vae_image_in"]).unwrap();
    check("vae_mean", pipeline, &dist.mean, &g["vae_mean"]);
    check("vae_logvar", pipeline, &dist.logvar, &g["vae_logvar"]);
    let dec = model.vae.decode(&g["vae_latent_in"]).unwrap();
    check("vae_decoded", pipeline, &dec, &g["vae_decoded"]);
}

#[test]
fn sd15_tiny_matches_diffusers() {
    run("sd15-tiny");
}

#[test]
fn sd21_tiny_matches_diffusers() {
    run("sd21-tiny");
}

#[test]
fn sdxl_tiny_matches_diffusers() {
    run("sdxl-tiny");
}
