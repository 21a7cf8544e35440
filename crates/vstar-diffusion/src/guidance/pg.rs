//! Personalization guidance (guidance paper): `eps(null; Ww) + l (eps(c; W1) - eps(null; Ww))`
//! with `Ww = W0 + w dW`. The unconditional row runs the adapter at scale w in the same
//! batched call as the conditional row, so PG costs exactly what CFG costs.

use super::cfg::cfg_combine;
use super::{Branch, Guidance, PromptKind};
use candle_core::{Result, Tensor};

#[derive(Debug, Clone)]
pub struct PersonalizationGuidance {
    pub scale: f64,
    /// Adapter strength of the unconditional branch: 0 pretrained .. 1 fine-tuned (= CFG).
    pub omega: f32,
}

impl Guidance for PersonalizationGuidance {
    fn name(&self) -> &'static str {
        "pg"
    }
    fn branches(&self, _: usize, _: usize) -> Vec<Branch> {
        vec![Branch::new(PromptKind::Null, self.omega), Branch::new(PromptKind::Concept, 1.0)]
    }
    fn combine(&self, _: usize, _: usize, eps: &[Tensor]) -> Result<Tensor> {
        cfg_combine(&eps[0], &eps[1], self.scale)
    }
    fn params(&self) -> serde_json::Value {
        serde_json::json!({ "guidance": self.scale, "omega": self.omega })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guidance::Cfg;

    #[test]
    fn omega_one_is_cfg_and_omega_sets_the_null_rows_adapter_scale() {
        let pg = PersonalizationGuidance { scale: 7.5, omega: 1.0 };
        assert_eq!(pg.branches(0, 10), Cfg { scale: 7.5 }.branches(0, 10));
        let pg0 = PersonalizationGuidance { scale: 7.5, omega: 0.25 };
        let b = pg0.branches(3, 10);
        assert_eq!((b.len(), b[0].adapter_scale, b[1].adapter_scale), (2, 0.25, 1.0));
    }
}
