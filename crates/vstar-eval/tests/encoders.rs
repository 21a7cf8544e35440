//! The real-encoder metric API on the fixtures of tools/ref/make_vision_fixtures.py:
//! preprocessing against transformers' processors (a looser, stated tolerance: the resampling
//! filters are the `image` crate's, not PIL's), embeddings and CLIP-T against transformers
//! (1e-4 on the same pixels), and the errors for folders that are not such a model.

use candle_core::{DType, Device, Tensor};
use image::RgbImage;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use vstar_eval::encoders::{mean_pairwise_cosine, row_cosines, ClipScorer, ImageEncoder};
use vstar_eval::image_processor::ImageProcessor;
use vstar_nn::models::vision::{unit_rows, Family};

const TOL: f32 = 1e-4;
/// Preprocessing: PIL resamples in fixed point, rounding to 8 bits between its two passes; the
/// `image` crate in f32. On these smooth images that is at most one level of 255 (measured),
/// i.e. 1 / 255 / 0.224 = 0.0175 in normalised units with ImageNet's smallest std.
const PIXEL_TOL: f32 = 0.02;

const FIXTURES: [(&str, &str); 5] = [
    ("clip", "image_embeds"),
    ("clip-vision", "pooled"),
    ("clip-vision-proj", "image_embeds"),
    ("dino-vit", "pooled"),
    ("dinov2", "pooled"),
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name)
}

fn model_dir(name: &str) -> PathBuf {
    fixture("vision").join(name).join("model")
}

fn golden(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("vision").join(name).join("golden.safetensors"), &Device::Cpu).unwrap()
}

fn images() -> Vec<RgbImage> {
    (0..2).map(|i| image::open(fixture("vision/images").join(format!("image_{i}.png"))).unwrap().to_rgb8()).collect()
}

fn abs_diff(a: &Tensor, b: &Tensor) -> Tensor {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap()
}

fn max_err(a: &Tensor, b: &Tensor) -> f32 {
    abs_diff(a, b).max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn check(what: &str, ours: &Tensor, theirs: &Tensor, tol: f32) {
    let e = max_err(ours, theirs);
    println!("{what}: max abs error {e:.3e}");
    assert!(e <= tol, "{what}: max abs error {e} > {tol}");
}

#[test]
fn preprocessing_follows_transformers_processors() {
    for (name, _) in FIXTURES {
        let enc = ImageEncoder::load(&model_dir(name), &Device::Cpu).unwrap();
        let ours = enc.processor.batch(&images(), &Device::Cpu).unwrap();
        let theirs = &golden(name)["pixel_values"];
        let mean = abs_diff(&ours, theirs).mean_all().unwrap().to_scalar::<f32>().unwrap();
        println!("{name} pixel_values: mean abs error {mean:.3e}");
        check(&format!("{name} pixel_values"), &ours, theirs, PIXEL_TOL);
    }
}

#[test]
fn embeddings_are_unit_and_match_transformers() {
    for (name, key) in FIXTURES {
        let enc = ImageEncoder::load(&model_dir(name), &Device::Cpu).unwrap();
        let g = golden(name);
        let theirs = unit_rows(&g[key]).unwrap();
        check(&format!("{name} embedding"), &enc.embed_pixels(&g["pixel_values"]).unwrap(), &theirs, TOL);
        let from_images = enc.embed(&images()).unwrap();
        let norms = from_images.sqr().unwrap().sum(1).unwrap().sqrt().unwrap();
        check(&format!("{name} unit norm"), &norms, &Tensor::ones(2, DType::F32, &Device::Cpu).unwrap(), 1e-5);
        // From the PNGs through our preprocessing: close to transformers', not identical.
        let agree = row_cosines(&from_images, &theirs).unwrap();
        println!("{name} cosine to transformers' embedding from the PNGs: {agree:.6?}");
        assert!(agree.iter().all(|&c| c > 0.9999), "{name}: {agree:?}");
    }
}

#[test]
fn clip_scorer_matches_transformers() {
    let s = ClipScorer::load(&model_dir("clip"), &Device::Cpu).unwrap();
    assert!(s.image.unused.is_empty(), "{:?}", s.image.unused);
    let g = golden("clip");
    let prompts = ["a photo of a dog", "a red teapot on the beach at night"];
    let ids = s.token_ids(&prompts).unwrap().to_dtype(DType::I64).unwrap();
    assert_eq!(ids.to_vec2::<i64>().unwrap(), g["input_ids"].to_vec2::<i64>().unwrap());
    check("clip text_embeds", &s.embed_texts(&prompts).unwrap(), &g["text_embeds"], TOL);
    // CLIP-T = the diagonal of logits_per_image / exp(logit_scale) (transformers' cosines).
    let theirs = row_cosines(&g["image_embeds"], &g["text_embeds"]).unwrap();
    let ours = s.clip_t(&images(), &prompts).unwrap();
    println!("clip CLIP-T: ours (from PNGs) {ours:.5?}, transformers {theirs:.5?}");
    assert!(ours.iter().zip(&theirs).all(|(a, b)| (a - b).abs() < 2e-3), "{ours:?} vs {theirs:?}");
    let e = s.clip_t(&images(), &prompts[..1]).unwrap_err().to_string();
    assert!(e.contains("2 vs 1"), "{e}");
}

#[test]
fn cosine_metrics_on_hand_made_embeddings() {
    let dev = Device::Cpu;
    let a = Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &dev).unwrap();
    let b = Tensor::new(&[[1f32, 0.0], [0.6, 0.8]], &dev).unwrap();
    // Pairs: (a0,b0)=1, (a0,b1)=0.6, (a1,b0)=0, (a1,b1)=0.8.
    assert!((mean_pairwise_cosine(&a, &b).unwrap() - 0.6).abs() < 1e-6);
    let rows = row_cosines(&a, &b).unwrap();
    assert!((rows[0] - 1.0).abs() < 1e-6 && (rows[1] - 0.8).abs() < 1e-6, "{rows:?}");
    assert!(row_cosines(&a, &b.narrow(0, 0, 1).unwrap()).is_err());
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vstar-encoders-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn processor(json: &str) -> Result<ImageProcessor, String> {
    let d = tmp(&format!("{:x}", json.len() * 31 + json.bytes().map(|b| b as usize).sum::<usize>()));
    std::fs::write(d.join("preprocessor_config.json"), json).unwrap();
    ImageProcessor::for_model(&d, Family::Vit).map_err(|e| e.to_string())
}

#[test]
fn default_processors_are_the_model_cards() {
    let img = &images()[..1];
    let empty = tmp("no-processor");
    let clip = ImageProcessor::for_model(&empty, Family::Clip).unwrap().batch(img, &Device::Cpu).unwrap();
    assert_eq!(clip.dims(), [1, 3, 224, 224]);
    // DINO without a processor file: resize 256 bicubic, crop 224, ImageNet statistics - the
    // same as that BitImageProcessor config written out.
    let dino = ImageProcessor::for_model(&empty, Family::Dinov2).unwrap().batch(img, &Device::Cpu).unwrap();
    let explicit = processor(
        r#"{"image_processor_type": "BitImageProcessor", "size": {"shortest_edge": 256}, "crop_size": 224,
            "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}"#,
    )
    .unwrap()
    .batch(img, &Device::Cpu)
    .unwrap();
    assert_eq!(dino.dims(), [1, 3, 224, 224]);
    assert_eq!(max_err(&dino, &explicit), 0.0);
}

#[test]
fn bad_processor_configs_are_named() {
    let cases = [
        (r#"{"do_resize": true}"#, "`image_processor_type` = (absent)"),
        (r#"{"image_processor_type": "SiglipImageProcessor"}"#, "`image_processor_type` = \"SiglipImageProcessor\""),
        (r#"{"image_processor_type": "ViTImageProcessor", "resample": 5}"#, "`resample` = 5"),
        (
            r#"{"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 8, "longest_edge": 9}}"#,
            "`size`",
        ),
        (r#"{"image_processor_type": "ViTImageProcessor", "image_mean": [0.5, 0.5]}"#, "`image_mean`"),
    ];
    for (json, expect) in cases {
        let e = processor(json).unwrap_err();
        assert!(e.contains("preprocessor_config.json") && e.contains(expect), "{json}: {e}");
    }
    let tiny = processor(r#"{"image_processor_type": "CLIPImageProcessor", "size": 16, "crop_size": 32}"#).unwrap();
    let e = tiny.batch(&images(), &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("32x32 centre crop is larger than the 20x16 resized image"), "{e}");
}

fn load_err(dir: &Path) -> String {
    ImageEncoder::load(dir, &Device::Cpu).err().expect("should fail").to_string()
}

#[test]
fn folders_that_are_not_encoders_are_named() {
    let e = load_err(Path::new("/nonexistent/clip"));
    assert!(e.contains("/nonexistent/clip: no such folder"), "{e}");
    // A diffusers pipeline root has no config.json; its unet's config.json has no model_type.
    let e = load_err(&fixture("sd15-tiny"));
    assert!(e.contains("sd15-tiny/config.json: cannot read") && e.contains("CLIPModel"), "{e}");
    let e = load_err(&fixture("sd15-tiny/unet"));
    assert!(e.contains("unet/config.json: no `model_type`"), "{e}");
    // A CLIP text encoder is a transformers model, but not an image encoder.
    let e = load_err(&fixture("sd15-tiny/text_encoder"));
    assert!(e.contains("model_type \"clip_text_model\", not an image encoder"), "{e}");
    let e = ClipScorer::load(&model_dir("dino-vit"), &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("dino-vit/model/config.json") && e.contains("full CLIPModel"), "{e}");
}

/// RealMetrics (what eval and sweep add per image) is the encoders' own figures: DINO and
/// CLIP-I = each image's mean cosine to every reference, CLIP-T = the image with its prompt.
#[test]
fn real_metrics_are_the_encoders_figures_per_image() {
    use vstar_eval::real_metrics::RealMetrics;
    let dev = Device::Cpu;
    let (refs, gen) = (vec![images()[0].clone()], vec![images()[1].clone(), images()[0].clone(), images()[1].clone()]);
    let (clip_dir, dino_dir) = (model_dir("clip"), model_dir("dinov2"));
    let m = RealMetrics::load(Some(&clip_dir), Some(&dino_dir), &refs, &dev).unwrap().unwrap();
    let prompt = "a photo of a dog";
    let scores: HashMap<&str, Vec<f64>> = m.score(&gen, prompt).unwrap().into_iter().collect();
    let clip = ClipScorer::load(&clip_dir, &dev).unwrap();
    let want_t = clip.clip_t(&gen, &[prompt; 3]).unwrap();
    let dino = ImageEncoder::load(&dino_dir, &dev).unwrap();
    for (name, enc) in [("clip_i", &clip.image), ("dino", &dino)] {
        let (g, r) = (enc.embed(&gen).unwrap(), enc.embed(&refs).unwrap());
        for (i, got) in scores[name].iter().enumerate() {
            let want = mean_pairwise_cosine(&g.narrow(0, i, 1).unwrap(), &r).unwrap();
            assert!((got - want).abs() < 1e-6, "{name} image {i}: {got} vs {want}");
        }
        // Image 1 is the reference itself; images 0 and 2 another picture.
        let s = &scores[name];
        assert!((s[1] - 1.0).abs() < 1e-5 && (s[0] - s[2]).abs() < 1e-6 && s[0] < s[1] - 1e-5, "{name}: {s:?}");
    }
    for (got, want) in scores["clip_t"].iter().zip(&want_t) {
        assert!((got - want).abs() < 1e-6, "clip_t {got} vs {want}");
    }
    assert!(RealMetrics::load(None, None, &refs, &dev).unwrap().is_none());
    let err = RealMetrics::load(None, Some(&clip_dir.join("missing")), &refs, &dev).err().unwrap().to_string();
    assert!(err.contains("missing") && err.contains("no such folder"), "{err}");
}
