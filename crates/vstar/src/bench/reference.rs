//! The diffusers/PyTorch side of `vstar bench --reference PYTHON`: the same subjects, batches
//! and sampling job go to tools/ref/bench_torch.py as one JSON spec, its timings come back as
//! JSON with the same keys, and the ratios are printed beside ours.

use super::{Figure, Subject, BATCHES, GUIDANCE, SAMPLING_STEPS};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use vstar_eval::token_scan::median;

pub const SAMPLING_PROMPT: &str = "a photo of a dog in the snow";
const SCRIPT: &str = "tools/ref/bench_torch.py";

/// PyTorch's timings (seconds by key) and its version line. Run before vstar's own figures:
/// our process keeps freed memory, and the two sides at once do not fit in RAM.
pub struct Theirs {
    seconds: BTreeMap<String, f64>,
    versions: String,
    /// Its best square GEMM rate on the sizes vstar's peak uses.
    gemm_gflops: Option<f64>,
}

pub fn measure(python: &str, subjects: &[Subject], model: &Path) -> Result<Theirs> {
    if !Path::new(SCRIPT).exists() {
        bail!("--reference: {SCRIPT} not found; run `vstar bench` from the repository root");
    }
    let spec = serde_json::json!({
        "subjects": subjects, "batches": BATCHES, "gemm_sides": super::machine::GEMM_SIDES, "model": model,
        "prompt": SAMPLING_PROMPT, "steps": SAMPLING_STEPS, "guidance": GUIDANCE,
    });
    let spec_path = std::env::temp_dir().join(format!("vstar-bench-spec-{}.json", std::process::id()));
    std::fs::write(&spec_path, serde_json::to_vec(&spec)?)?;
    println!("running {python} {SCRIPT} first (diffusers/PyTorch, same spec) ...");
    let out = std::process::Command::new(python)
        .arg(SCRIPT)
        .arg(&spec_path)
        .output()
        .with_context(|| format!("--reference {python}: could not start it"))?;
    let _ = std::fs::remove_file(&spec_path);
    if !out.status.success() {
        bail!(
            "--reference {python} {SCRIPT} failed (is torch/diffusers/peft installed there? see tools/ref/README.md):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let theirs: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(last).with_context(|| format!("{SCRIPT}: its last line is not JSON: {last}"))?;
    let versions = theirs.get("versions").and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let gemm_gflops = theirs.get("gemm_gflops").and_then(|v| v.as_f64());
    let seconds = theirs
        .iter()
        .filter(|(k, _)| k.contains('/'))
        .filter_map(|(k, v)| v.as_f64().map(|s| (k.clone(), s)))
        .collect();
    Ok(Theirs { seconds, versions, gemm_gflops })
}

/// One row per figure: each side's median over the rounds, their ratio, and with several
/// rounds each round's own ratio (how much the machine moved between them).
pub fn print(ours: &[Vec<Figure>], theirs: &[Theirs]) {
    let gemm: Vec<f64> = theirs.iter().filter_map(|t| t.gemm_gflops).collect();
    if !gemm.is_empty() {
        println!(
            "\nPyTorch's GEMM peak on the same sizes: {:.1} GFLOP/s (the shares of peak above are of candle's)",
            median(gemm)
        );
    }
    let several = ours.len() > 1;
    let rounds = if several { format!(", medians of {} rounds", ours.len()) } else { String::new() };
    let (per_round, rule) = if several { (" ratio in each round |", "---|") } else { ("", "") };
    println!(
        "\n| figure | vstar | PyTorch ({}{rounds}) | PyTorch / vstar |{per_round}\n|---|---|---|---|{rule}",
        theirs[0].versions
    );
    for (i, f) in ours[0].iter().enumerate() {
        let mine = median(ours.iter().map(|r| r[i].seconds).collect());
        let pairs: Option<Vec<(f64, f64)>> =
            ours.iter().zip(theirs).map(|(o, t)| t.seconds.get(&f.key).map(|&t| (o[i].seconds, t))).collect();
        match pairs {
            Some(pairs) => {
                let t = median(pairs.iter().map(|p| p.1).collect());
                let each: Vec<String> = pairs.iter().map(|(o, t)| format!("{:.2}", t / o)).collect();
                let each = if several { format!(" {} |", each.join(" / ")) } else { String::new() };
                println!("| {} | {:.1} ms | {:.1} ms | {:.2}x |{each}", f.key, mine * 1e3, t * 1e3, t / mine)
            }
            None => println!("| {} | {:.1} ms | not measured | |", f.key, mine * 1e3),
        }
    }
}
