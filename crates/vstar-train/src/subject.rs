//! The subject's training images: a folder of PNG/JPEG files of any size, resized and centre
//! cropped to the model's resolution, encoded once by the VAE (the latent distributions are
//! cached; each step samples from them).

use candle_core::{Error, Result, Tensor};
use std::path::{Path, PathBuf};
use vstar_diffusion::images;
use vstar_nn::model::Model;
use vstar_nn::models::DiagonalGaussian;

/// The image files of `dir` (png/jpg/jpeg), sorted; errors name the folder.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::Msg(format!("--images {}: cannot read the folder ({e})", dir.display())))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| ["png", "jpg", "jpeg"].contains(&x.to_lowercase().as_str()))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Msg(format!("--images {}: no .png or .jpg files in the folder", dir.display())));
    }
    Ok(files)
}

pub struct SubjectImages {
    pub files: Vec<PathBuf>,
    /// Images (N, 3, H, W) in [0, 1].
    pub pixels: Tensor,
    /// The VAE's latent distribution per image (unscaled), and its horizontal flip.
    pub latents: DiagonalGaussian,
    pub flipped: DiagonalGaussian,
}

impl SubjectImages {
    pub fn load(dir: &Path, model: &Model, side: usize) -> Result<Self> {
        let files = image_files(dir)?;
        let mut rows = vec![];
        for f in &files {
            rows.push(images::from_rgb(&images::load(f, side as u32, side as u32)?, &model.device)?);
        }
        let pixels = Tensor::stack(&rows, 0)?;
        let x = ((&pixels * 2.0)? - 1.0)?;
        let latents = model.vae.encode(&x)?;
        let flipped = model.vae.encode(&x.flip(&[3])?)?;
        Ok(Self { files, pixels, latents, flipped })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}
