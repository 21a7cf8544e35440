//! Golden test of SAM against transformers: a tiny random-weight SamModel (windowed and global
//! attention with relative positions, neck, prompt encoder, two-way mask decoder) made by
//! tools/ref/make_sam_fixture.py, with transformers' pixel values, image embeddings, prompt
//! embeddings, low-res masks, IoU scores and post-processed masks for a box and a point prompt
//! (single- and multimask) in golden.safetensors; and bad input.

use candle_core::{Device, Tensor};
use image::RgbImage;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use vstar_nn::models::vision::sam::{mask_box, Sam, SamPrompt};

/// Max abs error allowed on every float output (the logits are O(1)-O(10)).
const TOL: f32 = 1e-4;
/// Binary-mask pixels allowed to differ per mask: only logits within float noise of the 0
/// threshold can flip (none do in practice).
const MAX_FLIPPED: usize = 3;

const BOX: SamPrompt = SamPrompt::Box { x0: 8.0, y0: 10.0, x1: 30.0, y1: 44.0 };
const POINT: SamPrompt = SamPrompt::Point { x: 20.0, y: 28.0 };
const LARGE_BOX: SamPrompt = SamPrompt::Box { x0: 20.0, y0: 12.0, x1: 70.0, y1: 60.0 };

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sam")
}

fn golden() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture().join("golden.safetensors"), &Device::Cpu).unwrap()
}

fn image(name: &str) -> RgbImage {
    image::open(fixture().join(name)).unwrap().to_rgb8()
}

fn load() -> Sam {
    Sam::load(&fixture().join("model"), &Device::Cpu).unwrap()
}

fn max_err(a: &Tensor, b: &Tensor) -> f32 {
    let b = b.reshape(a.dims()).unwrap_or_else(|_| panic!("shape mismatch {:?} vs {:?}", a.dims(), b.dims()));
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn check(what: &str, ours: &Tensor, theirs: &Tensor) {
    let e = max_err(ours, theirs);
    println!("{what}: max abs error {e:.3e}");
    assert!(e <= TOL, "{what}: max abs error {e} > {TOL}");
}

/// Binary masks (K, H, W) from our logits against transformers' 0/1 masks.
fn check_binary(what: &str, logits: &Tensor, theirs: &Tensor) {
    let ours: Vec<f32> =
        logits.gt(0f64).unwrap().flatten_all().unwrap().to_dtype(candle_core::DType::F32).unwrap().to_vec1().unwrap();
    let theirs: Vec<f32> = theirs.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(ours.len(), theirs.len(), "{what}: mask sizes");
    let flipped = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
    let on = theirs.iter().filter(|&&v| v > 0.5).count();
    println!("{what}: {flipped} of {} pixels differ ({on} on)", theirs.len());
    assert!(flipped <= MAX_FLIPPED, "{what}: {flipped} pixels differ");
}

fn check_prompt(sam: &Sam, g: &HashMap<String, Tensor>, img: &RgbImage, prompt: SamPrompt, key: &str, multis: &[bool]) {
    for &multi in multis {
        let pred = sam.predict(img, prompt, multi).unwrap();
        let m = format!("{key}_{}", if multi { "multi" } else { "single" });
        check(&format!("{m} iou_scores"), &pred.iou_scores, &g[&format!("{m}_iou_scores")]);
        check(&format!("{m} low-res masks"), &pred.low_res_masks, &g[&format!("{m}_pred_masks")]);
        check(&format!("{m} masks (post-processed logits)"), &pred.masks, &g[&format!("{m}_masks")]);
        check_binary(&format!("{m} binary masks"), &pred.masks, &g[&format!("{m}_binary")]);
    }
}

#[test]
fn sam_matches_transformers() {
    let (sam, g) = (load(), golden());
    let expected: Vec<String> = [
        "conv1.bias",
        "conv1.weight",
        "conv2.bias",
        "conv2.weight",
        "conv3.bias",
        "conv3.weight",
        "layer_norm1.bias",
        "layer_norm1.weight",
        "layer_norm2.bias",
        "layer_norm2.weight",
    ]
    .iter()
    .map(|n| format!("prompt_encoder.mask_embed.{n}"))
    .collect();
    assert_eq!(sam.unused_tensors(), expected, "only the mask-prompt encoder may stay unread");

    let img = image("image.png");
    let p = sam.preprocess(&img).unwrap();
    assert_eq!((p.original, p.reshaped), ((56, 40), (64, 46)));
    check("pixel_values (40x56 -> 46x64, padded)", &p.pixels, &g["pixel_values"]);
    check("image_positional_embeddings", sam.image_positional_embeddings(), &g["image_positional_embeddings"]);
    check("image_embeddings", &sam.image_embeddings(&g["pixel_values"]).unwrap(), &g["image_embeddings"]);
    check("box sparse prompt", &sam.prompt_embeddings(BOX, p.original).unwrap(), &g["box_sparse"]);
    check(
        "point sparse prompt (+ padding point)",
        &sam.prompt_embeddings(POINT, p.original).unwrap(),
        &g["point_sparse"],
    );

    check_prompt(&sam, &g, &img, BOX, "box", &[false, true]);
    check_prompt(&sam, &g, &img, POINT, "point", &[false, true]);

    // Downscaled (antialiased PIL bilinear) and post-processed up to a larger image.
    let large = image("image_large.png");
    let p = sam.preprocess(&large).unwrap();
    assert_eq!((p.original, p.reshaped), ((80, 96), (53, 64)));
    check("large pixel_values (96x80 -> 64x53, padded)", &p.pixels, &g["large_pixel_values"]);
    check_prompt(&sam, &g, &large, LARGE_BOX, "large_box", &[true]);
}

#[test]
fn segment_returns_the_best_multimask_output() {
    let (sam, g) = (load(), golden());
    let img = image("image.png");
    for (prompt, key) in [(BOX, "box"), (POINT, "point")] {
        let mask = sam.segment(&img, prompt).unwrap();
        assert_eq!(mask.dimensions(), img.dimensions());
        let iou: Vec<f32> = g[&format!("{key}_multi_iou_scores")].flatten_all().unwrap().to_vec1().unwrap();
        let best = (0..iou.len()).max_by(|&a, &b| iou[a].total_cmp(&iou[b])).unwrap();
        let theirs = g[&format!("{key}_multi_binary")].squeeze(0).unwrap().get(best).unwrap();
        let theirs: Vec<f32> = theirs.flatten_all().unwrap().to_vec1().unwrap();
        let flipped = mask.as_raw().iter().zip(&theirs).filter(|(&a, &b)| (a == 255) != (b > 0.5)).count();
        assert!(mask.as_raw().iter().all(|&v| v == 0 || v == 255));
        println!("segment {key}: best mask {best}, {flipped} pixels differ");
        assert!(flipped <= MAX_FLIPPED, "{key}: {flipped} pixels differ");
    }
}

#[test]
fn mask_box_is_the_inclusive_bounding_box() {
    let mut m = image::GrayImage::new(10, 8);
    assert_eq!(mask_box(&m), None);
    m.put_pixel(2, 5, image::Luma([255]));
    m.put_pixel(7, 1, image::Luma([200]));
    m.put_pixel(9, 7, image::Luma([100])); // below 128: background
    assert_eq!(mask_box(&m), Some(SamPrompt::Box { x0: 2.0, y0: 1.0, x1: 7.0, y1: 5.0 }));
}

/// A copy of the fixture folder without some files, or with config.json edited.
fn variant(name: &str, skip: &[&str], config: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    variant_with(name, skip, config, |_| {})
}

/// As `variant`, with the weights rewritten by `tensors`.
fn variant_with(
    name: &str,
    skip: &[&str],
    config: impl FnOnce(&mut serde_json::Value),
    tensors: impl FnOnce(&mut HashMap<String, Tensor>),
) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vstar-sam-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let src = fixture().join("model");
    for e in std::fs::read_dir(&src).unwrap() {
        let f = e.unwrap().file_name();
        if !skip.contains(&f.to_str().unwrap()) {
            std::fs::copy(src.join(&f), d.join(&f)).unwrap();
        }
    }
    if !skip.contains(&"config.json") {
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
        config(&mut cfg);
        std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    }
    if !skip.contains(&"model.safetensors") {
        let mut t = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
        tensors(&mut t);
        candle_core::safetensors::save(&t, d.join("model.safetensors")).unwrap();
    }
    d
}

fn load_err(dir: &Path) -> String {
    match Sam::load(dir, &Device::Cpu) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_folders_are_named() {
    let d = variant("no-config", &["config.json"], |_| {});
    let e = load_err(&d);
    assert!(e.contains(&d.join("config.json").display().to_string()) && e.contains("SamModel"), "{e}");

    let d = variant("no-weights", &["model.safetensors"], |_| {});
    let e = load_err(&d);
    assert!(e.contains(&d.display().to_string()) && e.contains("no .safetensors"), "{e}");

    let d = variant("not-sam", &[], |c| c["model_type"] = "clip".into());
    let e = load_err(&d);
    assert!(e.contains("config.json") && e.contains("model_type \"clip\"") && e.contains("not a SAM"), "{e}");

    let d = variant("act", &[], |c| c["vision_config"]["hidden_act"] = "silu".into());
    let e = load_err(&d);
    assert!(e.contains("config.json") && e.contains("`vision_config.hidden_act` = \"silu\""), "{e}");

    // A window size the stored relative-position tables were not made for.
    let d = variant("window", &[], |c| c["vision_config"]["window_size"] = 4.into());
    let e = load_err(&d);
    assert!(e.contains("model.safetensors") && e.contains("rel_pos_h") && e.contains("[7, 16]"), "{e}");

    // The image processor's file: refused values named; processor_config.json's section read too.
    let d = variant("pad", &[], |_| {});
    let pre = d.join("preprocessor_config.json");
    let mut p: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&pre).unwrap()).unwrap();
    p["pad_size"] = serde_json::json!({"height": 32, "width": 32});
    std::fs::write(&pre, p.to_string()).unwrap();
    let e = load_err(&d);
    assert!(e.contains("preprocessor_config.json") && e.contains("`pad_size`") && e.contains("64x64"), "{e}");
    p["pad_size"] = serde_json::json!({"height": 64, "width": 64});
    p["size"] = serde_json::json!({"longest_edge": 48});
    std::fs::remove_file(&pre).unwrap();
    std::fs::write(d.join("processor_config.json"), serde_json::json!({ "image_processor": p }).to_string()).unwrap();
    assert_eq!(Sam::load(&d, &Device::Cpu).unwrap().processor.config.longest_edge, 48);

    let d = variant("no-preprocessor", &["preprocessor_config.json"], |_| {});
    let sam = Sam::load(&d, &Device::Cpu).unwrap();
    assert_eq!(sam.processor.config, vstar_nn::models::vision::sam::SamProcessorConfig::for_model(64));
}

#[test]
fn f16_weights_load_and_agree() {
    let d = variant_with(
        "f16",
        &[],
        |_| {},
        |t| t.values_mut().for_each(|v| *v = v.to_dtype(candle_core::DType::F16).unwrap()),
    );
    let (sam, g) = (Sam::load(&d, &Device::Cpu).unwrap(), golden());
    let pred = sam.predict(&image("image.png"), BOX, true).unwrap();
    let e = max_err(&pred.iou_scores, &g["box_multi_iou_scores"]);
    println!("f16 weights: box_multi iou_scores max abs error {e:.3e}");
    assert!(e < 2e-2, "{e}");
    let e = max_err(&pred.masks, &g["box_multi_masks"]);
    println!("f16 weights: box_multi masks max abs error {e:.3e}");
    assert!(e < 5e-2, "{e}");
}
