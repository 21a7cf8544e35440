//! `vstar eval-alchemy RUN_DIR`: Image-Alchemy vs plain LoRA sampling on ToyBooth, and the
//! attention mask's IoU on renders (markdown tables on stdout, progress on stderr).

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use vstar_eval::alchemy_eval::{run as evaluate, AlchemyEvalSize};

#[derive(Args, Debug)]
pub struct EvalAlchemyArgs {
    /// A `vstar train` output folder with a LoRA-like adapter.
    run: PathBuf,
    /// A pretrained Toyland folder (default: the run's base model).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = AlchemyEvalSize::default().prompts)]
    prompts: usize,
    #[arg(long, default_value_t = AlchemyEvalSize::default().images_per_prompt)]
    images_per_prompt: usize,
    #[arg(long, default_value_t = AlchemyEvalSize::default().seed)]
    seed: u64,
    /// Renders on which the attention mask is compared with the true subject mask.
    #[arg(long, default_value_t = AlchemyEvalSize::default().renders)]
    renders: usize,
}

pub fn run(a: EvalAlchemyArgs) -> Result<()> {
    let size = AlchemyEvalSize {
        prompts: a.prompts,
        images_per_prompt: a.images_per_prompt,
        seed: a.seed,
        renders: a.renders,
        ..AlchemyEvalSize::default()
    };
    let e = evaluate(&a.run, a.model.as_deref(), &size, &mut |l| eprintln!("{l}"))?;
    print!("{}", e.markdown());
    Ok(())
}
