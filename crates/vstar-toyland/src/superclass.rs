//! The eight subject superclasses.

use serde::{Deserialize, Serialize};

/// A subject category with its own parametric silhouette.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Superclass {
    Dog,
    Cat,
    Teapot,
    Backpack,
    Vase,
    Clock,
    Robot,
    Bowl,
}

impl Superclass {
    pub const ALL: [Superclass; 8] = [
        Superclass::Dog,
        Superclass::Cat,
        Superclass::Teapot,
        Superclass::Backpack,
        Superclass::Vase,
        Superclass::Clock,
        Superclass::Robot,
        Superclass::Bowl,
    ];

    /// The class word used in captions ("a photo of a dog").
    pub fn word(self) -> &'static str {
        match self {
            Superclass::Dog => "dog",
            Superclass::Cat => "cat",
            Superclass::Teapot => "teapot",
            Superclass::Backpack => "backpack",
            Superclass::Vase => "vase",
            Superclass::Clock => "clock",
            Superclass::Robot => "robot",
            Superclass::Bowl => "bowl",
        }
    }

    pub fn index(self) -> usize {
        Superclass::ALL.iter().position(|&s| s == self).unwrap_or(0)
    }

    /// Dogs and cats are "live" subjects in DreamBooth's sense (outfits make sense on them).
    pub fn is_live(self) -> bool {
        matches!(self, Superclass::Dog | Superclass::Cat)
    }
}
