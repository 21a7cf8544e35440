//! Attention `softmax(q k^T * scale) v` as one op with its backward, never holding a whole
//! (N, M) score map. The explicit path (a product, a scale, a softmax, a product) keeps
//! several (B, H, N, M) tensors alive: at N = M = 4096 and 8 heads each is 512 MiB per batch
//! row. Here query rows go in tiles of `TILE`: a tile's (rows, M) scores are computed by one
//! GEMM, turned into probabilities in place and multiplied by v while they are still in
//! cache. The backward recomputes each tile's probabilities instead of storing them (as
//! FlashAttention does), so training keeps only q, k, v and the output. At B = 1, H = 8,
//! N = M = 4096, D = 40 on two busy cores: forward 0.4-0.55 s against 1.75 s (peak heap +25 MiB
//! against +1 GiB), forward and backward 1.3 s against 5.2-5.5 s (+90 MiB against +5.1 GiB).

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::fast_exp::exp;
use super::gemm::{gemm_into, View};

/// Query rows per tile: a tile's scores are TILE x M floats (1 MiB at M = 4096).
const TILE: usize = 64;

/// `softmax(q k^T * scale) v` for q (B, H, N, D), k (B, H, M, D), v (B, H, M, Dv), f32 on the
/// CPU; (B, H, N, Dv). Gradients flow to whichever of q, k, v are tracked.
pub fn fused_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    q.apply_op3(&k, &v, FusedAttention { scale: scale as f32 })
}

/// Sizes of one call: `bh` = B * H independent (N, M) problems; `w` the width of the first
/// operand's rows (D in the forward, D + 2 Dv in the backward).
#[derive(Debug, Clone, Copy)]
struct Dims {
    bh: usize,
    n: usize,
    m: usize,
    d: usize,
    dv: usize,
    w: usize,
}

/// The sizes of (rows of width D + `extra`, k, v), checked against each other.
fn dims(l1: &Layout, l2: &Layout, l3: &Layout, extra: usize, what: &str) -> Result<(Dims, [usize; 2])> {
    let (b, h, n, w) = l1.shape().dims4()?;
    let (b2, h2, m, d) = l2.shape().dims4()?;
    let (b3, h3, m3, dv) = l3.shape().dims4()?;
    if (b2, h2, b3, h3, m3) != (b, h, b, h, m) || w != d + extra {
        candle_core::bail!(
            "{what}: q {:?}, k {:?}, v {:?} do not match",
            l1.shape().dims(),
            l2.shape().dims(),
            l3.shape().dims()
        );
    }
    if m == 0 || d == 0 || dv == 0 {
        candle_core::bail!("{what}: needs keys and non-empty heads (M = {m}, D = {d}, Dv = {dv})");
    }
    Ok((Dims { bh: b * h, n, m, d, dv, w }, [b, h]))
}

/// `dst = [dst +] beta * a b` on one thread (the callers are parallel tasks already).
fn gemm(dst: &mut [f32], dst_rs: usize, accumulate: bool, a: View, b: View, beta: f32) {
    gemm_into(dst, dst_rs, accumulate, a, b, beta, 1)
}

const LANES: usize = 8;

#[inline(always)]
fn row_max(r: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = r.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = a.max(x);
        }
    }
    acc.iter().fold(tail, |a, &b| a.max(b))
}

/// `r = exp(r - max(r))`, in place; returns the sum of the new values. With AVX2 when the CPU
/// has it: the crate is built for baseline x86-64, where the loop gets 4-wide SSE2 (2 ns per
/// element here, against 1.4 ns with AVX2 and 5 ns with libm's scalar expf).
fn exp_row(r: &mut [f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { exp_row_avx2(r) };
    }
    exp_row_any(r)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn exp_row_avx2(r: &mut [f32]) -> f32 {
    exp_row_any(r)
}

#[inline(always)]
fn exp_row_any(r: &mut [f32]) -> f32 {
    let max = row_max(r);
    let mut acc = [0f32; LANES];
    let mut chunks = r.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *x = exp(*x - max);
            *a += *x;
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for x in chunks.into_remainder() {
        *x = exp(*x - max);
        sum += *x;
    }
    sum
}

/// The probabilities of `rows` query rows from `q` (row stride `d.w`): s = softmax(scale q k^T),
/// row-major rows x M; unnormalised (e^(s - max)) when `sums` is given, which then receives the
/// row sums.
fn scores(s: &mut [f32], q: &[f32], k: &[f32], rows: usize, d: Dims, scale: f32, sums: Option<&mut [f32]>) {
    let kt = View::rows(k, d.m, d.d, d.d).t();
    gemm(s, d.m, false, View::rows(q, rows, d.d, d.w), kt, scale);
    match sums {
        Some(sums) => s.chunks_mut(d.m).zip(sums).for_each(|(r, sum)| *sum = exp_row(r)),
        None => s.chunks_mut(d.m).for_each(|r| {
            let inv = 1.0 / exp_row(r);
            r.iter_mut().for_each(|p| *p *= inv);
        }),
    }
}

/// The `i`-th (b, h) block of `len` values of an operand.
fn head(x: &[f32], i: usize, len: usize) -> &[f32] {
    &x[i * len..][..len]
}

/// The three operands of a custom op as f32 slices.
fn f32_slices<'a>(ops: [(&'a CpuStorage, &Layout); 3], what: &str) -> Result<[&'a [f32]; 3]> {
    let [a, b, c] = ops;
    Ok([
        super::conv::f32_slice(a.0, a.1, what)?,
        super::conv::f32_slice(b.0, b.1, what)?,
        super::conv::f32_slice(c.0, c.1, what)?,
    ])
}

struct FusedAttention {
    scale: f32,
}

impl CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "vstar-fused-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let what = "fused attention";
        let [q, k, v] = f32_slices([(s1, l1), (s2, l2), (s3, l3)], what)?;
        let (d, [b, h]) = dims(l1, l2, l3, 0, what)?;
        let mut out = vec![0f32; d.bh * d.n * d.dv];
        if !out.is_empty() {
            // One task per (b, h, tile); a task's scores live in its scratch buffer.
            out.par_chunks_mut(d.n * d.dv).enumerate().for_each(|(i, out)| {
                let (q, k, v) = (head(q, i, d.n * d.d), head(k, i, d.m * d.d), head(v, i, d.m * d.dv));
                out.par_chunks_mut(TILE * d.dv).enumerate().for_each_init(
                    || vec![0f32; TILE * d.m],
                    |s, (t, out)| {
                        let rows = out.len() / d.dv;
                        let (s, mut sums) = (&mut s[..rows * d.m], [0f32; TILE]);
                        scores(s, &q[t * TILE * d.d..], k, rows, d, self.scale, Some(&mut sums[..rows]));
                        gemm(out, d.dv, false, View::rows(s, rows, d.m, d.m), View::rows(v, d.m, d.dv, d.dv), 1.0);
                        for (o, sum) in out.chunks_mut(d.dv).zip(sums) {
                            let inv = 1.0 / sum;
                            o.iter_mut().for_each(|x| *x *= inv);
                        }
                    },
                );
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((b, h, d.n, d.dv))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let want = [q.track_op(), k.track_op(), v.track_op()];
        if want == [false; 3] {
            return Ok((None, None, None));
        }
        let ((b, h, n, d), (m, dv)) = (q.dims4()?, (v.dim(2)?, v.dim(3)?));
        // The kernel takes q, dO and O side by side in one row (a custom op has three inputs).
        let rows = Tensor::cat(&[&q.detach(), &grad.detach(), &out.detach()], 3)?;
        let packed = rows.apply_op3_no_bwd(k, v, &FusedAttentionGrad { scale: self.scale, dv, want })?;
        let sizes = [b * h * n * d, b * h * m * d, b * h * m * dv];
        let shapes = [(b, h, n, d), (b, h, m, d), (b, h, m, dv)];
        let part = |i: usize| -> Result<Option<Tensor>> {
            let start = sizes[..i].iter().sum();
            want[i].then(|| packed.narrow(0, start, sizes[i])?.reshape(shapes[i])).transpose()
        };
        Ok((part(0)?, part(1)?, part(2)?))
    }
}

/// (q | dO | O rows, k, v) -> dQ, dK, dV flattened one after the other (those not in `want`
/// are left zero): with P = softmax(S), S = scale q k^T,
/// dV = P^T dO, dP = dO v^T, dS = P * (dP - rowsum(dO * O)), dQ = scale dS k, dK = scale dS^T q.
struct FusedAttentionGrad {
    scale: f32,
    dv: usize,
    want: [bool; 3],
}

impl FusedAttentionGrad {
    /// Query rows `r0..r0 + dq.len() / D` of one (b, h): writes their dQ rows, adds their
    /// share of dK and dV.
    #[allow(clippy::too_many_arguments)]
    fn rows(
        &self,
        d: Dims,
        r0: usize,
        rows: &[f32],
        k: &[f32],
        v: &[f32],
        dq: &mut [f32],
        dk: &mut [f32],
        dv: &mut [f32],
    ) {
        let [want_q, want_k, want_v] = self.want;
        let (mut p, mut ds) = (vec![0f32; TILE * d.m], vec![0f32; TILE * d.m]);
        for (t, dq) in dq.chunks_mut(TILE * d.d).enumerate() {
            let n = dq.len() / d.d;
            let (p, ds) = (&mut p[..n * d.m], &mut ds[..n * d.m]);
            let tile = &rows[(r0 + t * TILE) * d.w..];
            let (qt, dot, ot) = (
                View::rows(tile, n, d.d, d.w),
                View::rows(&tile[d.d..], n, d.dv, d.w),
                View::rows(&tile[d.d + d.dv..], n, d.dv, d.w),
            );
            scores(p, tile, k, n, d, self.scale, None);
            if want_v {
                gemm(dv, d.dv, true, View::rows(p, n, d.m, d.m).t(), dot, 1.0);
            }
            if !(want_q || want_k) {
                continue;
            }
            gemm(ds, d.m, false, dot, View::rows(v, d.m, d.dv, d.dv).t(), 1.0); // dP
            for (i, (ds, p)) in ds.chunks_mut(d.m).zip(p.chunks(d.m)).enumerate() {
                let (go, o) = (&dot.data[i * d.w..][..d.dv], &ot.data[i * d.w..][..d.dv]);
                let delta: f32 = go.iter().zip(o).map(|(a, b)| a * b).sum();
                ds.iter_mut().zip(p).for_each(|(x, &p)| *x = p * (*x - delta));
            }
            let dst = View::rows(ds, n, d.m, d.m);
            if want_q {
                gemm(dq, d.d, false, dst, View::rows(k, d.m, d.d, d.d), self.scale);
            }
            if want_k {
                gemm(dk, d.d, true, dst.t(), qt, self.scale);
            }
        }
    }
}

impl CustomOp3 for FusedAttentionGrad {
    fn name(&self) -> &'static str {
        "vstar-fused-attention-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let what = "fused attention grad";
        let [rows, k, v] = f32_slices([(s1, l1), (s2, l2), (s3, l3)], what)?;
        let (d, _) = dims(l1, l2, l3, 2 * self.dv, what)?;
        let (nq, nk, nv) = (d.bh * d.n * d.d, d.bh * d.m * d.d, d.bh * d.m * d.dv);
        let mut grads = vec![0f32; nq + nk + nv];
        if d.n == 0 {
            return Ok((CpuStorage::F32(grads), Shape::from(nq + nk + nv)));
        }
        let (dq, dkv) = grads.split_at_mut(nq);
        let (dk, dv) = dkv.split_at_mut(nk);
        // dK and dV sum over all query rows of a (b, h). With fewer (b, h) than threads, the
        // rows are split into groups, each summing its own dK and dV, added up at the end.
        let tiles = d.n.div_ceil(TILE);
        let groups = rayon::current_num_threads().div_ceil(d.bh).clamp(1, tiles);
        let group_rows = tiles.div_ceil(groups) * TILE;
        dq.par_chunks_mut(d.n * d.d)
            .zip(dk.par_chunks_mut(d.m * d.d))
            .zip(dv.par_chunks_mut(d.m * d.dv))
            .enumerate()
            .for_each(|(i, ((dq, dk), dv))| {
                let (rows, k, v) = (head(rows, i, d.n * d.w), head(k, i, d.m * d.d), head(v, i, d.m * d.dv));
                if groups == 1 {
                    return self.rows(d, 0, rows, k, v, dq, dk, dv);
                }
                let partial: Vec<(Vec<f32>, Vec<f32>)> = dq
                    .par_chunks_mut(group_rows * d.d)
                    .enumerate()
                    .map(|(g, dq)| {
                        let (mut pk, mut pv) = (vec![0f32; dk.len()], vec![0f32; dv.len()]);
                        self.rows(d, g * group_rows, rows, k, v, dq, &mut pk, &mut pv);
                        (pk, pv)
                    })
                    .collect();
                for (pk, pv) in partial {
                    dk.iter_mut().zip(pk).for_each(|(a, b)| *a += b);
                    dv.iter_mut().zip(pv).for_each(|(a, b)| *a += b);
                }
            });
        Ok((CpuStorage::F32(grads), Shape::from(nq + nk + nv)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::max_diff;
    use candle_core::{Device, Var, D};

    /// The explicit path: product, scale, candle's composed softmax, product.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Tensor {
        let s = (q.contiguous().unwrap().matmul(&k.t().unwrap().contiguous().unwrap()).unwrap() * scale).unwrap();
        candle_nn::ops::softmax(&s, D::Minus1).unwrap().matmul(&v.contiguous().unwrap()).unwrap()
    }

    fn randn(shape: (usize, usize, usize, usize)) -> Tensor {
        Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap()
    }

    /// (B, H, N, M, D, Dv): N != M, D != Dv, N = 1, N across several tiles and not a multiple
    /// of the tile, one (b, h) only (its rows split into groups when there are several
    /// threads).
    const SHAPES: [(usize, usize, usize, usize, usize, usize); 5] = [
        (2, 3, 7, 5, 4, 6),
        (2, 2, 1, 11, 5, 5),
        (1, 2, 2 * TILE + 5, 9, 8, 3),
        (1, 1, 3 * TILE + 1, 70, 6, 4),
        (2, 1, TILE, 1, 3, 2),
    ];

    #[test]
    fn forward_matches_the_explicit_path() {
        for (b, h, n, m, d, dv) in SHAPES {
            let (q, k, v, scale) = (randn((b, h, n, d)), randn((b, h, m, d)), randn((b, h, m, dv)), 0.7);
            let e = max_diff(&fused_attention(&q, &k, &v, scale).unwrap(), &reference(&q, &k, &v, scale));
            assert!(e < 1e-5, "{:?}: differs by {e}", (b, h, n, m, d, dv));
        }
        // In every other query row, scores from 80 to 120 (e^89 overflows f32) by a feature
        // that grows over the keys; q and k strided (heads split from (B, N, H, D) and k given
        // transposed).
        let (b, h, n, m, d, dv) = (2, 3, TILE + 3, 20, 5, 7);
        let scale = 1.0 / (d as f64).sqrt();
        let offset: Vec<f32> =
            (0..b * n * h).map(|i| if i / h % 2 == 0 { (100.0 / scale) as f32 } else { 0.0 }).collect();
        let offset = Tensor::from_vec(offset, (b, n, h, 1), &Device::Cpu).unwrap();
        let q = Tensor::cat(&[&offset, &randn((b, n, h, d - 1))], 3).unwrap().transpose(1, 2).unwrap();
        let ramp: Vec<f32> = (0..m).map(|j| 0.8 + 0.4 * j as f32 / (m - 1) as f32).collect();
        let ramp = Tensor::from_vec(ramp, (1, 1, 1, m), &Device::Cpu).unwrap().broadcast_as((b, h, 1, m)).unwrap();
        let kt = Tensor::cat(&[&ramp, &randn((b, h, d - 1, m))], 2).unwrap();
        let (k, v) = (kt.transpose(2, 3).unwrap(), randn((b, h, m, dv)));
        assert!(!q.is_contiguous() && !k.is_contiguous());
        let e = max_diff(&fused_attention(&q, &k, &v, scale).unwrap(), &reference(&q, &k, &v, scale));
        // A score of 120 holds f32 rounding of ~1e-5 (either path), which e^s turns into that
        // relative error in the weights: 1e-5 failed a quarter of random draws.
        assert!(e < 1e-4, "large scores: differs by {e}");
    }

    /// Gradients of q, k and v equal those of the composed path, for every shape and a
    /// strided q.
    #[test]
    fn gradients_match_the_explicit_path() {
        for (b, h, n, m, d, dv) in SHAPES {
            let (q, k, v) =
                (Var::from_tensor(&randn((b, n, h, d))).unwrap(), Var::from_tensor(&randn((b, h, m, d))).unwrap(), {
                    Var::from_tensor(&randn((b, h, m, dv))).unwrap()
                });
            let qt = q.as_tensor().transpose(1, 2).unwrap(); // (B, H, N, D), strided
            let scale = 1.0 / (d as f64).sqrt();
            let ours = fused_attention(&qt, &k, &v, scale).unwrap();
            let theirs = reference(&qt, &k, &v, scale);
            let probe = randn((b, h, n, dv));
            let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, x) in [("q", q.as_tensor()), ("k", k.as_tensor()), ("v", v.as_tensor())] {
                let e = max_diff(g1.get(x).unwrap(), g2.get(x).unwrap());
                assert!(e < 1e-4, "{:?}: d{name} differs by {e}", (b, h, n, m, d, dv));
            }
        }
    }

    /// With only q tracked, k and v get no gradient; q's is still right.
    #[test]
    fn only_tracked_inputs_get_a_gradient() {
        let (b, h, n, m, d, dv) = (2, 2, TILE + 9, 6, 4, 3);
        let (q, k, v) = (Var::from_tensor(&randn((b, h, n, d))).unwrap(), randn((b, h, m, d)), randn((b, h, m, dv)));
        let probe = randn((b, h, n, dv));
        let ours = fused_attention(&q, &k, &v, 0.5).unwrap();
        let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (reference(&q, &k, &v, 0.5) * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(g1.get(&k).is_none() && g1.get(&v).is_none(), "untracked k or v got a gradient");
        let e = max_diff(g1.get(&q).unwrap(), g2.get(&q).unwrap());
        assert!(e < 1e-4, "dq differs by {e}");
    }
}
