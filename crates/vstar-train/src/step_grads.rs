//! A training step's loss, gradients and logged metrics, from one backward pass or from one per
//! group of batch rows run side by side on rayon's threads. On 2 cores the Toyland UNet's
//! operations are too small to keep both threads busy (a batch-8 LoRA step ran about as fast on
//! two threads as on one); two half-batches, one per thread, keep both busy.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor};
use std::ops::Range;

/// What one step reports besides its loss (e.g. an accuracy), averaged into the log line.
pub type Metrics = Vec<(&'static str, f64)>;

pub struct StepGrads {
    pub loss: f64,
    pub grads: GradStore,
    pub metrics: Metrics,
}

impl StepGrads {
    /// One backward pass of the whole step's `loss`.
    pub fn whole(loss: &Tensor, metrics: Metrics) -> Result<Self> {
        Ok(Self { loss: scalar(loss)?, grads: loss.backward()?, metrics })
    }

    /// The step over `rows` batch rows as `parts` groups of consecutive rows (at most one per
    /// row), backpropagated side by side. `part(range)` returns those rows' share of the loss
    /// and of each metric: shares that add up to the whole step's values, e.g. a per-row mean
    /// times `range.len() / rows` (see `share`). Losses, gradients and metrics are summed in
    /// part order, so a run is deterministic for a given `parts`.
    pub fn by_rows(
        rows: usize,
        parts: usize,
        part: impl Fn(Range<usize>) -> Result<(Tensor, Metrics)> + Sync,
    ) -> Result<Self> {
        let ranges = split(rows, parts);
        let one = |r: &Range<usize>| -> Result<Self> {
            let (loss, metrics) = part(r.clone())?;
            Self::whole(&loss, metrics)
        };
        let mut done = rayon_map(&ranges, &one).into_iter();
        let mut total =
            done.next().ok_or_else(|| candle_core::Error::Msg("a step needs at least one row".into()))??;
        for next in done {
            total.add(next?)?;
        }
        Ok(total)
    }

    fn add(&mut self, other: Self) -> Result<()> {
        self.loss += other.loss;
        self.grads.extend(other.grads)?;
        add_metrics(&mut self.metrics, other.metrics);
        Ok(())
    }
}

/// Adds each of `more`'s values to the same-named one in `sums` (appending new names).
pub fn add_metrics(sums: &mut Metrics, more: Metrics) {
    for (k, v) in more {
        match sums.iter_mut().find(|(n, _)| *n == k) {
            Some(m) => m.1 += v,
            None => sums.push((k, v)),
        }
    }
}

/// `f` over `rows` batch rows as `parts` groups of consecutive rows side by side, the outputs
/// stacked back in row order: work without gradients (e.g. a frozen VAE's round trips) split
/// as `StepGrads::by_rows` splits a step.
pub fn map_rows(rows: usize, parts: usize, f: impl Fn(Range<usize>) -> Result<Tensor> + Sync) -> Result<Tensor> {
    let outs =
        rayon_map(&split(rows, parts), &|r: &Range<usize>| f(r.clone())).into_iter().collect::<Result<Vec<_>>>()?;
    Tensor::cat(&outs, 0)
}

/// The share of a per-row mean that `range` holds out of `rows`.
pub fn share(range: &Range<usize>, rows: usize) -> f64 {
    range.len() as f64 / rows as f64
}

/// As many groups as candle has threads (one when it runs on one).
pub fn default_parts() -> usize {
    candle_core::utils::get_num_threads()
}

/// `rows` split into `parts` consecutive ranges whose sizes differ by at most one.
fn split(rows: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, rows.max(1)).min(rows);
    (0..parts).map(|i| rows * i / parts..rows * (i + 1) / parts).collect()
}

/// `f` over `items` on rayon's threads, results in item order.
fn rayon_map<T: Sync, R: Send>(items: &[T], f: &(impl Fn(&T) -> R + Sync)) -> Vec<R> {
    use rayon::prelude::*;
    items.par_iter().map(f).collect()
}

fn scalar(loss: &Tensor) -> Result<f64> {
    loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn splits_rows_evenly_and_never_into_empty_parts() {
        assert_eq!(split(8, 2), vec![0..4, 4..8]);
        assert_eq!(split(5, 2), vec![0..2, 2..5]);
        assert_eq!(split(1, 2), vec![0..1]);
        assert_eq!(split(3, 1), vec![0..3]);
        assert!(split(0, 2).is_empty());
    }

    #[test]
    fn map_rows_stacks_the_parts_in_row_order() {
        let x = Tensor::arange(0f32, 10.0, &Device::Cpu).unwrap().reshape((5, 2)).unwrap();
        let f = |r: Range<usize>| (x.narrow(0, r.start, r.len())? * 2.0)?.affine(1.0, r.len() as f64);
        let whole = map_rows(5, 1, f).unwrap().to_vec2::<f32>().unwrap();
        let parts = map_rows(5, 2, f).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(whole[0], [5.0, 7.0]);
        // Rows 0-1 and 2-4: each part adds its own length, in row order.
        assert_eq!(parts, [[2.0, 4.0], [6.0, 8.0], [11.0, 13.0], [15.0, 17.0], [19.0, 21.0]]);
    }

    /// A per-row mean loss split into parts has the whole batch's loss, gradients and metrics.
    #[test]
    fn parts_add_up_to_the_whole_step() {
        let dev = Device::Cpu;
        let w = Var::new(&[0.5f32, -1.0, 2.0], &dev).unwrap();
        let x = Tensor::arange(0f32, 15.0, &dev).unwrap().reshape((5, 3)).unwrap();
        let rows_loss = |r: Range<usize>| -> Result<(Tensor, Metrics)> {
            let y = x.narrow(0, r.start, r.len())?.broadcast_mul(w.as_tensor())?.sum(1)?.sqr()?.mean_all()?;
            let s = share(&r, 5);
            let m = vec![("first", y.to_scalar::<f32>()? as f64 * s)];
            Ok(((y * s)?, m))
        };
        let whole = StepGrads::by_rows(5, 1, rows_loss).unwrap();
        let parts = StepGrads::by_rows(5, 3, rows_loss).unwrap();
        let g = |s: &StepGrads| s.grads.get(w.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert!((whole.loss - parts.loss).abs() < 1e-3 * whole.loss.abs(), "{} vs {}", whole.loss, parts.loss);
        assert!((whole.metrics[0].1 - parts.metrics[0].1).abs() < 1e-3 * whole.loss.abs());
        for (a, b) in g(&whole).iter().zip(g(&parts)) {
            assert!((a - b).abs() < 1e-3 * a.abs().max(1.0), "{a} vs {b}");
        }
        // And the parts really differ from any single one of them.
        let first = StepGrads::by_rows(2, 1, rows_loss).unwrap();
        assert!((first.loss - whole.loss).abs() > 1.0);
    }
}
