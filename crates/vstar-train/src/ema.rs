//! Exponential moving average of trained weights (sampling uses the EMA copy: small models
//! trained briefly are much cleaner with it).

use candle_core::{Result, Tensor, Var};

pub struct Ema {
    pub decay: f64,
    shadow: Vec<Tensor>,
}

impl Ema {
    pub fn new<'a>(vars: impl Iterator<Item = &'a Var>, decay: f64) -> Result<Self> {
        Ok(Self { decay, shadow: vars.map(|v| v.as_tensor().detach().copy()).collect::<Result<_>>()? })
    }

    /// shadow <- decay * shadow + (1 - decay) * var, in the order given at construction.
    pub fn update<'a>(&mut self, vars: impl Iterator<Item = &'a Var>) -> Result<()> {
        for (s, v) in self.shadow.iter_mut().zip(vars) {
            *s = ((&*s * self.decay)? + (v.as_tensor().detach() * (1.0 - self.decay))?)?;
        }
        Ok(())
    }

    pub fn weights(&self) -> &[Tensor] {
        &self.shadow
    }

    pub fn restore(&mut self, shadow: Vec<Tensor>) {
        self.shadow = shadow;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn follows_the_moving_average() {
        let v = Var::new(&[0.0f32], &Device::Cpu).unwrap();
        let mut ema = Ema::new([&v].into_iter(), 0.9).unwrap();
        v.set(&Tensor::new(&[1.0f32], &Device::Cpu).unwrap()).unwrap();
        ema.update([&v].into_iter()).unwrap();
        ema.update([&v].into_iter()).unwrap();
        let got = ema.weights()[0].to_vec1::<f32>().unwrap()[0];
        assert!((got - 0.19).abs() < 1e-6, "{got}");
    }
}
