//! Photoswap as the sampling study uses it: in one batched call the concept branch runs with
//! attention quantities copied from the superclass branch - self-attention output features
//! for the first t_SF steps, cross-attention maps for the first t_CM, self-attention maps for
//! the first t_SM - and the step is CFG on that concept branch:
//! `eps(null) + w (eps(pC | copied attention) - eps(null))`. 3 rows per step.

use super::cfg::cfg_combine;
use super::{Branch, Guidance, CONCEPT, NULL, SUPER};
use candle_core::{Result, Tensor};
use vstar_nn::layers::AttentionHooks;

#[derive(Debug, Clone)]
pub struct Photoswap {
    pub scale: f64,
    pub t_sf: usize,
    pub t_cm: usize,
    pub t_sm: usize,
}

impl Guidance for Photoswap {
    fn name(&self) -> &'static str {
        "photoswap"
    }

    fn branches(&self, _: usize, _: usize) -> Vec<Branch> {
        vec![NULL, SUPER, CONCEPT]
    }

    fn hooks(&self, step: usize, _: usize, n: usize) -> Option<AttentionHooks> {
        // Superclass rows n..2n are the sources of concept rows 2n..3n.
        let pairs: Vec<(usize, usize)> = (0..n).map(|i| (n + i, 2 * n + i)).collect();
        let pick = |until: usize| if step < until { pairs.clone() } else { vec![] };
        let h = AttentionHooks {
            copy_self_features: pick(self.t_sf),
            copy_cross_maps: pick(self.t_cm),
            copy_self_maps: pick(self.t_sm),
            ..Default::default()
        };
        let any = !(h.copy_self_features.is_empty() && h.copy_cross_maps.is_empty() && h.copy_self_maps.is_empty());
        any.then_some(h)
    }

    fn combine(&self, _: usize, _: usize, eps: &[Tensor]) -> Result<Tensor> {
        cfg_combine(&eps[0], &eps[2], self.scale)
    }

    fn params(&self) -> serde_json::Value {
        serde_json::json!({ "guidance": self.scale, "t_sf": self.t_sf, "t_cm": self.t_cm, "t_sm": self.t_sm })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_superclass_rows_into_concept_rows_for_the_configured_steps() {
        let p = Photoswap { scale: 7.5, t_sf: 1, t_cm: 2, t_sm: 3 };
        let h0 = p.hooks(0, 10, 2).unwrap();
        assert_eq!(h0.copy_self_features, vec![(2, 4), (3, 5)]);
        assert_eq!((h0.copy_cross_maps.len(), h0.copy_self_maps.len()), (2, 2));
        let h2 = p.hooks(2, 10, 2).unwrap();
        assert!(h2.copy_self_features.is_empty() && h2.copy_cross_maps.is_empty());
        assert_eq!(h2.copy_self_maps, vec![(2, 4), (3, 5)]);
        assert!(p.hooks(3, 10, 2).is_none(), "no hooks (no cost) after the last copy step");
    }
}
