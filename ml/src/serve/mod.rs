//! Model serving: the Open Inference Protocol v2 ([`inference`]) over the models the
//! registry promotes.

pub mod inference;
