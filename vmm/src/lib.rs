//! vfvm's configuration as a library: every option a user types (`-c`,
//! `-m`, `-s`, `-l`, ..., VM files) parsed and checked, with no host
//! access. The `vfvm` binary (`main.rs`) builds on it, and the fuzz targets
//! (`fuzz/`) feed its parsers.

pub mod config;
