//! Toyland: vstar's procedural world. A deterministic renderer draws one subject
//! (superclass + instance) in a context said in words (scene, colour, accessory, material,
//! style); captions come from a small grammar; ground-truth labels and masks come with
//! every render. Also the Toyland tokenizer files and the ToyBooth benchmark manifest.

mod accessory;
pub mod assets;
mod backdrop;
pub mod caption;
pub mod color;
pub mod context;
mod figure;
mod geom;
pub mod instance;
pub mod labels;
pub mod polluted;
pub mod pretrain;
pub mod render;
pub mod sheet;
pub mod spec;
mod style;
pub mod superclass;
pub mod toybooth;
pub mod training;
pub mod vocab;

pub use assets::write_assets;
pub use caption::{caption, Elements, MentionSet};
pub use context::{Accessory, ColorMod, Context, Material, Scene, Style};
pub use instance::{Instance, Mark, MarkKind, Palette, Pattern, ShapeParams};
pub use labels::Labels;
pub use polluted::{Polluted, POLLUTED, POLLUTED_RATE};
pub use render::{render, Render};
pub use sheet::{contact_sheet, render_world_sheet};
pub use spec::{Layout, SceneSpec};
pub use superclass::Superclass;
pub use toybooth::{manifest, ToyBooth};
pub use training::{sample_training_pair, TrainingPair};
pub use vocab::{write_tokenizer_files, TokenizerFiles};

use std::path::{Path, PathBuf};

/// Errors from the file-writing functions; each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot encode image {path}: {source}")]
    Image { path: PathBuf, source: image::ImageError },
    #[error("cannot serialize {path}: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io { path: path.to_path_buf(), source }
    }
    pub(crate) fn image(path: &Path, source: image::ImageError) -> Error {
        Error::Image { path: path.to_path_buf(), source }
    }
    pub(crate) fn json(path: &Path, source: serde_json::Error) -> Error {
        Error::Json { path: path.to_path_buf(), source }
    }
}

#[cfg(test)]
mod tests;
