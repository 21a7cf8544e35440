//! `AdaptedLinear`: a frozen linear layer plus optional deltas applied with a per-batch-row
//! scale. Scale 0 gives the pretrained output, 1 the fine-tuned one, w the weight
//! interpolation W0 + w*dW - so pretrained and fine-tuned branches share one batched call.
//! Convs and norm gains register in the same `Slots` (their weight viewed as a matrix) and
//! fold their deltas into the weight (`forward_folded`).

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// A change to a linear layer's weight.
#[derive(Debug, Clone)]
pub enum Delta {
    /// LoRA: `dW = scale * up @ down`, down (r, in), up (out, r), scale = alpha / r.
    Lora { down: Tensor, up: Tensor, scale: f64 },
    /// A dense weight delta (out, in): full fine-tunes, trainable K/V.
    Dense(Tensor),
    /// SVDiff: the base weight `u diag(s) vt` with its singular values shifted,
    /// `W' = u diag(relu(s + shift)) vt`, so `dW = u diag(relu(s + shift) - s) vt`.
    /// u (out, k), s (k,), vt (k, in), shift (k,).
    Spectral { u: Tensor, s: Tensor, vt: Tensor, shift: Tensor },
}

impl Delta {
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            // The scale goes on the (out, r) factor, not on the (rows, out) activation: one
            // fewer activation-sized op forward and backward.
            Delta::Lora { down, up, scale } => matmul_t(&matmul_t(x, down)?, &(up * *scale)?),
            Delta::Dense(dw) => matmul_t(x, dw),
            // x dW^T = ((x vt^T) * (relu(s + shift) - s)) u^T: never forms the (out, in) matrix.
            Delta::Spectral { u, s, vt, shift } => {
                matmul_t(&matmul_t(x, vt)?.broadcast_mul(&spectral_gain(s, shift)?)?, u)
            }
        }
    }

    /// dW itself (out, in), for layers that fold it into their weight.
    fn matrix(&self) -> Result<Tensor> {
        match self {
            Delta::Lora { down, up, scale } => up.matmul(down)? * *scale,
            Delta::Dense(dw) => Ok(dw.clone()),
            Delta::Spectral { u, s, vt, shift } => u.broadcast_mul(&spectral_gain(s, shift)?)?.matmul(vt),
        }
    }

    /// "(out, in)"-style shape text for error messages, and whether it fits a layer.
    fn fits(&self, i: usize, o: usize) -> Result<(bool, String)> {
        Ok(match self {
            Delta::Lora { down, up, .. } => (
                down.dim(1)? == i && up.dim(0)? == o && down.dim(0)? == up.dim(1)?,
                format!("down {:?}, up {:?}", down.dims(), up.dims()),
            ),
            Delta::Dense(dw) => (dw.dims() == [o, i], format!("{:?}", dw.dims())),
            Delta::Spectral { u, s, vt, shift } => (
                u.dim(0)? == o && vt.dim(1)? == i && s.dims() == shift.dims(),
                format!("u {:?}, vt {:?}, shift {:?}", u.dims(), vt.dims(), shift.dims()),
            ),
        })
    }
}

/// `relu(s + shift) - s`: how much each singular value moves.
fn spectral_gain(s: &Tensor, shift: &Tensor) -> Result<Tensor> {
    (s + shift)?.relu()? - s
}

/// One adapter strength per batch row (B,), shaped to broadcast over a rank-`rank` activation.
fn per_row(s: &Tensor, rank: usize) -> Result<Tensor> {
    let mut shape = vec![1usize; rank];
    shape[0] = s.dim(0)?;
    s.reshape(shape)
}

/// A layer whose output is linear in its weight `w` plus a part that is not (a conv's bias, a
/// norm's shift): `full(w)` is the layer, `part(dw)` the weight's own share. With deltas it is
/// `full(w + dW)`, or `full(w) + s_b * part(dW)` under per-row strengths `s`.
pub(crate) fn forward_folded(
    deltas: &DeltaList,
    w: &Tensor,
    scale: Option<&Tensor>,
    full: impl Fn(&Tensor) -> Result<Tensor>,
    part: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let list = deltas.read().unwrap();
    if list.is_empty() {
        return full(w);
    }
    let mut dw = list[0].matrix()?;
    for d in &list[1..] {
        dw = (dw + d.matrix()?)?;
    }
    let dw = dw.reshape(w.shape())?;
    match scale {
        None => full(&(w + dw)?),
        Some(s) => {
            let y = full(w)?;
            let rank = y.rank();
            y + part(&dw)?.broadcast_mul(&per_row(s, rank)?)?
        }
    }
}

/// `x @ w^T` for x (..., in) and w (out, in), as one 2-D GEMM over the folded leading dims:
/// a broadcast matmul's weight gradient would be a slow strided sum over the batch.
fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    over_rows(x, w.dim(0)?, |x| crate::flops::matmul(x, &w.t()?))
}

/// `matmul_t` for a frozen `w` also held row-major (`rows`, which the input gradient reads),
/// plus a frozen `bias` written with the product.
fn matmul_t_frozen(x: &Tensor, w: &Tensor, rows: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    over_rows(x, w.dim(0)?, |x| crate::flops::matmul_frozen(x, &w.t()?, rows, bias))
}

/// `f` on x (..., in) as a 2-D (rows, in) matrix, its (rows, out) result shaped back (..., out).
fn over_rows(x: &Tensor, out: usize, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let dims = x.dims();
    let last = dims.len() - 1;
    let mut out_dims = dims.to_vec();
    out_dims[last] = out;
    f(&x.flatten_to(last.saturating_sub(1))?)?.reshape(out_dims)
}

/// Frozen weights up to this many values are held both ways (see `AdaptedLinear::rows`, and a
/// conv's flipped kernel): the per-call copy this saves matters at a few dozen rows or pixels,
/// i.e. small models; larger ones keep one copy.
pub(crate) const BOTH_WAYS_MAX: usize = 1 << 20;

pub(crate) type DeltaList = Arc<RwLock<Vec<Delta>>>;

/// One adapted layer: its dimensions, frozen weight as a matrix (out, in) and deltas. A conv
/// kernel (out, c, kh, kw) is the matrix (out, c*kh*kw); a norm gain (n,) is (1, n), so SVDiff
/// gives it one scalar shift, as its reference code does.
#[derive(Debug)]
struct Slot {
    in_dim: usize,
    out_dim: usize,
    weight: Tensor,
    /// The weight's own shape, for files.
    shape: Vec<usize>,
    deltas: DeltaList,
}

/// Every adapted layer of a model by its parameter path (e.g.
/// `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`), for attaching adapters.
#[derive(Debug, Clone, Default)]
pub struct Slots(Arc<Mutex<BTreeMap<String, Slot>>>);

impl Slots {
    pub(crate) fn register(&self, name: String, weight: &Tensor) -> Result<DeltaList> {
        let shape = weight.dims().to_vec();
        let (out_dim, in_dim) = match shape.as_slice() {
            [n] => (1, *n),
            [o, rest @ ..] => (*o, rest.iter().product()),
            [] => candle_core::bail!("`{name}`: a scalar weight cannot take adapters"),
        };
        let deltas: DeltaList = Arc::default();
        // A (out, in) weight is kept as it is: reshaping a strided view would copy it.
        let matrix =
            if weight.dims() == [out_dim, in_dim] { weight.clone() } else { weight.reshape((out_dim, in_dim))? };
        let slot = Slot { in_dim, out_dim, weight: matrix, shape, deltas: deltas.clone() };
        self.0.lock().unwrap().insert(name, slot);
        Ok(deltas)
    }

    /// Layer names with their (in, out) dimensions.
    pub fn names(&self) -> Vec<(String, usize, usize)> {
        self.0.lock().unwrap().iter().map(|(k, s)| (k.clone(), s.in_dim, s.out_dim)).collect()
    }

    /// The frozen weight (out, in) of a layer (SVDiff decomposes it; dense files store W0 + dW).
    pub fn weight(&self, name: &str) -> Result<Tensor> {
        let map = self.0.lock().unwrap();
        map.get(name).map(|s| s.weight.clone()).ok_or_else(|| missing(name))
    }

    /// The layer weight's own shape (a conv's 4 dims, a norm gain's 1), as files store it.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let map = self.0.lock().unwrap();
        map.get(name).map(|s| s.shape.clone()).ok_or_else(|| missing(name))
    }

    /// Adds a delta to the named layer, checking its shape.
    pub fn push(&self, name: &str, delta: Delta) -> Result<()> {
        let map = self.0.lock().unwrap();
        let slot = map.get(name).ok_or_else(|| missing(name))?;
        let (ok, found) = delta.fits(slot.in_dim, slot.out_dim)?;
        if !ok {
            return Err(candle_core::Error::Msg(format!(
                "adapter for `{name}` has shape {found}, the layer is {}x{}: was it made for another base model?",
                slot.out_dim, slot.in_dim
            )));
        }
        slot.deltas.write().unwrap().push(delta);
        Ok(())
    }
}

fn missing(name: &str) -> candle_core::Error {
    candle_core::Error::Msg(format!("adapter targets `{name}`, which this model does not have"))
}

#[derive(Debug, Clone)]
pub struct AdaptedLinear {
    weight: Tensor,
    /// A small frozen weight also row-major (the loaded tensor), for the input gradient
    /// `grad @ W`: `weight` is laid out for the forward, and gemm would copy it on every call.
    rows: Option<Tensor>,
    bias: Option<Tensor>,
    deltas: DeltaList,
}

impl AdaptedLinear {
    pub fn new(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder, slots: &Slots) -> Result<Self> {
        let bound = 1.0 / (in_dim as f64).sqrt();
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        let bias = if bias {
            Some(vb.get_with_hints(out_dim, "bias", Init::Uniform { lo: -bound, up: bound })?)
        } else {
            None
        };
        // A frozen weight is kept as the (out, in) view of a contiguous (in, out) copy. gemm
        // copies (packs) a weight it cannot read along its output dimension on every call; at a
        // few dozen rows (Toyland's 4x4 attention level) that copy cost as much as the product.
        let (weight, rows) = match weight.is_variable() {
            true => (weight, None),
            false => (weight.t()?.contiguous()?.t()?, (weight.elem_count() <= BOTH_WAYS_MAX).then_some(weight)),
        };
        let deltas = slots.register(vb.prefix(), &weight)?;
        Ok(Self { weight, rows, bias, deltas })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// `row_scale`: one adapter strength per batch row (shape (B,)); None = strength 1.
    pub fn forward(&self, x: &Tensor, row_scale: Option<&Tensor>) -> Result<Tensor> {
        if let Some(y) = self.lora_in_one_op(x, row_scale)? {
            return Ok(y);
        }
        // A frozen bias of a frozen weight rides in the product (see `matmul_frozen`).
        let (mut y, bias) = match (&self.rows, &self.bias) {
            (Some(rows), Some(b)) if !b.track_op() => (matmul_t_frozen(x, &self.weight, rows, Some(b))?, None),
            (Some(rows), b) => (matmul_t_frozen(x, &self.weight, rows, None)?, b.as_ref()),
            (None, b) => (matmul_t(x, &self.weight)?, b.as_ref()),
        };
        if let Some(b) = bias {
            let last = y.rank() - 1;
            y = if y.track_op() { super::bias::add_bias(&y, b, last)? } else { y.broadcast_add(b)? };
        }
        let deltas = self.deltas.read().unwrap();
        if deltas.is_empty() {
            return Ok(y);
        }
        let mut d = deltas[0].apply(x)?;
        for delta in &deltas[1..] {
            d = (d + delta.apply(x)?)?;
        }
        match row_scale {
            None => y + d,
            Some(s) => y + d.broadcast_mul(&per_row(s, x.rank())?)?,
        }
    }

    /// A frozen layer with one LoRA at full strength (a LoRA training step, or sampling with
    /// one LoRA) as one op (`matmul_frozen_low_rank`); None otherwise.
    fn lora_in_one_op(&self, x: &Tensor, row_scale: Option<&Tensor>) -> Result<Option<Tensor>> {
        let deltas = self.deltas.read().unwrap();
        let (Some(rows), None, [Delta::Lora { down, up, scale }]) = (&self.rows, row_scale, deltas.as_slice()) else {
            return Ok(None);
        };
        let bias = match &self.bias {
            Some(b) if b.track_op() => return Ok(None),
            b => b.as_ref(),
        };
        let up = (up * *scale)?;
        let frozen = (&self.weight.t()?, rows, bias);
        over_rows(x, self.weight.dim(0)?, |x| crate::flops::matmul_frozen_low_rank(x, frozen, down, &up)).map(Some)
    }
}
