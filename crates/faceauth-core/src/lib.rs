//! faceauth's core: what a face verification is, without HTTP or a command line.
//!
//! Layers, each importing only those before it (checked by `layers_only_look_down`
//! below; the HTTP crate, the evaluation crate and the binary sit above this crate,
//! so the compiler keeps them out):
//!
//! 1. `errors`, `clock`, `telemetry`: shared by every layer;
//! 2. `media`: decode an upload (image or video) into pictures;
//! 3. `vision`: ONNX inference (faces, landmarks, embeddings, liveness);
//! 4. `policy`: the WebAssembly decision components;
//! 5. `store`: SQL (users, templates sealed at rest, the audit log);
//! 6. `usecase`: enroll, authenticate, reset, admin, replay: `media` -> `vision` ->
//!    `policy` -> `store`.
#![forbid(unsafe_code)]

pub mod clock;
pub mod errors;
pub mod media;
pub mod policy;
pub mod store;
pub mod telemetry;
pub mod usecase;
pub mod vision;

pub use errors::error_chain;

#[cfg(test)]
mod layers {
    use std::path::{Path, PathBuf};

    /// The layers, lowest first; a module may import its own layer and those before it.
    const LAYERS: [&[&str]; 6] =
        [&["errors", "clock", "telemetry"], &["media"], &["vision"], &["policy"], &["store"], &["usecase"]];

    fn layer_of(module: &str) -> Option<usize> {
        LAYERS.iter().position(|layer| layer.contains(&module))
    }

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Every `crate::NAME` a file names, with the line it is on.
    fn crate_paths(text: &str) -> Vec<(usize, String)> {
        let mut found = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (at, _) in code.match_indices("crate::") {
                let name: String =
                    code[at + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                found.push((n + 1, name));
            }
        }
        found
    }

    /// Issue 19: no module imports from a layer above it (test code included), so
    /// there is no circle either.
    #[test]
    fn layers_only_look_down() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&root, &mut files);
        assert!(files.len() > 20, "the sources were not found under {}", root.display());
        let mut upward = Vec::new();
        for file in &files {
            let relative = file.strip_prefix(&root).unwrap_or(file);
            let module = relative.components().next().and_then(|c| c.as_os_str().to_str()).unwrap_or("");
            let module = module.trim_end_matches(".rs");
            let Some(own) = layer_of(module) else { continue };
            let text = std::fs::read_to_string(file).unwrap_or_default();
            for (line, name) in crate_paths(&text) {
                match layer_of(&name) {
                    Some(used) if used > own => upward.push(format!("{}:{line}: crate::{name}", relative.display())),
                    Some(_) => {}
                    None if name == "error_chain" => {}
                    None => upward.push(format!("{}:{line}: crate::{name} is in no layer", relative.display())),
                }
            }
        }
        assert!(upward.is_empty(), "imports that run up a layer:\n{}", upward.join("\n"));
    }

    #[test]
    fn the_check_sees_an_upward_import() {
        let names: Vec<String> = crate_paths("use crate::usecase::X; // crate::store\nlet y = crate::media::z;")
            .into_iter()
            .map(|(_, name)| name)
            .collect();
        assert_eq!(names, ["usecase", "media"]);
        assert!(layer_of("usecase") > layer_of("store"));
    }
}
