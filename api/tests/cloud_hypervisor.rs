//! vfvm's routes against Cloud Hypervisor's OpenAPI document (a trimmed
//! copy in `cloud-hypervisor.yaml`, origin named there): where both have a
//! route, the method, the success status, the state-error status, the
//! request body's field names and the answer's field names agree, so a
//! client written for Cloud Hypervisor works against vfvm.

use std::collections::BTreeSet;

use api::{Route, VmInfo, VmState, VmmPing, API_PREFIX, ROUTES};
use serde_yaml::Value;

fn doc(text: &str) -> Value {
    serde_yaml::from_str(text).expect("valid YAML")
}

fn ch() -> Value {
    doc(include_str!("cloud-hypervisor.yaml"))
}

fn ours() -> Value {
    doc(include_str!("../openapi.yaml"))
}

/// The schema a `$ref` names.
fn deref<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            &root["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_mapping()
        .map(|m| {
            m.keys()
                .map(|k| match k {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    other => panic!("key {other:?}"),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn properties(root: &Value, schema: &Value) -> BTreeSet<String> {
    keys(&deref(root, schema)["properties"])
}

/// Cloud Hypervisor's operation for our route, if it has the path.
fn ch_operation<'a>(ch: &'a Value, path: &str) -> Option<&'a Value> {
    let tail = path.strip_prefix(API_PREFIX).unwrap();
    ch["paths"].get(tail)
}

#[test]
fn shared_routes_have_cloud_hypervisors_method_and_statuses() {
    let (ch, ours) = (ch(), ours());
    assert_eq!(ch["servers"][0]["url"], "http://localhost/api/v1");
    let mut shared = 0;
    for (method, path, _) in ROUTES {
        let Some(theirs) = ch_operation(&ch, path) else {
            continue;
        };
        shared += 1;
        let m = method.as_str().to_lowercase();
        assert_eq!(
            keys(theirs),
            BTreeSet::from([m.clone()]),
            "{path}: Cloud Hypervisor's methods"
        );
        let their_codes = keys(&theirs[m.as_str()]["responses"]);
        let our_codes = keys(&ours["paths"][*path][m.as_str()]["responses"]);
        let ok: Vec<_> = our_codes.iter().filter(|c| c.starts_with('2')).collect();
        assert_eq!(ok.len(), 1, "{path}: one success status");
        assert!(
            their_codes.contains(ok[0]),
            "{path}: {} vs {their_codes:?}",
            ok[0]
        );
        // Where both document a state error, it is the same status.
        if our_codes.contains("405") {
            assert!(
                their_codes.contains("405"),
                "{path}: 405 is Cloud Hypervisor's too"
            );
        }
    }
    assert_eq!(shared, 13, "routes shared with Cloud Hypervisor");
}

/// A JSON value of the schema's type, as a client might send it.
fn sample(root: &Value, schema: &Value) -> serde_json::Value {
    let s = deref(root, schema);
    match s["type"].as_str() {
        Some("string") => "x".into(),
        Some("integer") => 1.into(),
        Some("boolean") => true.into(),
        Some("array") => serde_json::json!([]),
        _ => serde_json::json!({}),
    }
}

#[test]
fn cloud_hypervisors_request_bodies_are_accepted() {
    let (ch, ours) = (ch(), ours());
    for (method, path, route) in ROUTES {
        let Some(theirs) = ch_operation(&ch, path) else {
            continue;
        };
        let op = &theirs[method.as_str().to_lowercase().as_str()];
        let body = match op.get("requestBody") {
            None => serde_json::json!({}),
            Some(rb) => {
                let schema = &rb["content"]["application/json"]["schema"];
                let props = &deref(&ch, schema)["properties"];
                // Our document lists every field of theirs (ours add, never rename).
                let our_schema = &ours["paths"][*path]["put"]["requestBody"]["content"]
                    ["application/json"]["schema"];
                let missing: Vec<_> = properties(&ch, schema)
                    .difference(&properties(&ours, our_schema))
                    .cloned()
                    .collect();
                assert!(missing.is_empty(), "{path}: our body lacks {missing:?}");
                serde_json::Value::Object(
                    keys(props)
                        .into_iter()
                        .map(|k| {
                            let v = sample(&ch, &props[k.as_str()]);
                            (k, v)
                        })
                        .collect(),
                )
            }
        };
        let bytes = serde_json::to_vec(&body).unwrap();
        assert!(
            route.request(&bytes).is_ok(),
            "{path}: Cloud Hypervisor's body {body} refused"
        );
        // And what ch-remote sends for those without a required body:
        // nothing at all.
        let required = op
            .get("requestBody")
            .is_some_and(|rb| rb["required"] == true);
        assert!(required || route.request(b"").is_ok(), "{path}");
    }
    // vm.shutdown's own field is an extra one.
    assert!(Route::VmShutdown.request(br#"{"timeout_s": 3}"#).is_ok());
}

#[test]
fn answers_carry_cloud_hypervisors_field_names() {
    let ch = ch();
    let schemas = &ch["components"]["schemas"];
    let ping = serde_json::to_value(VmmPing {
        build_version: "b".into(),
        version: "v".into(),
        pid: 1,
        features: vec![],
    })
    .unwrap();
    for field in keys(&schemas["VmmPingResponse"]["properties"]) {
        assert!(ping.get(&field).is_some(), "vmm.ping lacks {field}");
    }
    let info = serde_json::to_value(VmInfo {
        config: serde_json::json!({}),
        state: VmState::Running,
        memory_actual_size: 1,
        name: "n".into(),
        memory: Default::default(),
        cpus: Default::default(),
        devices: vec![],
        start: Default::default(),
    })
    .unwrap();
    for field in schemas["VmInfo"]["required"].as_sequence().unwrap() {
        let field = field.as_str().unwrap();
        assert!(info.get(field).is_some(), "vm.info lacks {field}");
    }
    assert!(info.get("memory_actual_size").is_some());
    let states: BTreeSet<&str> = schemas["VmState"]["enum"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for s in [VmState::Running, VmState::Paused, VmState::Shutdown] {
        let name = serde_json::to_value(s).unwrap();
        assert!(states.contains(name.as_str().unwrap()), "{name}");
    }
    // vm.counters: device -> name -> integer, as theirs.
    assert_eq!(
        schemas["VmCounters"]["additionalProperties"]["additionalProperties"]["type"],
        "integer"
    );
}
