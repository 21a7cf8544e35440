//! LoRA training on the tiny SD-1.5-shaped fixture: every LoRA matrix gets a gradient, a run
//! stopped and resumed ends with the same adapter as an uninterrupted one, bad input fails
//! with clear errors.
use candle_core::Device;
use std::path::{Path, PathBuf};
use vstar_nn::adapters::lora::LoraFormat;
use vstar_nn::model::Model;
use vstar_train::personalize::{adapter_file, train, TrainSpec};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sd15-tiny")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vstar-lora-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn mkdir(p: PathBuf) -> PathBuf {
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Three images of different sizes (resize + crop must cope) and a file that is no image.
fn images(dir: &Path) -> PathBuf {
    let dir = mkdir(dir.to_path_buf());
    for (i, (w, h)) in [(40u32, 30u32), (32, 32), (50, 64)].iter().enumerate() {
        let img =
            image::RgbImage::from_fn(*w, *h, |x, y| image::Rgb([(x * 5 + i as u32 * 40) as u8, (y * 4) as u8, 128]));
        img.save(dir.join(format!("{i}.png"))).unwrap();
    }
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
    dir
}

fn spec(images: &Path, out: &Path, steps: usize) -> TrainSpec {
    TrainSpec {
        images: images.to_path_buf(),
        token: "sks".into(),
        class: "dog".into(),
        method: "lora".into(),
        steps,
        lr: 1e-3,
        rank: 2,
        batch: 2,
        seed: 5,
        out: out.to_path_buf(),
        format: LoraFormat::Diffusers,
    }
}

fn load() -> Model {
    Model::load(&fixture(), &Device::Cpu).unwrap()
}

#[test]
fn every_lora_matrix_gets_a_gradient_and_moves() {
    let dir = tmp("grad");
    let img = images(&dir.join("img"));
    train(&load(), &spec(&img, &dir.join("out"), 2), &mut |_| {}).unwrap();
    let file = adapter_file(&dir.join("out"), LoraFormat::Diffusers);
    let w = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    let ups: Vec<_> = w.iter().filter(|(k, _)| k.ends_with("lora_B.weight")).collect();
    assert!(ups.len() >= 8, "{} LoRA layers", ups.len());
    for (k, v) in ups {
        // B starts at zero: a non-zero B after two steps means its gradient arrived.
        let m = v.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(m > 0.0, "{k} did not move");
    }
    let n = vstar_nn::adapters::lora::load_lora(&file, &load(), 1.0).unwrap();
    assert_eq!(n * 2, w.len(), "every pair loads back");
}

#[test]
fn a_resumed_run_ends_with_the_same_adapter() {
    let dir = tmp("resume");
    let img = images(&dir.join("img"));
    train(&load(), &spec(&img, &dir.join("straight"), 4), &mut |_| {}).unwrap();
    train(&load(), &spec(&img, &dir.join("stopped"), 2), &mut |_| {}).unwrap();
    train(&load(), &spec(&img, &dir.join("stopped"), 4), &mut |_| {}).unwrap();
    let read = |d: &str| std::fs::read(adapter_file(&dir.join(d), LoraFormat::Diffusers)).unwrap();
    assert!(read("straight") == read("stopped"), "resumed adapter differs");
    let csv = std::fs::read_to_string(dir.join("stopped/loss.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "header + 4 steps:\n{csv}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tmp("bad");
    let empty = mkdir(dir.join("empty"));
    let model = load();
    let err = |s: TrainSpec| train(&model, &s, &mut |_| {}).err().unwrap().to_string();
    assert!(err(spec(&empty, &dir.join("o1"), 1)).contains("no .png or .jpg files"));
    assert!(err(spec(&dir.join("missing"), &dir.join("o2"), 1)).contains("cannot read the folder"));
    let img = images(&dir.join("img"));
    std::fs::write(img.join("broken.png"), b"not a png").unwrap();
    assert!(err(spec(&img, &dir.join("o3"), 1)).contains("broken.png"));
    std::fs::remove_file(img.join("broken.png")).unwrap();
    let mut s = spec(&img, &dir.join("o4"), 1);
    s.lr = 0.0;
    assert!(err(s).contains("--lr"));
    let mut s = spec(&img, &dir.join("o5"), 1);
    s.method = "magic".into();
    assert!(err(s).contains("valid now: lora"));
    let mut s = spec(&img, &dir.join("o6"), 1);
    s.token = "two words".into();
    assert!(err(s).contains("--token"));
}
