"""Golden fixtures for vstar's image encoders (CLIP-I, CLIP-T, DINO metrics), made with transformers.

Makes, under tests/fixtures/vision/:
  images/            two small smooth RGB PNGs (landscape and portrait) every processor below reads
  clip/              a tiny CLIPModel (both towers, text_projection, visual_projection, logit_scale)
                     with the sd15-tiny CLIP tokenizer files beside its weights, as hub CLIP folders ship them
  clip-vision/       a tiny CLIPVisionModel (gelu, no projection)
  clip-vision-proj/  a tiny CLIPVisionModelWithProjection
  dino-vit/          a tiny ViTModel without pooler (facebook/dino-vits16's layout), with a legacy
                     ViTFeatureExtractor preprocessor_config.json as that repo has
  dinov2/            a tiny Dinov2Model whose processor crops 40x48, so its position embeddings
                     are interpolated from the 4x4 training grid (also run at 32x32 and 24x16)

Each <name>/model/ is what `save_pretrained` writes (config.json, model.safetensors,
preprocessor_config.json), a folder as users download it; <name>/golden.safetensors (beside it,
so the loader sees one weight file) holds the processor's pixel_values (transformers' PIL
backends: CLIPImageProcessorPil, ViTImageProcessorPil, BitImageProcessorPil) for the two
images and the model's outputs on them (last_hidden_state, pooled, image_embeds / text_embeds,
logits_per_image), computed from the saved folder reloaded. Weights are seeded; every 1-D
parameter (norms, biases, layer scales) is randomised too so a swapped name cannot pass.

Run by hand, never in CI (needs torch, transformers, pillow):
    /work/venv-ref/bin/python tools/ref/make_vision_fixtures.py
"""
import json
import os
import shutil

import numpy as np
import torch
import transformers
from PIL import Image
from safetensors.torch import save_file
from transformers import (BitImageProcessorPil, CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizer,
                          CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection, Dinov2Config,
                          Dinov2Model, ViTConfig, ViTImageProcessorPil, ViTModel)

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures")
OUT = os.path.join(ROOT, "vision")
TOKENIZER = os.path.join(ROOT, "sd15-tiny", "tokenizer")
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
PROMPTS = ["a photo of a dog", "a red teapot on the beach at night"]
VISION = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
              patch_size=8)


def smooth_image(seed, w, h):
    """A smooth colour field (upsampled noise plus a gradient): resampling filters agree on it."""
    rng = np.random.default_rng(seed)
    low = Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8))
    img = np.asarray(low.resize((w, h), Image.BICUBIC), dtype=np.float32)
    img = 0.8 * img + 0.2 * np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    return Image.fromarray(img.clip(0, 255).round().astype(np.uint8))


def images():
    d = os.path.join(OUT, "images")
    os.makedirs(d, exist_ok=True)
    out = []
    for i, (w, h) in enumerate([(90, 70), (64, 100)]):
        smooth_image(i, w, h).save(os.path.join(d, f"image_{i}.png"))
        out.append(Image.open(os.path.join(d, f"image_{i}.png")).convert("RGB"))
    return out


def randomise(model, seed):
    """Seeded weights; 1-D parameters (norm weights, biases, layer scales) away from 1 / 0."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                base = 1.0 if name.endswith("weight") or name.endswith("lambda1") else 0.0
                p.copy_(base + 0.1 * torch.randn_like(p))
            elif p.dim() == 0:
                p.fill_(3.1)  # logit_scale: any value away from the init default
    return model.eval()


def save_golden(d, g):
    d = os.path.dirname(d)
    g = {k: (v.to(torch.int64) if k == "input_ids" else v.float()).contiguous().clone() for k, v in g.items()}
    save_file(g, os.path.join(d, "golden.safetensors"))
    meta = {"transformers": transformers.__version__, "torch": torch.__version__,
            "tensors": {k: list(v.shape) for k, v in g.items()}}
    with open(os.path.join(d, "golden.json"), "w") as f:
        json.dump(meta, f, indent=1)


def fresh(name):
    """<name>/model/, emptied; save_golden writes into its parent."""
    shutil.rmtree(os.path.join(OUT, name), ignore_errors=True)
    d = os.path.join(OUT, name, "model")
    os.makedirs(d)
    return d


def clip_processor():
    return CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


@torch.no_grad()
def clip_full(imgs):
    d = fresh("clip")
    text = dict(vocab_size=1514, hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=77, bos_token_id=1512, eos_token_id=1513, pad_token_id=1513)
    cfg = CLIPConfig(text_config=text, vision_config=VISION, projection_dim=16)
    torch.manual_seed(0)
    randomise(CLIPModel(cfg), 1).save_pretrained(d)
    clip_processor().save_pretrained(d)
    for f in ["vocab.json", "merges.txt", "tokenizer_config.json"]:
        shutil.copy(os.path.join(TOKENIZER, f), os.path.join(d, f))
    model = CLIPModel.from_pretrained(d).eval()
    tok = CLIPTokenizer(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt"), model_max_length=77,
                        pad_token="<|endoftext|>")
    g = {"pixel_values": clip_processor()(imgs, return_tensors="pt").pixel_values,
         "input_ids": tok(PROMPTS, padding="max_length", max_length=77, return_tensors="pt").input_ids}
    out = model(input_ids=g["input_ids"], pixel_values=g["pixel_values"])
    # CLIPModel's vision_model_output.pooler_output is already projected: ask the tower itself.
    tower = model.vision_model(pixel_values=g["pixel_values"])
    g["vision_last_hidden_state"], g["vision_pooled"] = tower.last_hidden_state, tower.pooler_output
    g["image_embeds"], g["text_embeds"] = out.image_embeds, out.text_embeds  # unit-normalised, as CLIPModel returns
    g["logits_per_image"] = out.logits_per_image
    save_golden(d, g)


@torch.no_grad()
def clip_vision(imgs, name, cls, **extra):
    d = fresh(name)
    torch.manual_seed(0)
    randomise(cls(CLIPVisionConfig(**VISION, **extra)), 2).save_pretrained(d)
    clip_processor().save_pretrained(d)
    model = cls.from_pretrained(d).eval()
    g = {"pixel_values": clip_processor()(imgs, return_tensors="pt").pixel_values}
    out = model(pixel_values=g["pixel_values"])
    g["last_hidden_state"] = out.last_hidden_state
    if cls is CLIPVisionModelWithProjection:
        g["image_embeds"] = out.image_embeds
    else:
        g["pooled"] = out.pooler_output
    save_golden(d, g)


@torch.no_grad()
def dino_vit(imgs):
    d = fresh("dino-vit")
    cfg = ViTConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                    patch_size=8)
    torch.manual_seed(0)
    randomise(ViTModel(cfg, add_pooling_layer=False), 3).save_pretrained(d)
    # facebook/dino-vits16 ships this legacy file: int size = square resize, bilinear, ImageNet statistics.
    legacy = {"feature_extractor_type": "ViTFeatureExtractor", "do_normalize": True, "do_resize": True,
              "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD, "resample": 2, "size": 32}
    with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
        json.dump(legacy, f, indent=2)
    model = ViTModel.from_pretrained(d, add_pooling_layer=False).eval()
    proc = ViTImageProcessorPil.from_pretrained(d)
    g = {"pixel_values": proc(imgs, return_tensors="pt").pixel_values}
    assert g["pixel_values"].shape == (2, 3, 32, 32), g["pixel_values"].shape
    out = model(pixel_values=g["pixel_values"])
    g["last_hidden_state"], g["pooled"] = out.last_hidden_state, out.last_hidden_state[:, 0]
    save_golden(d, g)


@torch.no_grad()
def dinov2(imgs):
    d = fresh("dinov2")
    cfg = Dinov2Config(hidden_size=32, mlp_ratio=3, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                       patch_size=8, layerscale_value=0.5)
    torch.manual_seed(0)
    randomise(Dinov2Model(cfg), 4).save_pretrained(d)
    proc = BitImageProcessorPil(size={"shortest_edge": 48}, crop_size={"height": 40, "width": 48},
                                image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)
    proc.save_pretrained(d)
    model = Dinov2Model.from_pretrained(d).eval()
    g = {"pixel_values": proc(imgs, return_tensors="pt").pixel_values}
    assert g["pixel_values"].shape == (2, 3, 40, 48), g["pixel_values"].shape
    out = model(pixel_values=g["pixel_values"])
    g["last_hidden_state"], g["pooled"] = out.last_hidden_state, out.pooler_output
    # The training size (no interpolation) and a smaller one (the grid shrinks, 4x4 -> 3x2, as
    # real DINOv2 checkpoints' 37x37 grid does for 224 px inputs).
    gen = torch.Generator().manual_seed(5)
    for case, (h, w) in [("square", (32, 32)), ("small", (24, 16))]:
        g[f"pixel_values_{case}"] = torch.randn(1, 3, h, w, generator=gen)
        out = model(pixel_values=g[f"pixel_values_{case}"])
        g[f"last_hidden_state_{case}"], g[f"pooled_{case}"] = out.last_hidden_state, out.pooler_output
    save_golden(d, g)


def main():
    imgs = images()
    clip_full(imgs)
    clip_vision(imgs, "clip-vision", CLIPVisionModel, hidden_act="gelu", layer_norm_eps=1e-6)
    clip_vision(imgs, "clip-vision-proj", CLIPVisionModelWithProjection, projection_dim=24)
    dino_vit(imgs)
    dinov2(imgs)
    for name in sorted(os.listdir(OUT)):
        size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(OUT, name)) for f in fs)
        print(f"{name}: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
