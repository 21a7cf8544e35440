//! Reductions written so that the compiler can keep them in vector registers.

/// The sum of `term(i)` for i in 0..n, kept in eight running sums: one sum would make every
/// add wait for the previous one (GroupNorm's statistics were 9% of a sampling step as a
/// single chain).
pub(crate) fn lane_sum(n: usize, term: impl Fn(usize) -> f64) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0f64; LANES];
    let full = n / LANES * LANES;
    for base in (0..full).step_by(LANES) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += term(base + l);
        }
    }
    acc.iter().sum::<f64>() + (full..n).map(term).sum::<f64>()
}

/// Mean and reciprocal standard deviation (1 / sqrt(var + eps)) of `x`, summed in f64: the
/// statistics of GroupNorm's groups and LayerNorm's rows.
pub(crate) fn mean_rstd(x: &[f32], eps: f64) -> (f32, f32) {
    let n = x.len() as f64;
    let mean = lane_sum(x.len(), |i| x[i] as f64) / n;
    let var = lane_sum(x.len(), |i| (x[i] as f64 - mean).powi(2)) / n;
    (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
}
