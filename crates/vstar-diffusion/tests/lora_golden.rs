//! LoRA files written by diffusers/PEFT and in kohya's layout (tools/ref/make_lora.py) load
//! into vstar and render the image diffusers renders with `load_lora_weights`, from the same
//! noise (10 DDIM steps, CFG 7.5).

use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::path::PathBuf;
use vstar_diffusion::guidance::{Cfg, PromptKind};
use vstar_diffusion::noise::NoiseSource;
use vstar_diffusion::sampler::{self, Prompts, Start};
use vstar_diffusion::scheduler::{self, SchedulerConfig, SchedulerKind};
use vstar_nn::adapters::lora::load_lora;
use vstar_nn::model::Model;

fn fixture(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(p)
}

fn render(model: &Model, noise: &Tensor) -> Tensor {
    let size = (32, 32);
    let mut by_kind = BTreeMap::new();
    by_kind.insert(PromptKind::Null, model.encode_negative(Some(""), 1, size).unwrap());
    by_kind.insert(PromptKind::Concept, model.encode(&["a photo of a dog in the snow"], size, None).unwrap());
    let cfg: SchedulerConfig = serde_json::from_value(model.scheduler_config.clone()).unwrap();
    let mut sched = scheduler::build(SchedulerKind::Ddim, &cfg, 10).unwrap();
    let out = sampler::sample(
        model,
        sched.as_mut(),
        &Cfg { scale: 7.5 },
        &Prompts { by_kind },
        Start::Noise(noise.clone()),
        &mut NoiseSource::new(0),
        |_, _| {},
    )
    .unwrap();
    sampler::decode(model, &out.latents).unwrap().permute((0, 2, 3, 1)).unwrap()
}

fn mean_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn diffusers_and_kohya_loras_render_as_in_diffusers() {
    let dev = Device::Cpu;
    let g = candle_core::safetensors::load(fixture("lora/golden.safetensors"), &dev).unwrap();
    let noise = &g["init_noise"];
    for (name, file) in
        [("diffusers", "lora/diffusers/pytorch_lora_weights.safetensors"), ("kohya", "lora/kohya.safetensors")]
    {
        let model = Model::load(&fixture("sd15-tiny"), &dev).unwrap();
        let n = load_lora(&fixture(file), &model, 1.0).unwrap();
        // 6 transformer blocks x 2 attentions x (q, k, v, out).
        assert_eq!(n, 48, "{name}: adapted layers");
        let img = render(&model, noise);
        let err = mean_abs(&img, &g[&format!("image_{name}")]);
        let moved = mean_abs(&img, &g["image_base"]);
        println!("{name} LoRA: image mean abs error vs diffusers {err:.3e} (LoRA moves the image by {moved:.3e})");
        assert!(err < 1.0 / 255.0, "{name}: {err}");
        assert!(moved > 10.0 * err, "{name}: the LoRA should visibly change the image");
    }
}

#[test]
fn a_lora_for_another_model_is_refused_by_name() {
    let model = Model::load(&fixture("sdxl-tiny"), &Device::Cpu).unwrap();
    let e = load_lora(&fixture("lora/kohya.safetensors"), &model, 1.0).unwrap_err().to_string();
    assert!(e.contains("kohya.safetensors") && (e.contains("another base model")), "{e}");
}
