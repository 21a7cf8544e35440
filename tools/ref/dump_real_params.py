"""Parameter names and shapes of the real SD 1.5, SD 2.1 and SDXL-base components, with no
weights: the models are built from their published configs on the meta device.

Writes tests/fixtures/real-configs/<sd15|sd21|sdxl>/<component>/{config.json, params.txt}
(params.txt: `name<TAB>d0,d1,...` per state_dict entry). vstar's loader test builds each
component from these lists without allocating, so a real checkpoint's names and shapes are
known to load.

Run by hand, never in CI:  /work/venv-ref/bin/python tools/ref/dump_real_params.py
The configs below restate the published config.json files (no hub access here); the
transformers 4 layout prefixes text-encoder keys with `text_model.`, as released checkpoints do.
"""
import json
import os

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "real-configs")

VAE = dict(block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
           up_block_types=["UpDecoderBlock2D"] * 4, latent_channels=4, layers_per_block=2, norm_num_groups=32,
           in_channels=3, out_channels=3, act_fn="silu")
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
UNETS = {
    "sd15": dict(sample_size=64, block_out_channels=[320, 640, 1280, 1280], layers_per_block=2,
                 down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                 up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, cross_attention_dim=768,
                 attention_head_dim=8),
    "sd21": dict(sample_size=96, block_out_channels=[320, 640, 1280, 1280], layers_per_block=2,
                 down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                 up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, cross_attention_dim=1024,
                 attention_head_dim=[5, 10, 20, 20], use_linear_projection=True, upcast_attention=True),
    "sdxl": dict(sample_size=128, block_out_channels=[320, 640, 1280], layers_per_block=2,
                 down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                 up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                 transformer_layers_per_block=[1, 2, 10], attention_head_dim=[5, 10, 20],
                 cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
                 addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816),
}
TEXT = {
    "sd15": [("text_encoder", CLIPTextModel, CLIP_L)],
    "sd21": [("text_encoder", CLIPTextModel, dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096,
                                                   num_hidden_layers=23, num_attention_heads=16,
                                                   max_position_embeddings=77, hidden_act="gelu",
                                                   projection_dim=512))],
    "sdxl": [("text_encoder", CLIPTextModel, CLIP_L),
             ("text_encoder_2", CLIPTextModelWithProjection, dict(vocab_size=49408, hidden_size=1280,
                                                                    intermediate_size=5120, num_hidden_layers=32,
                                                                    num_attention_heads=20,
                                                                    max_position_embeddings=77, hidden_act="gelu",
                                                                    projection_dim=1280))],
}


def dump(model, out, config_json, prefix=""):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config_json, f, indent=1, sort_keys=True)
    with open(os.path.join(out, "params.txt"), "w") as f:
        for name, t in model.state_dict().items():
            f.write(f"{prefix}{name}\t{','.join(str(d) for d in t.shape)}\n")


def main():
    for model_name, unet_cfg in UNETS.items():
        base = os.path.join(ROOT, model_name)
        with torch.device("meta"):
            unet = UNet2DConditionModel(**unet_cfg)
            dump(unet, os.path.join(base, "unet"), dict(unet.config))
            vcfg = dict(VAE, scaling_factor=0.13025 if model_name == "sdxl" else 0.18215)
            vae = AutoencoderKL(**vcfg)
            dump(vae, os.path.join(base, "vae"), dict(vae.config))
            for comp, cls, cfg in TEXT[model_name]:
                config = CLIPTextConfig(**cfg)
                config.architectures = [cls.__name__]
                m = cls(config)
                # transformers 5 drops the `text_model.` prefix for CLIPTextModel; released
                # checkpoints (transformers 4) carry it: write the released layout.
                keys = m.state_dict().keys()
                prefix = "" if any(k.startswith("text_model.") for k in keys) else "text_model."
                dump(m, os.path.join(base, comp), config.to_dict(), prefix)
        print(model_name, "ok")


if __name__ == "__main__":
    main()
