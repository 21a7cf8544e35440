//! Adapter files users exchange, read into `AdaptedLinear` deltas.

pub mod lora;
