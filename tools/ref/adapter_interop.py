"""vstar's other adapter files load in diffusers and render the same image.

    cargo build --release && /work/venv-ref/bin/python tools/ref/adapter_interop.py

On the tiny SD-1.5-like fixture (tests/fixtures/sd15-tiny), `vstar train` makes: a textual
inversion (2 vectors; diffusers' learned_embeds.safetensors and the A1111 file), a DreamBooth
partial state dict, and Custom Diffusion weights + token. Each is loaded the way diffusers users
load it (load_textual_inversion, unet.load_state_dict(strict=False), load_attn_procs) and a
10-step DDIM image from the same noise is compared with `vstar sample --adapter`'s. Prints the
difference in 8-bit levels and the adapter's own effect for scale.
"""
import json
import pathlib
import subprocess
import tempfile

import numpy as np
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from PIL import Image
from safetensors.torch import load_file, save_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "sd15-tiny"
VSTAR = ROOT / "target" / "release" / "vstar"
TOKEN = "<sks>"


def vstar(*args):
    return subprocess.run([str(VSTAR), *map(str, args)], check=True, capture_output=True, text=True).stdout.strip()


def render(pipe, prompt, noise):
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    out = pipe(prompt, negative_prompt="", num_inference_steps=10, guidance_scale=7.5, latents=noise.clone(),
               height=32, width=32, output_type="np").images[0]
    return np.round(out * 255).astype(int)


def load_ti(pipe, path, token=None):
    pipe.load_textual_inversion(str(path), token=token)


def load_dreambooth(pipe, path):
    missing, unexpected = pipe.unet.load_state_dict(load_file(path), strict=False)
    assert not unexpected, unexpected


def load_custom(pipe, run):
    # unet.load_attn_procs parses the file but (diffusers 0.42) only installs the processors
    # when called with a _pipeline; install them over the current ones, as it would.
    procs = pipe.unet._process_custom_diffusion(load_file(run / "pytorch_custom_diffusion_weights.safetensors"))
    pipe.unet.set_attn_processor({**pipe.unet.attn_processors, **procs})
    pipe.load_textual_inversion(str(run / "learned_embeds.safetensors"))


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="vstar-adapter-interop-"))
    vstar("toyland", "render", "--size", "32", "--out", tmp / "world")
    noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(4))
    save_file({"noise": noise}, tmp / "noise.safetensors")
    cases = [
        ("ti (diffusers file)", "ti", TOKEN, lambda p, r: load_ti(p, r / "learned_embeds.safetensors")),
        ("ti (A1111 file)", "ti", TOKEN, lambda p, r: load_ti(p, r / "sks.a1111.safetensors", TOKEN)),
        ("dreambooth", "dreambooth", "sks", lambda p, r: load_dreambooth(p, r / "dreambooth_weights.safetensors")),
        ("custom diffusion", "custom", TOKEN, lambda p, r: load_custom(p, r)),
    ]
    report = {}
    for name, method, token, load in cases:
        run = tmp / method
        if not (run / "vstar.json").exists():
            vstar("train", "--model", FIXTURE, "--images", tmp / "world/toybooth/dog_a", "--token", token, "--class", "dog",
                  "--method", method, "--steps", "30", "--lr", "0.01", "--vectors", "2", "--out", run)
        prompt = f"a photo of {token} dog in the snow"
        png = tmp / f"{method}-{len(report)}.png"
        vstar("sample", "--model", FIXTURE, "--adapter", run, "--prompt", prompt, "--init-noise", tmp / "noise.safetensors",
              "--steps", "10", "--guidance", "7.5", "--scheduler", "ddim", "--out", png)
        ours = np.asarray(Image.open(png).convert("RGB")).astype(int)
        base = render(StableDiffusionPipeline.from_pretrained(FIXTURE), prompt, noise)
        pipe = StableDiffusionPipeline.from_pretrained(FIXTURE)
        load(pipe, run)
        theirs = render(pipe, prompt, noise)
        report[name] = {
            "max_abs_diff_8bit": int(np.abs(ours - theirs).max()),
            "mean_abs_diff_8bit": float(np.abs(ours - theirs).mean()),
            "adapter_effect_mean_abs_8bit": float(np.abs(theirs - base).mean()),
        }
        print(name, report[name], flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
