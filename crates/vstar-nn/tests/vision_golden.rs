//! Golden tests of the image encoders against transformers: tiny random-weight CLIPModel,
//! CLIPVisionModel, CLIPVisionModelWithProjection, ViTModel (DINO layout) and Dinov2Model
//! made by tools/ref/make_vision_fixtures.py, with transformers' outputs on the same pixel
//! tensors in each folder's golden.safetensors (max abs error <= 1e-4); and bad input.

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use vstar_nn::models::vision::{unit_rows, ClipText, VisionConfig, VisionModel, VisionOutput};
use vstar_nn::weights::load_component;

const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vision").join(name)
}

/// The model folder as save_pretrained wrote it.
fn model_dir(name: &str) -> PathBuf {
    fixture(name).join("model")
}

fn golden(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name).join("golden.safetensors"), &Device::Cpu).unwrap()
}

struct Loaded {
    vision: VisionModel,
    text: Option<ClipText>,
    unused: Vec<String>,
}

fn load(dir: &Path) -> Result<Loaded, String> {
    let cfg = VisionConfig::from_file(&dir.join("config.json")).map_err(|e| e.to_string())?;
    let (vb, src) = load_component(dir, DType::F32, &Device::Cpu).map_err(|e| e.to_string())?;
    let vision = VisionModel::new(&cfg, vb.clone()).map_err(|e| e.to_string())?;
    let text = cfg.text.as_ref().map(|t| ClipText::new(t, vb)).transpose().map_err(|e| e.to_string())?;
    Ok(Loaded { vision, text, unused: src.unused() })
}

fn max_err(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn check(fixture: &str, what: &str, ours: &Tensor, theirs: &Tensor) {
    let e = max_err(ours, theirs);
    println!("{fixture} {what}: max abs error {e:.3e}");
    assert!(e <= TOL, "{fixture} {what}: max abs error {e} > {TOL}");
}

fn forward(m: &Loaded, g: &HashMap<String, Tensor>, key: &str) -> VisionOutput {
    m.vision.forward(&g[key]).unwrap()
}

#[test]
fn clip_model_matches_transformers() {
    let (m, g) = (load(&model_dir("clip")).unwrap(), golden("clip"));
    assert!(m.unused.is_empty(), "unused: {:?}", m.unused);
    let out = forward(&m, &g, "pixel_values");
    check("clip", "vision_last_hidden_state", &out.last_hidden, &g["vision_last_hidden_state"]);
    check("clip", "vision_pooled", &out.pooled, &g["vision_pooled"]);
    let image = out.image_embeds.unwrap();
    check("clip", "image_embeds", &unit_rows(&image).unwrap(), &g["image_embeds"]);
    let text = m.text.unwrap();
    let ids = g["input_ids"].to_dtype(DType::U32).unwrap();
    check("clip", "text_embeds", &text.embed(&ids).unwrap(), &g["text_embeds"]);
    let pooled_text = text.encoder.forward(&ids, None).unwrap().pooled;
    check("clip", "logits_per_image", &text.logits_per_image(&image, &pooled_text).unwrap(), &g["logits_per_image"]);
}

#[test]
fn clip_vision_models_match_transformers() {
    // No `vision_model.` prefix (transformers 5's CLIPVisionModel), gelu, eps 1e-6.
    let (m, g) = (load(&model_dir("clip-vision")).unwrap(), golden("clip-vision"));
    assert!(m.unused.is_empty(), "unused: {:?}", m.unused);
    let out = forward(&m, &g, "pixel_values");
    assert!(out.image_embeds.is_none());
    check("clip-vision", "last_hidden_state", &out.last_hidden, &g["last_hidden_state"]);
    check("clip-vision", "pooled", &out.pooled, &g["pooled"]);

    let (m, g) = (load(&model_dir("clip-vision-proj")).unwrap(), golden("clip-vision-proj"));
    assert!(m.unused.is_empty(), "unused: {:?}", m.unused);
    let out = forward(&m, &g, "pixel_values");
    check("clip-vision-proj", "last_hidden_state", &out.last_hidden, &g["last_hidden_state"]);
    check("clip-vision-proj", "image_embeds", out.image_embeds.as_ref().unwrap(), &g["image_embeds"]);
}

#[test]
fn dino_vit_matches_transformers() {
    let (m, g) = (load(&model_dir("dino-vit")).unwrap(), golden("dino-vit"));
    assert!(m.unused.is_empty(), "unused: {:?}", m.unused);
    let out = forward(&m, &g, "pixel_values");
    check("dino-vit", "last_hidden_state", &out.last_hidden, &g["last_hidden_state"]);
    check("dino-vit", "pooled", &out.pooled, &g["pooled"]);
}

#[test]
fn dinov2_matches_transformers_with_and_without_interpolation() {
    let (m, g) = (load(&model_dir("dinov2")).unwrap(), golden("dinov2"));
    // The mask token only serves masked pretraining.
    assert_eq!(m.unused, vec!["embeddings.mask_token".to_string()]);
    let out = forward(&m, &g, "pixel_values"); // 40x48: the 4x4 position grid resampled to 5x6
    check("dinov2", "last_hidden_state (40x48)", &out.last_hidden, &g["last_hidden_state"]);
    check("dinov2", "pooled (40x48)", &out.pooled, &g["pooled"]);
    for (case, size) in [("square", "32x32"), ("small", "24x16: grid 4x4 -> 3x2")] {
        let out = forward(&m, &g, &format!("pixel_values_{case}"));
        check(
            "dinov2",
            &format!("last_hidden_state ({size})"),
            &out.last_hidden,
            &g[&format!("last_hidden_state_{case}")],
        );
        check("dinov2", &format!("pooled ({size})"), &out.pooled, &g[&format!("pooled_{case}")]);
    }
}

/// A copy of a fixture folder; `config` and `tensors` may change it.
fn variant(
    name: &str,
    from: &str,
    config: impl FnOnce(&mut serde_json::Value),
    tensors: impl FnOnce(&mut HashMap<String, Tensor>),
) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vstar-vision-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let src = model_dir(from);
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    config(&mut cfg);
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    let mut t = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    tensors(&mut t);
    candle_core::safetensors::save(&t, d.join("model.safetensors")).unwrap();
    d
}

fn load_err(dir: &Path) -> String {
    load(dir).err().expect("loading should fail")
}

#[test]
fn missing_model_type_is_named() {
    let d = variant("no-type", "dino-vit", |c| drop(c.as_object_mut().unwrap().remove("model_type")), |_| {});
    let e = load_err(&d);
    assert!(e.contains("config.json") && e.contains("no `model_type`") && e.contains("ViTModel"), "{e}");
}

#[test]
fn missing_keys_take_transformers_defaults() {
    // Without patch_size, ViT's default 16 applies: a 2x2 grid, 1 + 4 position rows.
    let d = variant("no-patch", "dino-vit", |c| drop(c.as_object_mut().unwrap().remove("patch_size")), |_| {});
    let e = load_err(&d);
    assert!(e.contains("`embeddings.position_embeddings` has shape [1, 17, 32], the config expects [1, 5, 32]"), "{e}");
}

#[test]
fn unsupported_config_values_are_named() {
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, &str, Edit, &str); 6] = [
        ("act", "dino-vit", |c| c["hidden_act"] = "relu".into(), "`hidden_act` = \"relu\""),
        ("text-act", "clip", |c| c["text_config"]["hidden_act"] = "silu".into(), "`text_config.hidden_act`"),
        ("swiglu", "dinov2", |c| c["use_swiglu_ffn"] = true.into(), "`use_swiglu_ffn` = true"),
        ("heads", "clip-vision", |c| c["num_attention_heads"] = 5.into(), "`num_attention_heads` = 5"),
        ("size-list", "clip-vision", |c| c["image_size"] = serde_json::json!([32, 32]), "`image_size` = [32,32]"),
        ("head", "dino-vit", |c| c["architectures"] = serde_json::json!(["ViTForImageClassification"]), "ViTModel"),
    ];
    for (name, from, edit, expect) in cases {
        let e = load_err(&variant(name, from, edit, |_| {}));
        assert!(e.contains("config.json") && e.contains(expect) && e.contains("not supported"), "{name}: {e}");
    }
    let e = load_err(&variant("not-encoder", "dino-vit", |c| c["model_type"] = "bert".into(), |_| {}));
    assert!(e.contains("model_type \"bert\"") && e.contains("not an image encoder"), "{e}");
}

#[test]
fn wrong_shape_tensor_is_named() {
    let d = variant(
        "shape",
        "dinov2",
        |_| {},
        |t| {
            t.insert(
                "embeddings.position_embeddings".into(),
                Tensor::zeros((1, 26, 32), DType::F32, &Device::Cpu).unwrap(),
            );
        },
    );
    let e = load_err(&d);
    assert!(
        e.contains("`embeddings.position_embeddings` has shape [1, 26, 32], the config expects [1, 17, 32]"),
        "{e}"
    );
}

#[test]
fn wrong_pixel_input_is_refused() {
    let m = load(&model_dir("dino-vit")).unwrap();
    let x = Tensor::zeros((1, 3, 40, 40), DType::F32, &Device::Cpu).unwrap();
    let e = m.vision.forward(&x).unwrap_err().to_string();
    assert!(e.contains("40x40") && e.contains("32x32"), "{e}");
    let m = load(&model_dir("dinov2")).unwrap();
    for dims in [&[1usize, 1, 32, 32][..], &[3, 32, 32], &[1, 3, 4, 32]] {
        let e = m.vision.forward(&Tensor::zeros(dims, DType::F32, &Device::Cpu).unwrap()).unwrap_err().to_string();
        assert!(e.contains("(B, 3, H, W)"), "{dims:?}: {e}");
    }
}
