//! The workspace's dependency graph is the one ARCHITECTURE.md draws:
//! server → sql → ingest → catalog (server may use all three, sql may use ingest and catalog);
//! tests is a leaf, and benches (which borrows its S3 test server) sits above it.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

fn allowed(from: &str) -> &'static [&'static str] {
    match from {
        "tarn-catalog" => &[],
        "tarn-ingest" => &["tarn-catalog"],
        "tarn-sql" => &["tarn-ingest", "tarn-catalog"],
        "tarn-server" => &["tarn-sql", "tarn-ingest", "tarn-catalog"],
        "tarn-tests" => &["tarn-server", "tarn-sql", "tarn-ingest", "tarn-catalog"],
        "tarn-benches" => &[
            "tarn-tests",
            "tarn-server",
            "tarn-sql",
            "tarn-ingest",
            "tarn-catalog",
        ],
        _ => &[],
    }
}

#[test]
fn workspace_edges_follow_the_layering() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let packages = metadata["packages"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("no packages"))?;
    let members: BTreeSet<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    let expected: BTreeSet<String> = [
        "tarn-catalog",
        "tarn-ingest",
        "tarn-sql",
        "tarn-server",
        "tarn-benches",
        "tarn-tests",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(members, expected, "workspace members");

    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for package in packages {
        let name = package["name"].as_str().unwrap_or_default().to_owned();
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            if members.contains(dep_name) {
                edges
                    .entry(name.clone())
                    .or_default()
                    .insert(dep_name.to_owned());
            }
        }
    }
    let mut violations = Vec::new();
    for (from, tos) in &edges {
        for to in tos {
            if !allowed(from).contains(&to.as_str()) {
                violations.push(format!("{from} → {to}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "edges outside the layering: {violations:?}"
    );
    // The graph has the layers it should, not just no forbidden edges.
    assert!(edges["tarn-server"].contains("tarn-sql"));
    assert!(edges["tarn-sql"].contains("tarn-ingest"));
    assert!(edges["tarn-ingest"].contains("tarn-catalog"));
    Ok(())
}
