//! `AttentionHooks`: passed down the UNet forward to record cross-attention probabilities of
//! chosen token positions (masked sampling, segmentation) and to copy attention quantities
//! from one batch row into another (Photoswap). No hooks = no cost.

use candle_core::{Result, Tensor};

/// One recorded cross-attention layer: probabilities of the chosen tokens, mean over heads.
#[derive(Debug, Clone)]
pub struct RecordedMap {
    pub layer: String,
    /// (B, P, h, w): P = number of recorded token positions.
    pub probs: Tensor,
}

/// Row copies are (source row, destination row) pairs within one batched call.
#[derive(Debug, Clone, Default)]
pub struct AttentionHooks {
    /// Token positions whose cross-attention probabilities are recorded (empty = none).
    pub record_tokens: Vec<usize>,
    pub recorded: Vec<RecordedMap>,
    /// Self-attention output features of the destination row replaced by the source row's.
    pub copy_self_features: Vec<(usize, usize)>,
    /// Self-attention probabilities copied.
    pub copy_self_maps: Vec<(usize, usize)>,
    /// Cross-attention probabilities copied.
    pub copy_cross_maps: Vec<(usize, usize)>,
}

impl AttentionHooks {
    pub fn recording(tokens: Vec<usize>) -> Self {
        Self { record_tokens: tokens, ..Default::default() }
    }

    /// Mean over all recorded layers of the maps, resized to (h, w): (B, P, h, w).
    pub fn mean_map(&self, h: usize, w: usize) -> Result<Option<Tensor>> {
        let mut acc: Option<Tensor> = None;
        for r in &self.recorded {
            let m = r.probs.upsample_bilinear2d(h, w, false)?;
            acc = Some(match acc {
                None => m,
                Some(a) => (a + m)?,
            });
        }
        match acc {
            None => Ok(None),
            Some(a) => Ok(Some((a / self.recorded.len() as f64)?)),
        }
    }
}

/// Rows of `x` (batch-first) with each destination replaced by its source.
pub fn copy_rows(x: &Tensor, pairs: &[(usize, usize)]) -> Result<Tensor> {
    if pairs.is_empty() {
        return Ok(x.clone());
    }
    let b = x.dim(0)?;
    let mut idx: Vec<u32> = (0..b as u32).collect();
    for &(src, dst) in pairs {
        if src >= b || dst >= b {
            candle_core::bail!("attention copy {src}->{dst} outside the batch of {b} rows");
        }
        idx[dst] = src as u32;
    }
    let idx = Tensor::new(idx.as_slice(), x.device())?;
    x.index_select(&idx, 0)
}
