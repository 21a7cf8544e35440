//! SVDiff spectral shifts: every adapted weight `W = U diag(s) V^T` (decomposed once, at load,
//! with faer) becomes `U diag(relu(s + delta)) V^T`. File: `spectral_shifts.safetensors` with
//! `<layer>.delta` (k,) per UNet layer, as the SVDiff reference code names its parameters.

use crate::layers::Delta;
use crate::model::Model;
use candle_core::{DType, Device, Error, Result, Tensor};
use std::path::Path;

/// `(u (out, k), s (k,), vt (k, in))` of a weight (out, in), k = min(out, in), s descending.
pub fn decompose(w: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let (o, i) = w.dims2()?;
    let dev = w.device().clone();
    let rows = w.to_device(&Device::Cpu)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let m = faer::Mat::<f64>::from_fn(o, i, |r, c| rows[r][c]);
    let svd = m.thin_svd().map_err(|e| Error::Msg(format!("SVD did not converge: {e:?}")))?;
    let k = o.min(i);
    let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
    let u: Vec<f32> = (0..o).flat_map(|r| (0..k).map(move |c| u[(r, c)] as f32)).collect();
    let s: Vec<f32> = (0..k).map(|c| s[c] as f32).collect();
    let vt: Vec<f32> = (0..k).flat_map(|r| (0..i).map(move |c| v[(c, r)] as f32)).collect();
    Ok((Tensor::from_vec(u, (o, k), &dev)?, Tensor::from_vec(s, k, &dev)?, Tensor::from_vec(vt, (k, i), &dev)?))
}

/// The spectral delta of a layer of `model`'s UNet with the given shift.
pub fn spectral_delta(model: &Model, layer: &str, shift: Tensor) -> Result<Delta> {
    let (u, s, vt) = decompose(&model.unet.slots.weight(layer)?)?;
    Ok(Delta::Spectral { u, s, vt, shift })
}

pub fn is_svdiff_file(keys: &[String]) -> bool {
    !keys.is_empty() && keys.iter().all(|k| k.ends_with(".delta"))
}

/// Writes (UNet layer, shift (k,)) pairs, atomically.
pub fn save_shifts(path: &Path, shifts: &[(String, Tensor)]) -> Result<()> {
    let tensors: Vec<(String, Tensor)> = shifts.iter().map(|(l, t)| (format!("{l}.delta"), t.clone())).collect();
    super::write_safetensors(path, &tensors, None)
}

/// Attaches every shift of the file (each times `multiplier`); returns the layer count.
pub fn load_shifts(path: &Path, model: &Model, multiplier: f64) -> Result<usize> {
    let bad = |m: String| Error::Msg(format!("{}: {m}", path.display()));
    let w = candle_core::safetensors::load(path, &model.device)
        .map_err(|e| bad(format!("not a readable safetensors file ({e})")))?;
    for (k, v) in &w {
        let layer = k.strip_suffix(".delta").ok_or_else(|| bad(format!("`{k}` is not a spectral shift")))?;
        let delta =
            spectral_delta(model, layer, (v.to_dtype(DType::F32)? * multiplier)?).map_err(|e| bad(e.to_string()))?;
        model.unet.slots.push(layer, delta).map_err(|e| bad(e.to_string()))?;
    }
    Ok(w.len())
}
