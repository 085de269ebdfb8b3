//! Reading an ONNX file's interface (names, shapes, opset) without building the network, so a
//! model package can be validated against its manifest with a precise message.

use super::TensorSpec;
use std::path::Path;
use tract_onnx::pb;
use tract_onnx::prelude::Framework;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxInterface {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Version of the default ("ai.onnx") operator set.
    pub opset: Option<i64>,
}

/// Parses the protobuf of `path`. Dimensions that are symbolic (dynamic) are reported as 0,
/// which never matches a manifest shape: Vigil's packages use static shapes (TensorRT engines
/// and preallocated buffers depend on it).
pub fn read_interface(path: &Path) -> Result<OnnxInterface, String> {
    let proto = tract_onnx::onnx()
        .proto_model_for_path(path)
        .map_err(|e| format!("not a readable ONNX model ({e})"))?;
    let graph = proto.graph.as_ref().ok_or("the ONNX file has no graph")?;
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let spec = |v: &pb::ValueInfoProto| TensorSpec {
        name: v.name.clone(),
        shape: shape_of(v),
    };
    Ok(OnnxInterface {
        inputs: graph
            .input
            .iter()
            .filter(|v| !initializers.contains(v.name.as_str()))
            .map(spec)
            .collect(),
        outputs: graph.output.iter().map(spec).collect(),
        opset: proto
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version),
    })
}

/// One operator of an ONNX graph, as much of it as a deployment target's operator table needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxNode {
    pub op_type: String,
    pub name: String,
    /// For `Cast`: the target element type, as ONNX numbers it (`TensorProto.DataType`).
    pub cast_to: Option<i32>,
}

/// The default-domain opset and every node of `path`'s main graph, in file order.
pub fn read_nodes(path: &Path) -> Result<(Option<i64>, Vec<OnnxNode>), String> {
    let proto = tract_onnx::onnx()
        .proto_model_for_path(path)
        .map_err(|e| format!("not a readable ONNX model ({e})"))?;
    let graph = proto.graph.as_ref().ok_or("the ONNX file has no graph")?;
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version);
    let nodes = graph
        .node
        .iter()
        .map(|n| OnnxNode {
            op_type: n.op_type.clone(),
            name: n.name.clone(),
            cast_to: (n.op_type == "Cast")
                .then(|| n.attribute.iter().find(|a| a.name == "to"))
                .flatten()
                .map(|a| a.i as i32),
        })
        .collect();
    Ok((opset, nodes))
}

fn shape_of(v: &pb::ValueInfoProto) -> Vec<usize> {
    use pb::tensor_shape_proto::dimension::Value;
    use pb::type_proto::Value as T;
    match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(T::TensorType(t)) => t
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(Value::DimValue(n)) if n > 0 => n as usize,
                        _ => 0,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        None => Vec::new(),
    }
}
