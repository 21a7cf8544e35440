"""Golden fixtures for vstar's model core, made with diffusers/transformers.

Makes, under tests/fixtures/:
  clip-tokenizer/   the real CLIP BPE vocabulary (from open_clip's bpe_simple_vocab_16e6.txt.gz)
                    and cases.json: ids from transformers' CLIPTokenizer for varied prompts
  sd15-tiny/ sd21-tiny/ sdxl-tiny/
                    tiny random-weight pipelines in diffusers layout (seeded), each with
                    golden.safetensors + golden.json: token ids, text embeddings, one UNet
                    forward, VAE encode/decode, a 10-step DDIM txt2img from given noise, and
                    (SD 1.5) img2img.

Run by hand, never in CI (needs torch, diffusers, transformers):
    /work/venv-ref/bin/python tools/ref/make_pipelines.py --bpe /path/to/bpe_simple_vocab_16e6.txt.gz
The .gz comes from the PyPI wheel open_clip_torch (MIT): `pip download --no-deps open_clip_torch`.
"""
import argparse
import gzip
import json
import os
import shutil

import torch
from diffusers import (AutoencoderKL, DDIMScheduler, StableDiffusionImg2ImgPipeline,
                       StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel)
from safetensors.torch import save_file
from transformers import (CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection,
                          CLIPTokenizer)

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures")
PROMPT = "a photo of a dog in the snow"


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_vocab(bpe_gz, out_dir, n_merges):
    """CLIP's vocabulary: byte symbols, the same with </w>, merges joined, then the specials."""
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]][:n_merges]
    vocab = bytes_to_unicode()
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "vocab.json"), "w") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return len(vocab)


CASES = [
    "a photo of a dog in the snow", "A PHOTO OF A DOG", "a dog, a cat; and a teapot!",
    "two dogs and 3 cats in 2024", "the dog's hat and they're happy", "  extra   spaces\tand\ttabs\nnewline  ",
    "café crème brûlée", "a photo of a 🐶 emoji", "", "sks", "a photo of sks dog",
    "an oil painting of V* dog wearing a santa hat", "hello-world foo_bar baz.qux",
    "Mixed CASE WoRdS with Numbers 123 456", "a sketch of a cat in paris, trending on artstation",
    "(masterpiece:1.2), best quality", "a red, shiny, wet teapot on the beach at night",
    "a photo of a dog " * 20, "日本語のテキスト", "naïve coöperation résumé",
    "a <|endoftext|> inside", "quotes \"double\" and 'single'", "percent 50% and $100 & more",
    "a photo of pasqu immen rrrr", "x" * 100,
]


def tokenizer_fixture(bpe_gz):
    d = os.path.join(ROOT, "clip-tokenizer")
    n = write_vocab(bpe_gz, d, 48894)
    assert n == 49408, n
    tok = CLIPTokenizer(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt"), model_max_length=77)
    ids = tok(PROMPT).input_ids
    assert ids == [49406, 320, 1125, 539, 320, 1929, 530, 518, 2583, 49407], ids
    enc = lambda t, text: t(text, padding="max_length", max_length=77, truncation=True).input_ids
    cases = [{"text": c, "ids": enc(tok, c)} for c in CASES]
    tok.add_tokens(["<v*>"])
    added = [{"text": c, "ids": enc(tok, c)} for c in ["a photo of <v*> dog", "<v*> on the beach"]]
    try:
        import ftfy  # noqa: F401
        has_ftfy = True
    except ImportError:
        has_ftfy = False
    with open(os.path.join(d, "cases.json"), "w") as f:
        json.dump({"tokenizer": type(tok).__module__ + "." + type(tok).__name__, "ftfy_installed": has_ftfy,
                   "cases": cases,
                   "added_token_cases": {"tokens": ["<v*>"], "ids": [tok.convert_tokens_to_ids("<v*>")],
                                         "cases": added}}, f, ensure_ascii=False, indent=0)


def tiny_tokenizer(bpe_gz, out, pad):
    n = write_vocab(bpe_gz, out, 1000)
    tok = CLIPTokenizer(os.path.join(out, "vocab.json"), os.path.join(out, "merges.txt"), pad_token=pad,
                        model_max_length=77)
    return tok, n


def text_config(n, act, **kw):
    return CLIPTextConfig(vocab_size=n, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                          intermediate_size=37, max_position_embeddings=77, hidden_act=act,
                          projection_dim=32, bos_token_id=n - 2, eos_token_id=n - 1, pad_token_id=n - 1, **kw)


def vae(scaling):
    return AutoencoderKL(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, layers_per_block=1,
                         norm_num_groups=32, sample_size=32, scaling_factor=scaling)


def ddim(prediction):
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                         set_alpha_to_one=False, clip_sample=False, timestep_spacing="leading",
                         prediction_type=prediction)


def build(kind, bpe_gz, tmp):
    torch.manual_seed(0)
    if kind == "sdxl":
        tok, n = tiny_tokenizer(bpe_gz, os.path.join(tmp, "tok1"), "<|endoftext|>")
        tok2, _ = tiny_tokenizer(bpe_gz, os.path.join(tmp, "tok2"), "!")
        unet = UNet2DConditionModel(
            sample_size=16, block_out_channels=(32, 64), layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2), attention_head_dim=(2, 4), use_linear_projection=True,
            cross_attention_dim=64, addition_embed_type="text_time", addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=6 * 8 + 32, norm_num_groups=32)
        te = CLIPTextModel(text_config(n, "quick_gelu"))
        te2 = CLIPTextModelWithProjection(text_config(n, "gelu"))
        return StableDiffusionXLPipeline(vae=vae(0.13025), text_encoder=te, text_encoder_2=te2, tokenizer=tok,
                                         tokenizer_2=tok2, unet=unet, scheduler=ddim("epsilon"),
                                         force_zeros_for_empty_prompt=True)
    sd21 = kind == "sd21"
    tok, n = tiny_tokenizer(bpe_gz, os.path.join(tmp, "tok"), "!" if sd21 else "<|endoftext|>")
    unet = UNet2DConditionModel(
        sample_size=16, block_out_channels=(32, 64), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=(2, 4) if sd21 else 8, use_linear_projection=sd21,
        upcast_attention=sd21, norm_num_groups=32)
    te = CLIPTextModel(text_config(n, "gelu" if sd21 else "quick_gelu"))
    return StableDiffusionPipeline(vae=vae(0.18215), text_encoder=te, tokenizer=tok, unet=unet,
                                   scheduler=ddim("v_prediction" if sd21 else "epsilon"), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


@torch.no_grad()
def golden(kind, pipe, out):
    g = {}
    xl = kind == "sdxl"
    ids = lambda t, s: t(s, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    g["prompt_ids"], g["negative_ids"] = ids(pipe.tokenizer, PROMPT), ids(pipe.tokenizer, "")
    if xl:
        g["prompt_ids_2"], g["negative_ids_2"] = ids(pipe.tokenizer_2, PROMPT), ids(pipe.tokenizer_2, "")
        pe, ne, pp, npool = pipe.encode_prompt(PROMPT, device="cpu", num_images_per_prompt=1,
                                               do_classifier_free_guidance=True, negative_prompt="")
        g["pooled"], g["pooled_neg"] = pp, npool
        g["add_time_ids"] = torch.tensor([[32.0, 32.0, 0.0, 0.0, 32.0, 32.0]])
    else:
        pe, ne = pipe.encode_prompt(PROMPT, "cpu", 1, True, negative_prompt="")
        o = pipe.text_encoder(g["prompt_ids"], output_hidden_states=True)
        g["text_penultimate_hidden"], g["text_pooled"] = o.hidden_states[-2], o.pooler_output
    g["text_emb"], g["text_emb_neg"] = pe, ne

    gen = torch.Generator().manual_seed(1)
    g["unet_in"] = torch.randn(2, 4, 16, 16, generator=gen)
    g["unet_t"] = torch.tensor([500.0])
    kw = {}
    if xl:
        kw["added_cond_kwargs"] = {"text_embeds": torch.cat([npool, pp]), "time_ids": g["add_time_ids"].repeat(2, 1)}
    g["unet_out"] = pipe.unet(g["unet_in"], 500, encoder_hidden_states=torch.cat([ne, pe]), **kw).sample

    g["vae_image_in"] = torch.rand(1, 3, 32, 32, generator=gen) * 2 - 1
    dist = pipe.vae.encode(g["vae_image_in"]).latent_dist
    g["vae_mean"], g["vae_logvar"] = dist.mean, dist.logvar
    g["vae_latent_in"] = torch.randn(1, 4, 16, 16, generator=gen)
    g["vae_decoded"] = pipe.vae.decode(g["vae_latent_in"]).sample

    g["init_noise"] = torch.randn(1, 4, 16, 16, generator=gen)
    call = dict(prompt=PROMPT, negative_prompt="", num_inference_steps=10, guidance_scale=7.5, height=32, width=32)
    g["image_ddim10"] = torch.from_numpy(pipe(**call, latents=g["init_noise"].clone(), output_type="np").images)
    g["latents_ddim10"] = pipe(**call, latents=g["init_noise"].clone(), output_type="latent").images

    if kind == "sd15":
        i2i = StableDiffusionImg2ImgPipeline(**pipe.components)
        g["img2img_in"] = torch.rand(1, 3, 32, 32, generator=gen)
        captured = {}
        orig = i2i.scheduler.add_noise

        def spy(original, noise, timesteps):
            captured["latents"], captured["noise"] = original.clone(), noise.clone()
            return orig(original, noise, timesteps)

        i2i.scheduler.add_noise = spy
        kw = dict(prompt=PROMPT, negative_prompt="", image=g["img2img_in"], strength=0.6, num_inference_steps=10,
                  guidance_scale=7.5)
        g["img2img_out"] = torch.from_numpy(i2i(**kw, generator=torch.Generator().manual_seed(2), output_type="np").images)
        g["img2img_init_latents"], g["img2img_noise"] = captured["latents"], captured["noise"]
        g["img2img_out_latents"] = i2i(**kw, generator=torch.Generator().manual_seed(2), output_type="latent").images

    g = {k: (v.to(torch.int64) if "_ids" in k and "time" not in k else v.float()).contiguous() for k, v in g.items()}
    save_file(g, os.path.join(out, "golden.safetensors"))
    meta = {"prompt": PROMPT, "negative_prompt": "", "guidance_scale": 7.5, "steps": 10, "scheduler": "DDIM",
            "height": 32, "width": 32, "unet_t": 500,
            "notes": ["negative_prompt='' is passed explicitly, so SDXL's negative embeddings are the encoded "
                      "empty prompt (force_zeros_for_empty_prompt only applies when it is None)",
                      "vae_decoded decodes raw (unscaled) latents",
                      "img2img_init_latents/img2img_noise are the arguments the pipeline passed to scheduler.add_noise"],
            "tensors": {k: list(v.shape) for k, v in g.items()}}
    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return g


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bpe", required=True, help="open_clip's bpe_simple_vocab_16e6.txt.gz")
    args = ap.parse_args()
    tokenizer_fixture(args.bpe)
    import tempfile
    for kind in ["sd15", "sd21", "sdxl"]:
        out = os.path.join(ROOT, f"{kind}-tiny")
        with tempfile.TemporaryDirectory() as tmp:
            pipe = build(kind, args.bpe, tmp)
            pipe.save_pretrained(out, safe_serialization=True)
            if kind != "sdxl":
                # Hub SD folders ship vocab.json + merges.txt (transformers 5 saves only
                # tokenizer.json): keep both layouts under test, SDXL with tokenizer.json alone.
                for f in ["vocab.json", "merges.txt"]:
                    shutil.copy(os.path.join(tmp, "tok", f), os.path.join(out, "tokenizer", f))
        pipe = type(pipe).from_pretrained(out)  # golden outputs from the saved folder itself
        g1 = golden(kind, pipe, out)
        g2 = golden(kind, pipe, out)
        assert all(torch.equal(g1[k], g2[k]) for k in g1), "not deterministic"
        print(kind, "ok")


if __name__ == "__main__":
    main()
