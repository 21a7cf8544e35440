//! Matrix products whose backward computes only the gradient that is needed. candle's matmul
//! backward always computes both: in a LoRA or textual-inversion run every frozen conv and
//! linear weight got a gradient GEMM (as costly as the forward product) that was then thrown
//! away, plus a zero tensor to add it to. When exactly one side of a 2-D product is tracked,
//! the product here is a custom op that returns the tracked side's gradient only.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

/// `a @ b`, the same values as candle's matmul.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.rank() == 2 && b.rank() == 2 && a.track_op() != b.track_op() {
        a.apply_op2(b, OneSided)
    } else {
        a.matmul(b)
    }
}

/// (m, k) @ (k, n), any strides, f32 on the CPU.
struct OneSided;

fn operand<'a>(s: &'a CpuStorage, l: &Layout) -> Result<(&'a [f32], isize, isize)> {
    match (s, l.stride()) {
        (CpuStorage::F32(v), &[rs, cs]) => Ok((&v[l.start_offset()..], rs as isize, cs as isize)),
        _ => candle_core::bail!("product: needs 2-D f32 operands"),
    }
}

impl CustomOp2 for OneSided {
    fn name(&self) -> &'static str {
        "vstar-one-sided-matmul"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let ((m, k), (k2, n)) = (l1.shape().dims2()?, l2.shape().dims2()?);
        if k != k2 {
            candle_core::bail!("product: ({m}, {k}) @ ({k2}, {n}) do not match");
        }
        let ((a, a_rs, a_cs), (b, b_rs, b_cs)) = (operand(s1, l1)?, operand(s2, l2)?);
        let mut dst = vec![0f32; m * n];
        let threads = candle_core::utils::get_num_threads();
        let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
        // SAFETY: the pointers and strides come from candle layouts of live storages of these
        // shapes; dst is m x n row-major and not read (alpha is unused when read_dst is false).
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                a_cs,
                a_rs,
                b.as_ptr(),
                b_cs,
                b_rs,
                0.0,
                1.0,
                false,
                false,
                false,
                par,
            );
        }
        Ok((CpuStorage::F32(dst), Shape::from((m, n))))
    }

    fn bwd(&self, a: &Tensor, b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let ga = if a.track_op() { Some(matmul(grad, &b.t()?)?) } else { None };
        let gb = if b.track_op() { Some(matmul(&a.t()?, grad)?) } else { None };
        Ok((ga, gb))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::max_diff;
    use candle_core::{Device, Var};

    /// Values and the tracked side's gradient equal candle's matmul, with a transposed
    /// (strided) frozen operand on either side; candle gives the frozen side a gradient, we
    /// do not.
    #[test]
    fn matches_candle_and_leaves_the_frozen_side_out() {
        let dev = Device::Cpu;
        let var = Var::randn(0f32, 1.0, (5, 7), &dev).unwrap();
        let v = var.as_tensor();
        let (w, cols) =
            (Tensor::randn(0f32, 1.0, (3, 7), &dev).unwrap(), Tensor::randn(0f32, 1.0, (5, 3), &dev).unwrap());
        let (wt, colst) = (w.t().unwrap(), cols.t().unwrap());
        // A linear (x @ w^T, tracked left) and a conv (kernel @ cols, tracked right).
        let cases: [(&Tensor, &Tensor, &Tensor); 2] = [(v, &wt, &wt), (&colst, v, &colst)];
        for (k, (a, b, frozen)) in cases.into_iter().enumerate() {
            let (ours, theirs) = (matmul(a, b).unwrap(), a.matmul(b).unwrap());
            assert!(max_diff(&ours, &theirs) < 1e-5, "case {k}: values");
            let probe = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
            let g_ours = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g_theirs = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let e = max_diff(g_ours.get(v).unwrap(), g_theirs.get(v).unwrap());
            assert!(e < 1e-5, "case {k}: gradient differs by {e}");
            assert!(g_theirs.get(frozen).is_some() && g_ours.get(frozen).is_none(), "case {k}");
        }
    }
}
