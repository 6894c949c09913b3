//! The route table: one source for the server, the client and the tests
//! that keep `api/openapi.yaml` and Cloud Hypervisor's document in step.

use std::time::Duration;

use crate::types::{ApiRequest, VmShutdown, MAX_EJECT_TIMEOUT_S};

/// Version prefix of every route.
pub const API_PREFIX: &str = "/api/v1";

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

/// A route, before its body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET vmm.ping`.
    VmmPing,
    /// `PUT vmm.shutdown`.
    VmmShutdown,
    /// `GET vm.info`.
    VmInfo,
    /// `GET vm.counters`.
    VmCounters,
    /// `PUT vm.pause`.
    VmPause,
    /// `PUT vm.resume`.
    VmResume,
    /// `PUT vm.power-button`.
    VmPowerButton,
    /// `PUT vm.nmi`.
    VmNmi,
    /// `PUT vm.shutdown` (optional body [`VmShutdown`]).
    VmShutdown,
    /// `PUT vm.reboot`.
    VmReboot,
    /// `PUT vm.add-device` (body [`crate::DeviceConfig`]).
    VmAddDevice,
    /// `PUT vm.add-disk` (body [`crate::DiskConfig`]).
    VmAddDisk,
    /// `PUT vm.remove-device` (body [`crate::VmRemoveDevice`]).
    VmRemoveDevice,
}

/// Every route: (method, path, route).
pub const ROUTES: &[(Method, &str, Route)] = &[
    (Method::Get, "/api/v1/vmm.ping", Route::VmmPing),
    (Method::Put, "/api/v1/vmm.shutdown", Route::VmmShutdown),
    (Method::Get, "/api/v1/vm.info", Route::VmInfo),
    (Method::Get, "/api/v1/vm.counters", Route::VmCounters),
    (Method::Put, "/api/v1/vm.pause", Route::VmPause),
    (Method::Put, "/api/v1/vm.resume", Route::VmResume),
    (Method::Put, "/api/v1/vm.power-button", Route::VmPowerButton),
    (Method::Put, "/api/v1/vm.nmi", Route::VmNmi),
    (Method::Put, "/api/v1/vm.shutdown", Route::VmShutdown),
    (Method::Put, "/api/v1/vm.reboot", Route::VmReboot),
    (Method::Put, "/api/v1/vm.add-device", Route::VmAddDevice),
    (Method::Put, "/api/v1/vm.add-disk", Route::VmAddDisk),
    (
        Method::Put,
        "/api/v1/vm.remove-device",
        Route::VmRemoveDevice,
    ),
];

impl Route {
    /// This route's method and path.
    pub fn endpoint(self) -> (Method, &'static str) {
        ROUTES
            .iter()
            .find(|(_, _, r)| *r == self)
            .map(|&(m, p, _)| (m, p))
            .expect("every route is in ROUTES")
    }

    /// How long the server waits for the VMM's answer, when longer than
    /// its usual limit: a hot-add opens and maps a device, a removal
    /// waits for the guest's eject.
    pub fn reply_timeout(self) -> Option<Duration> {
        match self {
            Route::VmAddDevice | Route::VmAddDisk => Some(Duration::from_secs(30)),
            Route::VmRemoveDevice => Some(Duration::from_secs(MAX_EJECT_TIMEOUT_S + 10)),
            _ => None,
        }
    }

    /// The request, from the body the client sent (possibly empty).
    ///
    /// An empty body is fine for routes without a required one. A
    /// non-empty one must be JSON; routes without a body of their own
    /// accept any JSON object (Cloud Hypervisor ignores it), and unknown
    /// fields are ignored everywhere, so Cloud Hypervisor's clients are
    /// served with whatever they send.
    pub fn request(self, body: &[u8]) -> Result<ApiRequest, String> {
        let json = if body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(v @ serde_json::Value::Object(_)) => Some(v),
                Ok(_) => return Err("the body must be a JSON object".into()),
                Err(e) => return Err(format!("the body is not JSON: {e}")),
            }
        };
        let (method, path) = self.endpoint();
        let required = |json: Option<serde_json::Value>| {
            json.ok_or_else(|| format!("{} {path} needs a JSON body", method.as_str()))
        };
        let name = path
            .trim_start_matches(crate::API_PREFIX)
            .trim_start_matches('/');
        let invalid = |e: serde_json::Error| format!("{name} body: {e}");
        Ok(match self {
            Route::VmAddDevice => {
                ApiRequest::AddDevice(serde_json::from_value(required(json)?).map_err(invalid)?)
            }
            Route::VmAddDisk => {
                ApiRequest::AddDisk(serde_json::from_value(required(json)?).map_err(invalid)?)
            }
            Route::VmRemoveDevice => {
                ApiRequest::RemoveDevice(serde_json::from_value(required(json)?).map_err(invalid)?)
            }
            Route::VmmPing => ApiRequest::Ping,
            Route::VmmShutdown => ApiRequest::VmmShutdown,
            Route::VmInfo => ApiRequest::Info,
            Route::VmCounters => ApiRequest::Counters,
            Route::VmPause => ApiRequest::Pause,
            Route::VmResume => ApiRequest::Resume,
            Route::VmPowerButton => ApiRequest::PowerButton,
            Route::VmNmi => ApiRequest::Nmi,
            Route::VmReboot => ApiRequest::Reboot,
            Route::VmShutdown => ApiRequest::Shutdown(match json {
                None => VmShutdown::default(),
                Some(v) => {
                    serde_json::from_value(v).map_err(|e| format!("vm.shutdown body: {e}"))?
                }
            }),
        })
    }
}

impl ApiRequest {
    /// The route that carries this request.
    pub fn route(&self) -> Route {
        match self {
            ApiRequest::AddDevice(_) => Route::VmAddDevice,
            ApiRequest::AddDisk(_) => Route::VmAddDisk,
            ApiRequest::RemoveDevice(_) => Route::VmRemoveDevice,
            ApiRequest::Ping => Route::VmmPing,
            ApiRequest::VmmShutdown => Route::VmmShutdown,
            ApiRequest::Info => Route::VmInfo,
            ApiRequest::Counters => Route::VmCounters,
            ApiRequest::Pause => Route::VmPause,
            ApiRequest::Resume => Route::VmResume,
            ApiRequest::PowerButton => Route::VmPowerButton,
            ApiRequest::Nmi => Route::VmNmi,
            ApiRequest::Shutdown(_) => Route::VmShutdown,
            ApiRequest::Reboot => Route::VmReboot,
        }
    }

    /// The body a client sends for this request ("" when none).
    pub fn body(&self) -> String {
        let json = match self {
            ApiRequest::Shutdown(b) if *b != VmShutdown::default() => serde_json::to_string(b),
            ApiRequest::AddDevice(b) => serde_json::to_string(b),
            ApiRequest::AddDisk(b) => serde_json::to_string(b),
            ApiRequest::RemoveDevice(b) => serde_json::to_string(b),
            _ => return String::new(),
        };
        json.unwrap_or_default()
    }
}

/// Why a method and path have no route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoRoute {
    /// No such path (404).
    NotFound(String),
    /// The path exists with other methods (405); they are listed.
    Method {
        /// The message.
        message: String,
        /// The methods the path takes, for the `Allow` header.
        allow: String,
    },
}

/// Maps a method and request target to a route.
pub fn route(method: &str, target: &str) -> Result<Route, NoRoute> {
    let path = target.split(['?', '#']).next().unwrap_or(target);
    let mut allowed = Vec::new();
    for (m, p, r) in ROUTES {
        if *p == path {
            if m.as_str() == method {
                return Ok(*r);
            }
            allowed.push(m.as_str());
        }
    }
    if allowed.is_empty() {
        Err(NoRoute::NotFound(format!(
            "no such route: {}",
            path.escape_debug()
        )))
    } else {
        let allow = allowed.join(", ");
        Err(NoRoute::Method {
            message: format!(
                "{} is not allowed on {path} (use {allow})",
                method.escape_debug()
            ),
            allow,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::DEFAULT_SHUTDOWN_TIMEOUT_S;

    #[test]
    fn routes_and_method_errors() {
        assert_eq!(route("GET", "/api/v1/vm.info"), Ok(Route::VmInfo));
        assert_eq!(route("GET", "/api/v1/vm.info?x=1"), Ok(Route::VmInfo));
        assert_eq!(route("PUT", "/api/v1/vm.shutdown"), Ok(Route::VmShutdown));
        assert_eq!(route("GET", "/api/v1/vmm.ping"), Ok(Route::VmmPing));
        for (m, p) in [
            ("PUT", "/api/v1/vm.info"),
            ("GET", "/api/v1/vm.pause"),
            ("DELETE", "/api/v1/vm.reboot"),
        ] {
            match route(m, p) {
                Err(NoRoute::Method { allow, .. }) => assert!(!allow.is_empty()),
                other => panic!("{m} {p}: {other:?}"),
            }
        }
        for (m, p) in [
            ("GET", "/api/v1/vm.nope"),
            ("GET", "/"),
            ("BREW", "\u{0}\u{ff}"),
        ] {
            assert!(matches!(route(m, p), Err(NoRoute::NotFound(_))), "{m} {p}");
        }
    }

    #[test]
    fn every_route_once_under_the_prefix() {
        for (_, path, r) in ROUTES {
            assert_eq!(ROUTES.iter().filter(|(_, _, x)| x == r).count(), 1);
            assert!(path.starts_with(API_PREFIX));
            assert_eq!(r.endpoint().1, *path);
        }
    }

    #[test]
    fn bodies() {
        for body in [&b""[..], b" \n", b"{}", b"{\"a\":1}"] {
            assert_eq!(Route::VmPause.request(body), Ok(ApiRequest::Pause));
        }
        for body in [&b"["[..], b"[1]", b"3", &[0xff, 0xfe]] {
            assert!(Route::VmPause.request(body).is_err(), "{body:?}");
        }
        let r = Route::VmShutdown.request(b"").unwrap();
        assert_eq!(r, ApiRequest::Shutdown(VmShutdown::default()));
        match Route::VmShutdown.request(br#"{"timeout_s": 2}"#).unwrap() {
            ApiRequest::Shutdown(b) => assert_eq!(b.timeout_s(), 2),
            other => panic!("{other:?}"),
        }
        assert!(Route::VmShutdown.request(br#"{"timeout_s": -1}"#).is_err());
        // A request's own body routes back to it.
        let asked = ApiRequest::Shutdown(VmShutdown { timeout_s: Some(5) });
        assert_eq!(asked.route().request(asked.body().as_bytes()), Ok(asked));
        let asked = ApiRequest::AddDevice(crate::DeviceConfig {
            path: Some("/sys/bus/pci/devices/0000:01:10.1/".into()),
            pci_common: crate::PciDeviceCommon {
                pci_device_id: Some(6),
                ..Default::default()
            },
            mac: Some("aa:88:44:00:02:01".into()),
            ..Default::default()
        });
        assert_eq!(asked.route().request(asked.body().as_bytes()), Ok(asked));
        let asked = ApiRequest::RemoveDevice(crate::VmRemoveDevice {
            id: "6:0".into(),
            timeout_s: None,
        });
        assert_eq!(asked.body(), r#"{"id":"6:0"}"#);
        assert_eq!(asked.route().request(asked.body().as_bytes()), Ok(asked));
        // Hotplug bodies are required and checked.
        for route in [Route::VmAddDevice, Route::VmAddDisk, Route::VmRemoveDevice] {
            let e = route.request(b"").unwrap_err();
            assert!(e.ends_with("needs a JSON body"), "{e}");
            assert!(route.reply_timeout().is_some());
        }
        let e = Route::VmAddDevice.request(br#"{"vlan":"x"}"#).unwrap_err();
        assert!(e.starts_with("vm.add-device body: "), "{e}");
        assert_eq!(Route::VmPause.reply_timeout(), None);
        assert_eq!(ApiRequest::Reboot.body(), "");
        assert_eq!(
            VmShutdown::default().timeout_s(),
            DEFAULT_SHUTDOWN_TIMEOUT_S
        );
    }
}
