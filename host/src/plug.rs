//! `wac plug` as a function: compose components by plugging exports into
//! imports of the same name. Shared by the library and its build script,
//! which composes `kist-portable.wasm` with it.

use anyhow::Context;
use wac_graph::types::Package;
use wac_graph::{CompositionGraph, EncodeOptions};

/// Instantiates `socket` with every import that one of `plugs` exports
/// (matched by name, or by a semver-compatible version) and returns the
/// composed component: it exports what `socket` exports and imports what
/// is left over. Fails when nothing could be plugged.
pub fn plug(socket: &[u8], plugs: &[&[u8]]) -> anyhow::Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let mut register = |name: String, bytes: &[u8]| -> anyhow::Result<_> {
        let package = Package::from_bytes(&name, None, bytes, graph.types_mut())
            .with_context(|| format!("reading the {name} component"))?;
        graph
            .register_package(package)
            .with_context(|| format!("registering the {name} component"))
    };
    let socket = register("kist:socket".into(), socket)?;
    let plugs = plugs
        .iter()
        .enumerate()
        .map(|(i, bytes)| register(format!("kist:plug{i}"), bytes))
        .collect::<anyhow::Result<Vec<_>>>()?;
    wac_graph::plug(&mut graph, plugs, socket).context("plugging the components")?;
    graph
        .encode(EncodeOptions::default())
        .context("encoding the composed component")
}
