"""Golden fixture for vstar's Segment Anything (SAM) inference, made with transformers.

Makes, under tests/fixtures/sam/:
  model/             a tiny SamModel as `save_pretrained` writes it (config.json, model.safetensors)
                     plus the image processor's preprocessor_config.json (longest edge 64, pad 64x64):
                     vision tower hidden 32, 2 heads, patch 8 (an 8x8 grid), layer 0 windowed
                     (window 3, so the grid is padded to 9x9) and layer 1 global, both with
                     relative positions; neck to 32 channels; prompt encoder and two-way mask
                     decoder at width 32 (2 layers, attention downsampled 2x, 3 multimask
                     outputs, upscaling to 32x32 low-res masks, hypernetwork MLPs, IoU head)
  image.png          a 40x56 (portrait) smooth RGB image: resized up to 46x64, padded to 64x64
  image_large.png    a 96x80 (landscape) one: resized down (antialiased) to 64x53
  golden.safetensors what transformers computes from the saved folder reloaded, with the PIL
                     backend SamProcessor (transformers' default without torchvision):
      pixel_values, image_embeddings, image_positional_embeddings; for image.png and each
      prompt P in {box, point} (one box [8, 10, 30, 44]; one positive point (20, 28), in image
      pixels) and M in {single, multi} (multimask_output False / True):
        P_input (the processor's normalised input_boxes / input_points), P_sparse (prompt
        encoder output), P_M_iou_scores, P_M_pred_masks (low-res logits),
        P_M_masks (post_process_masks with binarize=False: logits at the image's size),
        P_M_binary (binarize=True, as 0/1);
      for image_large.png: large_pixel_values, large_box_multi_{iou_scores,pred_masks,masks,binary}
      (box [20, 12, 70, 60]).
  golden.json        versions and tensor shapes

Weights are seeded; every parameter is re-drawn (transformers zero-initialises the position
and relative-position tables), 1-D ones (norms, biases) away from 1 / 0 so a swapped name
cannot pass.

Run by hand, never in CI (needs torch, transformers, pillow):
    /work/venv-ref/bin/python tools/ref/make_sam_fixture.py
"""
import json
import math
import os
import shutil

import numpy as np
import torch
import transformers
from PIL import Image
from safetensors.torch import save_file
from transformers import SamConfig, SamImageProcessorPil, SamModel, SamProcessor

from make_vision_fixtures import smooth_image

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "sam")
BOX = [8, 10, 30, 44]
POINT = [20, 28]
LARGE_BOX = [20, 12, 70, 60]

VISION = dict(hidden_size=32, output_channels=32, num_hidden_layers=2, num_attention_heads=2, image_size=64,
              patch_size=8, mlp_dim=48, window_size=3, global_attn_indexes=[1], num_pos_feats=16)
PROMPT = dict(hidden_size=32, image_size=64, patch_size=8, mask_input_channels=8)
DECODER = dict(hidden_size=32, mlp_dim=48, num_hidden_layers=2, num_attention_heads=2, attention_downsample_rate=2,
               num_multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=24)


def randomise(model, seed):
    """Every parameter seeded: 1-D ones near 1 (weights) / 0 (biases), tables and matrices with
    unit-variance outputs (std 1/sqrt(fan-in)), the absolute position table and the random
    Fourier matrix of the prompt encoder at std 0.5 / 1."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn_like(p))
            elif name.endswith("pos_embed"):
                p.copy_(0.5 * torch.randn_like(p))
            elif name.endswith("positional_embedding"):
                p.copy_(torch.randn_like(p))
            else:
                fan_in = p.numel() // p.shape[0]
                p.copy_(torch.randn_like(p) / math.sqrt(fan_in))
    return model.eval()


def post(processor, pred, inputs):
    args = (inputs["original_sizes"], inputs["reshaped_input_sizes"])
    logits = processor.post_process_masks(pred.clone(), *args, binarize=False)[0]
    binary = processor.post_process_masks(pred.clone(), *args)[0]
    return logits, binary.float()


@torch.no_grad()
def run(model, processor, image, prompt, key, g, multis=(False, True)):
    if prompt[0] == "box":
        inputs = processor(images=image, input_boxes=[[prompt[1]]], return_tensors="pt")
        g[f"{key}_input"] = inputs["input_boxes"]
        kw = dict(input_boxes=inputs["input_boxes"])
    else:
        inputs = processor(images=image, input_points=[[[prompt[1]]]], input_labels=[[[1]]], return_tensors="pt")
        g[f"{key}_input"] = inputs["input_points"]
        kw = dict(input_points=inputs["input_points"], input_labels=inputs["input_labels"])
    sparse, _ = model.get_prompt_embeddings(**kw)
    g[f"{key}_sparse"] = sparse
    for multi in multis:
        out = model(pixel_values=inputs["pixel_values"], multimask_output=multi, **kw)
        m = f"{key}_{'multi' if multi else 'single'}"
        g[f"{m}_iou_scores"], g[f"{m}_pred_masks"] = out.iou_scores, out.pred_masks
        g[f"{m}_masks"], g[f"{m}_binary"] = post(processor, out.pred_masks, inputs)
        share = g[f"{m}_binary"].mean().item()
        print(f"{m}: iou {out.iou_scores.flatten().tolist()}, mask share {share:.2f}")
    return inputs


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    d = os.path.join(OUT, "model")
    os.makedirs(d)
    cfg = SamConfig(vision_config=VISION, prompt_encoder_config=PROMPT, mask_decoder_config=DECODER)
    torch.manual_seed(0)
    randomise(SamModel(cfg), 1).save_pretrained(d)
    processor = SamProcessor(SamImageProcessorPil(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
                                                  mask_size={"longest_edge": 16},
                                                  mask_pad_size={"height": 16, "width": 16}))
    processor.image_processor.save_pretrained(d)  # preprocessor_config.json, as hub SAM folders ship it
    model = SamModel.from_pretrained(d).eval()
    processor = SamProcessor.from_pretrained(d)
    assert isinstance(processor.image_processor, SamImageProcessorPil), type(processor.image_processor)

    smooth_image(0, 40, 56).save(os.path.join(OUT, "image.png"))
    smooth_image(1, 96, 80).save(os.path.join(OUT, "image_large.png"))
    image = Image.open(os.path.join(OUT, "image.png")).convert("RGB")
    large = Image.open(os.path.join(OUT, "image_large.png")).convert("RGB")

    g = {}
    inputs = run(model, processor, image, ("box", BOX), "box", g)
    run(model, processor, image, ("point", POINT), "point", g)
    assert tuple(inputs["reshaped_input_sizes"][0].tolist()) == (64, 46), inputs["reshaped_input_sizes"]
    with torch.no_grad():
        g["pixel_values"] = inputs["pixel_values"]
        g["image_embeddings"] = model.get_image_embeddings(inputs["pixel_values"])
        g["image_positional_embeddings"] = model.get_image_wide_positional_embeddings()
    gl = {}
    inputs = run(model, processor, large, ("box", LARGE_BOX), "box", gl, multis=(True,))
    assert tuple(inputs["reshaped_input_sizes"][0].tolist()) == (53, 64), inputs["reshaped_input_sizes"]
    g["large_pixel_values"] = inputs["pixel_values"]
    g.update({f"large_{k}": v for k, v in gl.items() if k.startswith("box_multi")})

    g = {k: v.float().contiguous().clone() for k, v in g.items()}
    save_file(g, os.path.join(OUT, "golden.safetensors"))
    meta = {"transformers": transformers.__version__, "torch": torch.__version__, "box": BOX, "point": POINT,
            "large_box": LARGE_BOX, "tensors": {k: list(v.shape) for k, v in g.items()}}
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump(meta, f, indent=1)
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print(f"sam: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
