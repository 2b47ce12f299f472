//! The host side of the `policy` world of `wit/policy.wit`, generated when the crate is compiled.

wasmtime::component::bindgen!({
    world: "policy",
    path: "../../wit",
    // Evidence and decisions go to the audit log as JSON and come back for replay.
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});
