//! Workspace integration tests, one binary with a module per area, run by
//! `cargo xtask test` against real parts.

mod archives;
mod distribution;
mod distribution_errors;
mod distribution_faults;
mod fault_proxy;
mod fixtures;
mod full_disk;
mod harness;
mod hostile_layers;
mod hostile_registry;
mod leases;
mod memory;
mod plants;
mod platforms;
mod proxy;
mod rootfs;
mod rootfs_compare;
mod rootfs_debian;
mod rootfs_init;
mod rootfs_overlay;
mod rootfs_plants;
mod rootfs_support;
mod rootfs_swap_race;
mod secrets;
mod soak;
mod store;
mod store_manage;
mod store_plants;
mod swap_race;
mod tls;
mod token_auth;
