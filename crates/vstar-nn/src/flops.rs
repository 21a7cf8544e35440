//! A per-thread count of the FLOPs the model layers issue in their products - convolutions,
//! linears (adapter deltas included) and the two attention products; norms, activations and
//! the tiny time-embedding linears are not counted. Benchmarks divide it by wall time for the
//! achieved FLOP/s, so the figure follows what a forward really ran, not a formula kept in
//! sync with the architecture by hand.

use candle_core::{Result, Tensor};
use std::cell::Cell;

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

/// Adds `n` FLOPs to this thread's count.
pub fn add(n: u64) {
    COUNT.with(|c| c.set(c.get() + n));
}

/// Runs `f`; returns its result and the FLOPs it issued on this thread.
pub fn count<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = COUNT.with(Cell::get);
    let r = f();
    (r, COUNT.with(Cell::get) - before)
}

/// `a @ b` (`layers::product`), counted as 2 * (batch dims) * m * k * n.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    counted(a, crate::layers::product::matmul(a, b)?)
}

/// `layers::product::matmul_frozen`, counted like `matmul` (the bias not counted).
pub fn matmul_frozen(a: &Tensor, b: &Tensor, b_t: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    counted(a, crate::layers::product::matmul_frozen(a, b, b_t, bias)?)
}

/// `layers::product::matmul_frozen_low_rank`, counted as its three products.
pub fn matmul_frozen_low_rank(
    a: &Tensor,
    frozen: (&Tensor, &Tensor, Option<&Tensor>),
    down: &Tensor,
    up: &Tensor,
) -> Result<Tensor> {
    let rows = a.elem_count() / a.dim(a.rank() - 1)?.max(1);
    add(2 * (rows * down.dim(0)? * (down.dim(1)? + up.dim(0)?)) as u64);
    counted(a, crate::layers::product::matmul_frozen_low_rank(a, frozen, down, up)?)
}

/// Counts the product `y` of `a` with some matrix: 2 * k per output value.
fn counted(a: &Tensor, y: Tensor) -> Result<Tensor> {
    add(2 * a.dim(a.rank() - 1)? as u64 * y.elem_count() as u64);
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::conv::Conv2d;
    use crate::layers::{AdaptedLinear, Slots};
    use candle_core::{DType, Device, Module};
    use candle_nn::{VarBuilder, VarMap};

    /// A linear, a batched product and a strided conv count the textbook figures.
    #[test]
    fn layers_count_their_products() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        let lin = AdaptedLinear::new(6, 5, true, vb.pp("l"), &Slots::default()).unwrap();
        let x = Tensor::zeros((2, 3, 6), DType::F32, &dev).unwrap();
        assert_eq!(count(|| lin.forward(&x, None).unwrap()).1, 2 * 6 * 5 * 6);
        let (a, b) = (
            Tensor::zeros((2, 4, 3, 7), DType::F32, &dev).unwrap(),
            Tensor::zeros((2, 4, 7, 5), DType::F32, &dev).unwrap(),
        );
        assert_eq!(count(|| matmul(&a, &b).unwrap()).1, 2 * 8 * 3 * 7 * 5);
        // Plain (non-Var) weights, as a loaded model has.
        let weights = std::collections::HashMap::from([
            ("weight".to_string(), Tensor::zeros((4, 3, 3, 3), DType::F32, &dev).unwrap()),
            ("bias".to_string(), Tensor::zeros(4, DType::F32, &dev).unwrap()),
        ]);
        let conv = Conv2d::new(3, 4, 3, 2, 1, VarBuilder::from_tensors(weights, DType::F32, &dev)).unwrap();
        let img = Tensor::zeros((2, 3, 9, 7), DType::F32, &dev).unwrap();
        // 5x4 output pixels per image, each 4 outputs of a 3*3*3 patch.
        let want = 2 * 2 * 5 * 4 * 4 * 27;
        assert_eq!(count(|| conv.forward(&img).unwrap()).1, want);
        // A Var input (one-sided product, with a backward) counts the same.
        let v = candle_core::Var::from_tensor(&img).unwrap();
        assert_eq!(count(|| conv.forward(v.as_tensor()).unwrap()).1, want);
    }
}
