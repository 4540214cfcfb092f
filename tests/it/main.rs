//! The one integration-test binary (STYLE §8). Each module drives the library or the built binary.

mod api_clients;
mod boot_ready;
mod cli;
mod early_refusals;
mod exit_codes;
mod faults;
mod fleet;
mod hardening;
mod migrate;
mod mimic;
mod overlapping_runs;
mod pipeline;
mod real_clients;
mod real_cloud;
mod real_swift;
mod resume;
mod safety;
mod sim_cloud;
mod sim_files;
mod support;
mod terminal_and_input;
mod to_file;
mod transfer;
mod vhd_cases;
mod vhd_props;
mod vhd_qemu;
