//! `AdaptedLinear` against its equation on hand-made tensors, and `AttentionHooks`.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use vstar_nn::layers::hooks::copy_rows;
use vstar_nn::layers::{AdaptedLinear, Attention, AttentionHooks, Delta, Slots};
use vstar_nn::Ctx;

fn t(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
}

/// W = [[1,2],[3,4]] (out 2, in 2), b = [0.5, -0.5].
fn layer() -> (AdaptedLinear, Slots) {
    let mut m = HashMap::new();
    m.insert("l.weight".to_string(), t(&[1., 2., 3., 4.], &[2, 2]));
    m.insert("l.bias".to_string(), t(&[0.5, -0.5], &[2]));
    let vb = VarBuilder::from_tensors(m, DType::F32, &Device::Cpu);
    let slots = Slots::default();
    (AdaptedLinear::new(2, 2, true, vb.pp("l"), &slots).unwrap(), slots)
}

fn rows(x: &Tensor) -> Vec<Vec<f32>> {
    x.to_vec2::<f32>().unwrap()
}

#[test]
fn lora_adds_scaled_low_rank_product_per_row() {
    let (lin, slots) = layer();
    // down A = [1, 1] (r=1, in 2), up B = [[1],[2]] (out 2, r 1), alpha/r = 0.5 -> dW = [[.5,.5],[1,1]]
    slots.push("l", Delta::Lora { down: t(&[1., 1.], &[1, 2]), up: t(&[1., 2.], &[2, 1]), scale: 0.5 }).unwrap();
    let x = t(&[1., 0., 1., 0., 0., 2.], &[3, 2]);
    let scale = t(&[0., 1., 0.5], &[3]);
    let y = rows(&lin.forward(&x, Some(&scale)).unwrap());
    // row 0, scale 0: Wx + b = [1.5, 2.5]
    assert_eq!(y[0], vec![1.5, 2.5]);
    // row 1, scale 1: + dW x = [0.5, 1] -> [2.0, 3.5]
    assert_eq!(y[1], vec![2.0, 3.5]);
    // row 2, x = [0,2], scale .5: Wx+b = [4.5, 7.5], dWx = [1, 2] * .5 -> [5.0, 8.5]
    assert_eq!(y[2], vec![5.0, 8.5]);
    // No scale = strength 1 on every row.
    let full = rows(&lin.forward(&x, None).unwrap());
    assert_eq!(full[0], vec![2.0, 3.5]);
}

/// SVDiff: the decomposition rebuilds W; a zero shift changes nothing; a shift gives
/// `U diag(relu(s + shift)) V^T` (a shift below -s clips that singular value to 0).
#[test]
fn spectral_shift_rescales_singular_values() {
    let (lin, slots) = layer();
    let (u, s, vt) = vstar_nn::adapters::svdiff::decompose(lin.weight()).unwrap();
    let rebuilt = u.broadcast_mul(&s.unsqueeze(0).unwrap()).unwrap().matmul(&vt).unwrap();
    let err = (rebuilt - lin.weight()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(err < 1e-5, "{err}");
    let sv = s.to_vec1::<f32>().unwrap();
    assert!(sv[0] >= sv[1] && sv[1] >= 0.0);
    let x = t(&[0.3, -0.7], &[1, 2]);
    let base = rows(&lin.forward(&x, None).unwrap());
    let shift = t(&[0., 0.], &[2]);
    slots.push("l", Delta::Spectral { u: u.clone(), s: s.clone(), vt: vt.clone(), shift }).unwrap();
    assert_eq!(rows(&lin.forward(&x, None).unwrap()), base);
    let (lin, slots) = layer();
    let shift = t(&[0.5, -10.0], &[2]);
    slots.push("l", Delta::Spectral { u: u.clone(), s: s.clone(), vt: vt.clone(), shift }).unwrap();
    let s2 = t(&[sv[0] + 0.5, 0.0], &[2]);
    let w2 = u.broadcast_mul(&s2.unsqueeze(0).unwrap()).unwrap().matmul(&vt).unwrap();
    let want = (x.matmul(&w2.t().unwrap()).unwrap() + t(&[0.5, -0.5], &[1, 2])).unwrap();
    let err =
        (lin.forward(&x, None).unwrap() - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(err < 1e-5, "{err}");
    let e = slots.push("l", Delta::Spectral { u, s, vt, shift: t(&[1., 2., 3.], &[3]) }).unwrap_err().to_string();
    assert!(e.contains("another base model"), "{e}");
}

#[test]
fn row_scale_is_weight_interpolation_for_dense_deltas() {
    let (lin, slots) = layer();
    let dw = t(&[1., -1., 0., 2.], &[2, 2]);
    slots.push("l", Delta::Dense(dw.clone())).unwrap();
    let x = t(&[0.3, -0.7], &[1, 2]);
    let w = 0.3f64;
    let y = lin.forward(&x, Some(&t(&[w as f32], &[1]))).unwrap();
    let ww = (lin.weight() + (dw * w).unwrap()).unwrap();
    let expect = (x.matmul(&ww.t().unwrap()).unwrap() + t(&[0.5, -0.5], &[1, 2])).unwrap();
    let err = (y - expect).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(err < 1e-6, "{err}");
}

#[test]
fn adapter_of_wrong_shape_names_the_layer() {
    let (_, slots) = layer();
    let e = slots.push("l", Delta::Dense(t(&[1., 2., 3.], &[1, 3]))).unwrap_err().to_string();
    assert!(e.contains("`l`") && e.contains("another base model"), "{e}");
    let e = slots.push("nope", Delta::Dense(t(&[1., 2., 3., 4.], &[2, 2]))).unwrap_err().to_string();
    assert!(e.contains("`nope`"), "{e}");
}

#[test]
fn copy_rows_replaces_destinations() {
    let x = t(&[0., 1., 2.], &[3, 1]);
    let y = copy_rows(&x, &[(0, 2)]).unwrap();
    assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![0., 1., 0.]);
    assert!(copy_rows(&x, &[(0, 5)]).is_err());
}

fn attention(cross: bool) -> Attention {
    let dev = Device::Cpu;
    let mut m = HashMap::new();
    for name in ["to_q", "to_k", "to_v", "to_out.0"] {
        let inp = if cross && (name == "to_k" || name == "to_v") { 6 } else { 4 };
        m.insert(format!("a.{name}.weight"), Tensor::randn(0f32, 0.5, (4, inp), &dev).unwrap());
    }
    m.insert("a.to_out.0.bias".into(), Tensor::zeros(4, DType::F32, &dev).unwrap());
    let vb = VarBuilder::from_tensors(m, DType::F32, &dev);
    Attention::new(4, cross.then_some(6), 2, vb.pp("a"), &Slots::default()).unwrap()
}

#[test]
fn recorded_cross_attention_covers_all_tokens() {
    let attn = attention(true);
    let x = Tensor::randn(0f32, 1.0, (2, 6, 4), &Device::Cpu).unwrap(); // 2x3 spatial
    let ctx_tokens = Tensor::randn(0f32, 1.0, (2, 5, 6), &Device::Cpu).unwrap();
    let mut hooks = AttentionHooks::recording((0..5).collect());
    attn.forward(&x, Some(&ctx_tokens), (2, 3), &mut Ctx::new(None, Some(&mut hooks))).unwrap();
    assert_eq!(hooks.recorded.len(), 1);
    let m = &hooks.recorded[0].probs;
    assert_eq!(m.dims(), &[2, 5, 2, 3]);
    // Probabilities over all tokens sum to one at every pixel.
    let s = m.sum(1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(s.iter().all(|v| (v - 1.0).abs() < 1e-5), "{s:?}");
}

#[test]
fn copied_self_attention_features_equal_the_source_row() {
    let attn = attention(false);
    let x = Tensor::randn(0f32, 1.0, (2, 4, 4), &Device::Cpu).unwrap();
    let plain = attn.forward(&x, None, (2, 2), &mut Ctx::default()).unwrap();
    let mut hooks = AttentionHooks::default();
    hooks.copy_self_features = vec![(0, 1)];
    let copied = attn.forward(&x, None, (2, 2), &mut Ctx::new(None, Some(&mut hooks))).unwrap();
    let a = copied.get(1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = plain.get(0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a, b);
    assert_ne!(a, plain.get(1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap());
}

#[test]
fn copied_cross_maps_change_only_the_destination() {
    let attn = attention(true);
    let x = Tensor::randn(0f32, 1.0, (2, 4, 4), &Device::Cpu).unwrap();
    let c = Tensor::randn(0f32, 1.0, (2, 3, 6), &Device::Cpu).unwrap();
    let plain = attn.forward(&x, Some(&c), (2, 2), &mut Ctx::default()).unwrap();
    let mut hooks =
        AttentionHooks { copy_cross_maps: vec![(0, 1)], record_tokens: vec![0, 1, 2], ..Default::default() };
    let out = attn.forward(&x, Some(&c), (2, 2), &mut Ctx::new(None, Some(&mut hooks))).unwrap();
    let r = &hooks.recorded[0].probs;
    assert_eq!(
        r.get(0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        r.get(1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    assert_eq!(
        out.get(0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        plain.get(0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    assert_ne!(
        out.get(1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        plain.get(1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
}

#[test]
fn mean_map_averages_layers_at_the_requested_size() {
    use vstar_nn::layers::hooks::RecordedMap;
    let ones = Tensor::ones((1, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
    let threes = (Tensor::ones((1, 1, 4, 4), DType::F32, &Device::Cpu).unwrap() * 3.0).unwrap();
    let mut hooks = AttentionHooks::recording(vec![0]);
    assert!(hooks.mean_map(4, 4).unwrap().is_none());
    hooks.recorded =
        vec![RecordedMap { layer: "a".into(), probs: ones }, RecordedMap { layer: "b".into(), probs: threes }];
    let m = hooks.mean_map(4, 4).unwrap().unwrap();
    assert_eq!(m.dims(), &[1, 1, 4, 4]);
    let v = m.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(v.iter().all(|x| (x - 2.0).abs() < 1e-6), "{v:?}");
}

fn max_err(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

/// A conv's kernel takes deltas as the matrix (Cout, C*kh*kw): with strength 1 the output is
/// the conv with W + dW (plus bias); per-row strength w gives the conv with W + w*dW.
#[test]
fn conv_deltas_fold_into_the_kernel_per_row() {
    use candle_core::Module;
    use vstar_nn::layers::conv::Conv2d;
    let dev = Device::Cpu;
    let w: Vec<f32> = (0..2 * 3 * 9).map(|i| ((i * 7 % 11) as f32 - 5.0) / 10.0).collect();
    let mut m = HashMap::new();
    m.insert("c.weight".to_string(), t(&w, &[2, 3, 3, 3]));
    m.insert("c.bias".to_string(), t(&[0.5, -0.25], &[2]));
    let slots = Slots::default();
    let conv = Conv2d::adapted(3, 2, 3, 1, 1, VarBuilder::from_tensors(m, DType::F32, &dev).pp("c"), &slots).unwrap();
    assert_eq!(slots.names(), vec![("c".to_string(), 27, 2)]);
    assert_eq!(slots.shape("c").unwrap(), vec![2, 3, 3, 3]);
    let x = Tensor::randn(0f32, 1.0, (3, 3, 5, 4), &dev).unwrap();
    let base = conv.forward(&x).unwrap();
    let dw: Vec<f32> = (0..54).map(|i| ((i * 5 % 13) as f32 - 6.0) / 20.0).collect();
    slots.push("c", Delta::Dense(t(&dw, &[2, 27]))).unwrap();
    let with = |wt: f32| {
        let k = (t(&w, &[2, 3, 3, 3]) + (t(&dw, &[2, 3, 3, 3]) * wt as f64).unwrap()).unwrap();
        x.conv2d(&k, 1, 1, 1, 1).unwrap().broadcast_add(&t(&[0.5, -0.25], &[1, 2, 1, 1])).unwrap()
    };
    assert!(max_err(&conv.forward(&x).unwrap(), &with(1.0)) < 1e-5);
    let y = conv.forward_scaled(&x, Some(&t(&[0.0, 1.0, 0.3], &[3]))).unwrap();
    assert!(max_err(&y.get(0).unwrap(), &base.get(0).unwrap()) < 1e-5, "strength 0 is the base conv");
    assert!(max_err(&y.get(1).unwrap(), &with(1.0).get(1).unwrap()) < 1e-5);
    assert!(max_err(&y.get(2).unwrap(), &with(0.3).get(2).unwrap()) < 1e-5);
}

/// Norm gains register as one row (1, n): a dense delta adds to the gain (GroupNorm output
/// xhat*(g + dg) + b), per-row strength interpolates it, and SVDiff's single shift d gives
/// the gain g/|g| * relu(|g| + d).
#[test]
fn norm_gain_deltas_and_the_one_d_spectral_shift() {
    use candle_core::Module;
    use vstar_nn::layers::group_norm::GroupNorm;
    let dev = Device::Cpu;
    let (g, b) = ([1.0f32, 2.0, -2.0, 0.5], [0.1f32, 0.0, -0.1, 0.2]);
    let gn = |slots: &Slots| {
        let mut m = HashMap::new();
        m.insert("n.weight".to_string(), t(&g, &[4]));
        m.insert("n.bias".to_string(), t(&b, &[4]));
        GroupNorm::adapted(2, 4, 1e-5, VarBuilder::from_tensors(m, DType::F32, &dev).pp("n"), slots).unwrap()
    };
    let plain = |gain: &[f32]| {
        let mut m = HashMap::new();
        m.insert("n.weight".to_string(), t(gain, &[4]));
        m.insert("n.bias".to_string(), t(&b, &[4]));
        GroupNorm::new(2, 4, 1e-5, VarBuilder::from_tensors(m, DType::F32, &dev).pp("n")).unwrap()
    };
    let x = Tensor::randn(0f32, 1.0, (2, 4, 3, 3), &dev).unwrap();
    let slots = Slots::default();
    let norm = gn(&slots);
    assert_eq!(slots.names(), vec![("n".to_string(), 4, 1)]);
    let dg = [0.5f32, -1.0, 0.25, 0.0];
    slots.push("n", Delta::Dense(t(&dg, &[1, 4]))).unwrap();
    let moved: Vec<f32> = g.iter().zip(dg).map(|(g, d)| g + d).collect();
    assert!(max_err(&norm.forward(&x).unwrap(), &plain(&moved).forward(&x).unwrap()) < 1e-5);
    let half: Vec<f32> = g.iter().zip(dg).map(|(g, d)| g + 0.5 * d).collect();
    let y = norm.forward_scaled(&x, Some(&t(&[0.0, 0.5], &[2]))).unwrap();
    assert!(max_err(&y.get(0).unwrap(), &plain(&g).forward(&x).unwrap().get(0).unwrap()) < 1e-5);
    assert!(max_err(&y.get(1).unwrap(), &plain(&half).forward(&x).unwrap().get(1).unwrap()) < 1e-5);

    let slots = Slots::default();
    let norm = gn(&slots);
    let (u, s, vt) = vstar_nn::adapters::svdiff::decompose(&slots.weight("n").unwrap()).unwrap();
    assert_eq!(s.dims(), &[1]);
    let d = -1.5f32;
    slots.push("n", Delta::Spectral { u, s, vt, shift: t(&[d], &[1]) }).unwrap();
    let len = g.iter().map(|v| v * v).sum::<f32>().sqrt();
    let shifted: Vec<f32> = g.iter().map(|v| v / len * (len + d).max(0.0)).collect();
    assert!(max_err(&norm.forward(&x).unwrap(), &plain(&shifted).forward(&x).unwrap()) < 1e-5);
}

/// A frozen weight is stored as a contiguous (in, out) copy, read through an (out, in) view
/// (the slot hands out the same values); a trainable one stays the var itself, so training
/// still reaches it.
#[test]
fn frozen_weights_are_stored_transposed_and_vars_are_kept() {
    let (lin, slots) = layer();
    assert!(lin.weight().t().unwrap().is_contiguous());
    assert_eq!(rows(lin.weight()), vec![vec![1., 2.], vec![3., 4.]]);
    assert_eq!(rows(&slots.weight("l").unwrap()), vec![vec![1., 2.], vec![3., 4.]]);

    let vm = candle_nn::VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let lin = AdaptedLinear::new(2, 3, false, vb.pp("l"), &Slots::default()).unwrap();
    assert!(lin.weight().is_variable());
    let loss = lin.forward(&t(&[1., -2.], &[1, 2]), None).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let var = vm.all_vars().into_iter().next().unwrap();
    assert!(grads.get(var.as_tensor()).is_some(), "the trainable weight got no gradient");
}
