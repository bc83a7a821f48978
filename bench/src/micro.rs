//! Reads the medians criterion left in its output directory (`<target>/criterion`), so that the
//! report of a run carries the micro benchmarks `bench/run.sh` ran just before it.

use std::path::Path;

use serde_json::Value;

use crate::report::Micro;

/// Every benchmark under `dir` (`<group>/<function>/new/{benchmark,estimates}.json`), by name.
pub fn read(dir: &Path) -> Vec<Micro> {
    let mut found = Vec::new();
    collect(dir, &mut found);
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

fn collect(dir: &Path, found: &mut Vec<Micro>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            if let Some(micro) = one(&path) {
                found.push(micro);
            }
        } else {
            collect(&path, found);
        }
    }
}

fn one(new: &Path) -> Option<Micro> {
    let json = |file: &str| -> Option<Value> {
        serde_json::from_str(&std::fs::read_to_string(new.join(file)).ok()?).ok()
    };
    let benchmark = json("benchmark.json")?;
    let estimates = json("estimates.json")?;
    Some(Micro {
        name: benchmark["full_id"].as_str()?.to_owned(),
        median_ns: estimates["median"]["point_estimate"].as_f64()?,
        elements: benchmark["throughput"]["Elements"].as_u64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criterions_files() {
        let dir = std::env::temp_dir().join(format!("celaest-micro-{}", std::process::id()));
        let new = dir.join("replication_frame/decode_snapshot_chunk/new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"full_id":"replication_frame/decode_snapshot_chunk","throughput":{"Elements":5000}}"#,
        )
        .unwrap();
        std::fs::write(
            new.join("estimates.json"),
            r#"{"median":{"point_estimate":1500000.0}}"#,
        )
        .unwrap();
        let found = read(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "replication_frame/decode_snapshot_chunk");
        assert_eq!(found[0].median_ns, 1_500_000.0);
        assert_eq!(found[0].elements, Some(5000));
    }
}
