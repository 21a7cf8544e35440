//! Context attributes: everything about a render that captions can say in words.

use crate::color::Rgb;
use rand::Rng;
use serde::{Deserialize, Serialize};

macro_rules! attribute {
    ($(#[$m:meta])* $name:ident { $($var:ident => $word:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($var),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            /// Stable snake_case name (the serde name), used in labels and file names.
            pub fn name(self) -> &'static str {
                match self { $($name::$var => $word),+ }
            }

            /// Position in `ALL`: the class index for an oracle head.
            pub fn index(self) -> usize {
                Self::ALL.iter().position(|&v| v == self).unwrap_or(0)
            }

            pub fn sample_uniform<R: Rng + ?Sized>(rng: &mut R) -> Self {
                Self::ALL[rng.random_range(0..Self::ALL.len())]
            }
        }
    };
}

attribute!(
    /// Background scene.
    Scene {
        Studio => "studio",
        Snow => "snow",
        Beach => "beach",
        Jungle => "jungle",
        City => "city",
        PinkFabric => "pink_fabric",
        WoodenFloor => "wooden_floor",
        Mountains => "mountains",
        NightSky => "night_sky",
        Desert => "desert",
    }
);

attribute!(
    /// Recolouring of the subject's main colour; `Natural` keeps the instance palette.
    ColorMod {
        Natural => "natural",
        Red => "red",
        Orange => "orange",
        Yellow => "yellow",
        Green => "green",
        Blue => "blue",
        Purple => "purple",
    }
);

attribute!(
    /// Something the subject wears.
    Accessory {
        None => "none",
        RedHat => "red_hat",
        SantaHat => "santa_hat",
        Sunglasses => "sunglasses",
        RainbowScarf => "rainbow_scarf",
    }
);

attribute!(
    /// Surface material.
    Material {
        Plain => "plain",
        Shiny => "shiny",
        Wet => "wet",
    }
);

attribute!(
    /// Rendering style.
    Style {
        Photo => "photo",
        Sketch => "sketch",
        Watercolor => "watercolor",
        PixelArt => "pixel_art",
        OilPainting => "oil_painting",
    }
);

impl ColorMod {
    /// The replacement main colour (saturated, so it never looks like a natural palette, whose
    /// HSV saturation stays below 0.4).
    pub fn rgb(self) -> Option<Rgb> {
        match self {
            ColorMod::Natural => None,
            ColorMod::Red => Some([214, 30, 36]),
            ColorMod::Orange => Some([246, 128, 18]),
            ColorMod::Yellow => Some([244, 214, 28]),
            ColorMod::Green => Some([36, 168, 56]),
            ColorMod::Blue => Some([36, 86, 226]),
            ColorMod::Purple => Some([146, 44, 196]),
        }
    }
}

/// Everything a caption can say about a render besides the subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Context {
    pub scene: Scene,
    pub color: ColorMod,
    pub accessory: Accessory,
    pub material: Material,
    pub style: Style,
}

impl Default for Context {
    /// The plain context: a photo in the studio, natural colour, nothing worn.
    fn default() -> Self {
        Context {
            scene: Scene::Studio,
            color: ColorMod::Natural,
            accessory: Accessory::None,
            material: Material::Plain,
            style: Style::Photo,
        }
    }
}

impl Context {
    /// Every attribute uniform: balanced classes, what an oracle should train on.
    pub fn sample_uniform<R: Rng + ?Sized>(rng: &mut R) -> Self {
        Context {
            scene: Scene::sample_uniform(rng),
            color: ColorMod::sample_uniform(rng),
            accessory: Accessory::sample_uniform(rng),
            material: Material::sample_uniform(rng),
            style: Style::sample_uniform(rng),
        }
    }

    /// The generator's training distribution: the "nothing special" value of each attribute is
    /// more common (as in real captioned data), every other value still frequent.
    pub fn sample_training<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let pick = |rng: &mut R, plain_p: f64, n: usize| -> usize {
            if rng.random_bool(plain_p) {
                0
            } else {
                rng.random_range(1..n)
            }
        };
        Context {
            scene: Scene::sample_uniform(rng),
            color: ColorMod::ALL[pick(rng, 0.4, ColorMod::ALL.len())],
            accessory: Accessory::ALL[pick(rng, 0.4, Accessory::ALL.len())],
            material: Material::ALL[pick(rng, 0.5, Material::ALL.len())],
            style: Style::ALL[pick(rng, 0.4, Style::ALL.len())],
        }
    }
}
