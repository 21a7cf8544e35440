//! Bad input to the loader gives one clear sentence naming the file / tensor, never a panic.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use vstar_nn::config::{UNetConfig, VaeConfig};
use vstar_nn::models::Vae;
use vstar_nn::weights::load_component;

const VAE_CONFIG: &str =
    r#"{"block_out_channels": [8, 16], "latent_channels": 4, "norm_num_groups": 4, "layers_per_block": 1}"#;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vstar-bad-input-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A valid tiny VAE folder; `edit` may change its tensors before they are written.
fn vae_dir(name: &str, edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> PathBuf {
    let d = tmp(name);
    std::fs::write(d.join("config.json"), VAE_CONFIG).unwrap();
    let vm = VarMap::new();
    let cfg: VaeConfig = serde_json::from_str(VAE_CONFIG).unwrap();
    Vae::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    let mut tensors: HashMap<String, Tensor> =
        vm.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, d.join("diffusion_pytorch_model.safetensors")).unwrap();
    d
}

fn load(dir: &Path) -> Result<Vae, String> {
    let cfg = VaeConfig::from_file(&dir.join("config.json")).map_err(|e| e.to_string())?;
    let (vb, _) = load_component(dir, DType::F32, &Device::Cpu).map_err(|e| e.to_string())?;
    Vae::new(&cfg, vb).map_err(|e| e.to_string())
}

fn first_line(e: &str) -> &str {
    e.lines().next().unwrap_or("")
}

#[test]
fn valid_folder_loads() {
    assert!(load(&vae_dir("ok", |_| {})).is_ok());
}

#[test]
fn missing_folder_is_named() {
    let e = load_component(Path::new("/nonexistent/vae"), DType::F32, &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("/nonexistent/vae") && e.contains("missing"), "{e}");
}

#[test]
fn missing_config_key_is_named() {
    let d = tmp("nokey");
    std::fs::write(d.join("config.json"), r#"{"block_out_channels": [8, 16]}"#).unwrap();
    let e = VaeConfig::from_file(&d.join("config.json")).err().unwrap().to_string();
    assert!(e.contains("config.json") && e.contains("latent_channels"), "{e}");
}

#[test]
fn unsupported_config_value_is_named() {
    let d = tmp("badval");
    std::fs::write(
        d.join("config.json"),
        r#"{"block_out_channels": [8, 16], "latent_channels": 4, "norm_num_groups": 4, "act_fn": "gelu"}"#,
    )
    .unwrap();
    let e = VaeConfig::from_file(&d.join("config.json")).err().unwrap().to_string();
    assert!(e.contains("act_fn") && e.contains("not supported"), "{e}");
}

/// The pooled-text addition embedding splits the text width over its heads: a width the heads
/// do not divide (or no heads) is refused with both keys named.
#[test]
fn text_addition_embedding_heads_must_divide_the_text_width() {
    let d = tmp("textheads");
    let unet = |heads: usize| {
        format!(
            r#"{{"block_out_channels": [32, 64], "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "cross_attention_dim": 32,
            "addition_embed_type": "text", "addition_embed_type_num_heads": {heads}}}"#
        )
    };
    let path = d.join("config.json");
    std::fs::write(&path, unet(4)).unwrap();
    assert!(UNetConfig::from_file(&path).is_ok());
    for heads in [5, 0] {
        std::fs::write(&path, unet(heads)).unwrap();
        let e = UNetConfig::from_file(&path).err().unwrap().to_string();
        assert!(
            e.contains("config.json")
                && e.contains("addition_embed_type_num_heads")
                && e.contains("cross_attention_dim"),
            "{e}"
        );
    }
}

#[test]
fn truncated_safetensors_is_named() {
    let d = vae_dir("trunc", |_| {});
    let f = d.join("diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let e = load(&d).err().unwrap();
    assert!(e.contains("diffusion_pytorch_model.safetensors") && e.contains("truncated or corrupt"), "{e}");
}

#[test]
fn garbage_safetensors_is_named() {
    let d = vae_dir("garbage", |_| {});
    std::fs::write(d.join("diffusion_pytorch_model.safetensors"), b"this is not a safetensors file at all").unwrap();
    let e = load(&d).err().unwrap();
    assert!(e.contains("not a valid safetensors file"), "{e}");
}

#[test]
fn shape_mismatch_names_the_tensor() {
    let d = vae_dir("shape", |t| {
        t.insert("encoder.conv_in.weight".into(), Tensor::zeros((8, 3, 5, 5), DType::F32, &Device::Cpu).unwrap());
    });
    let e = load(&d).err().unwrap();
    assert!(
        first_line(&e).contains("`encoder.conv_in.weight` has shape [8, 3, 5, 5], the config expects [8, 3, 3, 3]"),
        "{e}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let d = vae_dir("missing", |t| {
        t.remove("decoder.conv_out.bias");
    });
    let e = load(&d).err().unwrap();
    assert!(e.contains("`decoder.conv_out.bias` is missing"), "{e}");
}

#[test]
fn unsupported_dtype_is_named() {
    let d = vae_dir("dtype", |t| {
        let w = t["encoder.conv_in.weight"].to_dtype(DType::U8).unwrap();
        t.insert("encoder.conv_in.weight".into(), w);
    });
    let e = load(&d).err().unwrap();
    assert!(e.contains("`encoder.conv_in.weight` has unsupported dtype"), "{e}");
}

#[test]
fn half_precision_weights_load() {
    let d = vae_dir("f16", |t| {
        for v in t.values_mut() {
            *v = v.to_dtype(DType::F16).unwrap();
        }
    });
    assert!(load(&d).is_ok());
}

#[test]
fn pickled_weights_are_refused() {
    let d = tmp("pickle");
    std::fs::write(d.join("config.json"), VAE_CONFIG).unwrap();
    std::fs::write(d.join("diffusion_pytorch_model.bin"), b"pickle").unwrap();
    let e = load(&d).err().unwrap();
    assert!(e.contains("no .safetensors weights") && e.contains("pickled"), "{e}");
}
