//! vfvm's REST API over a unix socket, in Cloud Hypervisor's shape.
//!
//! The VMM starts an [`ApiServer`] on `vfvm run --api-sock PATH`. Its
//! thread serves HTTP/1.1 (hyper, on a tokio runtime confined to it), maps
//! each route to an [`ApiRequest`], hands it to the VMM over an mpsc
//! channel together with a [`Reply`], wakes the VMM's event loop through
//! an eventfd, and waits for the [`ApiResponse`] or [`ApiError`]. The VMM
//! thread owns the VM; the API thread never touches it. [`client`] is the
//! other end, used by `vfvm ctl`.
//!
//! - [`routes`]: the route table, the one source for the server, the
//!   client and the tests that keep `api/openapi.yaml` and Cloud
//!   Hypervisor's document in step;
//! - [`types`]: requests, answers, errors and counters;
//! - `server`: the thread, its limits, and the responses Cloud
//!   Hypervisor's own client can read;
//! - `socket`: the socket file (0600, stale ones replaced) and who may
//!   connect (`SO_PEERCRED`).
//!
//! This crate does not depend on the VMM: what the VMM reports travels as
//! these types or as JSON values.

pub mod client;
pub mod prometheus;
pub mod routes;
mod server;
mod socket;
pub mod types;

pub use routes::{Method, Route, API_PREFIX, ROUTES};
#[cfg(feature = "fuzzing")]
pub use server::serve_stream;
pub use server::{ApiMessage, ApiServer, Error, Limits, Reply, Spawner};
pub use socket::{Access, Peer};
pub use types::*;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// `paths:` of api/openapi.yaml as (METHOD, path), read crudely: a path
    /// is a 2-space-indented key starting with '/', a method a 4-space key.
    fn openapi_operations() -> BTreeSet<(String, String)> {
        let doc = include_str!("../openapi.yaml");
        let mut ops = BTreeSet::new();
        let mut in_paths = false;
        let mut path: Option<String> = None;
        for line in doc.lines() {
            if !line.starts_with(' ') && !line.trim().is_empty() {
                in_paths = line.trim_end() == "paths:";
                continue;
            }
            if !in_paths {
                continue;
            }
            if let Some(key) = line.strip_prefix("  /") {
                path = Some(format!("/{}", key.trim_end().trim_end_matches(':')));
            } else if let Some(key) = line.strip_prefix("    ") {
                let key = key.trim_end();
                if !key.starts_with(' ') && key.ends_with(':') {
                    let m = key.trim_end_matches(':');
                    if ["get", "put", "post", "patch", "delete"].contains(&m) {
                        ops.insert((m.to_uppercase(), path.clone().expect("method before path")));
                    }
                }
            }
        }
        ops
    }

    #[test]
    fn openapi_document_matches_routes() {
        let doc = openapi_operations();
        let routes: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p, _)| (m.as_str().to_string(), p.to_string()))
            .collect();
        assert_eq!(doc, routes, "api/openapi.yaml paths vs ROUTES");
    }
}
