//! `vstar tokens scan`: rank candidate placeholder tokens by how varied the base model's
//! images of them are (mean pairwise SSIM), with a contact sheet.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::fmt::Write;
use std::path::PathBuf;
use vstar_diffusion::images;
use vstar_eval::token_scan::{scan, vocabulary_candidates, MIN_TO_FLAG};
use vstar_nn::model::Model;

#[derive(Subcommand, Debug)]
pub enum TokensCmd {
    /// Score candidate tokens; writes scan.csv, scan.json and sheet.png (a row per token, best first).
    Scan {
        #[arg(long)]
        model: Option<String>,
        /// One token per line; default: the vocabulary's 4-5 letter words.
        #[arg(long)]
        candidates: Option<PathBuf>,
        /// Images per token.
        #[arg(long, default_value_t = 6)]
        seeds: usize,
        #[arg(long, default_value_t = 30)]
        steps: usize,
        /// CFG scale of the scan's images (weak guidance shows learned looks, not accidental ones).
        #[arg(long, default_value_t = vstar_eval::token_scan::GUIDANCE)]
        guidance: f64,
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cmd: TokensCmd) -> Result<()> {
    let TokensCmd::Scan { model, candidates, seeds, steps, guidance, out } = cmd;
    let root = vstar_nn::locate::resolve_model(model.as_deref())?;
    let model = Model::load(&root, &candle_core::Device::Cpu)?;
    let tokens: Vec<String> = match &candidates {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("--candidates {}: cannot read", f.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect(),
        None => vocabulary_candidates(&model),
    };
    if tokens.is_empty() {
        bail!("no candidate tokens (check --candidates)");
    }
    let scores = scan(&model, &tokens, seeds, steps, guidance, &mut |l| eprintln!("{l}"))?;
    let mut csv = String::from("rank,token,mean_pairwise_ssim,modified_z,polluted\n");
    println!("rank  token       mean pairwise SSIM  modified z");
    for (i, s) in scores.iter().enumerate() {
        let z = s.z.map(|z| format!("{z:.2}")).unwrap_or_default();
        let _ = writeln!(csv, "{},{},{:.4},{z},{}", i + 1, s.token, s.mean_pairwise_ssim, s.polluted);
        let flag = if s.polluted { "  <- fixed look (polluted)" } else { "" };
        println!("{:>4}  {:<10}  {:.3}  {z:>18}{flag}", i + 1, s.token, s.mean_pairwise_ssim);
    }
    if scores.len() < MIN_TO_FLAG {
        eprintln!(
            "note: {} candidates: the fixed-look flag compares each token with the others and needs at least {MIN_TO_FLAG}",
            scores.len()
        );
    }
    images::write_atomic(&out.join("scan.csv"), csv.as_bytes())?;
    images::write_atomic(&out.join("scan.json"), serde_json::to_string_pretty(&scores)?.as_bytes())?;
    let all: Vec<_> = scores.iter().flat_map(|s| s.images.iter().cloned()).collect();
    images::save_png(&out.join("sheet.png"), &vstar_toyland::contact_sheet(&all, seeds))?;
    println!("{}", out.join("sheet.png").display());
    Ok(())
}
