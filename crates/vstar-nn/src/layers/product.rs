//! Matrix products whose backward computes only the gradient that is needed. candle's matmul
//! backward always computes both: in a LoRA or textual-inversion run every frozen conv and
//! linear weight got a gradient GEMM (as costly as the forward product) that was then thrown
//! away, plus a zero tensor to add it to. Every 2-D f32 product here is a custom op that
//! returns the tracked sides' gradients only. It also writes its result into fresh memory,
//! where candle's zeroes it first: for a conv's input gradient (im2col-sized) that memset was
//! 8% of a Toyland LoRA step.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};

use super::conv::{cpu, f32_slice};
use super::gemm::{gemm_into, gemm_new, View};

/// `a @ b`, the same values as candle's matmul.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if ours(a, b) {
        a.apply_op2(b, Product)
    } else {
        a.matmul(b)
    }
}

/// `a @ b [+ bias]` for a frozen `b` whose transpose `b_t` is also held contiguous: the
/// backward's `grad @ b^T` then reads `b_t` as it is, where gemm would copy (pack) a strided
/// `b^T` on every call. A frozen `bias` (n,) is written with the product: no op of its own,
/// which would cost a pass forward and a zero fill and an add in candle's backward.
pub fn matmul_frozen(a: &Tensor, b: &Tensor, b_t: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    if ours(a, b) && frozen_bias(bias) {
        a.apply_op1(FrozenRight { b: b.clone(), b_t: b_t.clone(), bias: bias.cloned() })
    } else {
        let y = a.matmul(b)?;
        match bias {
            Some(v) => y.broadcast_add(v),
            None => Ok(y),
        }
    }
}

/// `a @ b` with no backward (inside a backward).
fn product(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if ours(a, b) {
        a.apply_op2_no_bwd(b, &Product)
    } else {
        a.matmul(b)
    }
}

/// No bias, or one `FrozenRight` can write with its product: a frozen f32 vector.
fn frozen_bias(bias: Option<&Tensor>) -> bool {
    bias.is_none_or(|v| v.rank() == 1 && v.dtype() == DType::F32 && !v.track_op())
}

fn ours(a: &Tensor, b: &Tensor) -> bool {
    a.rank() == 2 && b.rank() == 2 && a.dtype() == DType::F32 && b.dtype() == DType::F32 && a.device().is_cpu()
}

/// (m, k) @ (k, n), any strides, f32 on the CPU.
struct Product;

fn operand<'a>(s: &'a CpuStorage, l: &Layout) -> Result<View<'a>> {
    match (s, l.dims(), l.stride()) {
        (CpuStorage::F32(v), &[rows, cols], &[rs, cs]) => Ok(View::new(&v[l.start_offset()..], (rows, cols), rs, cs)),
        _ => candle_core::bail!("product: needs 2-D f32 operands"),
    }
}

/// An error naming both shapes if `a @ b` does not match.
fn check(a: View, b: View) -> Result<()> {
    if a.cols != b.rows {
        candle_core::bail!("product: ({}, {}) @ ({}, {}) do not match", a.rows, a.cols, b.rows, b.cols);
    }
    Ok(())
}

/// `a @ b` as an op's output.
fn multiply(a: View, b: View) -> Result<(CpuStorage, Shape)> {
    check(a, b)?;
    Ok((CpuStorage::F32(gemm_new(a, b)), Shape::from((a.rows, b.cols))))
}

/// `a @ b [+ bias]` for a frozen `b` (the op's input is `a` alone), with `b^T` held for the
/// backward.
struct FrozenRight {
    b: Tensor,
    b_t: Tensor,
    bias: Option<Tensor>,
}

impl CustomOp1 for FrozenRight {
    fn name(&self) -> &'static str {
        "vstar-product-frozen"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let a = operand(s, l)?;
        let y = self.values(a)?;
        Ok((CpuStorage::F32(y), Shape::from((a.rows, self.b.dim(1)?))))
    }

    fn bwd(&self, _a: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(product(grad, &self.b_t)?))
    }
}

impl FrozenRight {
    /// `a @ b [+ bias]` as row-major values.
    fn values(&self, a: View) -> Result<Vec<f32>> {
        let (storage, layout) = self.b.storage_and_layout();
        let b = operand(cpu(&storage, "product")?, layout)?;
        check(a, b)?;
        let Some(bias) = &self.bias else { return Ok(gemm_new(a, b)) };
        let (storage, layout) = bias.storage_and_layout();
        let bias = f32_slice(cpu(&storage, "product bias")?, layout, "product bias")?;
        if bias.len() != b.cols {
            candle_core::bail!("product: a bias of {} values for {} columns", bias.len(), b.cols);
        }
        // Every output row starts as the bias; gemm adds the product onto it.
        let mut y = Vec::with_capacity(a.rows * b.cols);
        (0..a.rows).for_each(|_| y.extend_from_slice(bias));
        gemm_into(&mut y, b.cols, true, a, b, 1.0, candle_core::utils::get_num_threads());
        Ok(y)
    }
}

/// `a @ b [+ bias] + (a @ down^T) @ up^T` for a frozen `b` (`FrozenRight`) and a tracked rank-r
/// pair down (r, k), up (n, r): a LoRA linear as one op. Apart, the low-rank term's two
/// products and the add were three more graph nodes per adapted layer, each a pass forward
/// and a zero fill and an add in candle's backward.
pub fn matmul_frozen_low_rank(
    a: &Tensor,
    (b, b_t, bias): (&Tensor, &Tensor, Option<&Tensor>),
    down: &Tensor,
    up: &Tensor,
) -> Result<Tensor> {
    let fused = ours(a, b) && ours(down, up) && frozen_bias(bias);
    if !fused {
        return matmul_frozen(a, b, b_t, bias)? + matmul(&matmul(a, &down.t()?)?, &up.t()?)?;
    }
    let frozen = FrozenRight { b: b.clone(), b_t: b_t.clone(), bias: bias.cloned() };
    a.apply_op3(down, up, LowRank(frozen))
}

struct LowRank(FrozenRight);

impl CustomOp3 for LowRank {
    fn name(&self) -> &'static str {
        "vstar-product-frozen-low-rank"
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
        let (a, down, up) = (operand(s1, l1)?, operand(s2, l2)?, operand(s3, l3)?);
        let mut y = self.0.values(a)?;
        let n = y.len() / a.rows.max(1);
        if down.cols != a.cols || up.cols != down.rows || up.rows != n {
            candle_core::bail!(
                "low-rank product: ({}, {}) with down ({}, {}) and up ({}, {}) do not match",
                a.rows,
                a.cols,
                down.rows,
                down.cols,
                up.rows,
                up.cols
            );
        }
        let h = gemm_new(a, down.t());
        gemm_into(&mut y, n, true, View::rows(&h, a.rows, down.rows, down.rows), up.t(), 1.0, 1);
        Ok((CpuStorage::F32(y), Shape::from((a.rows, n))))
    }

    /// With g = grad @ up: da = grad @ b^T + g @ down, ddown = g^T @ a, dup = grad^T @ (a @ down^T);
    /// only the tracked ones.
    fn bwd(
        &self,
        a: &Tensor,
        down: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = product(grad, up)?;
        let da = a.track_op().then(|| product(grad, &self.0.b_t)? + product(&g, down)?).transpose()?;
        let ddown = down.track_op().then(|| product(&g.t()?, a)).transpose()?;
        let dup = up.track_op().then(|| product(&grad.t()?, &product(a, &down.t()?)?)).transpose()?;
        Ok((da, ddown, dup))
    }
}

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        "vstar-product"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        multiply(operand(s1, l1)?, operand(s2, l2)?)
    }

    fn bwd(&self, a: &Tensor, b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let ga = if a.track_op() { Some(product(grad, &b.t()?)?) } else { None };
        let gb = if b.track_op() { Some(product(&a.t()?, grad)?) } else { None };
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

    /// A frozen right side held both ways, with and without a bias: the values and the left
    /// side's gradient equal candle's; the right side gets none.
    #[test]
    fn frozen_right_side_held_both_ways() {
        let dev = Device::Cpu;
        let a = Var::randn(0f32, 1.0, (5, 7), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (3, 7), &dev).unwrap();
        let wt = w.t().unwrap().contiguous().unwrap();
        let bias = Tensor::randn(0f32, 1.0, 3, &dev).unwrap();
        for bias in [None, Some(&bias)] {
            let ours = matmul_frozen(a.as_tensor(), &wt, &w, bias).unwrap();
            let theirs = a.as_tensor().matmul(&wt).unwrap();
            let theirs = bias.map_or(theirs.clone(), |v| theirs.broadcast_add(v).unwrap());
            assert!(max_diff(&ours, &theirs) < 1e-5, "bias {}", bias.is_some());
            let probe = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
            let g_ours = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g_theirs = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(max_diff(g_ours.get(a.as_tensor()).unwrap(), g_theirs.get(a.as_tensor()).unwrap()) < 1e-5);
            assert!(g_ours.get(&wt).is_none());
        }
    }

    /// The low-rank op equals the frozen product plus candle's two low-rank products, values
    /// and the gradients of the input and both factors, with and without a bias.
    #[test]
    fn low_rank_term_in_one_op_matches_candle() {
        let dev = Device::Cpu;
        let a = Var::randn(0f32, 1.0, (6, 7), &dev).unwrap();
        let (down, up) = (Var::randn(0f32, 1.0, (2, 7), &dev).unwrap(), Var::randn(0f32, 1.0, (3, 2), &dev).unwrap());
        let w = Tensor::randn(0f32, 1.0, (3, 7), &dev).unwrap();
        let wt = w.t().unwrap().contiguous().unwrap();
        let bias = Tensor::randn(0f32, 1.0, 3, &dev).unwrap();
        for bias in [None, Some(&bias)] {
            let ours = matmul_frozen_low_rank(a.as_tensor(), (&wt, &w, bias), &down, &up).unwrap();
            let low = a.as_tensor().matmul(&down.t().unwrap()).unwrap().matmul(&up.t().unwrap()).unwrap();
            let theirs = (a.as_tensor().matmul(&wt).unwrap() + low).unwrap();
            let theirs = bias.map_or(theirs.clone(), |v| theirs.broadcast_add(v).unwrap());
            assert!(max_diff(&ours, &theirs) < 1e-5, "bias {}: values", bias.is_some());
            let probe = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
            let g_ours = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g_theirs = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&a, &down, &up] {
                let e = max_diff(g_ours.get(v).unwrap(), g_theirs.get(v).unwrap());
                assert!(e < 1e-4, "bias {}: gradient differs by {e}", bias.is_some());
            }
        }
    }

    /// Both sides tracked (full fine-tuning): both gradients equal candle's; nothing tracked
    /// (sampling): the values do.
    #[test]
    fn both_sides_or_neither() {
        let dev = Device::Cpu;
        let (a, b) = (Var::randn(0f32, 1.0, (4, 6), &dev).unwrap(), Var::randn(0f32, 1.0, (6, 3), &dev).unwrap());
        let (ours, theirs) = (matmul(&a, &b).unwrap(), a.matmul(&b).unwrap());
        let probe = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
        let g_ours = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g_theirs = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&a, &b] {
            assert!(max_diff(g_ours.get(v).unwrap(), g_theirs.get(v).unwrap()) < 1e-5);
        }
        let (x, y) = (a.as_tensor().detach(), b.as_tensor().t().unwrap().contiguous().unwrap().detach());
        assert!(max_diff(&matmul(&x, &y.t().unwrap()).unwrap(), &x.matmul(&y.t().unwrap()).unwrap()) < 1e-5);
    }
}
