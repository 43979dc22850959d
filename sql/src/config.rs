use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The `[engine]` section of tarn's configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Memory all queries together may use, e.g. `"4GiB"`; past it operators spill to disk.
    /// Unset: no limit.
    pub memory_limit: Option<String>,
    /// Where spill files go. Unset: the OS temporary folder.
    pub spill_dir: Option<PathBuf>,
    /// Partitions a query is split into. 0: one per core.
    pub target_partitions: usize,
    /// Rows per Arrow batch. 0: DataFusion's default (8192).
    pub batch_size: usize,
    /// How long table metadata read from the store (file listings, Delta snapshots, the
    /// catalog log) is reused before the store is asked again, in seconds; what other writers
    /// add shows up within this time (tarn's own writes, and `REFRESH TABLE`, at once).
    /// 0: every query asks the store. Parquet footers are cached regardless: they are checked
    /// against each file's size and modification time.
    pub metadata_ttl_secs: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            memory_limit: None,
            spill_dir: None,
            target_partitions: 0,
            batch_size: 0,
            metadata_ttl_secs: 10,
        }
    }
}

impl EngineConfig {
    pub fn metadata_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.metadata_ttl_secs)
    }

    /// The memory limit in bytes, if one is set.
    pub fn memory_limit_bytes(&self) -> Result<Option<usize>> {
        self.memory_limit
            .as_deref()
            .map(|s| {
                parse_size(s).ok_or_else(|| Error::Config {
                    key: "engine.memory_limit",
                    reason: format!("{s:?} is not a size like \"512MiB\" or \"4GiB\""),
                })
            })
            .transpose()
    }
}

/// Parses `"4GiB"`, `"512 MB"`, `"1048576"` into bytes.
pub(crate) fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: usize = num.parse().ok()?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    num.checked_mul(mult).filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4GiB"), Some(4 << 30));
        assert_eq!(parse_size("512 MB"), Some(512 << 20));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("5 parsecs"), None);
    }
}
