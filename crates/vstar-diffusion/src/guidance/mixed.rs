//! Superclass, mixed, switching and multi-stage sampling (sampling study, METHODS.md §1):
//! combinations of the concept direction dC and the superclass direction dS.

use super::cfg::cfg_combine;
use super::{Branch, Guidance, CONCEPT, NULL, SUPER};
use candle_core::{Result, Tensor};
use serde_json::json;

/// `eps(null) + wS dS + wC dC` from predictions for (null, superclass, concept).
pub fn mixed_combine(null: &Tensor, sup: &Tensor, concept: &Tensor, ws: f64, wc: f64) -> Result<Tensor> {
    (null + ((sup - null)? * ws)?)? + ((concept - null)? * wc)?
}

/// `eps(null) + w dS`.
#[derive(Debug, Clone)]
pub struct Superclass {
    pub scale: f64,
}

impl Guidance for Superclass {
    fn name(&self) -> &'static str {
        "superclass"
    }
    fn branches(&self, _: usize, _: usize) -> Vec<Branch> {
        vec![NULL, SUPER]
    }
    fn combine(&self, _: usize, _: usize, eps: &[Tensor]) -> Result<Tensor> {
        cfg_combine(&eps[0], &eps[1], self.scale)
    }
    fn params(&self) -> serde_json::Value {
        json!({ "guidance": self.scale })
    }
}

/// `eps(null) + wS dS + wC dC`, three rows every step.
#[derive(Debug, Clone)]
pub struct Mixed {
    pub ws: f64,
    pub wc: f64,
}

impl Guidance for Mixed {
    fn name(&self) -> &'static str {
        "mixed"
    }
    fn branches(&self, _: usize, _: usize) -> Vec<Branch> {
        vec![NULL, SUPER, CONCEPT]
    }
    fn combine(&self, _: usize, _: usize, eps: &[Tensor]) -> Result<Tensor> {
        mixed_combine(&eps[0], &eps[1], &eps[2], self.ws, self.wc)
    }
    fn params(&self) -> serde_json::Value {
        json!({ "ws": self.ws, "wc": self.wc })
    }
}

/// Superclass guidance for the first `t_sw` steps, concept guidance after; two rows a step.
#[derive(Debug, Clone)]
pub struct Switching {
    pub scale: f64,
    pub t_sw: usize,
}

impl Guidance for Switching {
    fn name(&self) -> &'static str {
        "switching"
    }
    fn branches(&self, step: usize, _: usize) -> Vec<Branch> {
        vec![NULL, if step < self.t_sw { SUPER } else { CONCEPT }]
    }
    fn combine(&self, _: usize, _: usize, eps: &[Tensor]) -> Result<Tensor> {
        cfg_combine(&eps[0], &eps[1], self.scale)
    }
    fn params(&self) -> serde_json::Value {
        json!({ "guidance": self.scale, "t_sw": self.t_sw })
    }
}

/// First `t_sw` steps `eps(null) + (wS + wC) dS` (the reference code's first stage; the
/// extracted eq. 8 reads dC, which contradicts the paper's text and figure 4), then mixed.
#[derive(Debug, Clone)]
pub struct MultiStage {
    pub ws: f64,
    pub wc: f64,
    pub t_sw: usize,
}

impl Guidance for MultiStage {
    fn name(&self) -> &'static str {
        "multi-stage"
    }
    fn branches(&self, step: usize, _: usize) -> Vec<Branch> {
        if step < self.t_sw {
            vec![NULL, SUPER]
        } else {
            vec![NULL, SUPER, CONCEPT]
        }
    }
    fn combine(&self, _: usize, _: usize, eps: &[Tensor]) -> Result<Tensor> {
        match eps {
            [null, sup] => cfg_combine(null, sup, self.ws + self.wc),
            [null, sup, concept] => mixed_combine(null, sup, concept, self.ws, self.wc),
            _ => candle_core::bail!("multi-stage guidance got {} predictions", eps.len()),
        }
    }
    fn params(&self) -> serde_json::Value {
        json!({ "ws": self.ws, "wc": self.wc, "t_sw": self.t_sw })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guidance::Cfg;
    use crate::guidance::PromptKind;
    use candle_core::Device;

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    fn v(x: Tensor) -> Vec<f32> {
        x.to_vec1::<f32>().unwrap()
    }

    #[test]
    fn mixed_matches_its_equation() {
        let (n, s, c) = (t(&[1.0, 0.0]), t(&[2.0, 1.0]), t(&[0.0, 3.0]));
        // 1 + 3.5*(2-1) + 3.5*(0-1) = 1 ; 0 + 3.5*1 + 3.5*3 = 14
        assert_eq!(v(Mixed { ws: 3.5, wc: 3.5 }.combine(0, 1, &[n, s, c]).unwrap()), vec![1.0, 14.0]);
    }

    #[test]
    fn mixed_with_ws_zero_is_concept_sampling() {
        let (n, s, c) = (t(&[0.3, -1.0]), t(&[5.0, 2.0]), t(&[1.0, 1.5]));
        let mixed = Mixed { ws: 0.0, wc: 7.0 }.combine(0, 1, &[n.clone(), s, c.clone()]).unwrap();
        assert_eq!(v(mixed), v(Cfg { scale: 7.0 }.combine(0, 1, &[n, c]).unwrap()));
    }

    #[test]
    fn switching_at_zero_is_concept_sampling_and_switches_rows() {
        let sw = Switching { scale: 7.0, t_sw: 0 };
        let cfg = Cfg { scale: 7.0 };
        for step in 0..5 {
            assert_eq!(sw.branches(step, 5), cfg.branches(step, 5));
        }
        let sw3 = Switching { scale: 7.0, t_sw: 3 };
        assert_eq!(sw3.branches(2, 5)[1].prompt, PromptKind::Superclass);
        assert_eq!(sw3.branches(3, 5)[1].prompt, PromptKind::Concept);
    }

    #[test]
    fn multi_stage_uses_the_superclass_direction_first_then_mixed() {
        let ms = MultiStage { ws: 1.0, wc: 2.0, t_sw: 2 };
        let (n, s, c) = (t(&[0.0]), t(&[1.0]), t(&[2.0]));
        assert_eq!(v(ms.combine(0, 5, &[n.clone(), s.clone()]).unwrap()), vec![3.0]);
        assert_eq!(v(ms.combine(2, 5, &[n, s, c]).unwrap()), vec![1.0 + 4.0]);
        assert_eq!(ms.branches(1, 5).len(), 2);
        assert_eq!(ms.branches(2, 5).len(), 3);
    }
}
