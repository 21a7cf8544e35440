//! The `vstar` binary end to end on the tiny SD-1.5-like fixture: images with sidecars, and
//! bad input answered by one clear sentence and a non-zero exit.

use std::path::PathBuf;
use std::process::Command;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name).display().to_string()
}

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vstar-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn vstar(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_vstar")).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

#[test]
fn sample_writes_png_and_sidecar() {
    let out = out_dir("ok").join("img.png");
    let (ok, _, err) = vstar(&[
        "sample",
        "--model",
        &fixture("sd15-tiny"),
        "--prompt",
        "a photo of a dog",
        "--steps",
        "3",
        "--seed",
        "7",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (32, 32));
    let side: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap()).unwrap();
    assert_eq!(side["seed"], 7);
    assert_eq!(side["method"], "cfg");
    assert_eq!(side["unet_cost_per_image"]["unet_calls"], 3);
    assert_eq!(side["unet_cost_per_image"]["unet_rows"], 6);
    // Same seed, same image.
    let again = out_dir("again").join("img.png");
    vstar(&[
        "sample",
        "--model",
        &fixture("sd15-tiny"),
        "--prompt",
        "a photo of a dog",
        "--steps",
        "3",
        "--seed",
        "7",
        "--out",
        again.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn every_scheduler_and_img2img_run() {
    let dir = out_dir("sched");
    for s in ["ddim", "ddpm", "euler", "euler-a", "dpmpp-2m"] {
        let out = dir.join(format!("{s}.png"));
        let (ok, _, err) = vstar(&[
            "sample",
            "--model",
            &fixture("sd15-tiny"),
            "--prompt",
            "a dog",
            "--steps",
            "4",
            "--scheduler",
            s,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{s}: {err}");
    }
    let out = dir.join("i2i.png");
    let init = dir.join("ddim.png");
    let (ok, _, err) = vstar(&[
        "sample",
        "--model",
        &fixture("sd15-tiny"),
        "--prompt",
        "a dog",
        "--steps",
        "10",
        "--init-image",
        init.to_str().unwrap(),
        "--strength",
        "0.5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let side: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap()).unwrap();
    assert_eq!(side["unet_cost_per_image"]["unet_calls"], 5);
}

#[test]
fn sample_with_a_lora_adapter() {
    let out = out_dir("lora").join("x.png");
    let lora = fixture("lora/kohya.safetensors");
    let (ok, _, err) = vstar(&[
        "sample",
        "--model",
        &fixture("sd15-tiny"),
        "--prompt",
        "a dog",
        "--steps",
        "2",
        "--adapter",
        &lora,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let side: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap()).unwrap();
    assert_eq!(side["adapters"][0], lora.as_str());
    fails_with(
        &[
            "sample",
            "--model",
            &fixture("sdxl-tiny"),
            "--prompt",
            "a",
            "--adapter",
            &lora,
            "--out",
            out.to_str().unwrap(),
        ],
        "another base model",
    );
}

fn fails_with(args: &[&str], needle: &str) {
    let (ok, _, err) = vstar(args);
    assert!(!ok, "expected failure for {args:?}");
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_is_one_clear_error() {
    let m = fixture("sd15-tiny");
    let out = out_dir("bad").join("x.png");
    let o = out.to_str().unwrap();
    fails_with(&["sample", "--model", "/no/such/model", "--prompt", "a", "--out", o], "--model /no/such/model");
    fails_with(&["sample", "--model", &m, "--prompt", "a", "--scheduler", "heun", "--out", o], "ddim");
    fails_with(&["sample", "--model", &m, "--prompt", "a", "--method", "magic", "--out", o], "--method magic");
    fails_with(&["sample", "--model", &m, "--prompt", "a", "--height", "33", "--out", o], "--height");
    fails_with(
        &["sample", "--model", &m, "--prompt", "a", "--init-image", o, "--strength", "1.5", "--out", o],
        "--strength",
    );
    // Wrong init-noise shape.
    let noise = out_dir("noise").join("n.safetensors");
    std::fs::create_dir_all(noise.parent().unwrap()).unwrap();
    let t = candle_core::Tensor::zeros((1, 4, 8, 8), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    candle_core::safetensors::save(&[("noise".to_string(), t)].into_iter().collect(), &noise).unwrap();
    fails_with(
        &["sample", "--model", &m, "--prompt", "a", "--init-noise", noise.to_str().unwrap(), "--out", o],
        "has shape [1, 4, 8, 8], this model and size need [1, 4, 16, 16]",
    );
    assert!(!out.exists(), "nothing is written on error");
}

#[test]
fn long_prompts_are_truncated_with_a_warning() {
    let out = out_dir("long").join("x.png");
    let long = "a photo of a dog ".repeat(30);
    let (ok, _, err) = vstar(&[
        "sample",
        "--model",
        &fixture("sd15-tiny"),
        "--prompt",
        &long,
        "--steps",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn method_errors_name_the_flag() {
    let m = fixture("sd15-tiny");
    let run = |extra: &[&str]| {
        let out = out_dir("method").join("x.png");
        let mut a = vec!["sample", "--model", m.as_str(), "--steps", "2", "--out", out.to_str().unwrap()];
        a.extend_from_slice(extra);
        let (ok, _, err) = vstar(&a);
        assert!(!ok);
        err
    };
    assert!(run(&["--prompt", "a dog", "--method", "magic"]).contains("valid methods: cfg, concept, superclass"));
    assert!(run(&["--prompt", "a dog", "--method", "pg", "--omega", "1.5"]).contains("--allow-extrapolation"));
    assert!(run(&["--prompt", "a dog", "--method", "mixed", "--token", "sks"]).contains("no placeholder \"sks\""));
    assert!(run(&["--prompt", "a sks dog", "--method", "mixed"]).contains("--token"));
    assert!(run(&["--prompt", "a sks dog", "--method", "mixed", "--token", "sks", "--class", "cat"])
        .contains("--class \"cat\""));
}

#[test]
fn mixed_sampling_costs_three_rows_per_step_in_the_sidecar() {
    let out = out_dir("mixed").join("m.png");
    let (ok, _, err) = vstar(&[
        "sample",
        "--model",
        &fixture("sd15-tiny"),
        "--prompt",
        "a sks dog",
        "--token",
        "sks",
        "--method",
        "mixed",
        "--steps",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let side: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap()).unwrap();
    assert_eq!(side["superclass_prompt"], "a dog");
    assert_eq!(side["unet_cost_per_image"]["unet_rows"], 12);
    assert_eq!(side["method_params"]["ws"], 3.5);
}
