"""LoRA interop fixtures on the tiny SD-1.5-like pipeline (tests/fixtures/sd15-tiny).

Makes tests/fixtures/lora/:
  diffusers/pytorch_lora_weights.safetensors  a random rank-4 LoRA (alpha 8) on the UNet's
                                              attention projections, saved by diffusers
  kohya.safetensors                           the same LoRA in kohya's key layout
                                              (lora_unet_*.lora_down/lora_up/alpha)
  golden.safetensors                          10-step DDIM image diffusers renders with each
                                              file loaded (load_lora_weights), from fixed noise

Run by hand, never in CI:  /work/venv-ref/bin/python tools/ref/make_lora.py
"""
import os

import torch
from diffusers import StableDiffusionPipeline
from peft import LoraConfig, get_peft_model_state_dict
from safetensors.torch import load_file, save_file

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures")
PROMPT = "a photo of a dog in the snow"


def render(pipe, noise):
    return torch.from_numpy(pipe(PROMPT, negative_prompt="", num_inference_steps=10, guidance_scale=7.5,
                                 latents=noise.clone(), height=32, width=32, output_type="np").images)


def to_kohya(state, alpha):
    out = {}
    for k, v in state.items():
        # unet.<path>.lora_A.weight -> lora_unet_<path with _>.lora_down.weight
        path, kind = k[len("unet."):].rsplit(".lora_", 1)
        base = "lora_unet_" + path.replace(".", "_")
        out[base + (".lora_down.weight" if kind.startswith("A") else ".lora_up.weight")] = v
        out[base + ".alpha"] = torch.tensor(float(alpha))
    return out


@torch.no_grad()
def main():
    out = os.path.join(ROOT, "lora")
    os.makedirs(os.path.join(out, "diffusers"), exist_ok=True)
    pipe = StableDiffusionPipeline.from_pretrained(os.path.join(ROOT, "sd15-tiny"))
    torch.manual_seed(3)
    rank, alpha = 4, 8
    pipe.unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian",
                                     target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    for n, p in pipe.unet.named_parameters():
        if "lora_B" in n:  # PEFT starts B at zero; make the LoRA do something
            p.copy_(torch.randn_like(p) * 0.3)
    state = get_peft_model_state_dict(pipe.unet)
    StableDiffusionPipeline.save_lora_weights(os.path.join(out, "diffusers"), unet_lora_layers=state,
                                              safe_serialization=True)
    saved = load_file(os.path.join(out, "diffusers", "pytorch_lora_weights.safetensors"))
    save_file(to_kohya(saved, alpha), os.path.join(out, "kohya.safetensors"))

    noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(4))
    g = {"init_noise": noise}
    for name, path in [("diffusers", os.path.join(out, "diffusers")), ("kohya", os.path.join(out, "kohya.safetensors"))]:
        fresh = StableDiffusionPipeline.from_pretrained(os.path.join(ROOT, "sd15-tiny"))
        g[f"image_base"] = render(fresh, noise)
        if os.path.isdir(path):
            fresh.load_lora_weights(path)
        else:
            fresh.load_lora_weights(os.path.dirname(path), weight_name=os.path.basename(path))
        g[f"image_{name}"] = render(fresh, noise)
    assert (g["image_diffusers"] - g["image_base"]).abs().mean() > 1e-3, "the LoRA changes nothing"
    print("diffusers vs kohya load:", (g["image_diffusers"] - g["image_kohya"]).abs().max().item())
    save_file({k: v.contiguous().float() for k, v in g.items()}, os.path.join(out, "golden.safetensors"))


if __name__ == "__main__":
    main()
