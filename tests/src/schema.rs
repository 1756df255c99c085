//! Validation of `host … pull --output json` against the schema the host
//! publishes (host/schema/pull-summary.schema.json), with `boon`.

use anyhow::{Context, Result, anyhow};
use serde_json::Value;

use crate::artifacts::workspace_root;

/// Path of the schema inside the repository.
pub const SUMMARY_SCHEMA: &str = "host/schema/pull-summary.schema.json";

/// Parses `text` as JSON and validates it against the summary schema;
/// returns the document.
pub fn validate_summary(text: &str) -> Result<Value> {
    let doc: Value = serde_json::from_str(text).context("the output is not one JSON document")?;
    let path = workspace_root().join(SUMMARY_SCHEMA);
    let schema: Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", path.display()))?;
    let id = schema["$id"]
        .as_str()
        .context("the schema has no $id")?
        .to_owned();
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler
        .add_resource(&id, schema)
        .map_err(|e| anyhow!("{e}"))?;
    let index = compiler
        .compile(&id, &mut schemas)
        .map_err(|e| anyhow!("the schema does not compile: {e}"))?;
    schemas
        .validate(&doc, index)
        .map_err(|e| anyhow!("the document does not match {SUMMARY_SCHEMA}: {e:#}"))?;
    Ok(doc)
}
