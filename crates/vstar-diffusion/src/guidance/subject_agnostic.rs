//! Subject-agnostic guidance (Chan et al. 2024), as the guidance paper re-implements it: the
//! weak condition is the subject-agnostic (class) prompt,
//! `e = eps(pS) + l (eps(pC) - eps(pS))`, combined with CFG: `eps(null) + w (e - eps(null))`.
//! l = 1 is CFG on the concept prompt (the paper's setting, l = 1.0, then relies on w).

use super::cfg::cfg_combine;
use super::{Branch, Guidance, CONCEPT, NULL, SUPER};
use candle_core::{Result, Tensor};

#[derive(Debug, Clone)]
pub struct SubjectAgnostic {
    /// l: weight of the subject-specific direction over the agnostic prompt.
    pub sag_scale: f64,
    /// w: CFG scale.
    pub cfg_scale: f64,
}

impl Guidance for SubjectAgnostic {
    fn name(&self) -> &'static str {
        "subject-agnostic"
    }

    fn branches(&self, _: usize, _: usize) -> Vec<Branch> {
        vec![NULL, SUPER, CONCEPT]
    }

    fn combine(&self, _: usize, _: usize, eps: &[Tensor]) -> Result<Tensor> {
        let e = cfg_combine(&eps[1], &eps[2], self.sag_scale)?;
        cfg_combine(&eps[0], &e, self.cfg_scale)
    }

    fn params(&self) -> serde_json::Value {
        serde_json::json!({ "sag_scale": self.sag_scale, "guidance": self.cfg_scale })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guidance::Cfg;
    use candle_core::Device;

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn matches_its_equation_and_l_one_is_cfg() {
        let (n, s, c) = (t(&[0.0, 1.0]), t(&[1.0, 1.0]), t(&[3.0, 0.0]));
        let g = SubjectAgnostic { sag_scale: 2.0, cfg_scale: 1.5 }
            .combine(0, 1, &[n.clone(), s.clone(), c.clone()])
            .unwrap();
        // e = s + 2 (c - s) = [5, -1]; n + 1.5 (e - n) = [7.5, -2]
        assert_eq!(g.to_vec1::<f32>().unwrap(), vec![7.5, -2.0]);
        let one = SubjectAgnostic { sag_scale: 1.0, cfg_scale: 7.5 }.combine(0, 1, &[n.clone(), s, c.clone()]).unwrap();
        let cfg = Cfg { scale: 7.5 }.combine(0, 1, &[n, c]).unwrap();
        assert_eq!(one.to_vec1::<f32>().unwrap(), cfg.to_vec1::<f32>().unwrap());
    }
}
