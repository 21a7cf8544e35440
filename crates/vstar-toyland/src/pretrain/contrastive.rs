//! Symmetric InfoNCE (CLIP's loss) and the retrieval accuracy it is judged by.

use candle_core::{DType, Result, Tensor, D};

/// Rows scaled to unit length.
pub fn normalize(x: &Tensor) -> Result<Tensor> {
    x.broadcast_div(&(x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?)
}

/// Loss and top-1 accuracy for matching row i of `a` with row i of `b` (both (N, D),
/// normalised inside), at temperature `1/scale`.
pub fn info_nce(a: &Tensor, b: &Tensor, scale: f64) -> Result<(Tensor, f64)> {
    let (a, b) = (normalize(a)?, normalize(b)?);
    let logits = (a.matmul(&b.t()?)? * scale)?;
    let n = logits.dim(0)?;
    let target = Tensor::arange(0u32, n as u32, logits.device())?;
    let l1 = candle_nn::loss::cross_entropy(&logits, &target)?;
    let l2 = candle_nn::loss::cross_entropy(&logits.t()?, &target)?;
    let hits = logits.argmax(D::Minus1)?.eq(&target)?.to_dtype(DType::F32)?.mean_all()?.to_scalar::<f32>()?;
    Ok((((l1 + l2)? * 0.5)?, hits as f64))
}
