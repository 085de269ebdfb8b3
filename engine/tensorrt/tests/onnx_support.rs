//! Every shipped package's ONNX graph against the ONNX parser's operator-support tables
//! (`vigil_tensorrt::onnx_support`, embedded copies of `../shared/third_party/tensorrt/
//! onnx-tensorrt-operators-*.md`): the opset, each operator, and the target type of each
//! `Cast`. What the check cannot see is in the module's docs; an engine build on a device is the
//! final word.

use std::path::{Path, PathBuf};
use tract_onnx::pb;
use vigil_tensorrt::onnx_support::{OperatorTable, ParserTable};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_embedded_tables_are_the_published_ones() {
    for file in [
        "onnx-tensorrt-operators-8.6-GA.md",
        "onnx-tensorrt-operators-10.1-GA.md",
    ] {
        let original = crate::third_party_tensorrt().join(file);
        let copy = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("onnx-support")
            .join(file);
        let read = |p: &Path| {
            std::fs::read(p).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; the parser tables come with ../shared",
                    p.display()
                )
            })
        };
        assert!(
            read(&original) == read(&copy),
            "{} differs from {}: copy the published table again",
            copy.display(),
            original.display()
        );
    }
}

fn problems(onnx: &Path, table: &OperatorTable) -> Vec<String> {
    table
        .check_file(onnx)
        .unwrap_or_else(|e| panic!("{}: {e}", onnx.display()))
}

#[test]
fn every_shipped_package_against_the_parser_tables_of_each_jetpack() {
    let tables = ParserTable::ALL.map(|t| (t.label(), t.table()));
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
        for (label, t) in &tables {
            let found = problems(&pkg.join("model.onnx"), t);
            assert!(
                found.is_empty(),
                "{name} on {label}: {found:#?} (an engine cannot be built from it there)"
            );
            report.push(format!("{name} on {label}: ok"));
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
    assert_eq!(
        problems(&path, &ParserTable::Trt8.table()),
        vec!["Cast to INT64 (c)".to_owned()]
    );
    assert!(problems(&path, &ParserTable::Trt10.table()).is_empty());
}
