//! Golden test: every scheduler against diffusers' own outputs
//! (fixture written by tools/ref/schedulers.py).

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use serde_json::Value;
use vstar_diffusion::scheduler::{self, ddim::Ddim, Scheduler, SchedulerConfig, SchedulerKind};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/schedulers/schedulers.json");
const TOL: f64 = 1e-5;

struct Ctx {
    shape: Vec<usize>,
    worst: BTreeMap<String, f64>,
    failures: Vec<String>,
}

impl Ctx {
    fn tensor(&self, v: &Value) -> Tensor {
        let data: Vec<f32> = v.as_array().expect("array").iter().map(|x| x.as_f64().unwrap() as f32).collect();
        Tensor::from_vec(data, self.shape.as_slice(), &Device::Cpu).unwrap()
    }

    fn check(&mut self, group: &str, what: &str, got: &Tensor, want: &Value) {
        let want = self.tensor(want);
        let diff =
            (got - &want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
                as f64;
        self.record(group, what, diff);
    }

    fn record(&mut self, group: &str, what: &str, diff: f64) {
        let w = self.worst.entry(group.to_string()).or_insert(0.0);
        if diff > *w {
            *w = diff;
        }
        if diff.is_nan() || diff > TOL {
            self.failures.push(format!("{what}: max abs error {diff:e}"));
        }
    }
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// Timesteps are float32 in diffusers (or integers): compare as f32 (serde_json's default
/// float parsing may be 1 ulp off in f64). Karras timesteps come from a float32 log-sigma
/// interpolation whose last bits depend on numpy's SIMD `log`; they get 1e-4 slack.
fn same_timesteps(got: &[f64], want: &[f64], karras: bool) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(&a, &b)| if karras { (a - b).abs() <= 1e-4 } else { a as f32 == b as f32 })
}

fn config_for(base: &Value, spacing: &str, prediction: &str, karras: bool) -> SchedulerConfig {
    let mut c = base.clone();
    c["timestep_spacing"] = Value::from(spacing);
    c["prediction_type"] = Value::from(prediction);
    if karras {
        c["use_karras_sigmas"] = Value::from(true);
    }
    c["_class_name"] = Value::from("PNDMScheduler"); // unknown keys are ignored
    SchedulerConfig::from_json_str(&c.to_string()).unwrap()
}

fn run_steps(
    ctx: &mut Ctx,
    group: &str,
    label: &str,
    sched: &mut dyn Scheduler,
    mut sample: Tensor,
    outputs: &[Tensor],
    steps: &[Value],
) {
    for (k, st) in steps.iter().enumerate() {
        let i = st["step_index"].as_u64().unwrap() as usize;
        let scaled = sched.scale_model_input(&sample, i).unwrap();
        ctx.check(group, &format!("{label} step {i} scaled"), &scaled, &st["scaled"]);
        let noise = if st["noise"].is_null() { None } else { Some(ctx.tensor(&st["noise"])) };
        let prev = sched.step(&outputs[k], i, &sample, noise.as_ref()).unwrap();
        ctx.check(group, &format!("{label} step {i} prev_sample"), &prev, &st["prev_sample"]);
        sample = prev;
    }
}

#[test]
fn schedulers_match_diffusers() {
    let text = std::fs::read_to_string(FIXTURE).expect("fixture; run tools/ref/schedulers.py");
    let doc: Value = serde_json::from_str(&text).unwrap();
    let shape: Vec<usize> = doc["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
    let mut ctx = Ctx { shape, worst: BTreeMap::new(), failures: vec![] };
    let n_steps = doc["num_inference_steps"].as_u64().unwrap() as usize;
    let sample = ctx.tensor(&doc["sample"]);
    let outputs: Vec<Tensor> = doc["model_outputs"].as_array().unwrap().iter().map(|v| ctx.tensor(v)).collect();
    let original = ctx.tensor(&doc["original"]);
    let clean_noise = ctx.tensor(&doc["clean_noise"]);

    // alphas_cumprod
    let base_cfg = config_for(&doc["config"], "leading", "epsilon", false);
    let ac = scheduler::alphas_cumprod(&base_cfg).unwrap();
    let want_ac = f64s(&doc["alphas_cumprod"]);
    let ac_err = ac.iter().zip(&want_ac).map(|(&a, &b)| (a as f32 - b as f32).abs() as f64).fold(0.0, f64::max);
    ctx.record("alphas_cumprod", "alphas_cumprod", ac_err);

    for case in doc["cases"].as_array().unwrap() {
        let kind: SchedulerKind = case["kind"].as_str().unwrap().parse().unwrap();
        let spacing = case["spacing"].as_str().unwrap();
        let prediction = case["prediction"].as_str().unwrap();
        let karras = case["karras"].as_bool().unwrap_or(false);
        let label = format!("{kind}/{spacing}/{prediction}{}", if karras { "/karras" } else { "" });
        let group = kind.name().to_string();
        let cfg = config_for(&doc["config"], spacing, prediction, karras);

        let mut sched = scheduler::build(kind, &cfg, n_steps).unwrap();
        let ts = f64s(&case["timesteps"]);
        if !same_timesteps(sched.timesteps(), &ts, karras) {
            ctx.failures.push(format!("{label}: timesteps {:?} != diffusers {:?}", sched.timesteps(), ts));
        }
        let s50 = scheduler::build(kind, &cfg, 50).unwrap();
        let ts50 = f64s(&case["timesteps_50"]);
        if !same_timesteps(s50.timesteps(), &ts50, karras) {
            ctx.failures.push(format!("{label}: 50-step timesteps {:?} != diffusers {:?}", s50.timesteps(), ts50));
        }
        let want_sigma = case["init_noise_sigma"].as_f64().unwrap();
        ctx.record(&group, &format!("{label} init_noise_sigma"), (sched.init_noise_sigma() - want_sigma).abs());
        run_steps(
            &mut ctx,
            &group,
            &label,
            sched.as_mut(),
            sample.clone(),
            &outputs,
            case["steps"].as_array().unwrap(),
        );

        for an in case["add_noise"].as_array().unwrap() {
            let i = an["step_index"].as_u64().unwrap() as usize;
            let t = an["timestep"].as_f64().unwrap();
            assert!((sched.timesteps()[i] - t).abs() <= 1e-4, "{label}: add_noise timestep");
            let t = sched.timesteps()[i];
            let got = sched.add_noise(&original, &clean_noise, t).unwrap();
            ctx.check(&group, &format!("{label} add_noise {i}"), &got, &an["result"]);
        }

        if let Some(img) = case.get("img2img") {
            let mut s = scheduler::build(kind, &cfg, n_steps).unwrap();
            let begin = img["begin"].as_u64().unwrap() as usize;
            let t = s.timesteps()[begin];
            let noised = s.add_noise(&original, &clean_noise, t).unwrap();
            ctx.check(&group, &format!("{label} img2img noised"), &noised, &img["noised"]);
            run_steps(
                &mut ctx,
                &group,
                &format!("{label} img2img"),
                s.as_mut(),
                noised,
                &outputs,
                img["steps"].as_array().unwrap(),
            );
        }
    }

    for case in doc["ddim_eta"].as_array().unwrap() {
        let spacing = case["spacing"].as_str().unwrap();
        let prediction = case["prediction"].as_str().unwrap();
        let eta = case["eta"].as_f64().unwrap();
        let cfg = config_for(&doc["config"], spacing, prediction, false);
        let mut s = Ddim::with_eta(&cfg, n_steps, eta).unwrap();
        assert!(s.needs_noise());
        run_steps(
            &mut ctx,
            "ddim-eta",
            &format!("ddim eta={eta}/{spacing}/{prediction}"),
            &mut s,
            sample.clone(),
            &outputs,
            case["steps"].as_array().unwrap(),
        );
    }

    println!("worst max-abs error per scheduler:");
    for (k, v) in &ctx.worst {
        println!("  {k:16} {v:.3e}");
    }
    assert!(ctx.failures.is_empty(), "{} mismatches:\n{}", ctx.failures.len(), ctx.failures.join("\n"));
}
