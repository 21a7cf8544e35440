//! vstar-eval: how results are judged - SSIM, the Toyland oracles as metrics (per-element
//! recall, identity similarity), and `vstar toyland check`.

pub mod judges;
pub mod ssim;
pub mod toyland_check;
