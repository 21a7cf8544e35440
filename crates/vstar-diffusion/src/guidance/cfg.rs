//! Classifier-free guidance: `eps(null) + w * (eps(c) - eps(null))`.

use super::{Branch, Guidance, PromptKind};
use candle_core::{Result, Tensor};

#[derive(Debug, Clone)]
pub struct Cfg {
    pub scale: f64,
}

/// `uncond + w * (cond - uncond)`, shared by every method built on CFG.
pub fn cfg_combine(uncond: &Tensor, cond: &Tensor, w: f64) -> Result<Tensor> {
    uncond + ((cond - uncond)? * w)?
}

impl Guidance for Cfg {
    fn name(&self) -> &'static str {
        "cfg"
    }

    fn branches(&self, _: usize, _: usize) -> Vec<Branch> {
        vec![Branch::new(PromptKind::Null, 1.0), Branch::new(PromptKind::Concept, 1.0)]
    }

    fn combine(&self, _: usize, _: usize, eps: &[Tensor]) -> Result<Tensor> {
        cfg_combine(&eps[0], &eps[1], self.scale)
    }

    fn params(&self) -> serde_json::Value {
        serde_json::json!({ "guidance": self.scale })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn cfg_matches_its_equation() {
        let u = Tensor::new(&[1f32, 2.0, -1.0], &Device::Cpu).unwrap();
        let c = Tensor::new(&[2f32, 0.0, -1.0], &Device::Cpu).unwrap();
        let g = Cfg { scale: 7.5 }.combine(0, 1, &[u, c]).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(g, vec![1.0 + 7.5, 2.0 - 15.0, -1.0]);
    }

    #[test]
    fn scale_one_is_the_conditional_prediction() {
        let u = Tensor::new(&[0.3f32, -4.0], &Device::Cpu).unwrap();
        let c = Tensor::new(&[1.5f32, 2.0], &Device::Cpu).unwrap();
        let g = cfg_combine(&u, &c, 1.0).unwrap();
        assert_eq!(g.to_vec1::<f32>().unwrap(), c.to_vec1::<f32>().unwrap());
    }
}
