//! `vstar`: the command line. Thin: argument parsing and wiring only.

mod bench;
mod sample;
mod toyland;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "vstar", version, about = "Personalized text-to-image diffusion, offline on a CPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job on Toyland, end to end (lands with the demo issue).
    Demo {
        #[arg(long, default_value = "out/demo")]
        out: std::path::PathBuf,
    },
    /// Generate images from a prompt.
    Sample(sample::SampleArgs),
    /// Personalize a model on a subject's images (writes an adapter file and vstar.json).
    Train(train::TrainArgs),
    /// The embedded Toyland world.
    #[command(subcommand)]
    Toyland(toyland::ToylandCmd),
    /// Benchmarks: UNet forward time per call (see tools/ref/bench_unet.py for diffusers).
    Bench {
        #[arg(long, default_value_t = 10)]
        iters: usize,
    },
}

fn main() {
    vstar_nn::alloc::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { .. } => {
            println!("vstar demo: not yet - the end-to-end Toyland demo lands with the demo issue; `vstar sample` works now.");
            Ok(())
        }
        Command::Sample(args) => sample::run(args),
        Command::Train(args) => train::run(args),
        Command::Bench { iters } => bench::run(iters),
        Command::Toyland(cmd) => toyland::run(cmd),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
