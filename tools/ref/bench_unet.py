"""Times diffusers' UNet2DConditionModel forward at batch 2 for the configs `vstar bench` uses,
so the ratio vstar / PyTorch is taken on the same machine.

Run by hand (never in CI), in the reference virtualenv:
    /work/venv-ref/bin/python tools/ref/bench_unet.py [--iters 10]
Keep CONFIGS in sync with crates/vstar/src/bench.rs.
"""
import argparse
import time

import torch
from diffusers import UNet2DConditionModel

CONFIGS = [
    ("tiny (sd15-tiny: 32/64 ch, 16x16 latents)", dict(
        block_out_channels=(32, 64), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32), 16, 77),
    ("small (Toyland-sized: 64/128 ch, 8x8 latents, head dim 32)", dict(
        block_out_channels=(64, 128), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=128, attention_head_dim=(2, 4), norm_num_groups=32), 8, 77),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"diffusers UNet forward, batch 2, f32, {torch.get_num_threads()} thread(s), "
          f"mean of {args.iters} calls after 2 warm-up calls")
    for name, cfg, side, ctx_len in CONFIGS:
        unet = UNet2DConditionModel(sample_size=side, **cfg).eval()
        params = sum(p.numel() for p in unet.parameters())
        x = torch.randn(2, 4, side, side)
        c = torch.randn(2, ctx_len, cfg["cross_attention_dim"])
        with torch.no_grad():
            for _ in range(2):
                unet(x, 500, encoder_hidden_states=c)
            start = time.perf_counter()
            for _ in range(args.iters):
                unet(x, 500, encoder_hidden_states=c)
        ms = (time.perf_counter() - start) * 1000 / args.iters
        print(f"  {name}: {params / 1e6:.2f} M params, {ms:.1f} ms per call")


if __name__ == "__main__":
    main()
