//! vstar-eval: how results are judged - SSIM, the Toyland oracles as metrics (per-element
//! recall, identity similarity), and `vstar toyland check`.

pub mod alchemy_eval;
pub mod attention_iou;
pub mod bench;
pub mod claims;
pub mod demo;
pub mod encoders;
pub mod image_processor;
pub mod judges;
pub mod prompt_sets;
pub mod real_metrics;
pub mod report;
pub mod run_eval;
pub mod ssim;
pub mod sweep;
pub mod token_scan;
pub mod toyland_check;
pub mod train_run;
pub mod word_use;
