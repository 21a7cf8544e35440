//! Personalization on the tiny SD-1.5-shaped fixture: every method's parameters all get a
//! gradient (each tensor moves), its files load back through `load_adapter` and change the
//! model's output, a run stopped and resumed ends with the same files as an uninterrupted one,
//! prior preservation and PALP run, and bad input fails with clear errors.
use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};
use vstar_nn::model::Model;
use vstar_nn::Ctx;
use vstar_train::checkpoint::Checkpoint;
use vstar_train::palp::PalpConfig;
use vstar_train::personalize::{train, TrainSpec};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sd15-tiny")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vstar-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Three images of different sizes (resize + crop must cope) and a file that is no image.
fn images(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (i, (w, h)) in [(40u32, 30u32), (32, 32), (50, 64)].iter().enumerate() {
        let img =
            image::RgbImage::from_fn(*w, *h, |x, y| image::Rgb([(x * 5 + i as u32 * 40) as u8, (y * 4) as u8, 128]));
        img.save(dir.join(format!("{i}.png"))).unwrap();
    }
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
    dir.to_path_buf()
}

fn spec(images: &Path, out: &Path, method: &str, steps: usize) -> TrainSpec {
    let token = if matches!(method, "ti" | "lora-ti" | "custom") { "<sks>" } else { "sks" };
    TrainSpec {
        steps,
        lr: 1e-3,
        rank: 2,
        vectors: 2,
        batch: 2,
        seed: 5,
        ..TrainSpec::new(images, token, "dog", method, out)
    }
}

/// PALP with the paper's defaults but `alpha`.
fn palp(target: &str, alpha: f64) -> PalpConfig {
    PalpConfig { target: target.into(), alpha, beta: 1.0, weight: 1.0, same_noise: true, rescale: true, sds: false }
}

fn load() -> Model {
    Model::load(&fixture(), &Device::Cpu).unwrap()
}

/// One UNet prediction for a fixed input and prompt.
fn predict(model: &Model, prompt: &str) -> Tensor {
    let dev = Device::Cpu;
    let x = Tensor::arange(0f32, 4.0 * 16.0 * 16.0, &dev).unwrap().reshape((1, 4, 16, 16)).unwrap().sin().unwrap();
    let ctx = model.encode(&[prompt], (128, 128), None).unwrap().context;
    model.unet.forward(&x, &Tensor::new(&[500f32], &dev).unwrap(), &ctx, None, &mut Ctx::default()).unwrap()
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn every_method_trains_every_parameter_and_its_files_load_back() {
    let dir = tmp("methods");
    let img = images(&dir.join("img"));
    let cases = vstar_train::params::METHODS.iter().map(|m| (*m, false)).chain([("lora", true), ("lora-ti", true)]);
    for (method, text_encoder) in cases {
        let out = dir.join(format!("{method}-{text_encoder}"));
        let mut model = load();
        let s = TrainSpec { text_encoder, ..spec(&img, &out, method, 2) };
        let done = train(&mut model, &s, &mut |_| {}).unwrap();
        // Every checkpointed tensor differs from its start (zero deltas, shifts and LoRA B;
        // token rows start at the class word's row): its gradient arrived.
        let fresh = {
            let mut m = load();
            vstar_train::params::Trainable::attach(&mut m, &s.set_spec(), 5).unwrap().vars()
        };
        let trained = Checkpoint::load_latest(&out.join("checkpoints"), &Device::Cpu).unwrap().unwrap().tensors;
        assert!(!fresh.is_empty());
        assert_eq!(text_encoder, fresh.iter().any(|(n, _, _)| n.starts_with("text_encoder.")), "{method}");
        if method.ends_with("-full") || method == "svdiff" {
            // The whole UNet: conv kernels and norm gains too; SVDiff's 1-D shifts at lr x 1e-3.
            for (part, lr) in [("resnets.0.conv1.delta", 1.0), ("resnets.0.norm1.delta", 1e-3)] {
                let v =
                    fresh.iter().find(|(n, _, _)| n.ends_with(part)).unwrap_or_else(|| panic!("{method}: no {part}"));
                assert_eq!(v.2, if method == "svdiff" { lr } else { 1.0 }, "{method}: {part}");
            }
        }
        for (name, var, _) in &fresh {
            let t = trained.get(&format!("var/{name}")).unwrap_or_else(|| panic!("{method}: {name} not checkpointed"));
            let moved = max_abs(&(t - var.as_tensor()).unwrap());
            assert!(moved > 0.0, "{method}: {name} got no gradient");
        }
        // The files, loaded into a fresh base model, reproduce the trained model's output.
        let prompt = format!("a photo of {} dog", s.token);
        let want = predict(&model, &prompt);
        let mut reloaded = load();
        for f in &done.files {
            if !f.to_string_lossy().ends_with(".a1111.safetensors") {
                vstar_nn::adapters::load_adapter(f, &mut reloaded, 1.0).unwrap();
            }
        }
        let err = max_abs(&(predict(&reloaded, &prompt) - &want).unwrap());
        let moved = max_abs(&(predict(&load_plain(&s), &prompt) - &want).unwrap());
        assert!(err < 1e-4 * moved.max(1e-3) + 1e-5, "{method}: reloaded differs by {err} (training moved {moved})");
        assert!(moved > 0.0, "{method}: training did not change the output");
    }
}

/// The base model, with the placeholder added (as the method's own token) where it learns one.
fn load_plain(s: &TrainSpec) -> Model {
    let mut m = load();
    if s.token.starts_with('<') {
        let row = m.text[0].encoder.token_row(m.text[0].tokenizer.tokens("dog").unwrap()[0]).unwrap();
        vstar_nn::adapters::embeddings::attach_tokens(
            &mut m,
            &s.token,
            &row.unsqueeze(0).unwrap().repeat((2, 1)).unwrap(),
        )
        .unwrap();
    }
    m
}

#[test]
fn a_resumed_run_ends_with_the_same_files() {
    let dir = tmp("resume");
    let img = images(&dir.join("img"));
    for method in ["lora", "lora-ti"] {
        let run =
            |out: &str, steps| train(&mut load(), &spec(&img, &dir.join(out), method, steps), &mut |_| {}).unwrap();
        let straight = run(&format!("{method}-straight"), 4);
        run(&format!("{method}-stopped"), 2);
        let resumed = run(&format!("{method}-stopped"), 4);
        for (a, b) in straight.files.iter().zip(&resumed.files) {
            assert!(
                std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
                "{method}: {} differs after resume",
                b.display()
            );
        }
        let csv = std::fs::read_to_string(dir.join(format!("{method}-stopped/loss.csv"))).unwrap();
        assert_eq!(csv.lines().count(), 5, "header + 4 steps:\n{csv}");
    }
}

#[test]
fn prior_preservation_generates_class_images_once_and_palp_trains() {
    let dir = tmp("prior");
    let img = images(&dir.join("img"));
    let mut s = spec(&img, &dir.join("prior"), "lora", 2);
    s.prior_images = 2;
    let mut lines = vec![];
    train(&mut load(), &s, &mut |l| lines.push(l.to_string())).unwrap();
    let class_dir = dir.join("prior/class_images");
    assert!(class_dir.join("0000.png").exists() && class_dir.join("0001.png").exists());
    assert!(lines.iter().any(|l| l.contains("generating 2 class images")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("prior")));
    // A second run with the same class folder reuses the images.
    let stamp = std::fs::metadata(class_dir.join("0000.png")).unwrap().modified().unwrap();
    let mut s2 = spec(&img, &dir.join("prior2"), "lora", 1);
    (s2.prior_images, s2.class_images) = (2, Some(class_dir.clone()));
    let mut lines = vec![];
    train(&mut load(), &s2, &mut |l| lines.push(l.to_string())).unwrap();
    assert!(!lines.iter().any(|l| l.contains("generating")));
    assert_eq!(std::fs::metadata(class_dir.join("0000.png")).unwrap().modified().unwrap(), stamp);

    let mut p = spec(&img, &dir.join("palp"), "lora-ti", 2);
    p.palp = Some(palp("a sketch of <sks> dog in the snow", 7.5));
    let mut lines = vec![];
    let done = train(&mut load(), &p, &mut |l| lines.push(l.to_string())).unwrap();
    assert!(lines.iter().any(|l| l.contains("align_g")), "{lines:?}");
    assert_eq!(done.files.len(), 3, "LoRA + two embedding files");
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tmp("bad");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = |s: TrainSpec| {
        let what = format!("{s:?}");
        train(&mut load(), &s, &mut |_| {}).err().unwrap_or_else(|| panic!("accepted: {what}")).to_string()
    };
    assert!(err(spec(&empty, &dir.join("o1"), "lora", 1)).contains("no .png or .jpg files"));
    assert!(err(spec(&dir.join("missing"), &dir.join("o2"), "lora", 1)).contains("cannot read the folder"));
    let img = images(&dir.join("img"));
    std::fs::write(img.join("broken.png"), b"not a png").unwrap();
    assert!(err(spec(&img, &dir.join("o3"), "lora", 1)).contains("broken.png"));
    std::fs::remove_file(img.join("broken.png")).unwrap();
    let with = |f: &dyn Fn(&mut TrainSpec)| {
        let mut s = spec(&img, &dir.join("o4"), "lora", 1);
        f(&mut s);
        err(s)
    };
    assert!(with(&|s| s.lr = 0.0).contains("--lr"));
    assert!(with(&|s| s.method = "magic".into()).contains("valid methods are lora, ti"));
    assert!(with(&|s| s.token = "two words".into()).contains("--token"));
    assert!(with(&|s| s.rank = 0).contains("--rank"));
    assert!(with(&|s| s.prior_weight = -1.0).contains("--prior-weight"));
    assert!(with(&|s| (s.method, s.text_encoder) = ("svdiff".into(), true)).contains("--train-text-encoder"));
    assert!(with(&|s| s.alpha = Some(0.0)).contains("--alpha"));
    // Textual inversion needs a token the vocabulary does not have.
    assert!(
        with(&|s| (s.method, s.token) = ("ti".into(), "today".into())).contains("already a word of this vocabulary")
    );
    assert!(with(&|s| s.palp = Some(palp("a sketch of a dog", 7.5))).contains("must contain the token"));
    assert!(with(&|s| s.palp = Some(palp("a sketch of sks dog", 0.0))).contains("--palp-alpha"));
    assert!(!dir.join("o4/pytorch_lora_weights.safetensors").exists(), "nothing written on a refused run");
    let sdxl = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sdxl-tiny");
    let e = train(&mut Model::load(&sdxl, &Device::Cpu).unwrap(), &spec(&img, &dir.join("o5"), "lora", 1), &mut |_| {});
    assert!(e.err().unwrap().to_string().contains("SDXL"));
}

#[test]
fn multi_subject_palp_learns_a_token_per_subject() {
    let dir = tmp("multi");
    let img = images(&dir.join("img"));
    let second = images(&dir.join("img2"));
    let subject = |token: &str| vstar_train::personalize::Subject {
        images: second.clone(),
        token: token.into(),
        class: "cat".into(),
    };
    let mut s = spec(&img, &dir.join("multi"), "lora-ti", 6);
    s.more_subjects = vec![subject("<kit>")];
    s.palp = Some(palp("a sketch of <sks> dog and <kit> cat in the snow", 7.5));
    let mut lines = vec![];
    let done = train(&mut load(), &s, &mut |l| lines.push(l.to_string())).unwrap();
    assert!(lines.iter().any(|l| l.contains("images of <kit>")), "{lines:?}");
    // Both placeholders' rows moved from their class words' rows, and the diffusers file holds both.
    let trained = Checkpoint::load_latest(&dir.join("multi/checkpoints"), &Device::Cpu).unwrap().unwrap().tensors;
    let m = load();
    for (token, class) in [("<sks>", "dog"), ("<kit>", "cat")] {
        let init = m.text[0].encoder.token_row(m.text[0].tokenizer.tokens(class).unwrap()[0]).unwrap();
        let rows = trained.get(&format!("var/token.{token}")).unwrap();
        assert!(max_abs(&rows.broadcast_sub(&init).unwrap()) > 0.0, "{token} did not train");
    }
    let embeds =
        vstar_nn::adapters::embeddings::read_embeddings(&dir.join("multi/learned_embeds.safetensors")).unwrap();
    assert_eq!(embeds.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), ["<kit>", "<sks>"]);
    assert_eq!(done.files.len(), 4, "LoRA, learned_embeds and one A1111 file per token: {:?}", done.files);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("multi/vstar.json")).unwrap()).unwrap();
    assert_eq!(record["subjects"][1]["token"], "<kit>");

    let refused = |f: &dyn Fn(&mut TrainSpec)| {
        let mut s = spec(&img, &dir.join("refused"), "lora-ti", 1);
        s.more_subjects = vec![subject("<kit>")];
        f(&mut s);
        train(&mut load(), &s, &mut |_| {}).err().expect("refused").to_string()
    };
    assert!(refused(&|s| s.more_subjects = vec![subject("<sks>")]).contains("used by two subjects"));
    assert!(
        refused(&|s| s.palp = Some(palp("a sketch of <sks> dog", 7.5))).contains("must contain the token \"<kit>\"")
    );
}

/// Multi-subject prior preservation: one class-image set per class word, in a subfolder each,
/// and every step's prior term uses its subject's class.
#[test]
fn multi_subject_prior_preservation_keeps_a_class_set_per_class() {
    let dir = tmp("multi_prior");
    let img = images(&dir.join("img"));
    let more = |token: &str, class: &str| vstar_train::personalize::Subject {
        images: img.clone(),
        token: token.into(),
        class: class.into(),
    };
    let mut s = spec(&img, &dir.join("run"), "lora", 2);
    s.more_subjects = vec![more("<kit>", "cat"), more("<rex>", "dog")];
    s.prior_images = 1;
    let mut lines = vec![];
    train(&mut load(), &s, &mut |l| lines.push(l.to_string())).unwrap();
    let generated: Vec<&String> = lines.iter().filter(|l| l.contains("generating 1 class images")).collect();
    assert_eq!(generated.len(), 2, "dog and cat once each: {lines:?}");
    for class in ["dog", "cat"] {
        assert!(dir.join(format!("run/class_images/{class}/0000.png")).exists(), "{class}");
    }
    assert!(lines.iter().any(|l| l.contains("step") && l.contains(" prior ")), "{lines:?}");
}
