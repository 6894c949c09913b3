//! vfvm's REST API over a unix socket.
//!
//! The VMM starts an [`ApiServer`] on `vfvm run --api-sock PATH`. Its thread
//! accepts HTTP/1.1 requests (tiny_http), maps each route to an
//! [`ApiRequest`], hands it to the VMM over an mpsc channel together with a
//! reply channel, wakes the VMM's event loop through an eventfd, and waits
//! for the [`ApiResponse`] or [`ApiError`]. The VMM thread owns the VM; the
//! API thread never touches it. [`client`] is the other end, used by
//! `vfvm ctl`. The routes and `api/openapi.yaml` are kept in step by a test.
//!
//! This crate does not depend on the VMM: what the VMM reports (its
//! configuration, its exit counters) travels as JSON values.

pub mod client;
mod server;

use serde::{Deserialize, Serialize};

pub use server::{ApiMessage, ApiServer, Error};

/// Version prefix of every route.
pub const API_PREFIX: &str = "/api/v1";

/// What a client can ask of the VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiRequest {
    /// The VM's configuration and state.
    Info,
    /// Exit counters (and device counters, where the VMM has them).
    Counters,
    /// Stop every vCPU; the VM keeps its state.
    Pause,
    /// Let paused vCPUs run again.
    Resume,
    /// Stop the VM; `vfvm run` exits with status 1 (bhyve's "powered off").
    Shutdown,
}

/// HTTP methods the API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Read-only.
    Get,
    /// Changes the VM's state.
    Put,
}

impl Method {
    /// The method as it appears on the request line.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
        }
    }
}

/// Every route: (method, path, request). The server, the client and the
/// OpenAPI test all read this table.
pub const ROUTES: &[(Method, &str, ApiRequest)] = &[
    (Method::Get, "/api/v1/vm.info", ApiRequest::Info),
    (Method::Get, "/api/v1/vm.counters", ApiRequest::Counters),
    (Method::Put, "/api/v1/vm.pause", ApiRequest::Pause),
    (Method::Put, "/api/v1/vm.resume", ApiRequest::Resume),
    (Method::Put, "/api/v1/vm.shutdown", ApiRequest::Shutdown),
];

impl ApiRequest {
    /// The route of this request.
    pub fn route(self) -> (Method, &'static str) {
        ROUTES
            .iter()
            .find(|(_, _, r)| *r == self)
            .map(|&(m, p, _)| (m, p))
            .expect("every request has a route")
    }
}

/// Whether the vCPUs run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// vCPUs run the guest.
    Running,
    /// vCPUs are parked outside KVM_RUN.
    Paused,
}

/// `GET /api/v1/vm.info`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmInfo {
    /// The VM's name (also in `config`).
    pub name: String,
    /// Running or paused.
    pub state: VmState,
    /// The configuration `vfvm run` was started with.
    pub config: serde_json::Value,
    /// Seconds it took to reserve (and lock) guest memory.
    pub memory_reserve_secs: f64,
}

/// `GET /api/v1/vm.counters`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmCounters {
    /// Exits handled in userspace: io_in, io_out, mmio_read, mmio_write, other.
    pub exits: serde_json::Value,
    /// Per-device counters, keyed by device (e.g. "blk@4:0"); may be empty.
    #[serde(default)]
    pub devices: serde_json::Map<String, serde_json::Value>,
}

/// What the VMM answers to a request.
#[derive(Clone, Debug, PartialEq)]
pub enum ApiResponse {
    /// Answer to [`ApiRequest::Info`].
    Info(VmInfo),
    /// Answer to [`ApiRequest::Counters`].
    Counters(VmCounters),
    /// Done; nothing to report (HTTP 204).
    Done,
}

/// Why the VMM could not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request does not fit the VM's state (e.g. resume while running).
    #[error("{0}")]
    InvalidState(String),
    /// The VMM tried and failed.
    #[error("{0}")]
    Internal(String),
    /// The VMM does not answer (it is stopping, or busy for too long).
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::InvalidState(_) => 409,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
        }
    }
}

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, in one line.
    pub error: String,
}

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

    #[test]
    fn every_request_has_one_route() {
        for r in [
            ApiRequest::Info,
            ApiRequest::Counters,
            ApiRequest::Pause,
            ApiRequest::Resume,
            ApiRequest::Shutdown,
        ] {
            assert_eq!(ROUTES.iter().filter(|(_, _, x)| *x == r).count(), 1);
            assert!(r.route().1.starts_with(API_PREFIX));
        }
    }

    #[test]
    fn types_serialize_as_documented() {
        let info = VmInfo {
            name: "g".into(),
            state: VmState::Paused,
            config: serde_json::json!({"name": "g"}),
            memory_reserve_secs: 0.5,
        };
        let v = serde_json::to_value(&info).unwrap();
        assert_eq!(v["state"], "paused");
        assert_eq!(
            serde_json::to_string(&ErrorBody { error: "x".into() }).unwrap(),
            r#"{"error":"x"}"#
        );
    }
}
