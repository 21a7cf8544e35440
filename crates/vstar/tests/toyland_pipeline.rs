//! The Toyland pipeline end to end at smoke size: `toyland pretrain --smoke` writes a
//! diffusers-layout folder that `sample`, `train` and `toyland check --quick` all accept, and
//! a second pretrain on the same folder resumes (skips finished stages); each stage records
//! its training time.

use std::path::PathBuf;
use std::process::Command;

fn vstar(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_vstar")).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

#[test]
fn pretrain_smoke_then_sample_train_and_check() {
    let dir = std::env::temp_dir().join(format!("vstar-toyland-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let model = dir.join("model");
    let m = model.to_str().unwrap();
    let (ok, _, err) = vstar(&["toyland", "pretrain", "--smoke", "--out", m]);
    assert!(ok, "{err}");
    for f in [
        "model_index.json",
        "unet/config.json",
        "vae/config.json",
        "text_encoder/model.safetensors",
        "oracles/identity/config.json",
    ] {
        assert!(model.join(f).exists(), "missing {f}");
    }
    assert!(!model.join(".checkpoints").exists(), "checkpoints are removed after a finished run");
    // Each stage's training time outlives the checkpoints: VAE, CLIP, two UNet phases, three judges.
    let times = std::fs::read_dir(model.join("pretrain_times")).unwrap().count();
    assert_eq!(times, 7, "one time record per stage");
    assert!(err.contains("min of training over all stages"), "{err}");
    let (ok, _, err) = vstar(&["toyland", "pretrain", "--smoke", "--out", m]);
    assert!(ok && err.matches("already trained").count() == 6, "{err}");

    let (ok, _, err) = vstar(&[
        "sample",
        "--model",
        m,
        "--prompt",
        "a dog in the snow",
        "--steps",
        "2",
        "--out",
        dir.join("s.png").to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = vstar(&["toyland", "render", "--size", "32", "--out", dir.join("world").to_str().unwrap()]);
    assert!(ok, "{err}");
    let images: PathBuf = dir.join("world/toybooth/dog_a");
    let out = dir.join("lora");
    let (ok, stdout, err) = vstar(&[
        "train",
        "--model",
        m,
        "--images",
        images.to_str().unwrap(),
        "--token",
        "sks",
        "--class",
        "dog",
        "--steps",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--format",
        "kohya",
    ]);
    assert!(ok, "{err}");
    assert!(stdout.trim().ends_with("lora_kohya.safetensors"));
    let (ok, _, err) = vstar(&[
        "sample",
        "--model",
        m,
        "--adapter",
        stdout.trim(),
        "--prompt",
        "a photo of sks dog",
        "--steps",
        "2",
        "--out",
        dir.join("a.png").to_str().unwrap(),
    ]);
    assert!(ok, "{err}");

    // A run is judged against the base model; a textual-inversion run samples from its folder.
    let (ok, stdout, err) =
        vstar(&["eval", out.to_str().unwrap(), "--model", m, "--prompts", "1", "--images-per-prompt", "1"]);
    assert!(ok, "{err}");
    assert!(stdout.contains("| lora | 2 |") && out.join("eval.json").exists(), "{stdout}");
    // With the user's encoders (tiny random transformers folders): CLIP-T, CLIP-I and DINO
    // for the base and the tuned model; a missing folder is named.
    let vision = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vision");
    let (clip, dino) = (vision.join("clip/model"), vision.join("dinov2/model"));
    let run = out.to_str().unwrap();
    let (ok, stdout, err) = vstar(&[
        "eval",
        run,
        "--model",
        m,
        "--prompts",
        "1",
        "--images-per-prompt",
        "1",
        "--clip",
        clip.to_str().unwrap(),
        "--dino",
        dino.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("eval.json")).unwrap()).unwrap();
    for side in ["base", "fine_tuned"] {
        for k in ["clip_t", "clip_i", "dino"] {
            let v = json[side]["real"][k].as_f64().unwrap_or(f64::NAN);
            assert!((-1.0..=1.0).contains(&v), "{side} {k} = {v}: {stdout}");
        }
    }
    assert!(stdout.contains("dino (base -> tuned)"), "{stdout}");
    let (ok, _, err) = vstar(&["eval", run, "--model", m, "--prompts", "1", "--dino", "/nonexistent/dino"]);
    assert!(!ok && err.contains("/nonexistent/dino: no such folder"), "{err}");
    // A prompt file (the subject as {}) is judged with the run's token and class; a bad set is named.
    let set = dir.join("my_prompts.txt");
    std::fs::write(&set, "# mine\na {} in the snow\n").unwrap();
    let (ok, _, err) =
        vstar(&["eval", run, "--model", m, "--images-per-prompt", "1", "--prompt-set", set.to_str().unwrap()]);
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("eval.json")).unwrap()).unwrap();
    assert_eq!(json["prompts"], serde_json::json!(["a sks dog in the snow"]));
    let (ok, _, err) = vstar(&["eval", run, "--model", m, "--prompt-set", "vico_alive"]);
    assert!(!ok && err.contains("--prompt-set: prompt set 'vico_alive'") && err.contains("vico_live"), "{err}");
    // A sweep in two shards: 3 cells; the second shard finishes it and writes the report; a
    // rerun skips every cell; a bad spec names the key and its line.
    let spec = dir.join("sweep.toml");
    std::fs::write(
        &spec,
        format!(
            "adapter = {:?}\nprompts = 1\nimages_per_prompt = 1\nsteps = 2\ndino = {:?}\n[[method]]\nname = \"concept\"\n\
             guidance = 5.0\n[[method]]\nname = \"pg\"\nomega = [0.0, 1.0]\n",
            out.to_str().unwrap(),
            dino.to_str().unwrap()
        ),
    )
    .unwrap();
    let sw = dir.join("sweep");
    let sweep = |extra: &[&str]| {
        let mut a = vec!["sweep", spec.to_str().unwrap(), "--out", sw.to_str().unwrap()];
        a.extend_from_slice(extra);
        vstar(&a)
    };
    let (ok, _, err) = sweep(&["--shard", "0/2"]);
    assert!(ok && err.contains("2 cells run") && err.contains("1 cells still missing"), "{err}");
    let (ok, stdout, err) = sweep(&["--shard", "1/2"]);
    assert!(ok && stdout.trim().ends_with("index.html"), "{err}");
    let page = std::fs::read_to_string(sw.join("index.html")).unwrap();
    assert!(page.contains("pg_omega=0") && page.contains("pg_omega=1") && page.contains("class=\"front\""));
    let cell: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sw.join("cells/pg_omega=1.json")).unwrap()).unwrap();
    assert!(cell["real"]["dino"].as_f64().is_some_and(|v| (-1.0..=1.0).contains(&v)), "{cell}");
    let (ok, _, err) = sweep(&[]);
    assert!(ok && err.contains("0 cells run, 3 already done"), "{err}");
    std::fs::write(
        &spec,
        format!("adapter = {:?}\nsteps = 2\n[[method]]\nname = \"pg\"\nomgea = [0.0]\n", out.to_str().unwrap()),
    )
    .unwrap();
    let (ok, _, err) = sweep(&[]);
    assert!(!ok && err.contains("sweep.toml:5") && err.contains("omgea"), "{err}");

    // Two steps of a method that learns the placeholder "<sks>".
    let train_learned = |method: &str, out: &std::path::Path| {
        vstar(&[
            "train",
            "--model",
            m,
            "--images",
            images.to_str().unwrap(),
            "--token",
            "<sks>",
            "--class",
            "dog",
            "--method",
            method,
            "--steps",
            "2",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let ti = dir.join("ti");
    let (ok, stdout, err) = train_learned("lora-ti", &ti);
    assert!(ok, "{err}");
    assert_eq!(stdout.lines().count(), 3, "LoRA + two embedding files:\n{stdout}");
    let (ok, _, err) = vstar(&[
        "sample",
        "--model",
        m,
        "--adapter",
        ti.to_str().unwrap(),
        "--prompt",
        "a photo of <sks> dog",
        "--steps",
        "2",
        "--out",
        dir.join("ti.png").to_str().unwrap(),
    ]);
    assert!(ok && err.contains("textual inversion: <sks>") && err.contains("LoRA"), "{err}");
    let (ok, _, err) = vstar(&[
        "train",
        "--model",
        m,
        "--images",
        images.to_str().unwrap(),
        "--token",
        "dog",
        "--class",
        "dog",
        "--method",
        "ti",
        "--steps",
        "2",
        "--out",
        dir.join("ti-bad").to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("already a word of this vocabulary"), "{err}");

    let (ok, stdout, err) = vstar(&["toyland", "check", "--quick", "--model", m]);
    assert!(ok, "{err}");
    for section in
        ["Attribute oracle", "Identity oracle", "Base model", "Sampling time", "read the class word", "Rare tokens"]
    {
        assert!(stdout.contains(section), "missing {section}:\n{stdout}");
    }

    let demo = dir.join("demo");
    let (ok, stdout, err) = vstar(&["demo", "--quick", "--model", m, "--out", demo.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(stdout.trim().ends_with("index.html"));
    let csv = std::fs::read_to_string(demo.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 13, "a row per method:\n{csv}");
    let page = std::fs::read_to_string(demo.join("index.html")).unwrap();
    assert!(page.contains("id=\"tradeoff\"") && page.matches("<img").count() == 13);

    let cands = dir.join("candidates.txt");
    std::fs::write(&cands, "sks\nimmen\n# a comment\n").unwrap();
    let scan = dir.join("scan");
    let (ok, stdout, err) = vstar(&[
        "tokens",
        "scan",
        "--model",
        m,
        "--candidates",
        cands.to_str().unwrap(),
        "--seeds",
        "2",
        "--steps",
        "2",
        "--out",
        scan.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(stdout.contains("sks") && stdout.contains("immen") && scan.join("sheet.png").exists());
    assert_eq!(std::fs::read_to_string(scan.join("scan.csv")).unwrap().lines().count(), 3);
    let (ok, _, err) = vstar(&[
        "tokens",
        "scan",
        "--model",
        m,
        "--candidates",
        cands.to_str().unwrap(),
        "--seeds",
        "1",
        "--out",
        scan.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("--seeds"), "{err}");

    // Image-Alchemy with the kohya LoRA trained above: every stage written; bad input refused.
    let lora = out.join("lora_kohya.safetensors");
    let al = dir.join("alchemy");
    let args = |extra: &[&str]| {
        let mut a =
            vec!["alchemy", "--model", m, "--adapter", lora.to_str().unwrap(), "--class", "dog", "--steps", "3"];
        a.extend_from_slice(extra);
        vstar(&a)
    };
    let (ok, _, err) =
        args(&["--prompt", "a photo of sks dog in the snow", "--composite", "--out", al.to_str().unwrap()]);
    assert!(ok, "{err}");
    for f in ["1_scene.png", "2_mask.png", "3_blurred.png", "4_final.png", "5_composite.png", "alchemy.json"] {
        assert!(al.join(f).exists(), "missing {f}");
    }
    let (ok, _, err) = args(&["--prompt", "a photo of sks in the snow", "--out", al.to_str().unwrap()]);
    assert!(!ok && err.contains("not in the scene prompt"), "{err}");
    // SAM (a tiny random transformers SamModel) segments the scene from the attention mask's box.
    let sam = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sam/model");
    let al_sam = dir.join("alchemy-sam");
    let seg = format!("sam:{}", sam.display());
    let (ok, _, err) =
        args(&["--prompt", "a photo of sks dog in the snow", "--segment", &seg, "--out", al_sam.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(al_sam.join("2_mask.png").exists() && al_sam.join("4_final.png").exists());
    let seg = format!("sam:{}", dir.join("no-sam").display());
    let (ok, _, err) = args(&["--prompt", "a sks dog", "--segment", &seg, "--out", al_sam.to_str().unwrap()]);
    assert!(!ok && err.contains("--segment sam:") && err.contains("config.json"), "{err}");
    for bad in ["0", "1.5"] {
        let (ok, _, err) = args(&["--prompt", "a sks dog", "--strength", bad, "--out", al.to_str().unwrap()]);
        assert!(!ok && err.contains("--strength must be in (0, 1]"), "{err}");
    }
    let small = dir.join("small-mask.png");
    image::GrayImage::new(8, 8).save(&small).unwrap();
    let seg = format!("mask:{}", small.display());
    let (ok, _, err) = args(&["--prompt", "a sks dog", "--segment", &seg, "--out", al.to_str().unwrap()]);
    assert!(!ok && err.contains("resize it"), "{err}");
    let empty = dir.join("empty-mask.png");
    image::GrayImage::new(32, 32).save(&empty).unwrap();
    let seg = format!("mask:{}", empty.display());
    let (ok, _, err) = args(&["--prompt", "a sks dog", "--segment", &seg, "--out", al.to_str().unwrap()]);
    assert!(!ok && err.contains("--allow-empty-mask"), "{err}");
    let (ok, _, err) =
        args(&["--prompt", "a sks dog", "--segment", &seg, "--allow-empty-mask", "--out", al.to_str().unwrap()]);
    assert!(ok, "{err}");

    // Image-Alchemy judged on ToyBooth (the LoRA run above): a table of the 4 kinds of image and
    // one of the attention mask's IoU at 3 thresholds, in [0, 1]; a folder that is no run and a
    // run of learned tokens only are refused, naming the file.
    let (ok, stdout, err) = vstar(&[
        "eval-alchemy",
        out.to_str().unwrap(),
        "--model",
        m,
        "--prompts",
        "1",
        "--images-per-prompt",
        "1",
        "--renders",
        "4",
    ]);
    assert!(ok, "{err}");
    let tables: Vec<Vec<Vec<&str>>> = stdout
        .split("\n\n")
        .map(|t| {
            t.lines()
                .filter(|l| l.starts_with('|'))
                .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
                .collect()
        })
        .filter(|t: &Vec<Vec<&str>>| !t.is_empty())
        .collect();
    assert_eq!(tables.iter().map(|t| (t.len(), t[0].len())).collect::<Vec<_>>(), [(2 + 4, 5), (2 + 3, 6)], "{stdout}");
    for row in &tables[1][2..] {
        for col in [1, 3] {
            let iou: f64 = row[col].parse().unwrap();
            assert!((0.0..=1.0).contains(&iou), "{stdout}");
        }
    }
    assert!(out.join("eval_alchemy.json").exists() && out.join("eval_alchemy/00_0_gauss.png").exists());
    let (ok, _, err) = vstar(&["eval-alchemy", images.to_str().unwrap(), "--model", m]);
    assert!(!ok && err.contains("dog_a/vstar.json"), "{err}");
    let ti_only = dir.join("ti-only");
    let (ok, _, err) = train_learned("ti", &ti_only);
    assert!(ok, "{err}");
    let (ok, _, err) = vstar(&["eval-alchemy", ti_only.to_str().unwrap(), "--model", m]);
    assert!(!ok && err.contains("learned_embeds.safetensors") && err.contains("textual inversion only"), "{err}");
}
