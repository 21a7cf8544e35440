//! `vstar`: the command line. Thin: argument parsing and wiring only.

mod adapters;
mod alchemy;
mod bench;
mod eval_alchemy;
mod sample;
mod tokens;
mod toyland;
mod train;

/// mimalloc, counting heap use once `vstar bench` asks (see `bench::machine`).
#[global_allocator]
static ALLOC: bench::machine::CountingAlloc = bench::machine::CountingAlloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "vstar", version, about = "Personalized text-to-image diffusion, offline on a CPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job on Toyland, end to end: train a LoRA on a ToyBooth subject, sample it with
    /// every method, judge with the oracles, write an HTML report.
    Demo {
        #[arg(long, default_value = "out/demo")]
        out: std::path::PathBuf,
        /// A pretrained Toyland folder (default: the shipped one).
        #[arg(long)]
        model: Option<std::path::PathBuf>,
        /// A tiny run of every part (to test the command, not the methods).
        #[arg(long)]
        quick: bool,
        /// LoRA training steps (default 400).
        #[arg(long)]
        train_steps: Option<usize>,
        /// Only these methods (comma-separated; default all).
        #[arg(long, value_delimiter = ',')]
        methods: Option<Vec<String>>,
    },
    /// Judge a `vstar train` run on Toyland: identity similarity and prompt-element recall of
    /// its placeholder prompts, against the base model's class-word prompts (same seeds).
    Eval {
        run: std::path::PathBuf,
        /// A pretrained Toyland folder (default: the run's base model).
        #[arg(long)]
        model: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 8)]
        prompts: usize,
        #[arg(long, default_value_t = 2)]
        images_per_prompt: usize,
        /// Judge these prompts (with the placeholder; repeatable) instead of ToyBooth's set;
        /// their elements are read from Toyland's wording.
        #[arg(long)]
        prompt: Vec<String>,
        /// Judge a prompt set instead: a shipped one (dreambooth_live, dreambooth_object,
        /// vico_live, vico_object, complex, palp_elements) or a file, one prompt per line with
        /// the subject as {}
        #[arg(long, conflicts_with = "prompt")]
        prompt_set: Option<String>,
        /// A transformers CLIPModel folder: also score CLIP-T and CLIP-I.
        #[arg(long)]
        clip: Option<std::path::PathBuf>,
        /// A transformers DINO (ViTModel) or DINOv2 folder: also score DINO.
        #[arg(long)]
        dino: Option<std::path::PathBuf>,
    },
    /// Image-Alchemy on a `vstar train` run, judged on Toyland: stage 1, final (Gaussian and
    /// exp-decay blur) and plain LoRA sampling, same seeds; the attention mask's IoU on renders.
    EvalAlchemy(eval_alchemy::EvalAlchemyArgs),
    /// Methods x hyperparameter grids on one fine-tuned model, judged on Toyland; resumable
    /// (finished cells are skipped) and shardable; writes the report when every cell is done.
    Sweep {
        spec: std::path::PathBuf,
        #[arg(long)]
        out: std::path::PathBuf,
        /// Run only cells with index % N == I (e.g. 0/4).
        #[arg(long)]
        shard: Option<String>,
        /// N shards, this one's index from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX.
        #[arg(long)]
        shards: Option<usize>,
    },
    /// The HTML report (Pareto fronts, image grids, costs, the papers' claims) of a sweep folder.
    Report { dir: std::path::PathBuf },
    /// Image-Alchemy: base-model scene with the class word, segment + blur the subject, img2img
    /// with the LoRA and the placeholder prompt (every stage saved).
    Alchemy(alchemy::AlchemyArgs),
    /// Generate images from a prompt.
    Sample(sample::SampleArgs),
    /// Personalize a model on a subject's images (writes an adapter file and vstar.json).
    Train(train::TrainArgs),
    /// Rare-token scan: which placeholder tokens the base model has no fixed look for.
    #[command(subcommand)]
    Tokens(tokens::TokensCmd),
    /// The embedded Toyland world.
    #[command(subcommand)]
    Toyland(toyland::ToylandCmd),
    /// Benchmarks: UNet forward and LoRA step at batch 1/2/4/8 with FLOP/s against this machine's
    /// GEMM peak, Toyland sampling; `--reference PYTHON` times the same in diffusers/PyTorch.
    Bench {
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// A Python with torch, diffusers and peft (tools/ref/README.md): also run
        /// tools/ref/bench_torch.py on the same spec and print the ratios.
        #[arg(long)]
        reference: Option<String>,
        /// Only this UNet (toyland or sd15-level); both by default.
        #[arg(long)]
        only: Option<String>,
        /// Measure both sides this many times, alternating, and compare medians: on a shared
        /// machine one pass of each can land in a slow and a fast minute.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
    },
}

fn demo(
    out: std::path::PathBuf,
    model: Option<std::path::PathBuf>,
    quick: bool,
    train_steps: Option<usize>,
    methods: Option<Vec<String>>,
) -> anyhow::Result<()> {
    let dir = match model {
        Some(m) => m,
        None => vstar_nn::locate::resolve_model(None)?,
    };
    if !vstar_toyland::pretrain::is_complete(&dir) {
        anyhow::bail!(
            "{}: no pretrained Toyland (oracles missing); run `vstar toyland pretrain --out {}` first",
            dir.display(),
            dir.display()
        );
    }
    let mut size = if quick { vstar_eval::demo::DemoSize::quick() } else { vstar_eval::demo::DemoSize::full() };
    if let Some(n) = train_steps {
        size.train_steps = n;
    }
    if let Some(ms) = methods {
        let known = vstar_diffusion::guidance::build::METHODS;
        if let Some(m) = ms.iter().find(|m| !known.contains(&m.as_str())) {
            anyhow::bail!("--methods: unknown method {m:?}; valid: {}", known.join(", "));
        }
        size.methods = Some(ms);
    }
    let page = vstar_eval::demo::run(&dir, &out, size, &mut |l| eprintln!("{l}"))?;
    println!("{}", page.display());
    Ok(())
}

fn eval(
    run: &std::path::Path,
    model: Option<&std::path::Path>,
    prompts: usize,
    per: usize,
    custom: &[String],
    encoders: &vstar_eval::run_eval::EncoderDirs,
) -> anyhow::Result<()> {
    if prompts == 0 || per == 0 {
        anyhow::bail!("--prompts and --images-per-prompt must be at least 1");
    }
    let size =
        vstar_eval::run_eval::EvalSize { prompts, images_per_prompt: per, ..vstar_eval::run_eval::EvalSize::full() };
    let out = vstar_eval::run_eval::run(run, model, &size, custom, encoders, &mut |l| eprintln!("{l}"))?;
    let (b, f) = (&out["base"], &out["fine_tuned"]);
    println!("| method | steps | train s | identity (base -> tuned) | recall (base -> tuned) |");
    println!(
        "| {} | {} | {:.0} | {:.3} -> {:.3} | {:.3} -> {:.3} |",
        out["method"].as_str().unwrap_or("?"),
        out["steps"],
        out["train_seconds"].as_f64().unwrap_or(f64::NAN),
        b["identity"].as_f64().unwrap_or(f64::NAN),
        f["identity"].as_f64().unwrap_or(f64::NAN),
        b["recall"].as_f64().unwrap_or(f64::NAN),
        f["recall"].as_f64().unwrap_or(f64::NAN)
    );
    if let Some(real) = f["real"].as_object() {
        for (k, v) in real {
            println!(
                "{k} (base -> tuned): {:.3} -> {:.3}",
                b["real"][k].as_f64().unwrap_or(f64::NAN),
                v.as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}

fn sweep(
    spec: &std::path::Path,
    out: &std::path::Path,
    shard: Option<&str>,
    shards: Option<usize>,
) -> anyhow::Result<()> {
    let shard = vstar_eval::sweep::Shard::parse(shard, shards)?;
    let (ran, skipped) = vstar_eval::sweep::run(spec, out, shard, &mut |l| eprintln!("{l}"))?;
    eprintln!("shard {}/{}: {ran} cells run, {skipped} already done", shard.index, shard.count);
    let (_, _, missing) = vstar_eval::sweep::collect(out)?;
    if missing.is_empty() {
        return report(out);
    }
    eprintln!(
        "{} cells still missing (other shards?); `vstar report {}` renders what is done",
        missing.len(),
        out.display()
    );
    Ok(())
}

fn report(dir: &std::path::Path) -> anyhow::Result<()> {
    let (page, missing) = vstar_eval::report::report_dir(dir)?;
    if !missing.is_empty() {
        eprintln!("warning: {} cells not finished: {}", missing.len(), missing.join(", "));
    }
    println!("{}", page.display());
    Ok(())
}

fn main() {
    bench::machine::keep_freed_pages();
    let cli = Cli::parse();
    if let Err(e) = vstar_nn::threads::run_in_pool(|| run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo { out, model, quick, train_steps, methods } => demo(out, model, quick, train_steps, methods),
        Command::Eval { run, model, prompts, images_per_prompt, prompt, prompt_set, clip, dino } => {
            let encoders = vstar_eval::run_eval::EncoderDirs { clip, dino };
            let custom = match prompt_set {
                Some(set) => vstar_eval::prompt_sets::read(&set).map_err(|e| anyhow::anyhow!("--prompt-set: {e}")),
                None => Ok(prompt),
            };
            custom.and_then(|c| eval(&run, model.as_deref(), prompts, images_per_prompt, &c, &encoders))
        }
        Command::EvalAlchemy(args) => eval_alchemy::run(args),
        Command::Sweep { spec, out, shard, shards } => sweep(&spec, &out, shard.as_deref(), shards),
        Command::Report { dir } => report(&dir),
        Command::Sample(args) => sample::run(args),
        Command::Alchemy(args) => alchemy::run(args),
        Command::Train(args) => train::run(args),
        Command::Bench { iters, reference, only, rounds } => {
            bench::run(iters, reference.as_deref(), only.as_deref(), rounds)
        }
        Command::Toyland(cmd) => toyland::run(cmd),
        Command::Tokens(cmd) => tokens::run(cmd),
    }
}
