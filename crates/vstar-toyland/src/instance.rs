//! Instances: one specific subject (shape proportions, palette, pattern, mark).

use crate::color::{hsv, Rgb};
use crate::superclass::Superclass;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Superclass-specific proportions, each in 0..=1 (see `figure.rs` for their meaning).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShapeParams(pub [f32; 4]);

/// Main colour (recoloured by a colour modifier), secondary (pattern) colour, accent (mark).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Palette {
    pub main: Rgb,
    pub secondary: Rgb,
    pub accent: Rgb,
}

/// Surface pattern in the secondary colour over the main colour. Lengths are in subject
/// units (a subject is about 60 units tall; the image is 100 units wide).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pattern {
    Stripes { angle: f32, period: f32, duty: f32 },
    Dots { period: f32, radius: f32 },
    Checker { angle: f32, period: f32 },
    Gradient { angle: f32 },
}

impl Pattern {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Pattern::Stripes { .. } => "stripes",
            Pattern::Dots { .. } => "dots",
            Pattern::Checker { .. } => "checker",
            Pattern::Gradient { .. } => "gradient",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkKind {
    Circle,
    Triangle,
    Square,
    Star,
    Diamond,
    Cross,
    /// Reserved for held-out subjects: the generic sampler never draws it.
    Heart,
    /// Reserved for held-out subjects: the generic sampler never draws it.
    Bolt,
}

impl MarkKind {
    pub const GENERIC: [MarkKind; 6] =
        [MarkKind::Circle, MarkKind::Triangle, MarkKind::Square, MarkKind::Star, MarkKind::Diamond, MarkKind::Cross];
    pub const RESERVED: [MarkKind; 2] = [MarkKind::Heart, MarkKind::Bolt];

    pub fn is_reserved(self) -> bool {
        Self::RESERVED.contains(&self)
    }
}

/// A small distinctive shape at a spot of the body. `u`, `v` in 0..=1 place it inside the
/// superclass's mark region; `size` is its diameter in subject units.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    pub kind: MarkKind,
    pub u: f32,
    pub v: f32,
    pub size: f32,
}

/// One specific subject. Its identity lives in the numbers, never in words.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Name of a named instance (ToyBooth subject, polluted-token look); `None` for generic ones.
    pub id: Option<String>,
    pub superclass: Superclass,
    pub shape: ShapeParams,
    pub palette: Palette,
    pub pattern: Pattern,
    pub mark: Mark,
}

impl Instance {
    /// A generic (training) instance. Never uses a reserved mark kind, so it can never equal a
    /// ToyBooth subject.
    pub fn sample<R: Rng + ?Sized>(superclass: Superclass, rng: &mut R) -> Instance {
        let kind = MarkKind::GENERIC[rng.random_range(0..MarkKind::GENERIC.len())];
        Self::sample_with_mark(superclass, kind, rng)
    }

    /// An instance in the reserved region (held-out subjects only).
    pub fn sample_reserved<R: Rng + ?Sized>(superclass: Superclass, rng: &mut R) -> Instance {
        let kind = MarkKind::RESERVED[rng.random_range(0..MarkKind::RESERVED.len())];
        Self::sample_with_mark(superclass, kind, rng)
    }

    /// An instance with a given mark kind (reserved kinds are for held-out subjects).
    pub fn sample_with_mark<R: Rng + ?Sized>(sc: Superclass, kind: MarkKind, rng: &mut R) -> Instance {
        let shape = ShapeParams(std::array::from_fn(|_| rng.random::<f32>()));
        Instance {
            id: None,
            superclass: sc,
            shape,
            palette: sample_palette(rng),
            pattern: sample_pattern(rng),
            mark: Mark { kind, u: rng.random(), v: rng.random(), size: rng.random_range(9.0..13.0) },
        }
    }

    /// True when the instance lies in the region reserved for held-out subjects.
    pub fn is_reserved(&self) -> bool {
        self.mark.kind.is_reserved()
    }

    pub fn with_id(mut self, id: &str) -> Instance {
        self.id = Some(id.to_string());
        self
    }
}

/// Natural palettes are muted (HSV saturation <= 0.36) so that a colour modifier, which is
/// always strongly saturated, can be told apart from any instance's own colour.
fn sample_palette<R: Rng + ?Sized>(rng: &mut R) -> Palette {
    let hue = rng.random_range(0.0..360.0);
    let v_main = rng.random_range(0.5..0.85);
    let main = hsv(hue, rng.random_range(0.1..0.36), v_main);
    // Secondary: nearby hue, clearly lighter or darker so the pattern shows at 32 px.
    let v_sec = if v_main > 0.66 { rng.random_range(0.3..0.45) } else { rng.random_range(0.82..0.96) };
    let secondary = hsv(hue + rng.random_range(-70.0..70.0), rng.random_range(0.05..0.36), v_sec);
    let accent = hsv(rng.random_range(0.0..360.0), rng.random_range(0.75..1.0), 0.95);
    Palette { main, secondary, accent }
}

fn sample_pattern<R: Rng + ?Sized>(rng: &mut R) -> Pattern {
    let angle = rng.random_range(0.0..180.0);
    match rng.random_range(0..4) {
        0 => Pattern::Stripes { angle, period: rng.random_range(9.0..18.0), duty: rng.random_range(0.35..0.6) },
        1 => Pattern::Dots { period: rng.random_range(10.0..17.0), radius: rng.random_range(2.2..3.8) },
        2 => Pattern::Checker { angle, period: rng.random_range(10.0..18.0) },
        _ => Pattern::Gradient { angle },
    }
}
