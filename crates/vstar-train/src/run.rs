//! A resumable training run: named trainable vars, AdamW, optional EMA, a checkpoint every N
//! steps (atomic, see `checkpoint`) and log lines. A run started again on the same folder
//! continues from its last checkpoint; with a step function that depends only on the step
//! number (seeded data and noise), the resumed run ends with the same weights.

use crate::checkpoint::Checkpoint;
use crate::ema::Ema;
use crate::optim::{AdamW, AdamWConfig};
use crate::step_grads::{add_metrics, Metrics, StepGrads};
use candle_core::{Device, Error, Result, Tensor, Var};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Shown in log lines.
    pub name: String,
    pub steps: usize,
    pub optim: AdamWConfig,
    pub ema_decay: Option<f64>,
    pub checkpoint_every: usize,
    pub log_every: usize,
    /// Where checkpoints go (created if missing).
    pub dir: PathBuf,
    /// A CSV of step, loss, lr, grad_norm (appended to on resume).
    pub loss_log: Option<PathBuf>,
}

pub struct Run {
    config: RunConfig,
    names: Vec<String>,
    opt: AdamW,
    ema: Option<Ema>,
    /// Wall time spent in `train` up to the last checkpoint, over every process that resumed it.
    seconds: f64,
}

fn append_csv(path: &std::path::Path, step: usize, loss: f64, lr: f64, grad_norm: f64) -> Result<()> {
    use std::io::Write;
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::Msg(format!("{}: {e}", path.display())))?;
    let head = if new { "step,loss,lr,grad_norm\n" } else { "" };
    write!(f, "{head}{step},{loss},{lr},{grad_norm}\n").map_err(|e| Error::Msg(format!("{}: {e}", path.display())))
}

impl Run {
    /// `vars`: (name, var, learning-rate multiplier). Restores the last checkpoint in
    /// `config.dir` if there is one.
    pub fn new(vars: Vec<(String, Var, f64)>, config: RunConfig) -> Result<Self> {
        let names: Vec<String> = vars.iter().map(|(n, _, _)| n.clone()).collect();
        let opt = AdamW::new(vars.into_iter().map(|(_, v, m)| (v, m)).collect(), config.optim.clone())?;
        let ema = config.ema_decay.map(|d| Ema::new(opt.vars(), d)).transpose()?;
        let mut run = Self { config, names, opt, ema, seconds: 0.0 };
        run.resume()?;
        Ok(run)
    }

    pub fn step(&self) -> usize {
        self.opt.step
    }

    pub fn finished(&self) -> bool {
        self.opt.step >= self.config.steps
    }

    /// Seconds of training so far, summed over the processes that resumed this run.
    pub fn train_seconds(&self) -> f64 {
        self.seconds
    }

    fn resume(&mut self) -> Result<()> {
        let Some(ck) = Checkpoint::load_latest(&self.config.dir, &Device::Cpu)? else { return Ok(()) };
        let get = |prefix: &str, name: &str| -> Result<Tensor> {
            ck.tensors.get(&format!("{prefix}/{name}")).cloned().ok_or_else(|| {
                Error::Msg(format!(
                    "{}: checkpoint has no `{prefix}/{name}`; it belongs to another run - delete the folder to start over",
                    self.config.dir.display()
                ))
            })
        };
        let (mut m, mut v, mut shadow) = (vec![], vec![], vec![]);
        for (name, var) in self.names.iter().zip(self.opt.vars()) {
            let w = get("var", name)?;
            if w.shape() != var.shape() {
                candle_core::bail!(
                    "{}: checkpoint `{name}` has shape {:?}, the run {:?}; delete the folder to start over",
                    self.config.dir.display(),
                    w.dims(),
                    var.dims()
                );
            }
            var.set(&w)?;
            m.push(get("m", name)?);
            v.push(get("v", name)?);
            if self.ema.is_some() {
                shadow.push(get("ema", name)?);
            }
        }
        self.opt.restore(m, v, ck.step)?;
        self.seconds = ck.meta["train_seconds"].as_f64().unwrap_or(0.0);
        if let Some(e) = &mut self.ema {
            e.restore(shadow);
        }
        Ok(())
    }

    fn save(&self) -> Result<()> {
        let mut tensors = HashMap::new();
        let (m, v) = self.opt.state()?;
        for (i, (name, var)) in self.names.iter().zip(self.opt.vars()).enumerate() {
            tensors.insert(format!("var/{name}"), var.as_tensor().detach());
            tensors.insert(format!("m/{name}"), m[i].clone());
            tensors.insert(format!("v/{name}"), v[i].clone());
            if let Some(e) = &self.ema {
                tensors.insert(format!("ema/{name}"), e.weights()[i].clone());
            }
        }
        let meta =
            serde_json::json!({ "run": self.config.name, "steps": self.config.steps, "train_seconds": self.seconds });
        Checkpoint { step: self.opt.step, tensors, meta }.save(&self.config.dir)?;
        Ok(())
    }

    /// Trains to `config.steps`. `step_fn(step)` (0-based) returns the step's loss, gradients
    /// and metrics to log; it must draw its data and noise from the step number alone.
    pub fn train(
        &mut self,
        log: &mut dyn FnMut(&str),
        mut step_fn: impl FnMut(usize) -> Result<StepGrads>,
    ) -> Result<()> {
        let c = self.config.clone();
        if self.opt.step > 0 && !self.finished() {
            log(&format!("{}: resuming at step {}/{}", c.name, self.opt.step, c.steps));
        }
        let (start, before) = (Instant::now(), self.seconds);
        let first = self.opt.step;
        let (mut loss_sum, mut n, mut sums): (f64, usize, Metrics) = (0.0, 0, vec![]);
        while self.opt.step < c.steps {
            let StepGrads { loss: l, grads, metrics } = step_fn(self.opt.step)?;
            if !l.is_finite() {
                candle_core::bail!(
                    "{}: loss is {l} at step {}; stopped, the last good checkpoint is kept in {}",
                    c.name,
                    self.opt.step + 1,
                    c.dir.display()
                );
            }
            let info = self.opt.step(&grads)?;
            if let Some(p) = &c.loss_log {
                append_csv(p, self.opt.step, l, info.lr, info.grad_norm)?;
            }
            if let Some(e) = &mut self.ema {
                e.update(self.opt.vars())?;
            }
            loss_sum += l;
            n += 1;
            add_metrics(&mut sums, metrics);
            let s = self.opt.step;
            if s % c.log_every == 0 || s == c.steps {
                let rate = (s - first) as f64 / start.elapsed().as_secs_f64();
                let eta = (c.steps - s) as f64 / rate.max(1e-9);
                let extra: String = sums.iter().map(|(k, v)| format!(" {k} {:.3}", v / n as f64)).collect();
                log(&format!(
                    "{}: step {s}/{} loss {:.4}{extra} ({:.2} s/step, eta {:.0} s)",
                    c.name,
                    c.steps,
                    loss_sum / n as f64,
                    1.0 / rate,
                    eta
                ));
                (loss_sum, n) = (0.0, 0);
                sums.clear();
            }
            if s % c.checkpoint_every == 0 || s == c.steps {
                self.seconds = before + start.elapsed().as_secs_f64();
                self.save()?;
            }
        }
        Ok(())
    }

    /// The trained weights by name: the EMA copy when there is one, else the vars.
    pub fn weights(&self) -> HashMap<String, Tensor> {
        let ws: Vec<Tensor> = match &self.ema {
            Some(e) => e.weights().to_vec(),
            None => self.opt.vars().map(|v| v.as_tensor().detach()).collect(),
        };
        self.names.iter().cloned().zip(ws).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    fn run_in(dir: &std::path::Path, steps: usize) -> Run {
        let w = Var::zeros(3, DType::F32, &Device::Cpu).unwrap();
        let config = RunConfig {
            name: "t".into(),
            steps,
            optim: AdamWConfig { lr: 0.1, ..Default::default() },
            ema_decay: Some(0.5),
            checkpoint_every: 2,
            log_every: 1,
            dir: dir.to_path_buf(),
            loss_log: None,
        };
        Run::new(vec![("w".into(), w, 1.0)], config).unwrap()
    }

    /// A target that moves with the step, so every step matters.
    fn target_at(step: usize) -> Tensor {
        Tensor::new(&[step as f32, 1.0, -2.0], &Device::Cpu).unwrap()
    }

    /// Five steps straight equal three steps, a stop, and a resumed run to five.
    #[test]
    fn a_resumed_run_ends_where_an_uninterrupted_one_does() {
        let base = std::env::temp_dir().join(format!("vstar-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let mut finals = vec![];
        for plan in [vec![5], vec![3, 5]] {
            let dir = base.join(format!("{}", plan.len()));
            for steps in plan {
                let mut run = run_in(&dir, steps);
                let w = run.opt.vars().next().unwrap().clone();
                run.train(&mut |_| {}, |s| {
                    StepGrads::whole(&(w.as_tensor() - target_at(s))?.sqr()?.sum_all()?, vec![])
                })
                .unwrap();
                assert_eq!(run.step(), steps);
                finals.push(run.weights()["w"].to_vec1::<f32>().unwrap());
            }
        }
        assert_eq!(finals[0], finals[2], "resumed run differs");
        assert_ne!(finals[1], finals[2], "the stop at step 3 should be a real intermediate state");
    }

    /// The training time is kept in the checkpoint: a resumed run starts from it and adds its own.
    #[test]
    fn training_time_adds_up_over_resumes() {
        let dir = std::env::temp_dir().join(format!("vstar-run-time-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pause = std::time::Duration::from_millis(20);
        let train_to = |steps: usize| {
            let mut run = run_in(&dir, steps);
            let before = run.train_seconds();
            let w = run.opt.vars().next().unwrap().clone();
            run.train(&mut |_| {}, |_| {
                std::thread::sleep(pause);
                StepGrads::whole(&w.as_tensor().sum_all()?, vec![])
            })
            .unwrap();
            (before, run.train_seconds())
        };
        let (zero, first) = train_to(2);
        assert_eq!(zero, 0.0);
        assert!(first >= 0.04, "{first}");
        let (resumed_at, total) = train_to(4);
        // JSON keeps the figure to within rounding (serde_json parses floats fast, not exactly).
        assert!((resumed_at - first).abs() < 1e-9, "{resumed_at} vs {first}");
        assert!(total >= first + 0.04, "{total} after {first}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_nan_loss_stops_and_names_the_checkpoint_folder() {
        let dir = std::env::temp_dir().join(format!("vstar-run-nan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut run = run_in(&dir, 4);
        let w = run.opt.vars().next().unwrap().clone();
        let err = run
            .train(&mut |_| {}, |s| {
                let scale = if s == 2 { f32::NAN } else { 1.0 };
                StepGrads::whole(&(w.as_tensor() * scale as f64)?.sum_all()?, vec![])
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("loss is NaN at step 3") && err.contains(&dir.display().to_string()), "{err}");
        assert_eq!(Checkpoint::load_latest(&dir, &Device::Cpu).unwrap().unwrap().step, 2);
    }
}
