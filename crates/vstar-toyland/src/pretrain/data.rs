//! Pretraining batches: renders and captions drawn from (run seed, stage, step) alone, so a
//! resumed stage sees exactly the data an uninterrupted one would.

use crate::context::Context;
use crate::instance::Instance;
use crate::labels::Labels;
use crate::render::render;
use crate::spec::SceneSpec;
use crate::superclass::Superclass;
use crate::training::sample_training_pair;
use candle_core::{Device, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Side of the pretraining renders (the VAE maps 32 px to 8x8 latents).
pub const SIZE: u32 = 32;

/// A seed for item `i` of `step` of `stage` (splitmix64 over the three).
pub fn item_seed(seed: u64, stage: u64, step: usize, i: usize) -> u64 {
    let mut z = seed ^ stage.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((step as u64) << 20) ^ i as u64;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Renders in [-1, 1] as (B, 3, S, S), rendered in parallel.
pub fn images(specs: &[SceneSpec], dev: &Device) -> Result<Tensor> {
    let px: Vec<f32> = specs
        .par_iter()
        .flat_map_iter(|s| {
            let r = render(s, SIZE).image;
            let (w, h) = r.dimensions();
            let mut chw = vec![0f32; (3 * w * h) as usize];
            for (i, p) in r.pixels().enumerate() {
                for c in 0..3 {
                    chw[c * (w * h) as usize + i] = p.0[c] as f32 / 127.5 - 1.0;
                }
            }
            chw
        })
        .collect();
    Tensor::from_vec(px, (specs.len(), 3, SIZE as usize, SIZE as usize), dev)
}

/// Captioned generic renders (the text-to-image training distribution).
pub fn captioned(seed: u64, stage: u64, step: usize, b: usize) -> (Vec<SceneSpec>, Vec<String>) {
    (0..b)
        .map(|i| {
            let p = sample_training_pair(item_seed(seed, stage, step, i));
            (p.spec, p.caption)
        })
        .unzip()
}

/// Generic instances in uniformly drawn contexts (what the oracles learn from); labels too.
pub fn labelled(seed: u64, stage: u64, step: usize, b: usize) -> (Vec<SceneSpec>, Vec<Labels>) {
    (0..b)
        .map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(item_seed(seed, stage, step, i));
            let sc = Superclass::ALL[rng.random_range(0..Superclass::ALL.len())];
            let spec = SceneSpec::new(Instance::sample(sc, &mut rng), Context::sample_uniform(&mut rng), rng.random());
            let labels = Labels::of(&spec);
            (spec, labels)
        })
        .unzip()
}

/// `b/2` generic instances, each in two independent contexts: rows i and i + b/2 are the same
/// subject (the identity oracle's positives). Every odd step draws all its instances from one
/// superclass, so half the negatives are hard: telling apart two subjects of one superclass is
/// what ToyBooth retrieval asks (most of its misses were within a superclass).
pub fn paired_views(seed: u64, stage: u64, step: usize, b: usize) -> Vec<SceneSpec> {
    let half = b / 2;
    let pick = |rng: &mut ChaCha8Rng| Superclass::ALL[rng.random_range(0..Superclass::ALL.len())];
    let shared = (step % 2 == 1).then(|| pick(&mut ChaCha8Rng::seed_from_u64(item_seed(seed, stage + 200, step, 0))));
    let instances: Vec<Instance> = (0..half)
        .map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(item_seed(seed, stage, step, i));
            let sc = shared.unwrap_or_else(|| pick(&mut rng));
            Instance::sample(sc, &mut rng)
        })
        .collect();
    (0..2 * half)
        .map(|j| {
            let mut rng = ChaCha8Rng::seed_from_u64(item_seed(seed, stage + 100, step, j));
            SceneSpec::new(instances[j % half].clone(), Context::sample_uniform(&mut rng), rng.random())
        })
        .collect()
}
