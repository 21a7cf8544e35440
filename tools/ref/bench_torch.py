"""The diffusers/PyTorch side of `vstar bench --reference PYTHON`: reads the JSON spec vstar
writes (UNet configs, latent sides, context lengths, repeats, batches, GEMM sizes, the Toyland model
folder and the sampling job), times the same work, and prints one JSON line of seconds with the keys
vstar uses. Not run in CI. By hand:
    cargo run --release -- bench --reference /work/venv-ref/bin/python
"""
import json
import sys
import time

import torch
import diffusers
import peft
from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from peft import LoraConfig


def timed(iters, f):
    f()
    start = time.perf_counter()
    for _ in range(iters):
        f()
    return (time.perf_counter() - start) / iters


def main():
    spec = json.load(open(sys.argv[1]))
    torch.manual_seed(0)
    out = {"versions": f"torch {torch.__version__}, diffusers {diffusers.__version__}, peft {peft.__version__}, "
                       f"{torch.get_num_threads()} threads"}
    best = 0.0
    for n in spec["gemm_sides"]:
        a, b = torch.randn(n, n), torch.randn(n, n)
        best = max(best, 2 * n ** 3 / timed(3, lambda: a @ b) / 1e9)
    out["gemm_gflops"] = best
    for s in spec["subjects"]:
        cfg = {k: v for k, v in s["config"].items() if not k.startswith("_")}
        reps = s["reps"]
        unet = UNet2DConditionModel(**cfg).eval()
        lora = UNet2DConditionModel(**cfg)
        lora.requires_grad_(False)
        lora.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                    target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
        opt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.01)
        for b in spec["batches"]:
            x = torch.randn(b, 4, s["side"], s["side"])
            c = torch.randn(b, s["context"], cfg["cross_attention_dim"])
            t = torch.full((b,), 500)
            target = torch.randn_like(x)

            def forward():
                with torch.no_grad():
                    unet(x, t, encoder_hidden_states=c)

            def step():
                loss = torch.nn.functional.mse_loss(lora(x, t, encoder_hidden_states=c).sample, target)
                opt.zero_grad()
                loss.backward()
                opt.step()

            out[f"forward/{s['name']}/{b}"] = timed(reps, forward)
            out[f"lora_step/{s['name']}/{b}"] = timed(reps, step)
            print(s["name"], b, out[f"forward/{s['name']}/{b}"], out[f"lora_step/{s['name']}/{b}"], file=sys.stderr)
    pipe = StableDiffusionPipeline.from_pretrained(spec["model"], torch_dtype=torch.float32, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    seed = [0]

    def sample():
        seed[0] += 1
        pipe(spec["prompt"], num_inference_steps=spec["steps"], guidance_scale=spec["guidance"], height=side,
             width=side, generator=torch.Generator().manual_seed(seed[0]))

    with torch.no_grad():
        out["sample/toyland"] = timed(3, sample)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
