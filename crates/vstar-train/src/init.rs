//! Seeded initialisation. candle's CPU rng cannot be seeded, so fresh vars come from a
//! VarMap backend that draws each one from the run's seed and the var's name, with the
//! distribution candle's init hint asks for: the same seed then gives the same starting
//! weights in every process, whatever order the layers are built in.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{Init, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vstar_diffusion::noise::NoiseSource;

/// A VarBuilder whose new vars land in `vm`, drawn from `seed`.
pub fn seeded_builder(vm: &VarMap, seed: u64, dtype: DType, dev: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(Seeded { vm: vm.clone(), seed }), dtype, dev.clone())
}

struct Seeded {
    vm: VarMap,
    seed: u64,
}

impl SimpleBackend for Seeded {
    fn get(&self, shape: Shape, name: &str, init: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut vars = self.vm.data().lock().expect("var map lock");
        if let Some(v) = vars.get(name) {
            if v.shape() != &shape {
                candle_core::bail!("shape mismatch on {name}: {shape:?} <> {:?}", v.shape());
            }
            return Ok(v.as_tensor().clone());
        }
        let t = draw(&init, &shape, self.seed ^ name_hash(name), dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        vars.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("{name}: a seeded var map creates vars only through `get` with a shape")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vm.data().lock().expect("var map lock").contains_key(name)
    }
}

/// candle's `Init::var`, from a seeded stream.
fn draw(init: &Init, shape: &Shape, seed: u64, dev: &Device) -> Result<Tensor> {
    let uniform = |lo: f64, up: f64| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f32> = (0..shape.elem_count()).map(|_| rng.random_range(lo..up) as f32).collect();
        Tensor::from_vec(v, shape, dev)
    };
    let normal = |mean: f64, std: f64| NoiseSource::new(seed).randn(shape, dev)?.affine(std, mean);
    match *init {
        Init::Const(c) => Tensor::ones(shape, DType::F32, dev)?.affine(c, 0.0),
        Init::Uniform { lo, up } => uniform(lo, up),
        Init::Randn { mean, stdev } => normal(mean, stdev),
        Init::Kaiming { dist, fan, non_linearity } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                NormalOrUniform::Uniform => uniform(-3f64.sqrt() * std, 3f64.sqrt() * std),
                NormalOrUniform::Normal => normal(0.0, std),
            }
        }
    }
}

/// FNV-1a: a hash that, unlike std's, is the same in every process.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linear(vm: &VarMap, seed: u64) -> (Tensor, Tensor) {
        let vb = seeded_builder(vm, seed, DType::F32, &Device::Cpu);
        let l = candle_nn::linear(64, 16, vb.pp("proj")).unwrap();
        (l.weight().clone(), l.bias().unwrap().clone())
    }

    #[test]
    fn a_seed_gives_the_same_weights_and_another_seed_others() {
        let (w1, b1) = linear(&VarMap::new(), 7);
        let (w2, b2) = linear(&VarMap::new(), 7);
        let (w3, _) = linear(&VarMap::new(), 8);
        let same = |a: &Tensor, b: &Tensor| a.to_vec2::<f32>().ok() == b.to_vec2::<f32>().ok() && a.dims() == b.dims();
        assert!(same(&w1, &w2) && b1.to_vec1::<f32>().unwrap() == b2.to_vec1::<f32>().unwrap());
        assert!(!same(&w1, &w3));
    }

    /// candle's linear init: Kaiming normal weights (std sqrt(2 / fan_in)) and uniform biases
    /// within 1 / sqrt(fan_in); the weight and bias of one layer are different streams.
    #[test]
    fn draws_follow_candles_init_hints() {
        let vm = VarMap::new();
        let (w, b) = linear(&vm, 1);
        let std = w.flatten_all().unwrap().var(0).unwrap().sqrt().unwrap().to_scalar::<f32>().unwrap();
        assert!((std - (2f32 / 64.0).sqrt()).abs() < 0.02, "weight std {std}");
        let b = b.to_vec1::<f32>().unwrap();
        assert!(b.iter().all(|v| v.abs() <= 1.0 / 8.0) && b.iter().any(|v| v.abs() > 0.05), "{b:?}");
        assert_eq!(vm.all_vars().len(), 2, "the vars land in the var map");
    }
}
