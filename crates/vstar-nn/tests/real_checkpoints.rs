//! Real SD 1.5 / 2.1 / XL checkpoints will load: their parameter names and shapes (dumped by
//! tools/ref/dump_real_params.py on the meta device, no weights) are accepted by the loader,
//! every tensor is used, and nothing is allocated (each tensor is a broadcast scalar view).

use std::path::PathBuf;
use vstar_nn::config::{ClipTextConfig, UNetConfig, VaeConfig};
use vstar_nn::models::{ClipTextModel, UNet, Vae};
use vstar_nn::weights::meta_component;

fn dir(model: &str, component: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/real-configs").join(model).join(component)
}

fn accepts(model: &str, component: &str) {
    let d = dir(model, component);
    let (vb, source) = meta_component(&d.join("params.txt")).unwrap();
    let cfg = d.join("config.json");
    let built = match component {
        "unet" => UNet::new(&UNetConfig::from_file(&cfg).unwrap(), vb).map(|_| ()),
        "vae" => Vae::new(&VaeConfig::from_file(&cfg).unwrap(), vb).map(|_| ()),
        _ => ClipTextModel::new(&ClipTextConfig::from_file(&cfg).unwrap(), vb).map(|_| ()),
    };
    if let Err(e) = built {
        panic!("{model}/{component}: {e}");
    }
    assert_eq!(source.unused(), Vec::<String>::new(), "{model}/{component}: names the model does not read");
}

#[test]
fn sd15_components_load() {
    for c in ["unet", "vae", "text_encoder"] {
        accepts("sd15", c);
    }
}

#[test]
fn sd21_components_load() {
    for c in ["unet", "vae", "text_encoder"] {
        accepts("sd21", c);
    }
}

#[test]
fn sdxl_components_load() {
    for c in ["unet", "vae", "text_encoder", "text_encoder_2"] {
        accepts("sdxl", c);
    }
}
