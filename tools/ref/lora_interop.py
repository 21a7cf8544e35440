"""A LoRA trained by vstar loads in diffusers and renders the same image.

    cargo build --release && /work/venv-ref/bin/python tools/ref/lora_interop.py

Trains a LoRA with `vstar train` on the tiny SD-1.5-like fixture (tests/fixtures/sd15-tiny)
from Toyland renders, in both file layouts (diffusers/PEFT and kohya); renders a 10-step DDIM
image from the same initial noise with `vstar sample --adapter` and with diffusers'
`load_lora_weights`; prints the difference (8-bit levels) and the LoRA's own effect for scale.
"""
import json
import os
import pathlib
import subprocess
import tempfile

import numpy as np
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from PIL import Image
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "sd15-tiny"
VSTAR = ROOT / "target" / "release" / "vstar"
PROMPT = "a photo of sks dog in the snow"


def vstar(*args):
    return subprocess.run([str(VSTAR), *map(str, args)], check=True, capture_output=True, text=True).stdout.strip()


def diffusers_image(lora, noise):
    pipe = StableDiffusionPipeline.from_pretrained(FIXTURE)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    if lora is not None:
        pipe.load_lora_weights(str(lora.parent), weight_name=lora.name)
    out = pipe(PROMPT, negative_prompt="", num_inference_steps=10, guidance_scale=7.5, latents=noise.clone(),
               height=32, width=32, output_type="np").images[0]
    return np.round(out * 255).astype(int)


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="vstar-interop-"))
    vstar("toyland", "render", "--size", "32", "--out", tmp / "world")
    noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(4))
    save_file({"noise": noise}, tmp / "noise.safetensors")
    base = diffusers_image(None, noise)
    report = {}
    for fmt in ["diffusers", "kohya"]:
        out = tmp / f"lora-{fmt}"
        lora = pathlib.Path(vstar("train", "--model", FIXTURE, "--images", tmp / "world/toybooth/dog_a", "--token", "sks",
                                  "--class", "dog", "--steps", "30", "--lr", "0.01", "--rank", "4", "--format", fmt,
                                  "--out", out))
        png = tmp / f"vstar-{fmt}.png"
        vstar("sample", "--model", FIXTURE, "--adapter", lora, "--prompt", PROMPT, "--init-noise", tmp / "noise.safetensors",
              "--steps", "10", "--guidance", "7.5", "--scheduler", "ddim", "--out", png)
        ours = np.asarray(Image.open(png).convert("RGB")).astype(int)
        theirs = diffusers_image(lora, noise)
        report[fmt] = {
            "max_abs_diff_8bit": int(np.abs(ours - theirs).max()),
            "mean_abs_diff_8bit": float(np.abs(ours - theirs).mean()),
            "lora_effect_mean_abs_8bit": float(np.abs(theirs - base).mean()),
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
