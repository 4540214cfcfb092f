//! One module per command that does real work.

pub mod demo;
pub mod dry_run;
pub mod migrate;
pub mod sim_serve;
pub mod transfer;
pub mod validate;
