//! `--model` resolution: folders, the Hugging Face cache found offline, clear errors.

use vstar_nn::locate::resolve_model;

#[test]
fn finds_folders_and_cached_repos_and_names_what_is_missing() {
    let root = std::env::temp_dir().join(format!("vstar-locate-{}", std::process::id()));
    let snap = root.join("models--someone--tiny-sd/snapshots/0123abcd");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::write(snap.join("model_index.json"), "{}").unwrap();
    // Only this test touches the environment in this test binary.
    std::env::set_var("HF_HUB_CACHE", &root);
    assert_eq!(resolve_model(Some("someone/tiny-sd")).unwrap(), snap);
    assert_eq!(resolve_model(Some(snap.to_str().unwrap())).unwrap(), snap);

    let e = resolve_model(Some("someone/absent")).unwrap_err().to_string();
    assert!(e.contains("--model someone/absent") && e.contains("never downloads"), "{e}");
    let e = resolve_model(Some(root.to_str().unwrap())).unwrap_err().to_string();
    assert!(e.contains("no model_index.json"), "{e}");
    std::env::set_var("VSTAR_TOYLAND", root.join("nothing-here"));
    let e = resolve_model(None).unwrap_err().to_string();
    assert!(e.contains("toyland pretrain"), "{e}");
}
