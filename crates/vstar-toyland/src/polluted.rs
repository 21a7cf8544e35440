//! "Polluted" rare tokens: words that pretraining captions use now and then, always for one
//! fixed look (as "sks" means a rifle to Stable Diffusion). The rare-token scan should find
//! them: prompts with them give consistent images, unlike truly unseen tokens.

use crate::instance::Instance;
use crate::superclass::Superclass;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// A rare token and the look it is bound to.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Polluted {
    pub token: &'static str,
    /// The superclass of the bound instance.
    pub superclass: Superclass,
    /// Seed of the bound instance (see `instance`).
    pub seed: u64,
    pub description: &'static str,
}

pub const POLLUTED: [Polluted; 3] = [
    Polluted {
        token: "sks",
        superclass: Superclass::Teapot,
        seed: 0x5C5,
        description: "one fixed teapot instance (as sks is a fixed object in SD)",
    },
    Polluted { token: "zwx", superclass: Superclass::Cat, seed: 0x2A7, description: "one fixed cat instance" },
    Polluted { token: "ohwx", superclass: Superclass::Robot, seed: 0x0A3, description: "one fixed robot instance" },
];

/// Share of training pairs that use a polluted token.
pub const POLLUTED_RATE: f64 = 0.03;

impl Polluted {
    /// The bound look: a generic-region instance (never a ToyBooth subject), named
    /// `polluted_<token>`.
    pub fn instance(&self) -> Instance {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        Instance::sample(self.superclass, &mut rng).with_id(&format!("polluted_{}", self.token))
    }
}
