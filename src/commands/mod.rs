//! One module per command that does real work; `app` dispatches to them.

pub mod sim_serve;
pub mod transfer;
pub mod validate;
