//! What to render: one subject in one context, plus a seed for the incidental details.

use crate::context::Context;
use crate::instance::Instance;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A complete render request. Rendering the same spec always gives the same pixels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SceneSpec {
    pub instance: Instance,
    pub context: Context,
    /// Drives everything not named above: scene decorations (stars, leaves, buildings),
    /// droplet positions, brush strokes and, when `jitter` is on, subject position and scale.
    pub seed: u64,
    /// Small random shift and scale of the subject (from `seed`).
    #[serde(default = "default_true")]
    pub jitter: bool,
}

fn default_true() -> bool {
    true
}

/// Where the subject stands, in image units (the image is 100 x 100 units at any size).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    pub dx: f32,
    pub dy: f32,
    pub scale: f32,
}

impl SceneSpec {
    pub fn new(instance: Instance, context: Context, seed: u64) -> SceneSpec {
        SceneSpec { instance, context, seed, jitter: true }
    }

    /// The per-render rng for incidental details (independent streams per purpose).
    pub(crate) fn rng(&self, stream: u64) -> ChaCha8Rng {
        let mut r = ChaCha8Rng::seed_from_u64(self.seed);
        r.set_stream(stream);
        r
    }

    pub fn layout(&self) -> Layout {
        if !self.jitter {
            return Layout { dx: 0.0, dy: 0.0, scale: 1.0 };
        }
        let mut r = self.rng(1);
        Layout { dx: r.random_range(-4.0..4.0), dy: r.random_range(-2.0..2.0), scale: r.random_range(0.9..1.05) }
    }
}
