//! Random (render spec, caption) pairs for pretraining the text-to-image model.

use crate::caption::{caption, MentionSet};
use crate::context::Context;
use crate::instance::Instance;
use crate::polluted::{POLLUTED, POLLUTED_RATE};
use crate::spec::SceneSpec;
use crate::superclass::Superclass;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Probability that a context attribute is mentioned in a training caption.
pub const MENTION_P: f64 = 0.75;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingPair {
    pub spec: SceneSpec,
    pub caption: String,
    /// The polluted token the caption uses, if any.
    pub polluted: Option<String>,
}

/// One training pair from `seed` (deterministic). Generic instances of a uniform
/// superclass in `Context::sample_training` contexts; each attribute said with probability
/// `MENTION_P`. A share `POLLUTED_RATE` shows a polluted token's fixed look, captioned
/// with the token ("a photo of sks", "a sks teapot in the snow").
pub fn sample_training_pair(seed: u64) -> TrainingPair {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let context = Context::sample_training(&mut rng);
    if rng.random_bool(POLLUTED_RATE) {
        let p = POLLUTED[rng.random_range(0..POLLUTED.len())];
        let mut mention = MentionSet::random(&mut rng, 0.5).with_token(p.token);
        mention.superclass = rng.random_bool(0.5);
        let spec = SceneSpec::new(p.instance(), context, rng.random());
        let caption = caption(&spec, &mention, &mut rng);
        return TrainingPair { spec, caption, polluted: Some(p.token.to_string()) };
    }
    let sc = Superclass::ALL[rng.random_range(0..Superclass::ALL.len())];
    let instance = Instance::sample(sc, &mut rng);
    let mention = MentionSet::random(&mut rng, MENTION_P);
    let spec = SceneSpec::new(instance, context, rng.random());
    let caption = caption(&spec, &mention, &mut rng);
    TrainingPair { spec, caption, polluted: None }
}
