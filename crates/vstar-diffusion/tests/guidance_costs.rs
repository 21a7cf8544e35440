//! Guidance methods through the real sampler on the tiny SD-1.5-like fixture with a LoRA:
//! costs as counted by the sampler, and the identities that hold end to end.

use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::path::PathBuf;
use vstar_diffusion::guidance::{Cfg, Guidance, Mixed, PersonalizationGuidance, PromptKind, Switching};
use vstar_diffusion::noise::NoiseSource;
use vstar_diffusion::sampler::{self, Cost, Prompts, Start};
use vstar_diffusion::scheduler::{self, SchedulerConfig, SchedulerKind};
use vstar_nn::adapters::lora::load_lora;
use vstar_nn::model::Model;

fn fixture(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(p)
}

const STEPS: usize = 6;

fn run(model: &Model, g: &dyn Guidance, steps: usize) -> (Tensor, Cost) {
    let size = (32, 32);
    let mut by_kind = BTreeMap::new();
    by_kind.insert(PromptKind::Null, model.encode_negative(None, 1, size).unwrap());
    by_kind.insert(PromptKind::Concept, model.encode(&["a photo of sks dog in the snow"], size, None).unwrap());
    by_kind.insert(PromptKind::Superclass, model.encode(&["a photo of dog in the snow"], size, None).unwrap());
    let cfg: SchedulerConfig = serde_json::from_value(model.scheduler_config.clone()).unwrap();
    let mut sched = scheduler::build(SchedulerKind::Ddim, &cfg, steps).unwrap();
    let noise = NoiseSource::new(5).randn((1, 4, 16, 16), &Device::Cpu).unwrap();
    let out = sampler::sample(
        model,
        sched.as_mut(),
        g,
        &Prompts { by_kind },
        Start::Noise(noise),
        &mut NoiseSource::new(0),
        |_, _| {},
    )
    .unwrap();
    (out.latents, out.cost)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn costs_and_identities_with_a_lora() {
    let model = Model::load(&fixture("sd15-tiny"), &Device::Cpu).unwrap();
    load_lora(&fixture("lora/kohya.safetensors"), &model, 1.0).unwrap();
    let (cfg, cfg_cost) = run(&model, &Cfg { scale: 7.0 }, STEPS);
    assert_eq!(cfg_cost, Cost { unet_calls: STEPS, unet_rows: 2 * STEPS });

    // PG: same calls and rows as CFG; omega = 1 is CFG; omega = 0 runs the null row pretrained.
    let (pg1, pg_cost) = run(&model, &PersonalizationGuidance { scale: 7.0, omega: 1.0 }, STEPS);
    assert_eq!(pg_cost, cfg_cost);
    assert_eq!(max_diff(&pg1, &cfg), 0.0);
    let (pg0, _) = run(&model, &PersonalizationGuidance { scale: 7.0, omega: 0.0 }, STEPS);
    assert!(max_diff(&pg0, &cfg) > 1e-3, "omega 0 must change the result");

    // Mixed: 3 rows a step (1.5x concept); wS = 0 reproduces concept sampling. Compared after
    // one step: a 3-row batch rounds differently from a 2-row one (GEMM blocking), and on this
    // random-weight UNet with CFG 7 such 1e-6 differences grow ~50x per step.
    let (_, mixed_cost) = run(&model, &Mixed { ws: 0.0, wc: 7.0 }, STEPS);
    assert_eq!(mixed_cost, Cost { unet_calls: STEPS, unet_rows: 3 * STEPS });
    let (mixed1, _) = run(&model, &Mixed { ws: 0.0, wc: 7.0 }, 1);
    let (cfg1, _) = run(&model, &Cfg { scale: 7.0 }, 1);
    assert!(max_diff(&mixed1, &cfg1) < 1e-4, "{}", max_diff(&mixed1, &cfg1));

    // Switching costs what concept sampling costs; t_sw = 0 is concept sampling.
    let (sw0, sw_cost) = run(&model, &Switching { scale: 7.0, t_sw: 0 }, STEPS);
    assert_eq!(sw_cost, cfg_cost);
    assert_eq!(max_diff(&sw0, &cfg), 0.0);
}

/// The methods that read attention or change the DDIM step, through the real sampler.
#[test]
fn masked_cfgpp_autoguidance_and_subject_agnostic_end_to_end() {
    use vstar_diffusion::guidance::build::{build, MethodParams, SamplerSetup};
    let model = Model::load(&fixture("sd15-tiny"), &Device::Cpu).unwrap();
    load_lora(&fixture("lora/kohya.safetensors"), &model, 1.0).unwrap();
    let tok = &model.text[0].tokenizer;
    let positions = (
        tok.find("a photo of dog in the snow", "dog").unwrap().unwrap(),
        tok.find("a photo of sks dog in the snow", "sks").unwrap().unwrap(),
    );
    let cfg: SchedulerConfig = serde_json::from_value(model.scheduler_config.clone()).unwrap();
    let setup = SamplerSetup { kind: SchedulerKind::Ddim, config: &cfg, steps: STEPS };
    let method = |name: &str, p: MethodParams| {
        build(name, &MethodParams { token_positions: Some(positions), ..p }, &setup).unwrap()
    };

    // Masked: 3 rows a step, masks recorded from step t_sw on, binary, and a different image
    // from mixed (the mask is not all ones at q = 0.5).
    let masked = method("masked", MethodParams { t_sw: 2, q: 0.5, ..Default::default() });
    let (m, cost) = run(&model, masked.as_ref(), STEPS);
    assert_eq!(cost, Cost { unet_calls: STEPS, unet_rows: 3 * STEPS });
    let masks = masked.saved_masks();
    assert_eq!(masks.iter().map(|(s, _)| *s).collect::<Vec<_>>(), (2..STEPS).collect::<Vec<_>>());
    let share = masks[0].1.mean_all().unwrap().to_scalar::<f32>().unwrap();
    assert!((0.3..0.7).contains(&share), "mask share {share}");
    let (mixed, _) = run(&model, method("mixed", MethodParams::default()).as_ref(), STEPS);
    assert!(max_diff(&m, &mixed) > 1e-3);

    // CFG++ and PG++ cost what CFG costs; PG++ at omega 1 is CFG++.
    let (cpp, cpp_cost) =
        run(&model, method("cfg++", MethodParams { guidance: 0.4, ..Default::default() }).as_ref(), STEPS);
    assert_eq!(cpp_cost, Cost { unet_calls: STEPS, unet_rows: 2 * STEPS });
    let (ppp, _) =
        run(&model, method("pg++", MethodParams { guidance: 0.4, omega: 1.0, ..Default::default() }).as_ref(), STEPS);
    assert_eq!(max_diff(&cpp, &ppp), 0.0);

    // Autoguidance alone (w = 1) is 2 rows, with CFG 3; subject-agnostic at l = 1 is CFG.
    let (_, ag) =
        run(&model, method("autoguidance", MethodParams { guidance: 1.0, ..Default::default() }).as_ref(), STEPS);
    assert_eq!(ag.unet_rows, 2 * STEPS);
    let (_, agc) = run(&model, method("autoguidance", MethodParams::default()).as_ref(), STEPS);
    assert_eq!(agc.unet_rows, 3 * STEPS);
    let (sag1, _) =
        run(&model, method("subject-agnostic", MethodParams { guidance: 7.0, ..Default::default() }).as_ref(), 1);
    let (cfg1, _) = run(&model, &Cfg { scale: 7.0 }, 1);
    assert!(max_diff(&sag1, &cfg1) < 1e-4, "{}", max_diff(&sag1, &cfg1));

    // Photoswap: 3 rows; without copy steps it is CFG on the concept branch; copies change it.
    let ps = |steps| method("photoswap", MethodParams { guidance: 7.0, photoswap_steps: steps, ..Default::default() });
    let (p0, pcost) = run(&model, ps((0, 0, 0)).as_ref(), 1);
    assert_eq!(pcost.unet_rows, 3);
    assert!(max_diff(&p0, &cfg1) < 1e-4, "{}", max_diff(&p0, &cfg1));
    let (p1, _) = run(&model, ps((1, 1, 1)).as_ref(), 1);
    assert!(max_diff(&p1, &p0) > 1e-4, "copied attention must change the concept branch");

    // ProFusion: twice the calls of mixed; r = 0 is mixed sampling exactly.
    let pf = |r| method("profusion", MethodParams { r, ..Default::default() });
    let (pf0, pfcost) = run(&model, pf(0.0).as_ref(), STEPS);
    assert_eq!(pfcost, Cost { unet_calls: 2 * STEPS, unet_rows: 5 * STEPS });
    let (mixed_again, _) = run(&model, method("mixed", MethodParams::default()).as_ref(), STEPS);
    assert_eq!(max_diff(&pf0, &mixed_again), 0.0);
    let (pf3, _) = run(&model, pf(0.3).as_ref(), STEPS);
    assert!(max_diff(&pf3, &mixed_again) > 1e-3);
}
