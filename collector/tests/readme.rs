//! The README is the users' reference. These tests fail when it falls behind the code: every
//! attribute and metric name defined in `core/src/semconv.rs` must be in the attribute
//! reference, and every config key the code accepts (as `hpcotel print-config` prints it for
//! a file that sets every option) must be in the configuration reference, under its
//! component's heading.

mod common;

use common::{repo_file, semconv_names, test_file};
use serde_yaml::Value;

/// The text between the heading line that starts with `heading` and the next heading of
/// the same or a higher level.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let start = readme
        .lines()
        .position(|l| l.starts_with(heading))
        .unwrap_or_else(|| panic!("README has no heading '{heading}'"));
    let lines: Vec<&str> = readme.lines().collect();
    let end = lines[start + 1..]
        .iter()
        .position(|l| {
            let hashes = l.chars().take_while(|c| *c == '#').count();
            hashes > 0 && hashes <= level && l[hashes..].starts_with(' ')
        })
        .map_or(lines.len(), |i| start + 1 + i);
    let from = lines[..start].iter().map(|l| l.len() + 1).sum::<usize>();
    let to = lines[..end].iter().map(|l| l.len() + 1).sum::<usize>();
    &readme[from..to.min(readme.len())]
}

#[test]
fn every_attribute_and_metric_name_is_in_the_reference() {
    let readme = repo_file("README.md");
    let reference = section(&readme, "## Attribute and metric reference");
    let missing: Vec<String> = semconv_names()
        .into_iter()
        .filter(|n| !reference.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "names defined in core/src/semconv.rs but not in the README's attribute and metric reference: {missing:?}"
    );
}

/// Dotted paths of the leaves under `value` (an empty mapping or a list is a leaf).
fn leaf_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        Value::Mapping(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = k.as_str().expect("string keys");
                let path = if prefix.is_empty() {
                    key.to_string()
                } else {
                    format!("{prefix}.{key}")
                };
                leaf_paths(v, &path, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[test]
fn every_config_key_is_in_the_configuration_reference() {
    let readme = repo_file("README.md");
    let fixture = test_file("fixtures/every-option.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hpcotel"))
        .args(["print-config", "--config"])
        .arg(&fixture)
        .output()
        .expect("run hpcotel print-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_yaml::from_slice(&out.stdout).expect("print-config prints YAML");

    let mut missing = Vec::new();
    let mut checked = 0;
    assert!(
        printed["extensions"]
            .as_mapping()
            .is_some_and(|m| !m.is_empty()),
        "the fixture sets no extension"
    );
    assert!(
        printed["service"]["extensions"]
            .as_sequence()
            .is_some_and(|l| !l.is_empty()),
        "the fixture lists no extension"
    );
    for family in ["receivers", "processors", "exporters", "extensions"] {
        let components = printed[family].as_mapping().expect(family);
        for (id, cfg) in components {
            let kind = id.as_str().unwrap().split('/').next().unwrap();
            let heading = format!("### {family}.{kind}");
            let text = readme
                .lines()
                .find(|l| {
                    l.starts_with("### ")
                        && l.split(|c: char| c.is_whitespace() || c == ',')
                            .any(|w| w == format!("{family}.{kind}"))
                })
                .map(|l| section(&readme, l))
                .unwrap_or_else(|| panic!("README has no heading naming {family}.{kind}"));
            let mut paths = Vec::new();
            leaf_paths(cfg, "", &mut paths);
            for p in paths {
                checked += 1;
                if !text.contains(&format!("`{p}`")) {
                    missing.push(format!("{heading}: `{p}`"));
                }
            }
        }
    }
    let service = section(&readme, "### service");
    let mut paths = Vec::new();
    leaf_paths(&printed["service"], "", &mut paths);
    for p in paths {
        // Pipelines are documented once for any id.
        let p = match p.strip_prefix("pipelines.") {
            Some(rest) => format!(
                "pipelines.<id>.{}",
                rest.split_once('.').map_or(rest, |(_, k)| k)
            ),
            None => p,
        };
        checked += 1;
        if !service.contains(&format!("`{p}`")) {
            missing.push(format!("### service: `{p}`"));
        }
    }
    assert!(checked > 60, "checked only {checked} keys");
    assert!(
        missing.is_empty(),
        "config keys the code accepts but the README does not document:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_dcgm_migration_table_is_the_exporters_own_mapping() {
    let readme = repo_file("README.md");
    let table = hpcotel_exporters::prometheus::dcgm::migration_table();
    assert!(
        readme.contains(&table),
        "README's migration table differs from the prometheus exporter's mapping; paste:\n{table}"
    );
}
