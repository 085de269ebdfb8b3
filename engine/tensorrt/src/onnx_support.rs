//! Will this TensorRT's ONNX parser take this graph? Checked against the parser's published
//! operator tables (embedded from `onnx-support/`): the opset, every operator, and the target
//! type of every `Cast` (TensorRT 8.x has no INT64 tensors). The 8.6 table stands for JetPack
//! 5.1's TensorRT 8.5 as well (no 8.5 table is published; the 8.x parsers share the INT64
//! limitation), the 10.1 table for every 10.x. The tables' free-text restrictions (pooling
//! dimensions, inputs that must be constant) are not checked: the engine build on the box is
//! the final word, and this check exists to say what will fail before minutes of building.

use std::collections::HashMap;
use std::path::Path;
use vigil_engine::backend::onnx::{read_nodes, OnnxNode};

use crate::TrtVersion;

/// The parser table that applies to a TensorRT release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParserTable {
    /// TensorRT 8.5 (JetPack 5.1) and 8.6 (JetPack 6.0).
    Trt8,
    /// TensorRT 10.x (JetPack 6.1, 6.2).
    Trt10,
}

impl ParserTable {
    pub const ALL: [ParserTable; 2] = [ParserTable::Trt8, ParserTable::Trt10];

    /// The table for a TensorRT version; `None` outside 8.5-10.x, which the shim refuses too.
    pub fn for_version(v: TrtVersion) -> Option<Self> {
        match (v.major, v.minor) {
            (8, 5..) => Some(Self::Trt8),
            (10, _) => Some(Self::Trt10),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Trt8 => "TensorRT 8.5/8.6 (JetPack 5.1, 6.0)",
            Self::Trt10 => "TensorRT 10.x (JetPack 6.1, 6.2)",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Self::Trt8 => include_str!("../onnx-support/onnx-tensorrt-operators-8.6-GA.md"),
            Self::Trt10 => include_str!("../onnx-support/onnx-tensorrt-operators-10.1-GA.md"),
        }
    }

    /// The parsed table.
    pub fn table(self) -> OperatorTable {
        OperatorTable::parse(self.text())
    }
}

/// One parser table: the highest opset it reads and, per operator, whether it is supported and
/// for which types (as the table spells them: FP32, INT64, ...).
#[derive(Debug, Clone)]
pub struct OperatorTable {
    pub max_opset: Option<i64>,
    pub ops: HashMap<String, (bool, Vec<String>)>,
}

impl OperatorTable {
    /// Reads the markdown table. Rows that are not `| Op | Y/N | types | ... |` are skipped;
    /// the opset bound is the last number of the first line that says what the parser
    /// "supports" in terms of opsets ("up to Opset 17", "opset 9 to opset 20").
    pub fn parse(text: &str) -> Self {
        let max_opset = text
            .lines()
            .find(|l| l.to_lowercase().contains("opset") && l.contains("supports"))
            .and_then(|l| {
                l.to_lowercase()
                    .split("opset")
                    .skip(1)
                    .filter_map(|s| {
                        s.trim()
                            .split(|c: char| !c.is_ascii_digit())
                            .next()
                            .and_then(|n| n.parse::<i64>().ok())
                    })
                    .last()
            });
        let mut ops = HashMap::new();
        for line in text.lines().filter(|l| l.starts_with('|')) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() < 3 || !matches!(cells[2], "Y" | "N") {
                continue;
            }
            let types = cells
                .get(3)
                .map(|t| t.split(',').map(|s| s.trim().to_owned()).collect())
                .unwrap_or_default();
            ops.insert(cells[1].to_owned(), (cells[2] == "Y", types));
        }
        Self { max_opset, ops }
    }

    /// What this parser would refuse, one line per problem (empty: nothing known).
    pub fn refusals(&self, opset: Option<i64>, nodes: &[OnnxNode]) -> Vec<String> {
        let mut out = Vec::new();
        if let (Some(v), Some(max)) = (opset, self.max_opset) {
            if v > max {
                out.push(format!("opset {v} (the parser reads up to {max})"));
            }
        }
        for n in nodes {
            match self.ops.get(&n.op_type) {
                None => out.push(format!("{} ({}): not in the table", n.op_type, n.name)),
                Some((false, _)) => out.push(format!("{} ({}): unsupported", n.op_type, n.name)),
                Some((true, types)) => {
                    if let Some(to) = n.cast_to {
                        let to = onnx_type_name(to);
                        if !types.contains(&to) {
                            out.push(format!("Cast to {to} ({})", n.name));
                        }
                    }
                }
            }
        }
        out
    }

    /// [`Self::refusals`] of an ONNX file.
    pub fn check_file(&self, onnx: &Path) -> Result<Vec<String>, String> {
        let (opset, nodes) = read_nodes(onnx)?;
        Ok(self.refusals(opset, &nodes))
    }
}

/// An ONNX element type (`TensorProto.DataType`) as the tables spell it.
fn onnx_type_name(t: i32) -> String {
    match t {
        1 => "FP32".into(),
        2 => "UINT8".into(),
        3 => "INT8".into(),
        6 => "INT32".into(),
        7 => "INT64".into(),
        9 => "BOOL".into(),
        10 => "FP16".into(),
        11 => "DOUBLE".into(),
        16 => "BF16".into(),
        other => format!("ONNX type {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_tables_parse() {
        let t8 = ParserTable::Trt8.table();
        let t10 = ParserTable::Trt10.table();
        assert_eq!((t8.max_opset, t10.max_opset), (Some(17), Some(20)));
        assert!(t8.ops.len() > 100 && t10.ops.len() > 100);
        assert!(!t8.ops["Cast"].1.contains(&"INT64".to_owned()));
        assert!(t10.ops["Cast"].1.contains(&"INT64".to_owned()));
    }

    #[test]
    fn versions_map_to_tables() {
        let v = TrtVersion::new;
        assert_eq!(
            ParserTable::for_version(v(8, 5, 2)),
            Some(ParserTable::Trt8)
        );
        assert_eq!(
            ParserTable::for_version(v(8, 6, 2)),
            Some(ParserTable::Trt8)
        );
        assert_eq!(
            ParserTable::for_version(v(10, 3, 0)),
            Some(ParserTable::Trt10)
        );
        assert_eq!(ParserTable::for_version(v(8, 4, 0)), None);
        assert_eq!(ParserTable::for_version(v(11, 0, 0)), None);
    }
}
