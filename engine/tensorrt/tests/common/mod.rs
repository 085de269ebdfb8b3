//! Helpers shared by the integration tests: tiny ONNX files and a runtime on the test double.

#![allow(dead_code)]

use prost::Message;
use std::path::{Path, PathBuf};
use tract_onnx::pb;
use vigil_tensorrt::TrtRuntime;

fn value_info(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|&d| Dimension {
            value: Some(if d > 0 {
                Value::DimValue(d)
            } else {
                Value::DimParam("N".to_owned())
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Writes an ONNX model with the given interface (dims <= 0 are symbolic) whose graph is one
/// Identity per output. `variant` goes into the model's doc string, so two calls that differ
/// only in it produce different bytes (a "retrained" model) with the same interface.
pub fn write_onnx(
    path: &Path,
    inputs: &[(&str, &[i64])],
    outputs: &[(&str, &[i64])],
    variant: &str,
) -> PathBuf {
    let nodes = outputs
        .iter()
        .map(|(name, _)| pb::NodeProto {
            input: vec![inputs[0].0.to_owned()],
            output: vec![(*name).to_owned()],
            op_type: "Identity".to_owned(),
            ..Default::default()
        })
        .collect();
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        doc_string: variant.to_owned(),
        graph: Some(pb::GraphProto {
            name: "vigil-test".to_owned(),
            node: nodes,
            input: inputs.iter().map(|(n, d)| value_info(n, d)).collect(),
            output: outputs.iter().map(|(n, d)| value_info(n, d)).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    std::fs::write(path, model.encode_to_vec()).expect("write onnx");
    path.to_owned()
}

/// A two-input, two-output model like the recipes' (frames in, reconstruction + error map out).
pub fn demo_onnx(dir: &Path, variant: &str) -> PathBuf {
    write_onnx(
        &dir.join(format!("model-{variant}.onnx")),
        &[("frames", &[1, 2, 4, 4]), ("flow", &[1, 2, 4, 4])],
        &[("recon", &[1, 2, 4, 4]), ("error", &[1, 1, 4, 4])],
        variant,
    )
}

pub fn runtime() -> TrtRuntime {
    TrtRuntime::new(0).expect("test double runtime")
}
