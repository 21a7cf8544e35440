"""SSIM reference values from scikit-image for vstar-eval's SSIM test.

    /work/venv-ref/bin/python tools/ref/ssim_cases.py   # writes tests/fixtures/ssim/
Images are small seeded RGB arrays (saved as PNG); values are
structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=255, channel_axis=2).
"""
import json
import pathlib

import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

out = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "ssim"
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(7)
base = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
smooth = np.clip(np.cumsum(rng.integers(-20, 21, (24, 40, 3)), axis=1) + 128, 0, 255).astype(np.uint8)
variants = {
    "noisy": np.clip(base.astype(int) + rng.integers(-40, 41, base.shape), 0, 255).astype(np.uint8),
    "shifted": np.roll(base, 3, axis=1),
    "dark": (base // 2).astype(np.uint8),
}
cases = []
Image.fromarray(base).save(out / "base.png")
for name, img in variants.items():
    Image.fromarray(img).save(out / f"{name}.png")
    v = structural_similarity(base, img, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                              data_range=255, channel_axis=2)
    cases.append({"a": "base.png", "b": f"{name}.png", "ssim": float(v)})
smooth2 = np.clip(smooth.astype(int) + 15, 0, 255).astype(np.uint8)
Image.fromarray(smooth).save(out / "smooth.png")
Image.fromarray(smooth2).save(out / "smooth_bright.png")
v = structural_similarity(smooth, smooth2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                          data_range=255, channel_axis=2)
cases.append({"a": "smooth.png", "b": "smooth_bright.png", "ssim": float(v)})
(out / "cases.json").write_text(json.dumps(cases, indent=1))
print(json.dumps(cases, indent=1))
