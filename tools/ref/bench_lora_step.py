"""Times a LoRA training step in diffusers + peft on the Toyland UNet config, as `vstar bench`
does (rank 4, alpha 4 on every attention to_q/to_k/to_v/to_out.0, AdamW lr 1e-4, MSE on a
random target, timestep 500, context of 32 tokens), so the ratio is taken on one machine.

    /work/venv-ref/bin/python tools/ref/bench_lora_step.py [--iters 10]
Reads the config from assets/toyland/unet/config.json (random weights, seed 0).
"""
import argparse
import json
import pathlib
import time

import torch
from diffusers import UNet2DConditionModel
from peft import LoraConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = json.loads((ROOT / "assets/toyland/unet/config.json").read_text())
    unet = UNet2DConditionModel.from_config(cfg)
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    side = cfg["sample_size"]
    print(f"diffusers + peft LoRA training step, {torch.get_num_threads()} thread(s), mean of {args.iters} after 2")
    for batch in [1, 4]:
        x = torch.randn(batch, 4, side, side)
        target = torch.randn(batch, 4, side, side)
        c = torch.randn(batch, 32, cfg["cross_attention_dim"])
        t = torch.full((batch,), 500)

        def step():
            loss = torch.nn.functional.mse_loss(unet(x, t, encoder_hidden_states=c).sample, target)
            opt.zero_grad()
            loss.backward()
            opt.step()

        for _ in range(2):
            step()
        start = time.perf_counter()
        for _ in range(args.iters):
            step()
        print(f"  batch {batch}: {(time.perf_counter() - start) * 1000 / args.iters:.1f} ms per step")


if __name__ == "__main__":
    main()
