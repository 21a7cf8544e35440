//! `vstar toyland ...`: the embedded world.

use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;
use vstar_eval::toyland_check::CheckSize;
use vstar_toyland::pretrain::{Pretrain, Recipe};

#[derive(Subcommand, Debug)]
pub enum ToylandCmd {
    /// Contact sheets of the world (every superclass x contexts x styles) and the ToyBooth
    /// subjects' reference renders.
    Render {
        #[arg(long, default_value = "out/toyland")]
        out: PathBuf,
        /// Side of each render in pixels.
        #[arg(long, default_value_t = 64)]
        size: u32,
    },
    /// Train Toyland's miniature SD (VAE, text encoder, UNet) and its oracles into a
    /// diffusers-layout folder. Resumable: run the same command again after an interruption.
    Pretrain {
        #[arg(long, default_value = "out/toyland-model")]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A few steps per stage, to check the pipeline end to end (not a usable model).
        #[arg(long)]
        smoke: bool,
        /// Train only these judge stages (attribute, identity, eval_clip; comma-separated), e.g.
        /// in a second process beside a running pretrain on the same --out.
        #[arg(long, value_delimiter = ',')]
        only: Option<Vec<String>>,
    },
    /// Print the figures that say whether a pretrained Toyland is fit for use: oracle
    /// accuracy, identity retrieval, the base model's prompt following, sampling time, and
    /// polluted vs unseen rare tokens.
    Check {
        /// A `vstar toyland pretrain` output folder (default: the shipped Toyland).
        #[arg(long)]
        model: Option<PathBuf>,
        /// A tiny version of every check (to test the command, not the model).
        #[arg(long)]
        quick: bool,
    },
}

pub fn run(cmd: ToylandCmd) -> Result<()> {
    match cmd {
        ToylandCmd::Render { out, size } => {
            if !(16..=512).contains(&size) {
                anyhow::bail!("--size must be between 16 and 512 pixels, got {size}");
            }
            for p in vstar_toyland::render_world_sheet(&out, size)? {
                println!("{}", p.display());
            }
            let refs = vstar_toyland::toybooth::write_references(&out.join("toybooth"), size)?;
            println!("{} ToyBooth reference renders under {}", refs.len(), out.join("toybooth").display());
            Ok(())
        }
        ToylandCmd::Pretrain { out, seed, smoke, only } => {
            let recipe = if smoke { Recipe::smoke() } else { Recipe::full() };
            let log = |l: &str| eprintln!("{l}");
            let p = Pretrain { out, seed, recipe, log: &log, dev: candle_core::Device::Cpu };
            match only {
                Some(stages) => p.run_judges(&stages)?,
                None => {
                    p.run()?;
                }
            }
            Ok(())
        }
        ToylandCmd::Check { model, quick } => {
            let dir = match model {
                Some(m) => m,
                None => vstar_nn::locate::resolve_model(None)?,
            };
            if !vstar_toyland::pretrain::is_complete(&dir) {
                anyhow::bail!("{}: not a complete `vstar toyland pretrain` output (oracles missing)", dir.display());
            }
            let size = if quick { CheckSize::quick() } else { CheckSize::full() };
            vstar_eval::toyland_check::run(&dir, size, &mut |l| println!("{l}"))?;
            Ok(())
        }
    }
}
