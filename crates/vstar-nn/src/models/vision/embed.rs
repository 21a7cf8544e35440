//! Token embeddings of a ViT: image patches through a stride-p convolution, a class token in
//! front, and position embeddings (stored for the training grid, resampled for another).

use super::bicubic;
use super::config::TowerConfig;
use candle_core::{Error, Result, Tensor};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub(super) struct PatchEmbed {
    weight: Tensor,
    bias: Option<Tensor>,
    patch: usize,
}

impl PatchEmbed {
    /// `vb` at the convolution (CLIP's has no bias, ViT's and DINOv2's do).
    pub(super) fn new(cfg: &TowerConfig, bias: bool, vb: VarBuilder) -> Result<Self> {
        let (d, p) = (cfg.hidden_size, cfg.patch_size);
        let weight = vb.get((d, 3, p, p), "weight")?;
        let bias = if bias { Some(vb.get(d, "bias")?) } else { None };
        Ok(Self { weight, bias, patch: p })
    }

    /// Pixels (B, 3, H, W) -> patch tokens (B, gh * gw, D) and the grid (gh, gw).
    pub(super) fn forward(&self, pixels: &Tensor) -> Result<(Tensor, (usize, usize))> {
        let p = self.patch;
        match pixels.dims() {
            &[_, 3, h, w] if h >= p && w >= p => {}
            d => {
                return Err(Error::Msg(format!(
                    "pixel values have shape {d:?}; the image encoder reads (B, 3, H, W) with H, W >= {p}"
                )))
            }
        }
        let y = pixels.conv2d(&self.weight, 0, p, 1, 1)?;
        let grid = (y.dim(2)?, y.dim(3)?);
        let y = y.flatten_from(2)?.transpose(1, 2)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        Ok((y, grid))
    }
}

/// Position embeddings (1 + g*g, D) for the square training grid g.
#[derive(Debug, Clone)]
pub(super) struct Positions {
    table: Tensor,
    grid: usize,
}

impl Positions {
    /// `table`: (1 + g*g, D) rows, the class token's first.
    pub(super) fn new(table: Tensor, cfg: &TowerConfig) -> Self {
        Self { table, grid: cfg.image_size / cfg.patch_size }
    }

    pub(super) fn rows(cfg: &TowerConfig) -> usize {
        let g = cfg.image_size / cfg.patch_size;
        1 + g * g
    }

    /// For a (gh, gw) grid: the stored table, or its patch part resampled bicubically
    /// (transformers' `interpolate_pos_encoding`); the class row is kept as is.
    pub(super) fn for_grid(&self, (gh, gw): (usize, usize)) -> Result<Tensor> {
        let g = self.grid;
        if (gh, gw) == (g, g) {
            return Ok(self.table.clone());
        }
        let d = self.table.dim(1)?;
        let patches = self.table.narrow(0, 1, g * g)?.reshape((g, g, d))?;
        let resized = bicubic::resize(&patches, (gh, gw))?.reshape((gh * gw, d))?;
        Tensor::cat(&[&self.table.narrow(0, 0, 1)?, &resized], 0)
    }

    /// The class token followed by the patch tokens, plus positions: (B, 1 + N, D).
    pub(super) fn tokens(&self, cls: &Tensor, patches: &Tensor, grid: (usize, usize)) -> Result<Tensor> {
        let (b, _, d) = patches.dims3()?;
        let cls = cls.reshape((1, 1, d))?.broadcast_as((b, 1, d))?;
        Tensor::cat(&[&cls, patches], 1)?.broadcast_add(&self.for_grid(grid)?)
    }
}

/// CLIP and ViT read only the size they were trained at (as transformers does by default).
pub(super) fn require_size(pixels: &Tensor, size: usize) -> Result<()> {
    match pixels.dims() {
        &[_, _, h, w] if (h, w) != (size, size) => Err(Error::Msg(format!(
            "pixel values are {h}x{w}; this model reads {size}x{size} images (preprocess them with its \
             preprocessor_config.json)"
        ))),
        _ => Ok(()),
    }
}
