//! Masked sampling (sampling study): for the first t_sw steps superclass guidance at the
//! full weight (the reference's wC0 = 0, wS0 = wC + wS), then
//! `eps(null) + M (wC dC + wS dS) + (1 - M) (wC + wS) dS`, where M is the subject's
//! cross-attention map (mean over layers and heads, at latent resolution) binarized per image
//! at its q-quantile (above = 1): mixed guidance where the subject is, superclass elsewhere.
//! The map is read from the same step's batched call: the class word in the superclass branch
//! (the reference code's choice, default) or the placeholder in the concept branch.

use super::cfg::cfg_combine;
use super::{Branch, Guidance, CONCEPT, NULL, SUPER};
use candle_core::{Result, Tensor};
use std::sync::Mutex;
use vstar_nn::layers::AttentionHooks;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum MaskSource {
    /// The class word's map in the superclass branch.
    ClassWord,
    /// The placeholder's map in the concept branch.
    Placeholder,
}

#[derive(Debug)]
pub struct Masked {
    pub ws: f64,
    pub wc: f64,
    pub t_sw: usize,
    /// Quantile in (0, 1): larger = smaller subject region.
    pub q: f64,
    pub source: MaskSource,
    /// Token positions: the class word in the superclass prompt, the placeholder in the concept one.
    pub class_pos: usize,
    pub token_pos: usize,
    /// The masks of every step (N, 1, h, w), kept for `--save-masks`.
    pub masks: Mutex<Vec<(usize, Tensor)>>,
}

/// Per-image binarization of maps (N, 1, h, w) at their q-quantile.
pub fn binarize(maps: &Tensor, q: f64) -> Result<Tensor> {
    let (n, _, h, w) = maps.dims4()?;
    let flat = maps.reshape((n, h * w))?;
    let sorted = flat.to_vec2::<f32>()?;
    let th: Vec<f32> = sorted
        .into_iter()
        .map(|mut v| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)]
        })
        .collect();
    let th = Tensor::from_vec(th, (n, 1), maps.device())?;
    flat.broadcast_gt(&th)?.to_dtype(maps.dtype())?.reshape((n, 1, h, w))
}

impl Masked {
    /// The guided prediction for a given mask M (N, 1, h, w) broadcast over channels.
    pub fn combine_with_mask(&self, eps: &[Tensor], mask: &Tensor) -> Result<Tensor> {
        let (null, sup, con) = (&eps[0], &eps[1], &eps[2]);
        let ds = (sup - null)?;
        let dc = (con - null)?;
        let inside = ((&dc * self.wc)? + (&ds * self.ws)?)?;
        let outside = (&ds * (self.wc + self.ws))?;
        let m = mask.broadcast_as(null.shape())?;
        null + (m.mul(&inside)? + (1.0 - &m)?.mul(&outside)?)?
    }
}

impl Guidance for Masked {
    fn name(&self) -> &'static str {
        "masked"
    }

    fn branches(&self, _: usize, _: usize) -> Vec<Branch> {
        vec![NULL, SUPER, CONCEPT]
    }

    fn hooks(&self, step: usize, _: usize, _: usize) -> Option<AttentionHooks> {
        (step >= self.t_sw).then(|| AttentionHooks::recording(vec![self.class_pos, self.token_pos]))
    }

    fn combine(&self, step: usize, _: usize, eps: &[Tensor]) -> Result<Tensor> {
        if step < self.t_sw {
            return cfg_combine(&eps[0], &eps[1], self.wc + self.ws);
        }
        candle_core::bail!("masked sampling needs the attention maps of the step (use combine_hooked)")
    }

    fn combine_hooked(
        &self,
        step: usize,
        steps: usize,
        eps: &[Tensor],
        hooks: Option<&AttentionHooks>,
    ) -> Result<Tensor> {
        if step < self.t_sw {
            return self.combine(step, steps, eps);
        }
        let (n, _, h, w) = eps[0].dims4()?;
        let maps = hooks
            .and_then(|k| k.mean_map(h, w).transpose())
            .transpose()?
            .ok_or_else(|| candle_core::Error::Msg("masked sampling: no cross-attention maps recorded".into()))?;
        let (branch, token) = match self.source {
            MaskSource::ClassWord => (1, 0),
            MaskSource::Placeholder => (2, 1),
        };
        let maps = maps.narrow(0, branch * n, n)?.narrow(1, token, 1)?;
        let mask = binarize(&maps, self.q)?;
        self.masks.lock().unwrap().push((step, mask.clone()));
        self.combine_with_mask(eps, &mask)
    }

    fn saved_masks(&self) -> Vec<(usize, Tensor)> {
        self.masks.lock().unwrap().clone()
    }

    fn params(&self) -> serde_json::Value {
        serde_json::json!({ "ws": self.ws, "wc": self.wc, "t_sw": self.t_sw, "q": self.q, "mask_source": self.source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guidance::Mixed;
    use candle_core::Device;

    fn masked() -> Masked {
        Masked {
            ws: 2.0,
            wc: 3.0,
            t_sw: 0,
            q: 0.5,
            source: MaskSource::ClassWord,
            class_pos: 1,
            token_pos: 2,
            masks: Mutex::default(),
        }
    }

    #[test]
    fn all_ones_mask_is_mixed_and_all_zeros_is_superclass() {
        let dev = Device::Cpu;
        let e: Vec<Tensor> = (0..3).map(|i| Tensor::randn(i as f32, 1.0, (2, 4, 3, 3), &dev).unwrap()).collect();
        let m = masked();
        let ones = Tensor::ones((2, 1, 3, 3), candle_core::DType::F32, &dev).unwrap();
        let got = m.combine_with_mask(&e, &ones).unwrap();
        let mixed = Mixed { ws: 2.0, wc: 3.0 }.combine(0, 1, &e).unwrap();
        let d = (got - mixed).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "{d}");
        let zeros = ones.zeros_like().unwrap();
        let got = m.combine_with_mask(&e, &zeros).unwrap();
        let sup = cfg_combine(&e[0], &e[1], 5.0).unwrap();
        let d = (got - sup).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "{d}");
    }

    #[test]
    fn binarizes_each_image_at_its_quantile() {
        let dev = Device::Cpu;
        let maps = Tensor::new(&[[[[0.1f32, 0.4], [0.3, 0.2]]], [[[5.0f32, 1.0], [2.0, 3.0]]]], &dev).unwrap();
        let m = binarize(&maps, 0.5).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // Image 1: values sorted .1 .2 .3 .4, the 0.5-quantile (index 2) is .3: only .4 is above.
        assert_eq!(m, vec![0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn reads_the_chosen_branch_and_token_from_the_recorded_maps() {
        let dev = Device::Cpu;
        let n = 1;
        let e: Vec<Tensor> = (0..3).map(|i| Tensor::full(i as f32, (n, 1, 2, 1), &dev).unwrap()).collect();
        // Rows: null, superclass, concept; tokens: class, placeholder. Superclass row's class-word
        // map is high at pixel 0, the concept row's placeholder map at pixel 1.
        let probs = Tensor::new(
            &[[[[0.0f32], [0.0]], [[0.0], [0.0]]], [[[9.0], [1.0]], [[0.0], [0.0]]], [[[0.0], [0.0]], [[1.0], [9.0]]]],
            &dev,
        )
        .unwrap();
        let hooks = AttentionHooks {
            recorded: vec![vstar_nn::layers::hooks::RecordedMap { layer: "l".into(), probs }],
            ..AttentionHooks::recording(vec![1, 2])
        };
        for (source, inside) in [(MaskSource::ClassWord, 0), (MaskSource::Placeholder, 1)] {
            let m = Masked { source, q: 0.4, ..masked() };
            let out =
                m.combine_hooked(0, 1, &e, Some(&hooks)).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            // inside: 0 + 3*2 + 2*1 = 8; outside: 5 * 1 = 5
            let want: Vec<f32> = (0..2).map(|p| if p == inside { 8.0 } else { 5.0 }).collect();
            assert_eq!(out, want, "{source:?}");
        }
    }
}
