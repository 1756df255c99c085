//! `host inspect <plugin.wasm>`: what a component imports and exports, which
//! WIT packages (and versions) its interfaces come from, and whether it fits
//! this host.
//!
//! A component binary does not record the name of the world it was built
//! for, only the names of its imports and exports; the world is inferred
//! from those (a component whose interfaces come from
//! `deckhouse:packages-mirror@X` and which exports the two pull functions
//! was built for `deckhouse:packages-mirror/packages-mirror@X`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use wasmtime::Engine;
use wasmtime::component::types::{ComponentItem as I, Type};

use crate::session::{self, WIT_PACKAGE, WIT_VERSION};

/// What a component says about itself.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub size: u64,
    /// The world, when the imports and exports identify one of ours.
    pub world: Option<String>,
    /// WIT packages with versions (`ns:name@x.y.z`) its interfaces come from.
    pub packages: Vec<String>,
    pub imports: Vec<Item>,
    pub exports: Vec<Item>,
    /// `Ok` when this host can run it, else why not (one line).
    pub fits: Result<(), String>,
}

/// One import or export: a function, or an interface with its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub name: String,
    /// `func`, `interface`, `resource`, `type`, `module`, `component`.
    pub kind: &'static str,
    /// A function's signature, e.g. `func(options: record) -> result`.
    pub signature: Option<String>,
    /// An interface's members, described like items.
    pub members: Vec<Item>,
}

/// The world name this host implements.
pub fn host_world() -> String {
    format!("{WIT_PACKAGE}/packages-mirror@{WIT_VERSION}")
}

/// Compiles the component at `path` and describes it. Fails (one line) only
/// when it is not a readable, valid component.
pub fn inspect(path: &Path) -> Result<Inspection, String> {
    let (engine, component, _) = session::compile(path, None)?;
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    let ty = component.component_type();
    let imports: Vec<Item> = ty
        .imports(&engine)
        .map(|(name, ext)| item(&engine, name, &ext.ty))
        .collect();
    let exports: Vec<Item> = ty
        .exports(&engine)
        .map(|(name, ext)| item(&engine, name, &ext.ty))
        .collect();
    let packages: BTreeSet<String> = imports
        .iter()
        .chain(&exports)
        .filter_map(|i| package_of(&i.name))
        .collect();
    let fits = crate::Plugin::link(path, &engine, &component).map(|_| ());
    let world = infer_world(&packages, &exports);
    Ok(Inspection {
        size,
        world,
        packages: packages.into_iter().collect(),
        imports,
        exports,
        fits,
    })
}

/// `ns:pkg/iface@1.2.3` → `ns:pkg@1.2.3`; plain names (world-level
/// functions) have no package.
fn package_of(name: &str) -> Option<String> {
    let (path, version) = name.split_once('@').unwrap_or((name, ""));
    let (package, _interface) = path.split_once('/')?;
    Some(if version.is_empty() {
        package.to_owned()
    } else {
        format!("{package}@{version}")
    })
}

fn infer_world(packages: &BTreeSet<String>, exports: &[Item]) -> Option<String> {
    let ours = packages
        .iter()
        .find(|p| p.split('@').next() == Some(WIT_PACKAGE))?;
    let exports_pulls = ["pull-packages", "pull-package-versions"]
        .iter()
        .all(|e| exports.iter().any(|i| i.name == *e));
    exports_pulls.then(|| {
        let version = ours.split_once('@').map_or("", |(_, v)| v);
        if version.is_empty() {
            format!("{WIT_PACKAGE}/packages-mirror")
        } else {
            format!("{WIT_PACKAGE}/packages-mirror@{version}")
        }
    })
}

fn item(engine: &Engine, name: &str, ty: &I) -> Item {
    let mut it = Item {
        name: name.to_owned(),
        kind: "type",
        signature: None,
        members: Vec::new(),
    };
    match ty {
        I::ComponentFunc(f) => {
            it.kind = "func";
            let params: Vec<String> = f
                .params()
                .map(|(n, t)| format!("{n}: {}", type_name(&t)))
                .collect();
            let results: Vec<&str> = f.results().map(|t| type_name(&t)).collect();
            let mut sig = format!("func({})", params.join(", "));
            if !results.is_empty() {
                let _ = write!(sig, " -> {}", results.join(", "));
            }
            it.signature = Some(sig);
        }
        I::CoreFunc(_) => it.kind = "core func",
        I::Module(_) => it.kind = "module",
        I::Component(_) => it.kind = "component",
        I::ComponentInstance(inst) => {
            it.kind = "interface";
            it.members = inst
                .exports(engine)
                .map(|(n, ext)| item(engine, n, &ext.ty))
                .collect();
        }
        I::Type(_) => it.kind = "type",
        I::Resource(_) => it.kind = "resource",
    }
    it
}

/// The kind of a value type, enough to recognise a signature.
fn type_name(t: &Type) -> &'static str {
    match t {
        Type::Bool => "bool",
        Type::S8 => "s8",
        Type::U8 => "u8",
        Type::S16 => "s16",
        Type::U16 => "u16",
        Type::S32 => "s32",
        Type::U32 => "u32",
        Type::S64 => "s64",
        Type::U64 => "u64",
        Type::Float32 => "f32",
        Type::Float64 => "f64",
        Type::Char => "char",
        Type::String => "string",
        Type::List(_) | Type::FixedLengthList(_) => "list",
        Type::Map(_) => "map",
        Type::Record(_) => "record",
        Type::Tuple(_) => "tuple",
        Type::Variant(_) => "variant",
        Type::Enum(_) => "enum",
        Type::Option(_) => "option",
        Type::Result(_) => "result",
        Type::Flags(_) => "flags",
        Type::Own(_) => "own",
        Type::Borrow(_) => "borrow",
        Type::Future(_) => "future",
        Type::Stream(_) => "stream",
        Type::ErrorContext => "error-context",
    }
}

impl Inspection {
    /// The report `host inspect` prints.
    pub fn render(&self, path: &Path) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "plugin:       {} ({})",
            path.display(),
            crate::units::human_bytes(self.size)
        );
        let _ = writeln!(
            out,
            "world:        {} (inferred from its imports and exports; a component does not record its world's name)",
            self.world.as_deref().unwrap_or("unknown")
        );
        let _ = writeln!(out, "WIT packages: {}", self.packages.join(", "));
        let _ = writeln!(out, "this host:    {}", host_world());
        match &self.fits {
            Ok(()) => {
                let _ = writeln!(out, "compatible:   yes");
            }
            Err(why) => {
                let _ = writeln!(out, "compatible:   no: {}", crate::events::sanitize(why));
            }
        }
        for (title, items) in [("imports", &self.imports), ("exports", &self.exports)] {
            let _ = writeln!(out, "{title}:");
            for i in items {
                write_item(&mut out, i, 1);
            }
        }
        out
    }
}

fn write_item(out: &mut String, i: &Item, depth: usize) {
    let indent = "  ".repeat(depth);
    let name = crate::events::sanitize(&i.name);
    let _ = match &i.signature {
        Some(sig) => writeln!(out, "{indent}{name}: {sig}"),
        None => writeln!(out, "{indent}{name} ({})", i.kind),
    };
    for m in &i.members {
        write_item(out, m, depth + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_and_world_from_names() {
        assert_eq!(
            package_of("deckhouse:packages-mirror/events@0.2.0").as_deref(),
            Some("deckhouse:packages-mirror@0.2.0")
        );
        assert_eq!(package_of("pull-packages"), None);
        let packages: BTreeSet<String> = ["deckhouse:packages-mirror@0.2.0".to_owned()].into();
        let func = |name: &str| Item {
            name: name.into(),
            kind: "func",
            signature: None,
            members: vec![],
        };
        let both = [func("pull-packages"), func("pull-package-versions")];
        assert_eq!(
            infer_world(&packages, &both).as_deref(),
            Some("deckhouse:packages-mirror/packages-mirror@0.2.0")
        );
        assert_eq!(infer_world(&packages, &both[..1]), None);
    }
}
