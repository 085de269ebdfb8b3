//! Every shipped package's ONNX graph against the ONNX parser's operator-support tables
//! (`../shared/third_party/tensorrt/onnx-tensorrt-operators-*.md`): the opset, each operator, and
//! the target type of each `Cast`. The 8.6 table stands for JetPack 5.1's TensorRT 8.5 as well
//! (no 8.5 table is published beside it; the 8.x parsers share the INT64 limitation), the 10.1
//! table for JetPack 6.1/6.2's 10.3. It cannot see the tables' free-text restrictions (pooling
//! dimensions, constant-only inputs); an engine build on a device is the final word.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tract_onnx::pb;
use tract_onnx::prelude::*;

struct Table {
    name: &'static str,
    max_opset: i64,
    /// Operator -> (supported, supported types as the table spells them: FP32, INT64, ...).
    ops: HashMap<String, (bool, Vec<String>)>,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn table(name: &'static str, file: &str) -> Table {
    let path = crate::third_party_tensorrt().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; the parser tables come with ../shared",
            path.display()
        )
    });
    // "supports operators up to Opset 17" (8.6) or "in the inclusive range of opset 9 to opset
    // 20" (10.x): the last number of the first line that speaks of opsets.
    let max_opset = text
        .lines()
        .find(|l| l.to_lowercase().contains("opset") && l.contains("supports"))
        .and_then(|l| {
            l.to_lowercase()
                .split("opset")
                .filter_map(|s| {
                    s.trim()
                        .split(|c: char| !c.is_ascii_digit())
                        .next()
                        .and_then(|n| n.parse::<i64>().ok())
                })
                .last()
        })
        .unwrap_or_else(|| panic!("{}: no opset range found", path.display()));
    let mut ops = HashMap::new();
    for line in text.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "", operator, Y/N, types, restrictions...
        if cells.len() < 3 || !matches!(cells[2], "Y" | "N") {
            continue;
        }
        let types = cells
            .get(3)
            .map(|t| t.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default();
        ops.insert(cells[1].to_owned(), (cells[2] == "Y", types));
    }
    assert!(
        ops.len() > 100 && ops.contains_key("Conv"),
        "{}: the operator table did not parse ({} rows)",
        path.display(),
        ops.len()
    );
    Table {
        name,
        max_opset,
        ops,
    }
}

/// ONNX element type -> the tables' spelling.
fn type_name(elem_type: i64) -> String {
    use pb::tensor_proto::DataType as D;
    match D::try_from(elem_type as i32) {
        Ok(D::Float) => "FP32".into(),
        Ok(D::Float16) => "FP16".into(),
        Ok(D::Bfloat16) => "BF16".into(),
        Ok(D::Int8) => "INT8".into(),
        Ok(D::Uint8) => "UINT8".into(),
        Ok(D::Int32) => "INT32".into(),
        Ok(D::Int64) => "INT64".into(),
        Ok(D::Bool) => "BOOL".into(),
        Ok(D::Double) => "DOUBLE".into(),
        _ => format!("ONNX type {elem_type}"),
    }
}

/// What `table`'s TensorRT would refuse in the model at `onnx`, one line per node.
fn problems(onnx: &Path, table: &Table) -> Vec<String> {
    let model = tract_onnx::onnx()
        .proto_model_for_path(onnx)
        .unwrap_or_else(|e| panic!("{}: {e}", onnx.display()));
    let mut out = Vec::new();
    for opset in &model.opset_import {
        if opset.domain.is_empty() && opset.version > table.max_opset {
            out.push(format!(
                "opset {} (the parser reads up to {})",
                opset.version, table.max_opset
            ));
        }
    }
    let graph = model.graph.as_ref().expect("a graph");
    for node in &graph.node {
        match table.ops.get(&node.op_type) {
            None => out.push(format!(
                "{} ({}): not in the table",
                node.op_type, node.name
            )),
            Some((false, _)) => out.push(format!("{} ({}): unsupported", node.op_type, node.name)),
            Some((true, types)) if node.op_type == "Cast" => {
                let to = node
                    .attribute
                    .iter()
                    .find(|a| a.name == "to")
                    .map(|a| type_name(a.i))
                    .unwrap_or_else(|| "no `to`".into());
                if !types.contains(&to) {
                    out.push(format!("Cast to {to} ({})", node.name));
                }
            }
            Some(_) => {}
        }
    }
    out
}

#[test]
fn every_shipped_package_against_the_parser_tables_of_each_jetpack() {
    let tables = [
        table("TensorRT 8.5/8.6", "onnx-tensorrt-operators-8.6-GA.md"),
        table("TensorRT 10.x", "onnx-tensorrt-operators-10.1-GA.md"),
    ];
    assert_eq!((tables[0].max_opset, tables[1].max_opset), (17, 20));
    // Known gaps, each stated with what would close it. A fixed package must leave this list,
    // so the test fails when the list is stale as well as when a new gap appears.
    let known: &[(&str, &str, usize, &str)] = &[(
        "ped2-bdfi",
        "TensorRT 8.5/8.6",
        8,
        "Cast to INT64", // the bilinear sampler's gather indices; re-export with INT32 indices
    )];
    let mut report = Vec::new();
    let mut packages: Vec<PathBuf> = std::fs::read_dir(repo().join("engine/models"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    packages.sort();
    assert_eq!(packages.len(), 5, "expected the five shipped packages");
    for pkg in &packages {
        let name = pkg.file_name().unwrap().to_string_lossy().into_owned();
        for t in &tables {
            let found = problems(&pkg.join("model.onnx"), t);
            match known.iter().find(|k| k.0 == name && k.1 == t.name) {
                Some((_, _, n, what)) => {
                    assert!(
                        found.len() == *n && found.iter().all(|p| p.starts_with(what)),
                        "{name} on {}: expected exactly {n} x `{what}`, found {found:#?} (if the \
                         package was fixed, remove it from `known`)",
                        t.name
                    );
                    report.push(format!("{name} on {}: {n} x {what} (known)", t.name));
                }
                None => {
                    assert!(found.is_empty(), "{name} on {}: {found:#?}", t.name);
                    report.push(format!("{name} on {}: ok", t.name));
                }
            }
        }
    }
    println!("{}", report.join("\n"));
}

#[test]
fn a_cast_to_int64_is_caught_on_8x_and_accepted_on_10x() {
    // A one-node model, so the check is seen to fail on something.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cast.onnx");
    let node = pb::NodeProto {
        op_type: "Cast".into(),
        name: "c".into(),
        input: vec!["x".into()],
        output: vec!["y".into()],
        attribute: vec![pb::AttributeProto {
            name: "to".into(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i: pb::tensor_proto::DataType::Int64 as i64,
            ..Default::default()
        }],
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(pb::GraphProto {
            node: vec![node],
            ..Default::default()
        }),
        ..Default::default()
    };
    use prost::Message;
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    let old = table("8.6", "onnx-tensorrt-operators-8.6-GA.md");
    let new = table("10.x", "onnx-tensorrt-operators-10.1-GA.md");
    assert_eq!(problems(&path, &old), vec!["Cast to INT64 (c)".to_owned()]);
    assert!(problems(&path, &new).is_empty());
}
