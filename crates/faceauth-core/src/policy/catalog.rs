//! The policy catalog: `policies.toml` in the policy directory says which variants
//! run. A variant is a component (a `.wasm` file beside the catalog) with a
//! parameter set, a weight in the A/B split, or a shadow role.
//!
//! ```toml
//! # Changing it starts a new experiment: users are assigned to variants afresh.
//! experiment = "2026-11-threshold"
//!
//! [[variant]]
//! name = "default"
//! component = "default_policy.wasm"
//! weight = 90
//!
//! [[variant]]
//! name = "default-0.50"
//! component = "default_policy.wasm"
//! weight = 10
//! params = { match-threshold = 0.50 }
//!
//! [[variant]]
//! name = "liveness"
//! component = "liveness_policy.wasm"
//! shadow = true
//! ```

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the catalog inside the policy directory.
pub const CATALOG_FILE: &str = "policies.toml";

/// Largest catalog read: a thousand variants take under 200 KB, so anything near
/// this is not a catalog (and is never held in memory whole).
pub const CATALOG_MAX_BYTES: u64 = 1024 * 1024;

/// Largest component read: the shipped ones are about 3 MB and uploads stop at
/// `--max-upload-bytes` (20 MiB by default); a file past this is not a policy, and
/// reading it must not take the process's memory (issue 22: a link to /dev/zero).
pub const COMPONENT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Reads `path` if it is a regular file (a symbolic link to one is fine) of at most
/// `cap` bytes. A FIFO, a device (`/dev/zero`), a socket or a directory is refused
/// before it is opened: opening a FIFO blocks until a writer comes, and a device
/// never ends, so either hung the reload (and every admin change waiting behind
/// it) for ever (issue 22). The opened handle is checked again and read through
/// `take(cap + 1)`, so a file swapped or grown after the first look is still
/// bounded. (A FIFO swapped in between the look and the open would still block the
/// open; only someone who can already rewrite the policy directory can do that.)
pub fn read_regular_file(path: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    let refuse = |what: &str| Error::new(ErrorKind::InvalidInput, format!("{what}: only regular files are read"));
    let kind = |meta: &std::fs::Metadata| -> Result<(), Error> {
        let t = meta.file_type();
        if t.is_file() {
            return Ok(());
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if t.is_fifo() {
                return Err(refuse("a FIFO"));
            }
            if t.is_char_device() || t.is_block_device() {
                return Err(refuse("a device"));
            }
            if t.is_socket() {
                return Err(refuse("a socket"));
            }
        }
        Err(refuse(if t.is_dir() { "a directory" } else { "not a regular file" }))
    };
    let too_large = || Error::new(ErrorKind::InvalidData, format!("larger than {cap} bytes"));
    let before = std::fs::metadata(path)?;
    kind(&before)?;
    if before.len() > cap {
        return Err(too_large());
    }
    let file = std::fs::File::open(path)?;
    let opened = file.metadata()?;
    kind(&opened)?;
    let mut bytes = Vec::with_capacity(opened.len().min(cap) as usize);
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_large());
    }
    Ok(bytes)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Salt of the sticky A/B assignment.
    #[serde(default)]
    pub experiment: String,
    #[serde(default, rename = "variant")]
    pub variants: Vec<VariantSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    /// Recorded on every decision; letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// File name of the component, inside the policy directory.
    pub component: String,
    /// Share of the users this variant answers (relative to the other weights).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weight: u32,
    /// Runs after the answer on the same evidence; recorded, never answers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// Overrides of the component's declared parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, f64>,
    /// Failed calls in a row on live traffic (a trap, the fuel or memory budget, an
    /// invalid decision) after which the variant is retired by itself: its weight set
    /// to 0 and its shadow role removed, the others answering. 0: never.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retire_after_failures: u32,
    /// Why and when the variant was retired by itself; kept until an admin change
    /// gives it traffic again.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub retired: String,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} is not a valid catalog: {message}")]
    Parse { path: String, message: String },
    #[error("invalid catalog: {0}")]
    Invalid(String),
}

/// A name usable for a variant or a component file.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Catalog {
    pub fn read(dir: &Path) -> Result<Self, CatalogError> {
        let path = dir.join(CATALOG_FILE);
        let read_err = |message: String| CatalogError::Read { path: path.display().to_string(), message };
        let bytes = read_regular_file(&path, CATALOG_MAX_BYTES).map_err(|e| read_err(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| read_err("not UTF-8 text".into()))?;
        let catalog: Catalog = toml::from_str(&text)
            .map_err(|e| CatalogError::Parse { path: path.display().to_string(), message: e.to_string() })?;
        catalog.validate()?;
        Ok(catalog)
    }

    /// Writes the catalog atomically (a temporary file renamed over the old one), so
    /// the directory watcher never reads half a file. The file on disk is edited, not
    /// rewritten: its comments and layout stay (issue 21: PUT dropped an operator's
    /// comments), and a variant that did not change keeps its lines as they were.
    pub fn write(&self, dir: &Path) -> Result<(), CatalogError> {
        self.validate()?;
        let on_disk = read_regular_file(&dir.join(CATALOG_FILE), CATALOG_MAX_BYTES)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.parse::<toml_edit::DocumentMut>().ok());
        let edited = on_disk.map(|doc| self.edit(doc).to_string());
        // The edit must read back as this catalog; otherwise (an unusual file) a plain
        // rewrite, comments lost rather than a wrong catalog written.
        let text = match edited {
            Some(text) if toml::from_str::<Catalog>(&text).ok().as_ref() == Some(self) => text,
            _ => toml::to_string_pretty(self).map_err(|e| CatalogError::Invalid(e.to_string()))?,
        };
        write_atomically(dir, CATALOG_FILE, text.as_bytes())
            .map(|_| ())
            .map_err(|e| CatalogError::Read { path: dir.join(CATALOG_FILE).display().to_string(), message: e })
    }

    /// `doc` (the catalog as it is on disk) changed into this catalog: each variant
    /// table kept (with its comments) and its fields set, new ones appended, retired
    /// ones removed.
    fn edit(&self, mut doc: toml_edit::DocumentMut) -> toml_edit::DocumentMut {
        use toml_edit::{ArrayOfTables, InlineTable, Item, Table, value};
        if !self.experiment.is_empty() || doc.contains_key("experiment") {
            match doc.get_mut("experiment").and_then(Item::as_value_mut) {
                // Keeps the value's trailing comment.
                Some(v) if v.as_str() == Some(self.experiment.as_str()) => {}
                _ => doc["experiment"] = value(self.experiment.as_str()),
            }
        }
        let old: Vec<Table> = doc
            .get("variant")
            .and_then(Item::as_array_of_tables)
            .map_or_else(Vec::new, |a| a.iter().cloned().collect());
        let mut variants = ArrayOfTables::new();
        for spec in &self.variants {
            let mut table =
                old.iter().find(|t| t.get("name").and_then(Item::as_str) == Some(spec.name.as_str())).cloned();
            let table = table.get_or_insert_with(Table::new);
            set_if_changed(table, "name", value(spec.name.as_str()));
            set_if_changed(table, "component", value(spec.component.as_str()));
            match spec.weight {
                0 => drop(table.remove("weight")),
                w => set_if_changed(table, "weight", value(i64::from(w))),
            }
            match spec.shadow {
                false => drop(table.remove("shadow")),
                true => set_if_changed(table, "shadow", value(true)),
            }
            match spec.retire_after_failures {
                0 => drop(table.remove("retire_after_failures")),
                n => set_if_changed(table, "retire_after_failures", value(i64::from(n))),
            }
            match spec.retired.as_str() {
                "" => drop(table.remove("retired")),
                why => set_if_changed(table, "retired", value(why)),
            }
            let current: Option<BTreeMap<String, f64>> =
                table.get("params").and_then(|p| toml::from_str(&format!("p = {p}")).ok()).map(|w: ParamsOnly| w.p);
            if current.as_ref() != Some(&spec.params) {
                match spec.params.is_empty() {
                    true => drop(table.remove("params")),
                    false => {
                        let mut params = InlineTable::new();
                        for (name, v) in &spec.params {
                            params.insert(name, (*v).into());
                        }
                        table.insert("params", value(params));
                    }
                }
            }
            variants.push(table.clone());
        }
        match variants.is_empty() {
            true => drop(doc.remove("variant")),
            false => doc["variant"] = Item::ArrayOfTables(variants),
        }
        doc
    }

    /// Structural rules; whether the components load is checked when they are built.
    pub fn validate(&self) -> Result<(), CatalogError> {
        let mut seen = std::collections::BTreeSet::new();
        for v in &self.variants {
            if !valid_name(&v.name) {
                return Err(CatalogError::Invalid(format!("variant name {:?} (use letters, digits, . _ -)", v.name)));
            }
            if !seen.insert(v.name.as_str()) {
                return Err(CatalogError::Invalid(format!("variant {} appears twice", v.name)));
            }
            if !is_plain_file_name(&v.component) {
                return Err(CatalogError::Invalid(format!(
                    "variant {}: component {:?} must be a file name inside the policy directory",
                    v.name, v.component
                )));
            }
            if v.shadow && v.weight > 0 {
                return Err(CatalogError::Invalid(format!("variant {} is a shadow and cannot have a weight", v.name)));
            }
        }
        if !self.variants.iter().any(|v| !v.shadow && v.weight > 0) {
            return Err(CatalogError::Invalid("no variant answers: give at least one a weight above 0".into()));
        }
        Ok(())
    }
}

/// `table[key] = item` unless it already holds that value (its comments then stay).
fn set_if_changed(table: &mut toml_edit::Table, key: &str, item: toml_edit::Item) {
    let same = match (table.get(key).and_then(toml_edit::Item::as_value), item.as_value()) {
        (Some(old), Some(new)) => {
            // Compared without their decor (spaces, a trailing comment).
            let (mut old, mut new) = (old.clone(), new.clone());
            old.decor_mut().clear();
            new.decor_mut().clear();
            old.to_string() == new.to_string()
        }
        _ => false,
    };
    if !same {
        table.insert(key, item);
    }
}

/// A variant's `params` read back alone.
#[derive(Deserialize)]
struct ParamsOnly {
    p: BTreeMap<String, f64>,
}

/// The component files the router copied in (`PUT`: `<variant>-<12 hex digits>.wasm`,
/// content-addressed) that no variant of `catalog` uses any more: removed after an
/// edit is written (issue 21: `DELETE` left them). Files named otherwise are the
/// operator's and stay.
pub fn remove_unused_copies(dir: &Path, catalog: &Catalog) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let copied =
            name.strip_suffix(".wasm").and_then(|stem| stem.rsplit_once('-')).is_some_and(|(variant, hash)| {
                valid_name(variant) && hash.len() == 12 && hash.bytes().all(|b| b.is_ascii_hexdigit())
            });
        let used = catalog.variants.iter().any(|v| v.component == name);
        if copied && !used && entry.file_type().is_ok_and(|t| t.is_file()) && std::fs::remove_file(entry.path()).is_ok()
        {
            removed.push(name);
        }
    }
    removed
}

fn is_plain_file_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!((parts.next(), parts.next()), (Some(Component::Normal(_)), None)) && valid_name(name)
}

/// Writes `dir/name` through a temporary file in the same directory and a rename.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    use std::io::Write;
    let mut tmp = tempfile::Builder::new().prefix(".incoming-").tempfile_in(dir).map_err(|e| e.to_string())?;
    tmp.write_all(bytes).map_err(|e| e.to_string())?;
    tmp.as_file().sync_all().map_err(|e| e.to_string())?;
    let target = dir.join(name);
    tmp.persist(&target).map_err(|e| e.to_string())?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
experiment = "e1"

[[variant]]
name = "default"
component = "default_policy.wasm"
weight = 90

[[variant]]
name = "default-0.50"
component = "default_policy.wasm"
weight = 10
params = { match-threshold = 0.50 }

[[variant]]
name = "liveness"
component = "liveness_policy.wasm"
shadow = true
"#;

    #[test]
    fn parses_the_documented_example_and_roundtrips() {
        let catalog: Catalog = toml::from_str(EXAMPLE).expect("parses");
        catalog.validate().expect("valid");
        assert_eq!(catalog.variants.len(), 3);
        assert_eq!(catalog.variants[1].params.get("match-threshold"), Some(&0.50));
        assert!(catalog.variants[2].shadow);
        let dir = tempfile::tempdir().expect("tempdir");
        catalog.write(dir.path()).expect("write");
        assert_eq!(Catalog::read(dir.path()).expect("read back"), catalog);
    }

    /// Issue 21 defect: `PUT` rewrote `policies.toml` without the operator's comments.
    #[test]
    fn an_edit_keeps_the_operators_comments_and_untouched_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!("# Who owns this file: the risk team.\n{EXAMPLE}")
            .replace("weight = 10\n", "weight = 10 # ten per cent while we look at FAR\n");
        std::fs::write(dir.path().join(CATALOG_FILE), &text).expect("write");
        let mut catalog = Catalog::read(dir.path()).expect("read");
        catalog.variants[0].weight = 80;
        catalog.variants[2].params.insert("min-liveness".into(), 0.4);
        catalog.variants.push(VariantSpec {
            name: "strict".into(),
            component: "strict-0123456789ab.wasm".into(),
            weight: 10,
            shadow: false,
            params: BTreeMap::new(),
            retire_after_failures: 0,
            retired: String::new(),
        });
        catalog.write(dir.path()).expect("write");
        let written = std::fs::read_to_string(dir.path().join(CATALOG_FILE)).expect("read back");
        assert!(written.contains("# Who owns this file: the risk team."), "{written}");
        assert!(written.contains("weight = 10 # ten per cent while we look at FAR"), "{written}");
        assert!(written.contains("weight = 80"), "{written}");
        assert_eq!(Catalog::read(dir.path()).expect("parses"), catalog);
        // Retired: its table goes, the comments of the others stay.
        catalog.variants.retain(|v| v.name != "default-0.50");
        catalog.write(dir.path()).expect("write");
        let written = std::fs::read_to_string(dir.path().join(CATALOG_FILE)).expect("read back");
        assert!(!written.contains("default-0.50"), "{written}");
        assert!(written.contains("# Who owns this file"), "{written}");
        assert_eq!(Catalog::read(dir.path()).expect("parses"), catalog);
    }

    /// Issue 21 defect: `DELETE` left the component file `PUT` had copied in.
    #[test]
    fn copies_no_variant_uses_are_removed_and_the_operators_files_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        for file in ["default_policy.wasm", "b-0123456789ab.wasm", "c-aaaaaaaaaaaa.wasm", "notes-0123.wasm"] {
            std::fs::write(dir.path().join(file), b"x").expect("write");
        }
        let catalog: Catalog =
            toml::from_str("[[variant]]\nname = \"c\"\ncomponent = \"c-aaaaaaaaaaaa.wasm\"\nweight = 1\n")
                .expect("parse");
        assert_eq!(remove_unused_copies(dir.path(), &catalog), ["b-0123456789ab.wasm"]);
        for kept in ["default_policy.wasm", "c-aaaaaaaaaaaa.wasm", "notes-0123.wasm"] {
            assert!(dir.path().join(kept).exists(), "{kept}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn reads_regular_files_only_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let regular = dir.path().join("a.wasm");
        std::fs::write(&regular, b"0123456789").expect("write");
        assert_eq!(read_regular_file(&regular, 10).expect("fits"), b"0123456789");
        let refused = read_regular_file(&regular, 9).expect_err("over the cap");
        assert!(refused.to_string().contains("larger than 9 bytes"), "{refused}");
        // A link to a regular file is fine; to a device, refused without reading.
        let link = dir.path().join("link.wasm");
        std::os::unix::fs::symlink(&regular, &link).expect("symlink");
        assert_eq!(read_regular_file(&link, 10).expect("followed").len(), 10);
        let zero = dir.path().join("zero.wasm");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
        let refused = read_regular_file(&zero, COMPONENT_MAX_BYTES).expect_err("a device");
        assert!(refused.to_string().contains("a device"), "{refused}");
        // A FIFO with no writer: opening it would block for ever.
        let fifo = dir.path().join("fifo.wasm");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
        assert!(made.success());
        let refused = read_regular_file(&fifo, COMPONENT_MAX_BYTES).expect_err("a FIFO");
        assert!(refused.to_string().contains("a FIFO"), "{refused}");
        let refused = read_regular_file(dir.path(), COMPONENT_MAX_BYTES).expect_err("a directory");
        assert!(refused.to_string().contains("a directory"), "{refused}");
    }

    #[test]
    fn refuses_catalogs_that_cannot_serve() {
        let parse = |text: &str| {
            toml::from_str::<Catalog>(text)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map_err(|e| e.to_string()))
        };
        let v = |extra: &str| format!("[[variant]]\nname = \"a\"\ncomponent = \"a.wasm\"\n{extra}\n");
        assert!(parse(&v("weight = 1")).is_ok());
        assert!(parse(&v("")).unwrap_err().contains("no variant answers"));
        assert!(parse(&v("weight = 1\nshadow = true")).unwrap_err().contains("shadow"));
        assert!(parse(&v("weight = 1\ntypo = 3")).unwrap_err().contains("typo"));
        let escape = "[[variant]]\nname = \"a\"\ncomponent = \"../x.wasm\"\nweight = 1\n";
        assert!(parse(escape).unwrap_err().contains("inside the policy directory"));
        let twice = format!("{}{}", v("weight = 1"), v("weight = 2"));
        assert!(parse(&twice).unwrap_err().contains("twice"));
        let bad_name = "[[variant]]\nname = \"a b\"\ncomponent = \"a.wasm\"\nweight = 1\n";
        assert!(parse(bad_name).unwrap_err().contains("variant name"));
    }
}
