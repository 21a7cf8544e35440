//! Conv2d as `W (Cout, C*kh*kw) @ im2col(x)`, the whole batch in one GEMM. candle's own conv
//! is slower both ways at Toyland's shapes: its forward runs one small GEMM per image and
//! re-lays the kernel out on every call (the Toyland UNet forward took 11.9 ms with this path
//! against 17.9 ms with candle's at batch 1), and its backward goes through a direct
//! conv_transpose 10-100x slower than the forward. Here the conv is one custom op whose
//! backward is two GEMMs: the kernel's gradient against the columns, and the input's as a conv
//! of the output gradient (strided convs: a GEMM and a col2im).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::{Arc, OnceLock};

use super::gemm::{gemm_new, View};
use super::linear::{forward_folded, DeltaList, Slots, BOTH_WAYS_MAX};

#[derive(Debug, Clone, Copy)]
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
}

/// One patch row of a same-size stride-1 conv (see `Geometry::shifted`).
struct Shift {
    /// Where the row's input channel starts in one image.
    plane: usize,
    /// Input pixel index minus output pixel index, within the plane.
    offset: isize,
    /// Output rows and columns whose input pixel is inside the image (empty when none is).
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
}

impl Geometry {
    fn out_hw(&self) -> (usize, usize) {
        ((self.h + 2 * self.pad - self.kh) / self.stride + 1, (self.w + 2 * self.pad - self.kw) / self.stride + 1)
    }

    /// Stride 1 with the output the input's size (3x3 pad 1, 1x1): its input gradient is
    /// itself such a conv (`InputGradConv`).
    fn same_size(&self) -> bool {
        self.stride == 1 && self.out_hw() == (self.h, self.w)
    }

    fn rows(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Patch row `row` as (input channel, kernel row, kernel column).
    fn patch(&self, row: usize) -> (usize, usize, usize) {
        (row / (self.kh * self.kw), row / self.kw % self.kh, row % self.kw)
    }

    /// Calls `f(col, input, len)` for every run of in-bounds output pixels of patch element
    /// `row` = (c, ky, kx) of one batch item: output columns `col..col + len` read input
    /// elements `input, input + stride, ...` (a plain slice copy at stride 1).
    fn for_runs(&self, row: usize, mut f: impl FnMut(usize, usize, usize)) {
        let (oh, ow) = self.out_hw();
        let (c, ky, kx) = self.patch(row);
        // Output columns ox with 0 <= ox * stride + kx - pad < w.
        let first = self.pad.saturating_sub(kx).div_ceil(self.stride);
        let hi = (self.w + self.pad) as isize - kx as isize - 1;
        if hi < 0 {
            return;
        }
        let last = (hi as usize / self.stride + 1).min(ow);
        if first >= last {
            return;
        }
        for oy in 0..oh {
            let iy = (oy * self.stride + ky) as isize - self.pad as isize;
            if iy < 0 || iy >= self.h as isize {
                continue;
            }
            let ix = first * self.stride + kx - self.pad;
            f(oy * ow + first, (c * self.h + iy as usize) * self.w + ix, last - first);
        }
    }

    /// For a stride-1 conv whose output is the input's size (3x3 pad 1, 1x1), patch element
    /// `row`'s patch row is its input plane shifted by one offset: one slice instead of a run
    /// per output row, which at 8x8 latents made im2col a quarter of a UNet forward.
    fn shifted(&self, row: usize) -> Option<Shift> {
        if self.stride != 1 || self.out_hw() != (self.h, self.w) {
            return None;
        }
        let (c, ky, kx) = self.patch(row);
        let (h, w) = (self.h as isize, self.w as isize);
        let (dy, dx) = (ky as isize - self.pad as isize, kx as isize - self.pad as isize);
        let (oy0, oy1) = ((-dy).max(0), (h - dy).min(h));
        let (ox0, ox1) = ((-dx).max(0), (w - dx).min(w));
        let empty = oy0 >= oy1 || ox0 >= ox1;
        Some(Shift {
            plane: c * self.h * self.w,
            offset: dy * w + dx,
            rows: if empty { 0..0 } else { oy0 as usize..oy1 as usize },
            cols: ox0 as usize..ox1.max(0) as usize,
        })
    }

    /// `shifted` for every patch row, worked out once per call: its integer divisions, redone
    /// per row and image, cost as much as the copies at 8x8.
    fn plan(&self) -> Vec<Option<Shift>> {
        (0..self.rows()).map(|r| self.shifted(r)).collect()
    }

    /// Patch row `row` of one image (`src`) into `dst`, which comes zeroed; `shift` is its plan.
    fn gather_row(&self, row: usize, shift: &Option<Shift>, src: &[f32], dst: &mut [f32]) {
        match shift {
            Some(s) => self.gather_shifted(s, src, dst),
            None => self.gather_runs(row, src, dst),
        }
    }

    /// The adjoint of `gather_row`: adds patch row `row` (`src`) into one image's gradient.
    fn scatter_add_row(&self, row: usize, shift: &Option<Shift>, src: &[f32], dst: &mut [f32]) {
        match shift {
            Some(s) => self.scatter_add_shifted(s, src, dst),
            None => self.scatter_add_runs(row, src, dst),
        }
    }

    fn gather_shifted(&self, s: &Shift, src: &[f32], dst: &mut [f32]) {
        if s.rows.is_empty() {
            return;
        }
        // Output pixels first..last (row-major) all map to input pixels at `offset`; the
        // copy also carries pixels across row ends, which are zeroed after.
        let w = self.w;
        let (first, last) = (s.rows.start * w + s.cols.start, (s.rows.end - 1) * w + s.cols.end);
        let from = (s.plane as isize + first as isize + s.offset) as usize;
        dst[first..last].copy_from_slice(&src[from..from + (last - first)]);
        if s.cols.len() < w {
            for oy in s.rows.clone() {
                for ox in (0..s.cols.start).chain(s.cols.end..w) {
                    let p = oy * w + ox;
                    if (first..last).contains(&p) {
                        dst[p] = 0.0;
                    }
                }
            }
        }
    }

    fn scatter_add_shifted(&self, s: &Shift, src: &[f32], dst: &mut [f32]) {
        let w = self.w;
        for oy in s.rows.clone() {
            let (a, b) = (oy * w + s.cols.start, oy * w + s.cols.end);
            let to = (s.plane as isize + a as isize + s.offset) as usize;
            dst[to..to + (b - a)].iter_mut().zip(&src[a..b]).for_each(|(d, v)| *d += v);
        }
    }

    /// `dst[col..col + len] = src[input], src[input + stride], ...` for every run of `row`.
    fn gather_runs(&self, row: usize, src: &[f32], dst: &mut [f32]) {
        self.for_runs(row, |col, i, len| {
            let d = &mut dst[col..col + len];
            if self.stride == 1 {
                d.copy_from_slice(&src[i..i + len]);
            } else {
                d.iter_mut().enumerate().for_each(|(k, v)| *v = src[i + k * self.stride]);
            }
        });
    }

    /// The adjoint of `gather_runs`: `dst[input + k * stride] += src[col + k]`.
    fn scatter_add_runs(&self, row: usize, src: &[f32], dst: &mut [f32]) {
        self.for_runs(row, |col, i, len| {
            for (k, &v) in src[col..col + len].iter().enumerate() {
                dst[i + k * self.stride] += v;
            }
        });
    }
}

/// The f32 elements of a contiguous CPU tensor (the custom ops' input check).
pub(super) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("{what}: needs a contiguous f32 tensor"),
    }
}

/// The CPU storage behind a tensor an op holds beside its inputs (a kept kernel or bias).
pub(super) fn cpu<'a>(s: &'a candle_core::Storage, what: &str) -> Result<&'a CpuStorage> {
    match s {
        candle_core::Storage::Cpu(s) => Ok(s),
        _ => candle_core::bail!("{what}: needs a CPU tensor"),
    }
}

/// (B, C, H, W) -> (C*kh*kw, B*OH*OW): every batch item's patches side by side, so the
/// convolution is one GEMM and its weight gradient another (no sum over a batch dim).
fn im2col(g: &Geometry, x: &[f32], b: usize) -> Vec<f32> {
    let (oh, ow) = g.out_hw();
    let (cols, img) = (oh * ow, g.c * g.h * g.w);
    let len = g.rows() * b * cols;
    let plan = g.plan();
    // Each row is zeroed where it is filled, while in cache: a zeroed allocation would
    // write the whole (9x the input) buffer out to memory once more beforehand.
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len].par_chunks_mut(b * cols).enumerate().for_each(|(r, dst)| {
        dst.fill(MaybeUninit::new(0.0));
        // SAFETY: every element was just initialised, and MaybeUninit<f32> has f32's layout.
        let dst = unsafe { &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]) };
        for n in 0..b {
            g.gather_row(r, &plan[r], &x[n * img..(n + 1) * img], &mut dst[n * cols..(n + 1) * cols]);
        }
    });
    // SAFETY: the loop above initialised all `len` elements.
    unsafe { out.set_len(len) };
    out
}

/// The adjoint of `im2col`: sums patch columns back into `b` images.
fn col2im(g: &Geometry, cols_data: &[f32], b: usize) -> Vec<f32> {
    let (oh, ow) = g.out_hw();
    let (cols, img) = (oh * ow, g.c * g.h * g.w);
    let mut out = vec![0f32; b * img];
    let plan = g.plan();
    out.par_chunks_mut(img).enumerate().for_each(|(n, dst)| {
        for r in 0..g.rows() {
            g.scatter_add_row(r, &plan[r], &cols_data[r * b * cols + n * cols..][..cols], dst);
        }
    });
    out
}

/// The GEMM's (Cout, B, OH*OW) output as (B, Cout, OH*OW) images plus the per-channel bias
/// if any, in one pass (at batch 1 in place).
fn to_images(y: Vec<f32>, (b, px): (usize, usize), bias: Option<&[f32]>) -> Vec<f32> {
    let co = y.len() / (b * px);
    if b == 1 {
        let mut y = y;
        if let Some(bias) = bias {
            for (run, &bc) in y.chunks_mut(px).zip(bias) {
                run.iter_mut().for_each(|v| *v += bc);
            }
        }
        return y;
    }
    let mut out = Vec::with_capacity(y.len());
    for n in 0..b {
        for c in 0..co {
            let run = &y[(c * b + n) * px..][..px];
            match bias {
                Some(bias) => out.extend(run.iter().map(|v| v + bias[c])),
                None => out.extend_from_slice(run),
            }
        }
    }
    out
}

/// The kernel (Cout, C*kh*kw) as (C, Cout*kh*kw) with each kh x kw patch turned half a turn:
/// the kernel of the input gradient's conv.
fn flip_kernel(g: &Geometry, kernel: &Tensor) -> Result<Tensor> {
    let (co, kk) = (kernel.dim(0)?, g.kh * g.kw);
    let (storage, layout) = kernel.storage_and_layout();
    let k = f32_slice(cpu(&storage, "conv kernel")?, layout, "conv kernel")?;
    // Written in order; each patch is read backwards from its own place.
    let mut out: Vec<f32> = Vec::with_capacity(k.len());
    for c in 0..g.c {
        for o in 0..co {
            out.extend(k[(o * g.c + c) * kk..][..kk].iter().rev());
        }
    }
    Tensor::from_vec(out, (g.c, co * kk), kernel.device())
}

/// The convolution `x (B, C, H, W)`, `kernel (Cout, C*kh*kw)`, `bias (Cout,)` ->
/// (B, Cout, OH, OW) as one op: im2col, one GEMM, the result laid out as images with the bias
/// added. Its backward makes the patch columns' gradient and folds it back with col2im inside
/// the op, so no im2col-sized (9x the input) tensor enters candle's graph, whose backward
/// spends a zero fill and an add on every node (and so does a separate bias add).
struct Conv {
    g: Geometry,
    /// Where a frozen kernel's flipped copy is kept once a backward has made it.
    flipped: Option<Arc<OnceLock<Tensor>>>,
}

/// The input's gradient: col2im(kernel^T @ grad), for grad as the GEMM's (Cout, B, OH, OW).
struct InputGrad(Geometry);

/// The input's gradient of a same-size stride-1 conv as a conv of the output gradient (B, Cout,
/// OH, OW) with the kernel flipped in space and its channel axes swapped (`flip_kernel`, given
/// as (C, Cout*kh*kw)): the GEMM's output is the input's size, where `InputGrad` writes and then
/// folds a 9x larger column matrix.
struct InputGradConv(Geometry);

/// The kernel's gradient: grad @ im2col(x)^T (the columns made again, not kept from the forward).
struct KernelGrad(Geometry);

impl Conv {
    /// `flip_kernel(kernel)`: kept from the first backward if the kernel is frozen, made again
    /// per call if not (a trained kernel changes every step). Two parts of a step may both
    /// make it the first time; one copy is kept.
    fn flipped(&self, kernel: &Tensor) -> Result<Tensor> {
        let Some(cell) = &self.flipped else { return flip_kernel(&self.g, kernel) };
        if let Some(f) = cell.get() {
            return Ok(f.clone());
        }
        let f = flip_kernel(&self.g, kernel)?;
        let _ = cell.set(f.clone());
        Ok(f)
    }
}

impl CustomOp3 for Conv {
    fn name(&self) -> &'static str {
        "vstar-conv"
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
        let g = self.g;
        let (x, kernel) = (f32_slice(s1, l1, "conv input")?, f32_slice(s2, l2, "conv kernel")?);
        let bias = f32_slice(s3, l3, "conv bias")?;
        let (b, co, (oh, ow)) = (l1.dims()[0], l2.dims()[0], g.out_hw());
        let px = oh * ow;
        let cols = im2col(&g, x, b);
        let (k, n) = (g.rows(), b * px);
        let y = gemm_new(View::rows(kernel, co, k, k), View::rows(&cols, k, n, n));
        Ok((CpuStorage::F32(to_images(y, (b, px), Some(bias))), Shape::from((b, co, oh, ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        kernel: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.g;
        // Only a strided conv's input gradient still folds columns back (`InputGrad`).
        let folded = x.track_op() && !g.same_size();
        // The output gradient as the GEMM's (Cout, B, OH, OW), made once for `InputGrad` and
        // `KernelGrad` (no copy at batch 1).
        let by_channel = match folded || kernel.track_op() {
            true => Some(grad.transpose(0, 1)?.contiguous()?),
            false => None,
        };
        let gx = match (&by_channel, x.track_op()) {
            (_, false) => None,
            (Some(bc), true) if folded => Some(bc.apply_op2_no_bwd(kernel, &InputGrad(g))?),
            _ => Some(grad.contiguous()?.apply_op2_no_bwd(&self.flipped(kernel)?, &InputGradConv(g))?),
        };
        let gk = match &by_channel {
            Some(bc) if kernel.track_op() => Some(bc.apply_op2_no_bwd(x, &KernelGrad(g))?),
            _ => None,
        };
        let gb = if bias.track_op() { Some(super::bias::channel_sum(grad, 1)?) } else { None };
        Ok((gx, gk, gb))
    }
}

/// The output gradient, given as (Cout, B, OH, OW): its values, B, Cout and B*OH*OW.
fn grad_matrix<'a>(s: &'a CpuStorage, l: &Layout) -> Result<(&'a [f32], usize, usize, usize)> {
    let (co, b, oh, ow) = l.shape().dims4()?;
    Ok((f32_slice(s, l, "conv output gradient")?, b, co, b * oh * ow))
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "vstar-conv-input-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let (grad, b, co, n) = grad_matrix(s1, l1)?;
        let kernel = f32_slice(s2, l2, "conv kernel")?;
        let k = g.rows();
        let cols = gemm_new(View::rows(kernel, co, k, k).t(), View::rows(grad, co, n, n));
        Ok((CpuStorage::F32(col2im(&g, &cols, b)), Shape::from((b, g.c, g.h, g.w))))
    }
}

impl CustomOp2 for InputGradConv {
    fn name(&self) -> &'static str {
        "vstar-conv-input-grad-conv"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let (b, co, h, w) = l1.shape().dims4()?;
        let grad = f32_slice(s1, l1, "conv output gradient")?;
        let flipped = f32_slice(s2, l2, "flipped conv kernel")?;
        let over_grad = Geometry { c: co, ..g };
        let cols = im2col(&over_grad, grad, b);
        let k = over_grad.rows();
        let y = gemm_new(View::rows(flipped, g.c, k, k), View::rows(&cols, k, b * h * w, b * h * w));
        Ok((CpuStorage::F32(to_images(y, (b, h * w), None)), Shape::from((b, g.c, h, w))))
    }
}

impl CustomOp2 for KernelGrad {
    fn name(&self) -> &'static str {
        "vstar-conv-kernel-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let (grad, b, co, n) = grad_matrix(s1, l1)?;
        let cols = im2col(&g, f32_slice(s2, l2, "conv input")?, b);
        let gk = gemm_new(View::rows(grad, co, n, n), View::rows(&cols, g.rows(), n, n).t());
        Ok((CpuStorage::F32(gk), Shape::from((co, g.rows()))))
    }
}

#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
    /// Adapter deltas on the kernel viewed as (Cout, C*kh*kw); empty unless `adapted`.
    deltas: DeltaList,
    /// The frozen `weight` flipped for the input gradient (`Conv::flipped`), once a backward
    /// has made it, if small (`BOTH_WAYS_MAX`): in a Toyland LoRA step making it was 6% of the
    /// time; a large kernel's convs are large enough that it is not.
    flipped: Arc<OnceLock<Tensor>>,
}

impl Conv2d {
    pub fn new(cin: usize, cout: usize, k: usize, stride: usize, padding: usize, vb: VarBuilder) -> Result<Self> {
        let cfg = Conv2dConfig { padding, stride, ..Default::default() };
        let c = candle_nn::conv2d(cin, cout, k, cfg, vb)?;
        Ok(Self {
            weight: c.weight().clone(),
            bias: c.bias().cloned(),
            stride,
            padding,
            deltas: DeltaList::default(),
            flipped: Arc::default(),
        })
    }

    /// A conv whose kernel adapters (SVDiff, full fine-tunes) can attach to via `slots`.
    pub fn adapted(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        vb: VarBuilder,
        slots: &Slots,
    ) -> Result<Self> {
        let name = vb.prefix();
        let mut conv = Self::new(cin, cout, k, stride, padding, vb)?;
        conv.deltas = slots.register(name, &conv.weight)?;
        Ok(conv)
    }

    /// The convolution with `weight`, plus `bias` if given.
    fn convolve(&self, x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let (co, _, kh, kw) = weight.dims4()?;
        let g = Geometry { c, h, w, kh, kw, stride: self.stride, pad: self.padding };
        let kernel = weight.reshape((co, c * kh * kw))?.contiguous()?;
        let bias = match bias {
            Some(bias) => bias.contiguous()?,
            None => Tensor::zeros(co, weight.dtype(), weight.device())?,
        };
        let kept = weight.id() == self.weight.id() && !weight.track_op() && weight.elem_count() <= BOTH_WAYS_MAX;
        let op = Conv { g, flipped: kept.then(|| self.flipped.clone()) };
        let y = x.contiguous()?.apply_op3(&kernel, &bias, op)?;
        crate::flops::add(2 * (co * g.rows()) as u64 * (b * y.dim(2)? * y.dim(3)?) as u64);
        Ok(y)
    }

    /// `scale`: one adapter strength per batch row (B,); None = strength 1.
    pub fn forward_scaled(&self, x: &Tensor, scale: Option<&Tensor>) -> Result<Tensor> {
        let full = |w: &Tensor| self.convolve(x, w, self.bias.as_ref());
        let part = |w: &Tensor| self.convolve(x, w, None);
        forward_folded(&self.deltas, &self.weight, scale, full, part)
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_scaled(x, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::max_diff;
    use candle_core::{Device, Var};
    use std::collections::HashMap;

    /// A conv of kernel `weight`, no bias, no adapters.
    fn bare(weight: &Tensor, stride: usize, padding: usize) -> Conv2d {
        let (deltas, flipped) = (DeltaList::default(), Arc::default());
        Conv2d { weight: weight.clone(), bias: None, stride, padding, deltas, flipped }
    }

    /// Forward and both gradients equal candle's conv2d (used here as the reference).
    #[test]
    fn im2col_path_matches_candle_conv_and_its_gradients() {
        let dev = Device::Cpu;
        // The last two: a kernel overhanging a one- or two-pixel-wide input on both sides.
        let cases = [(1, 1, 3, 5), (2, 1, 3, 5), (2, 0, 3, 5), (1, 0, 1, 5), (1, 2, 5, 5), (1, 1, 3, 1), (1, 2, 5, 2)];
        for (stride, pad, k, width) in cases {
            // Sizes where candle's own conv backward is defined (it fails when the stride does not
            // divide the padded extent; the im2col path has no such limit).
            let x = Var::randn(0f32, 1.0, (2, 3, 7, width), &dev).unwrap();
            let w = Var::randn(0f32, 1.0, (4, 3, k, k), &dev).unwrap();
            let conv = bare(w.as_tensor(), stride, pad);
            let ours = conv.convolve(x.as_tensor(), w.as_tensor(), None).unwrap();
            let reference = x.as_tensor().conv2d(w.as_tensor(), pad, stride, 1, 1).unwrap();
            assert!(max_diff(&ours, &reference) < 1e-5, "forward s{stride} p{pad} k{k}");
            let probe = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
            let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (reference * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &w] {
                let (a, b) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                assert!(max_diff(a, b) < 1e-4, "gradient s{stride} p{pad} k{k}: {}", max_diff(a, b));
            }
        }
    }

    /// The bias added inside the op: values and the input's, kernel's and bias's gradients
    /// equal candle's conv plus a broadcast add, at batch 1 (added in place) and 3.
    #[test]
    fn bias_inside_the_op_matches_candle() {
        let dev = Device::Cpu;
        for batch in [1, 3] {
            let x = Var::randn(0f32, 1.0, (batch, 2, 5, 4), &dev).unwrap();
            let w = Var::randn(0f32, 1.0, (3, 2, 3, 3), &dev).unwrap();
            let bias = Var::randn(0f32, 1.0, 3, &dev).unwrap();
            let conv = bare(w.as_tensor(), 1, 1);
            let ours = conv.convolve(x.as_tensor(), w.as_tensor(), Some(bias.as_tensor())).unwrap();
            let reference = x
                .as_tensor()
                .conv2d(w.as_tensor(), 1, 1, 1, 1)
                .unwrap()
                .broadcast_add(&bias.as_tensor().reshape((1, 3, 1, 1)).unwrap())
                .unwrap();
            assert!(max_diff(&ours, &reference) < 1e-5, "batch {batch}: values");
            let probe = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
            let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (reference * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &w, &bias] {
                let (a, b) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                assert!(max_diff(a, b) < 1e-4, "batch {batch}: gradient differs by {}", max_diff(a, b));
            }
        }
    }

    /// With one side frozen (a LoRA step: the kernel; pretraining's first conv: the images)
    /// the other side's gradient still equals candle's, and the frozen side gets none.
    #[test]
    fn one_tracked_side_gets_the_gradient() {
        let dev = Device::Cpu;
        let (x, w) =
            (Var::randn(0f32, 1.0, (2, 3, 6, 5), &dev).unwrap(), Var::randn(0f32, 1.0, (4, 3, 3, 3), &dev).unwrap());
        let conv = bare(w.as_tensor(), 1, 1);
        for x_tracked in [true, false] {
            let (xi, wi) = match x_tracked {
                true => (x.as_tensor().clone(), w.as_tensor().detach()),
                false => (x.as_tensor().detach(), w.as_tensor().clone()),
            };
            let (tracked, frozen) = if x_tracked { (&x, &w) } else { (&w, &x) };
            let ours = conv.convolve(&xi, &wi, None).unwrap();
            let reference = xi.conv2d(&wi, 1, 1, 1, 1).unwrap();
            let probe = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
            let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (reference * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let (a, b) = (g1.get(tracked.as_tensor()).unwrap(), g2.get(tracked.as_tensor()).unwrap());
            assert!(max_diff(a, b) < 1e-4);
            assert!(g1.get(frozen.as_tensor()).is_none());
        }
    }

    /// A frozen kernel's flipped copy is made by the first backward and reused by the next,
    /// and both input gradients equal candle's.
    #[test]
    fn frozen_kernel_flips_once() {
        let dev = Device::Cpu;
        let weights = HashMap::from([
            ("weight".to_string(), Tensor::randn(0f32, 1.0, (4, 3, 3, 3), &dev).unwrap()),
            ("bias".to_string(), Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap()),
        ]);
        let conv =
            Conv2d::new(3, 4, 3, 1, 1, VarBuilder::from_tensors(weights, candle_core::DType::F32, &dev)).unwrap();
        let x = Var::randn(0f32, 1.0, (2, 3, 5, 4), &dev).unwrap();
        let reference = x.as_tensor().conv2d(&conv.weight, 1, 1, 1, 1).unwrap();
        let probe = Tensor::randn(0f32, 1.0, reference.shape(), &dev).unwrap();
        let want = (reference * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for call in 0..2 {
            assert_eq!(conv.flipped.get().is_some(), call > 0, "call {call}");
            let y = conv.forward(x.as_tensor()).unwrap();
            let got = (y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let e = max_diff(got.get(x.as_tensor()).unwrap(), want.get(x.as_tensor()).unwrap());
            assert!(e < 1e-4, "call {call}: gradient differs by {e}");
        }
    }

    /// The one-slice path of same-size convs gathers and scatters exactly what the per-run
    /// path does, for every patch row, including kernels wider than the image.
    #[test]
    fn shifted_planes_equal_runs() {
        for (h, w, k) in [(8, 8, 3), (4, 4, 3), (5, 7, 3), (3, 6, 5), (6, 2, 5), (7, 1, 3), (4, 4, 1)] {
            let g = Geometry { c: 2, h, w, kh: k, kw: k, stride: 1, pad: k / 2 };
            let img: Vec<f32> = (0..2 * h * w).map(|i| i as f32 + 1.0).collect();
            let col: Vec<f32> = (0..h * w).map(|i| (i as f32 + 1.0) * 0.5).collect();
            for row in 0..g.rows() {
                let (mut fast, mut slow) = (vec![0f32; h * w], vec![0f32; h * w]);
                g.gather_shifted(&g.shifted(row).unwrap(), &img, &mut fast);
                g.gather_runs(row, &img, &mut slow);
                assert_eq!(fast, slow, "gather {h}x{w} k{k} row {row}");
                let (mut fast, mut slow) = (img.clone(), img.clone());
                g.scatter_add_shifted(&g.shifted(row).unwrap(), &col, &mut fast);
                g.scatter_add_runs(row, &col, &mut slow);
                assert_eq!(fast, slow, "scatter {h}x{w} k{k} row {row}");
            }
        }
    }

    #[test]
    fn inference_and_training_paths_agree_with_bias() {
        let dev = Device::Cpu;
        let mut m = HashMap::new();
        m.insert("weight".to_string(), Tensor::randn(0f32, 1.0, (5, 2, 3, 3), &dev).unwrap());
        m.insert("bias".to_string(), Tensor::randn(0f32, 1.0, 5, &dev).unwrap());
        let conv = Conv2d::new(2, 5, 3, 1, 1, VarBuilder::from_tensors(m, candle_core::DType::F32, &dev)).unwrap();
        let x = Var::randn(0f32, 1.0, (1, 2, 4, 4), &dev).unwrap();
        let plain = conv.forward(&x.as_tensor().detach()).unwrap();
        let tracked = conv.forward(x.as_tensor()).unwrap();
        assert!(max_diff(&plain, &tracked) < 1e-5);
    }
}
