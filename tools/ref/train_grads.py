"""Training-gradient fixtures: the gradients PyTorch computes for the tiny SD-1.5-like VAE and
UNet (tests/fixtures/sd15-tiny) on a fixed batch, so the Rust training path (custom conv,
GroupNorm and bias backward, differentiable softmax/layer norm) is checked parameter by
parameter.

    /work/venv-ref/bin/python tools/ref/train_grads.py   # writes tests/fixtures/train-grads/
"""
import pathlib

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures"
out = ROOT / "train-grads"
out.mkdir(parents=True, exist_ok=True)
g = torch.Generator().manual_seed(11)

vae = AutoencoderKL.from_pretrained(ROOT / "sd15-tiny" / "vae").float()
x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
d = vae.encode(x).latent_dist
rec = vae.decode(d.mean).sample
loss = ((rec - x) ** 2).mean()
loss.backward()
t = {"x": x, "loss": loss.detach().reshape(1)}
t.update({f"grad.{n}": p.grad for n, p in vae.named_parameters() if p.grad is not None})
save_file({k: v.contiguous() for k, v in t.items()}, out / "vae.safetensors")


def unet_grads(unet, side, context_len, name):
    """A denoising loss on a fixed batch: its inputs, loss and every parameter's gradient."""
    z = torch.randn(2, 4, side, side, generator=g)
    ctx = torch.randn(2, context_len, unet.config.cross_attention_dim, generator=g)
    ts = torch.tensor([10.0, 700.0])
    target = torch.randn(2, 4, side, side, generator=g)
    loss = ((unet(z, ts, ctx).sample - target) ** 2).mean()
    loss.backward()
    t = {"z": z, "ctx": ctx, "t": ts, "target": target, "loss": loss.detach().reshape(1)}
    t.update({f"grad.{n}": p.grad for n, p in unet.named_parameters() if p.grad is not None})
    save_file({k: v.contiguous() for k, v in t.items()}, out / name)
    print(name, "parameters with a gradient:", sum(1 for k in t if k.startswith("grad.")))


unet_grads(UNet2DConditionModel.from_pretrained(ROOT / "sd15-tiny" / "unet").float(), 16, 77, "unet.safetensors")

# A UNet with the pooled-text addition embedding (diffusers' addition_embed_type "text"),
# random weights (seeded), saved beside its gradients.
torch.manual_seed(5)
unet = UNet2DConditionModel(
    sample_size=8, block_out_channels=(32, 32), layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=32, attention_head_dim=(2, 4), norm_num_groups=32,
    addition_embed_type="text", addition_embed_type_num_heads=4)
unet.save_pretrained(out / "unet-text-embed", safe_serialization=True)
unet_grads(unet, 8, 7, "unet-text-embed.safetensors")
