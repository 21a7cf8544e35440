"""Golden fixtures for the vstar-diffusion schedulers, produced with diffusers.

Writes tests/fixtures/schedulers/schedulers.json (relative to the repository root), read by
crates/vstar-diffusion/tests/schedulers_golden.rs.

Run from the repository root:
    /work/venv-ref/bin/python tools/ref/schedulers.py
(needs torch and diffusers; made with diffusers 0.42.1, torch 2.15.0, CPU.)

What it records, with Stable Diffusion's scheduler config (beta_start 0.00085, beta_end 0.012,
scaled_linear, 1000 train steps, steps_offset 1, set_alpha_to_one False, clip_sample False):
- alphas_cumprod (float32, as diffusers computes it);
- for each scheduler (ddim, ddpm, euler, euler-a, dpmpp-2m) x timestep_spacing {leading,
  trailing, linspace} x prediction_type {epsilon, v_prediction}: the timesteps for 10 and 50
  inference steps, init_noise_sigma, and the first 3 steps of 10 from a fixed sample [1,4,2,2]
  with fixed model outputs (scale_model_input result, the noise diffusers drew if any, prev_sample).
  Each step's input sample is the previous step's prev_sample;
- add_noise of a fixed clean sample at the timesteps of step indices 0, 4 and 9;
- img2img (epsilon): add_noise at timesteps[4] (set_begin_index(4) where the scheduler has it),
  then steps 4..9 to the end;
- Karras sigmas (use_karras_sigmas=True) for euler (linspace, leading) and dpmpp-2m (linspace);
- DDIM with eta = 1 and explicit variance_noise (3 steps).
Noise of stochastic schedulers is re-created by drawing from a clone of the seeded generator
before each step, so the Rust side can pass exactly the same noise.
"""

import json
import os

import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "schedulers", "schedulers.json")

SD_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    steps_offset=1,
    set_alpha_to_one=False,
    clip_sample=False,
)
KINDS = {
    "ddim": DDIMScheduler,
    "ddpm": DDPMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler-a": EulerAncestralDiscreteScheduler,
    "dpmpp-2m": DPMSolverMultistepScheduler,
}
STOCHASTIC = {"ddpm", "euler-a"}
SHAPE = (1, 4, 2, 2)
STEPS = 10


def fl(t):
    """Tensor -> flat list of float32 values (shortest round-trip repr)."""
    return [float(str(np.float32(v))) for v in t.detach().to(torch.float32).flatten().tolist()]


def make(kind, spacing, prediction, karras=False):
    cfg = dict(SD_CONFIG, timestep_spacing=spacing, prediction_type=prediction)
    if karras:
        cfg["use_karras_sigmas"] = True
    return KINDS[kind].from_config(cfg)


def run_steps(sched, kind, start, count, sample, outputs, gen):
    steps = []
    for k in range(count):
        i = start + k
        t = sched.timesteps[i]
        scaled = sched.scale_model_input(sample, t)
        noise = None
        if kind in STOCHASTIC:
            probe = torch.Generator().set_state(gen.get_state())
            noise = torch.randn(SHAPE, generator=probe, dtype=torch.float32)
        out = sched.step(outputs[k], t, sample, generator=gen if kind in STOCHASTIC else None)
        prev = out.prev_sample
        if kind == "ddpm" and int(t) == 0:
            noise = None  # diffusers draws no noise at t == 0
        steps.append(
            dict(step_index=i, scaled=fl(scaled), noise=None if noise is None else fl(noise), prev_sample=fl(prev))
        )
        sample = prev
    return steps


def main():
    g = torch.Generator().manual_seed(1234)
    sample = torch.randn(SHAPE, generator=g)
    outputs = [torch.randn(SHAPE, generator=g) for _ in range(STEPS)]
    original = torch.randn(SHAPE, generator=g) * 0.8
    clean_noise = torch.randn(SHAPE, generator=g)
    eta_noise = [torch.randn(SHAPE, generator=g) for _ in range(3)]

    base = make("ddim", "leading", "epsilon")
    doc = dict(
        generator="diffusers 0.42.1 / torch 2.15.0 (tools/ref/schedulers.py)",
        config=dict(SD_CONFIG),
        shape=list(SHAPE),
        num_inference_steps=STEPS,
        alphas_cumprod=fl(base.alphas_cumprod),
        sample=fl(sample),
        model_outputs=[fl(o) for o in outputs],
        original=fl(original),
        clean_noise=fl(clean_noise),
        cases=[],
        ddim_eta=[],
    )

    combos = [
        (kind, spacing, prediction, False)
        for kind in KINDS
        for spacing in ["leading", "trailing", "linspace"]
        for prediction in ["epsilon", "v_prediction"]
    ] + [("euler", "linspace", "epsilon", True), ("euler", "leading", "epsilon", True), ("dpmpp-2m", "linspace", "epsilon", True)]
    if True:
        for kind, spacing, prediction, karras in combos:
                sched = make(kind, spacing, prediction, karras)
                sched.set_timesteps(50)
                ts50 = [float(t) for t in sched.timesteps.tolist()]
                sched.set_timesteps(STEPS)
                ts = [float(t) for t in sched.timesteps.tolist()]
                init_sigma = float(sched.init_noise_sigma)
                gen = torch.Generator().manual_seed(42)
                steps = run_steps(sched, kind, 0, 3, sample.clone(), outputs, gen)

                add_noise = []
                for idx in [0, 4, 9]:
                    s2 = make(kind, spacing, prediction, karras)
                    s2.set_timesteps(STEPS)
                    t = s2.timesteps[idx : idx + 1]
                    res = s2.add_noise(original, clean_noise, t)
                    add_noise.append(dict(step_index=idx, timestep=float(t[0]), result=fl(res)))

                case = dict(
                    kind=kind,
                    spacing=spacing,
                    prediction=prediction,
                    karras=karras,
                    timesteps=ts,
                    timesteps_50=ts50,
                    init_noise_sigma=init_sigma,
                    steps=steps,
                    add_noise=add_noise,
                )

                if prediction == "epsilon":
                    s3 = make(kind, spacing, prediction, karras)
                    s3.set_timesteps(STEPS)
                    begin = 4
                    if hasattr(s3, "set_begin_index"):
                        s3.set_begin_index(begin)
                    t = s3.timesteps[begin : begin + 1]
                    noised = s3.add_noise(original, clean_noise, t)
                    gen = torch.Generator().manual_seed(7)
                    isteps = run_steps(s3, kind, begin, STEPS - begin, noised, outputs, gen)
                    case["img2img"] = dict(begin=begin, timestep=float(t[0]), noised=fl(noised), steps=isteps)
                doc["cases"].append(case)

    for spacing in ["leading", "trailing"]:
        for prediction in ["epsilon", "v_prediction"]:
            sched = make("ddim", spacing, prediction)
            sched.set_timesteps(STEPS)
            x = sample.clone()
            steps = []
            for i in range(3):
                t = sched.timesteps[i]
                prev = sched.step(outputs[i], t, x, eta=1.0, variance_noise=eta_noise[i]).prev_sample
                steps.append(dict(step_index=i, scaled=fl(x), noise=fl(eta_noise[i]), prev_sample=fl(prev)))
                x = prev
            doc["ddim_eta"].append(dict(spacing=spacing, prediction=prediction, eta=1.0, steps=steps))

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
