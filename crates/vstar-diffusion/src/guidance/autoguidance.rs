//! Autoguidance (Karras et al. 2024) with the pretrained model as the "bad" guide:
//! `eps_ag = eps(c; W0) + l (eps(c; W1) - eps(c; W0))`, then CFG on top:
//! `eps(null; W1) + w (eps_ag - eps(null; W1))`. With w = 1 the null row is dropped: AG alone.
//! W0 and W1 differ only in the per-row adapter scale, so all rows share one batched call.

use super::cfg::cfg_combine;
use super::{Branch, Guidance, PromptKind};
use candle_core::{Result, Tensor};

#[derive(Debug, Clone)]
pub struct Autoguidance {
    /// l: how far past the pretrained prediction to extrapolate.
    pub ag_scale: f64,
    /// w: CFG scale on top (1 = autoguidance alone).
    pub cfg_scale: f64,
}

impl Autoguidance {
    fn alone(&self) -> bool {
        self.cfg_scale == 1.0
    }
}

impl Guidance for Autoguidance {
    fn name(&self) -> &'static str {
        "autoguidance"
    }

    fn branches(&self, _: usize, _: usize) -> Vec<Branch> {
        let ag = [Branch::new(PromptKind::Concept, 0.0), Branch::new(PromptKind::Concept, 1.0)];
        if self.alone() {
            ag.to_vec()
        } else {
            [&[Branch::new(PromptKind::Null, 1.0)][..], &ag].concat()
        }
    }

    fn combine(&self, _: usize, _: usize, eps: &[Tensor]) -> Result<Tensor> {
        let (null, rest) = if self.alone() { (None, eps) } else { (Some(&eps[0]), &eps[1..]) };
        let ag = cfg_combine(&rest[0], &rest[1], self.ag_scale)?;
        match null {
            None => Ok(ag),
            Some(n) => cfg_combine(n, &ag, self.cfg_scale),
        }
    }

    fn params(&self) -> serde_json::Value {
        serde_json::json!({ "ag_scale": self.ag_scale, "guidance": self.cfg_scale })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn matches_its_equation_alone_and_with_cfg() {
        let (w0, w1, null) = (t(&[1.0, 0.0]), t(&[2.0, 1.0]), t(&[0.5, 0.5]));
        let alone = Autoguidance { ag_scale: 2.0, cfg_scale: 1.0 };
        assert_eq!(alone.branches(0, 1).len(), 2);
        let g = alone.combine(0, 1, &[w0.clone(), w1.clone()]).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(g, vec![3.0, 2.0]); // w0 + 2 (w1 - w0)
        let both = Autoguidance { ag_scale: 2.0, cfg_scale: 3.0 };
        let b = both.branches(0, 1);
        assert_eq!((b.len(), b[1].adapter_scale, b[2].adapter_scale), (3, 0.0, 1.0));
        let g = both.combine(0, 1, &[null, w0, w1]).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(g, vec![0.5 + 3.0 * 2.5, 0.5 + 3.0 * 1.5]);
    }

    #[test]
    fn ag_scale_one_is_the_fine_tuned_prediction() {
        let g = Autoguidance { ag_scale: 1.0, cfg_scale: 1.0 }.combine(0, 1, &[t(&[4.0]), t(&[-2.0])]).unwrap();
        assert_eq!(g.to_vec1::<f32>().unwrap(), vec![-2.0]);
    }
}
