//! SAM's prompt encoder (transformers' `SamPromptEncoder`): points and box corners in model
//! input pixels, shifted to pixel centres and scaled to [0, 1], through the random Fourier
//! features shared with the image-wide positional embedding, plus a learned embedding per
//! role (negative / positive point, top-left / bottom-right corner; padding points take the
//! not-a-point embedding). Mask prompts (`mask_embed`) are not implemented: the dense prompt
//! is always `no_mask_embed`.

use super::config::SamConfig;
use candle_core::{Device, Result, Tensor, D};
use candle_nn::VarBuilder;

/// transformers' `SamPositionalEmbedding`: coordinates in [0, 1]^2 -> [sin, cos] of
/// 2 pi (2c - 1) @ G, G the stored (2, F) Gaussian matrix.
#[derive(Debug, Clone)]
pub struct PositionalEmbedding {
    matrix: Tensor,
}

impl PositionalEmbedding {
    /// `vb` at the root: `shared_image_embedding.positional_embedding`, or the prompt encoder's
    /// tied copy (older exports save both; the second is then only marked as read).
    pub fn new(feats: usize, vb: &VarBuilder) -> Result<Self> {
        let shared = "shared_image_embedding.positional_embedding";
        let tied = "prompt_encoder.shared_embedding.positional_embedding";
        let matrix = if vb.contains_tensor(shared) || !vb.contains_tensor(tied) {
            let m = vb.get((2, feats), shared)?;
            if vb.contains_tensor(tied) {
                vb.get((2, feats), tied)?;
            }
            m
        } else {
            vb.get((2, feats), tied)?
        };
        Ok(Self { matrix })
    }

    /// Unit coordinates (N, 2) as (x, y) in [0, 1]: (N, 2F).
    fn encode(&self, unit: &Tensor) -> Result<Tensor> {
        let c = ((unit * 2.0)? - 1.0)?;
        let c = (c.matmul(&self.matrix)? * (2.0 * std::f64::consts::PI))?;
        Tensor::cat(&[c.sin()?, c.cos()?], D::Minus1)
    }

    /// (x, y) already mapped to `2c - 1` in f64 then rounded to f32, as transformers does
    /// for the prompt encoder's float64 inputs: (N, 2F).
    fn encode_centred(&self, centred: &[(f64, f64)], dev: &Device) -> Result<Tensor> {
        let flat: Vec<f32> = centred.iter().flat_map(|&(x, y)| [x as f32, y as f32]).collect();
        let c = Tensor::from_vec(flat, (centred.len(), 2), dev)?;
        let c = (c.matmul(&self.matrix)? * (2.0 * std::f64::consts::PI))?;
        Tensor::cat(&[c.sin()?, c.cos()?], D::Minus1)
    }

    /// The image-wide embedding of a g x g grid at cell centres: (1, 2F, g, g).
    pub fn image_wide(&self, g: usize) -> Result<Tensor> {
        let dev = self.matrix.device();
        // f32 like transformers' cumsum(ones) - 0.5, / g.
        let coords: Vec<f32> = (0..g)
            .flat_map(|y| {
                (0..g).flat_map(move |x| [(x as f32 + 1.0 - 0.5) / g as f32, (y as f32 + 1.0 - 0.5) / g as f32])
            })
            .collect();
        let unit = Tensor::from_vec(coords, (g * g, 2), dev)?;
        let pe = self.encode(&unit)?; // (g*g, 2F)
        let f = pe.dim(1)?;
        pe.t()?.reshape((1, f, g, g))
    }
}

/// A point's role (transformers' labels 0 and 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointLabel {
    Negative,
    Positive,
}

#[derive(Debug, Clone)]
pub struct PromptEncoder {
    point_embed: Vec<Tensor>,
    not_a_point: Tensor,
    no_mask: Tensor,
    input_size: f64,
    grid: usize,
}

impl PromptEncoder {
    /// `vb` at `prompt_encoder`.
    pub fn new(cfg: &SamConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.prompt.hidden_size;
        let point_embed = (0..cfg.prompt.num_point_embeddings)
            .map(|i| vb.get((1, d), &format!("point_embed.{i}.weight")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            point_embed,
            not_a_point: vb.get((1, d), "not_a_point_embed.weight")?,
            no_mask: vb.get((1, d), "no_mask_embed.weight")?,
            input_size: cfg.prompt.image_size as f64,
            grid: cfg.vision.grid(),
        })
    }

    /// (x, y) in model-input pixels -> the centred unit coordinates the Fourier features read.
    fn centred(&self, (x, y): (f64, f64)) -> (f64, f64) {
        let unit = |v: f64| 2.0 * ((v + 0.5) / self.input_size) - 1.0;
        (unit(x), unit(y))
    }

    /// Sparse embeddings (N, D) of points (model-input pixels); without a box, a padding point
    /// (the not-a-point embedding) is appended, as transformers does.
    pub fn embed_points(
        &self,
        pe: &PositionalEmbedding,
        points: &[((f64, f64), PointLabel)],
        pad: bool,
    ) -> Result<Tensor> {
        let dev = self.no_mask.device();
        let coords: Vec<(f64, f64)> = points.iter().map(|&(p, _)| self.centred(p)).collect();
        let emb = pe.encode_centred(&coords, dev)?;
        let mut rows = Vec::with_capacity(points.len() + 1);
        for (i, &(_, label)) in points.iter().enumerate() {
            let role = &self.point_embed[if label == PointLabel::Positive { 1 } else { 0 }];
            rows.push(emb.narrow(0, i, 1)?.add(role)?);
        }
        if pad {
            rows.push(self.not_a_point.clone());
        }
        Tensor::cat(&rows, 0)
    }

    /// Sparse embeddings (2, D) of a box (x0, y0, x1, y1) in model-input pixels.
    pub fn embed_box(&self, pe: &PositionalEmbedding, b: [f64; 4]) -> Result<Tensor> {
        let dev = self.no_mask.device();
        let emb = pe.encode_centred(&[self.centred((b[0], b[1])), self.centred((b[2], b[3]))], dev)?;
        Tensor::cat(
            &[emb.narrow(0, 0, 1)?.add(&self.point_embed[2])?, emb.narrow(0, 1, 1)?.add(&self.point_embed[3])?],
            0,
        )
    }

    /// The dense prompt without a mask input: (1, D, g, g).
    pub fn dense(&self) -> Result<Tensor> {
        let d = self.no_mask.dim(1)?;
        self.no_mask.reshape((1, d, 1, 1))?.broadcast_as((1, d, self.grid, self.grid))?.contiguous()
    }
}
