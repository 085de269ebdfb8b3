//! A user-supplied object detector: an ONNX file in the model package (`[detector]`) whose
//! boxes join the motion extractor's. HF2-VAD's official pipeline boxes objects with a COCO
//! detector and adds motion boxes for what the detector missed; this is that detector stage.
//!
//! Vigil reads the two output layouts that YOLO exports use (no NMS in the graph): Ultralytics
//! YOLOv8/YOLO11 (`[1, 4 + classes, anchors]`) and YOLOv5/v7 (`[1, anchors, 5 + classes]`).
//! The network sees frame t as the object recipe sees it (model resolution, the frame the cubes
//! are cropped from), letterboxed to its input the way Ultralytics letterboxes (scale to fit,
//! centred, grey 114 padding), so its boxes land in the same pixels as the motion boxes.
//! Decoding, the confidence threshold and class-agnostic greedy NMS are done here, without
//! allocating per frame.

use super::cube::resize_box_into;
use super::{BoundingBox, ObjectError};
use crate::backend::onnx::OnnxInterface;
use crate::backend::tract::TractBackend;
use crate::backend::{Backend, TensorSpec};
use crate::preprocess::InputGeometry;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How the detector's single output is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectorLayout {
    /// Ultralytics YOLOv8 / YOLO11 export: `[1, 4 + classes, anchors]`; rows are box centre x,
    /// centre y, width, height in input pixels, then one confidence per class.
    Yolov8,
    /// YOLOv5 / YOLOv7 export: `[1, anchors, 5 + classes]`; centre x, centre y, width, height,
    /// objectness, then class probabilities; a class's confidence is objectness x probability.
    Yolov5,
}

impl DetectorLayout {
    /// Box and score rows before the class rows.
    fn head(self) -> usize {
        match self {
            DetectorLayout::Yolov8 => 4,
            DetectorLayout::Yolov5 => 5,
        }
    }
}

/// `[detector]` of a model package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorSpec {
    /// ONNX file, relative to the package directory.
    pub file: String,
    /// Its SHA-256, checked on load like `[onnx]`'s.
    pub sha256: String,
    pub layout: DetectorLayout,
    /// Class indices kept (COCO person = 0).
    #[serde(default = "default_classes")]
    pub classes: Vec<u32>,
    /// Smallest confidence kept.
    #[serde(default = "default_score")]
    pub score_threshold: f32,
    /// A box is suppressed when its IoU with a kept, more confident box exceeds this.
    #[serde(default = "default_nms")]
    pub nms_iou: f32,
    /// A motion box is dropped when this fraction of it lies inside a detection (it is the same
    /// object); HF2-VAD keeps only the motion boxes the detector did not cover.
    #[serde(default = "default_cover")]
    pub cover: f32,
}

fn default_classes() -> Vec<u32> {
    vec![0]
}
fn default_score() -> f32 {
    0.5
}
fn default_nms() -> f32 {
    0.45
}
fn default_cover() -> f32 {
    0.6
}

/// The detector's input and output as its ONNX file declares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectorShape {
    pub input: TensorSpec,
    pub output: TensorSpec,
    pub classes: usize,
    pub anchors: usize,
}

fn param(key: &'static str, reason: String) -> ObjectError {
    ObjectError::Param { key, reason }
}

impl DetectorSpec {
    /// Checks the thresholds, and that `iface` (the ONNX file's interface) is a detector of this
    /// layout: one static `[1, 3, H, W]` input, one output of the layout's shape that has every
    /// listed class.
    pub fn check(&self, iface: &OnnxInterface) -> Result<DetectorShape, ObjectError> {
        for (key, v) in [
            ("score_threshold", self.score_threshold),
            ("nms_iou", self.nms_iou),
            ("cover", self.cover),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(param(key, format!("{v} must be in (0, 1]")));
            }
        }
        if self.classes.is_empty() {
            return Err(param(
                "classes",
                "lists no class; e.g. [0] for COCO's person".into(),
            ));
        }
        let single = |specs: &'_ [TensorSpec], what: &str| match specs {
            [one] => Ok(one.clone()),
            _ => Err(param(
                "file",
                format!("a detector has {what}, this network has {}", specs.len()),
            )),
        };
        let input = single(&iface.inputs, "one image input")?;
        let output = single(&iface.outputs, "one output (export without NMS)")?;
        let s = &input.shape;
        if s.len() != 4 || s[0] != 1 || s[1] != 3 || s[2] < 8 || s[3] < 8 {
            return Err(param(
                "file",
                format!(
                    "input `{}` is {s:?}; a detector takes one static [1, 3, H, W] RGB image (dynamic dimensions show as 0: export with a fixed image size)",
                    input.name
                ),
            ));
        }
        let o = &output.shape;
        let head = self.layout.head();
        let (rows, anchors) = match (self.layout, o.as_slice()) {
            (DetectorLayout::Yolov8, [1, rows, anchors]) => (*rows, *anchors),
            (DetectorLayout::Yolov5, [1, anchors, rows]) => (*rows, *anchors),
            _ => (0, 0),
        };
        if rows <= head || anchors == 0 {
            let want = match self.layout {
                DetectorLayout::Yolov8 => "[1, 4 + classes, anchors]",
                DetectorLayout::Yolov5 => "[1, anchors, 5 + classes]",
            };
            return Err(param(
                "layout",
                format!(
                    "output `{}` is {o:?}, but layout {:?} means {want}; check the layout (yolov8 for Ultralytics YOLOv8/YOLO11 exports, yolov5 for YOLOv5/v7)",
                    output.name, self.layout
                ),
            ));
        }
        // Shape alone cannot tell [1, 84, 8400] read the wrong way round from a model with 8400
        // classes, but every YOLO head predicts at least once per 32x32 cell of its input.
        let coarsest = s[2].div_ceil(32) * s[3].div_ceil(32);
        if anchors < coarsest {
            return Err(param(
                "layout",
                format!(
                    "output `{}` is {o:?}: read as layout {:?} that is {anchors} predictions, fewer than one per 32x32 cell of the {}x{} input ({coarsest}); the layout is probably the other one (yolov8 for Ultralytics YOLOv8/YOLO11 exports, yolov5 for YOLOv5/v7)",
                    output.name, self.layout, s[3], s[2]
                ),
            ));
        }
        let classes = rows - head;
        if let Some(c) = self.classes.iter().find(|&&c| c as usize >= classes) {
            return Err(param(
                "classes",
                format!("class {c} is not among the detector's {classes} classes"),
            ));
        }
        Ok(DetectorShape {
            input,
            output,
            classes,
            anchors,
        })
    }
}

/// Where a `width x height` frame lands in a detector input (Ultralytics' letterbox): scaled by
/// `scale` to fit, `new_width x new_height`, offset by `left`, `top`; the rest is padding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub scale: f32,
    pub new_width: usize,
    pub new_height: usize,
    pub left: usize,
    pub top: usize,
}

impl Letterbox {
    pub fn new(width: usize, height: usize, in_width: usize, in_height: usize) -> Self {
        let scale = (in_width as f32 / width as f32).min(in_height as f32 / height as f32);
        let fit = |n: usize, max: usize| ((n as f32 * scale).round() as usize).clamp(1, max);
        let (new_width, new_height) = (fit(width, in_width), fit(height, in_height));
        Self {
            scale,
            new_width,
            new_height,
            left: (in_width - new_width) / 2,
            top: (in_height - new_height) / 2,
        }
    }

    /// A point of the detector input in frame pixels.
    pub fn to_frame(&self, x: f32, y: f32) -> (f32, f32) {
        (
            (x - self.left as f32) / self.scale,
            (y - self.top as f32) / self.scale,
        )
    }
}

/// One detection in frame pixels (float, clipped to the frame), and its confidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
    pub score: f32,
}

impl Detection {
    fn iou(&self, o: &Detection) -> f32 {
        let w = (self.x1.min(o.x1) - self.x0.max(o.x0)).max(0.0);
        let h = (self.y1.min(o.y1) - self.y0.max(o.y0)).max(0.0);
        let i = w * h;
        let area = |d: &Detection| (d.x1 - d.x0) * (d.y1 - d.y0);
        let union = area(self) + area(o) - i;
        if union > 0.0 {
            i / union
        } else {
            0.0
        }
    }

    /// The smallest whole-pixel box holding the detection, or `None` when it is empty.
    pub fn bbox(&self) -> Option<BoundingBox> {
        let b = BoundingBox {
            x0: self.x0.floor().max(0.0) as u32,
            y0: self.y0.floor().max(0.0) as u32,
            x1: self.x1.ceil().max(0.0) as u32,
            y1: self.y1.ceil().max(0.0) as u32,
        };
        (b.x0 < b.x1 && b.y0 < b.y1).then_some(b)
    }
}

/// Every anchor of `out` (a detector output of `layout`) whose best listed class reaches
/// `threshold`, as a detection in input pixels, appended to `found`. Anchors with a
/// non-finite value are skipped: a broken network yields no boxes, not garbage ones.
pub fn decode(
    layout: DetectorLayout,
    out: &[f32],
    anchors: usize,
    classes: &[u32],
    threshold: f32,
    found: &mut Vec<Detection>,
) {
    let rows = out.len() / anchors.max(1);
    let at = |row: usize, a: usize| match layout {
        DetectorLayout::Yolov8 => out[row * anchors + a],
        DetectorLayout::Yolov5 => out[a * rows + row],
    };
    let head = layout.head();
    for a in 0..anchors {
        let objectness = match layout {
            DetectorLayout::Yolov8 => 1.0,
            DetectorLayout::Yolov5 => at(4, a),
        };
        let score = classes
            .iter()
            .map(|&c| objectness * at(head + c as usize, a))
            .fold(f32::NAN, f32::max);
        // NaN (a broken network) compares false and is skipped.
        if score.is_nan() || score < threshold {
            continue;
        }
        let (cx, cy, w, h) = (at(0, a), at(1, a), at(2, a), at(3, a));
        if !(cx.is_finite() && cy.is_finite() && w.is_finite() && h.is_finite()) {
            continue;
        }
        found.push(Detection {
            x0: cx - w / 2.0,
            y0: cy - h / 2.0,
            x1: cx + w / 2.0,
            y1: cy + h / 2.0,
            score,
        });
    }
}

/// Class-agnostic greedy NMS: `candidates` sorted by confidence (in place), then each kept
/// unless it overlaps a kept one by more than `iou`; at most `max` kept, into `kept`.
pub fn nms(candidates: &mut [Detection], iou: f32, max: usize, kept: &mut Vec<Detection>) {
    candidates.sort_unstable_by(|a, b| b.score.total_cmp(&a.score));
    kept.clear();
    for c in candidates.iter() {
        if kept.len() == max {
            break;
        }
        if kept.iter().all(|k| k.iou(c) <= iou) {
            kept.push(*c);
        }
    }
}

/// The detector stage: letterboxes frame t into the network's input, runs it (tract, on the
/// CPU) and returns the NMS-filtered detections in frame pixels. Every buffer is sized at
/// load, so [`Detector::detect`] does not allocate (the network run is tract's).
pub struct Detector {
    spec: DetectorSpec,
    shape: DetectorShape,
    backend: TractBackend,
    input: [Tensor; 1],
    output: [Tensor; 1],
    letterbox: Letterbox,
    geo: InputGeometry,
    max: usize,
    min_area: u32,
    resized: Vec<f32>,
    candidates: Vec<Detection>,
    kept: Vec<Detection>,
}

impl Detector {
    /// Loads `dir/spec.file` for frames of `geo` (the model's input); keeps at most `max`
    /// detections of at least `min_area` pixels.
    pub fn load(
        spec: &DetectorSpec,
        dir: &Path,
        geo: &InputGeometry,
        max: usize,
        min_area: u32,
    ) -> Result<Self, ObjectError> {
        let path = dir.join(&spec.file);
        let fail = |reason: String| ObjectError::Detector {
            path: path.display().to_string(),
            reason,
        };
        let iface = crate::backend::onnx::read_interface(&path).map_err(fail)?;
        let shape = spec.check(&iface)?;
        let backend = TractBackend::load(
            &path,
            std::slice::from_ref(&shape.input),
            std::slice::from_ref(&shape.output),
        )
        .map_err(|e| fail(e.to_string()))?;
        let (in_h, in_w) = (shape.input.shape[2], shape.input.shape[3]);
        let letterbox = Letterbox::new(geo.width as usize, geo.height as usize, in_w, in_h);
        Ok(Self {
            input: [Tensor::zeros(&shape.input.shape)],
            output: [Tensor::zeros(&shape.output.shape)],
            resized: vec![0.0; geo.channels as usize * letterbox.new_width * letterbox.new_height],
            candidates: Vec::with_capacity(shape.anchors),
            kept: Vec::with_capacity(max),
            spec: spec.clone(),
            shape,
            backend,
            letterbox,
            geo: *geo,
            max,
            min_area,
        })
    }

    pub fn spec(&self) -> &DetectorSpec {
        &self.spec
    }

    pub fn letterbox(&self) -> Letterbox {
        self.letterbox
    }

    /// The network input of the last call (`[1, 3, H, W]`, RGB in [0, 1]).
    pub fn input(&self) -> &Tensor {
        &self.input[0]
    }

    /// Detections in `frame` (one model-input frame, channel-planar, in the model's pixel
    /// range), most confident first.
    pub fn detect(&mut self, frame: &[f32]) -> Result<&[Detection], ObjectError> {
        let g = self.geo;
        let (w, h, c) = (g.width as usize, g.height as usize, g.channels as usize);
        if frame.len() != g.plane_len() {
            return Err(ObjectError::InputLen {
                got: frame.len(),
                expected: w * h * c,
                width: w,
                height: h,
            });
        }
        let lb = self.letterbox;
        let whole = BoundingBox {
            x0: 0,
            y0: 0,
            x1: w as u32,
            y1: h as u32,
        };
        resize_box_into(
            frame,
            w,
            h,
            whole,
            lb.new_width,
            lb.new_height,
            &mut self.resized,
        );
        let (in_h, in_w) = (self.shape.input.shape[2], self.shape.input.shape[3]);
        let [lo, hi] = g.pixel_range;
        let input = self.input[0].data_mut();
        input.fill(114.0 / 255.0);
        let plane = lb.new_width * lb.new_height;
        for (ch, dst) in input.chunks_exact_mut(in_w * in_h).enumerate() {
            // A gray model frame feeds all three channels.
            let src = &self.resized[(ch % c) * plane..(ch % c + 1) * plane];
            for (y, row) in src.chunks_exact(lb.new_width).enumerate() {
                let at = (lb.top + y) * in_w + lb.left;
                for (d, v) in dst[at..at + lb.new_width].iter_mut().zip(row) {
                    *d = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
                }
            }
        }
        self.backend
            .run(&self.input, &mut self.output)
            .map_err(|e| ObjectError::Detector {
                path: self.spec.file.clone(),
                reason: e.to_string(),
            })?;
        self.candidates.clear();
        decode(
            self.spec.layout,
            self.output[0].data(),
            self.shape.anchors,
            &self.spec.classes,
            self.spec.score_threshold,
            &mut self.candidates,
        );
        nms(
            &mut self.candidates,
            self.spec.nms_iou,
            self.max,
            &mut self.kept,
        );
        let (fw, fh) = (w as f32, h as f32);
        let min_area = self.min_area;
        self.kept.retain_mut(|d| {
            let (x0, y0) = lb.to_frame(d.x0, d.y0);
            let (x1, y1) = lb.to_frame(d.x1, d.y1);
            *d = Detection {
                x0: x0.clamp(0.0, fw),
                y0: y0.clamp(0.0, fh),
                x1: x1.clamp(0.0, fw),
                y1: y1.clamp(0.0, fh),
                score: d.score,
            };
            d.bbox().is_some_and(|b| b.area() >= min_area)
        });
        Ok(&self.kept)
    }
}

/// HF2-VAD's union of the two box sources: every detection, then the motion boxes no detection
/// covers (at least `cover` of the motion box inside it), at most `slots` in all.
pub fn merge_boxes(
    detections: &[Detection],
    motion: &[BoundingBox],
    cover: f32,
    slots: usize,
    out: &mut Vec<BoundingBox>,
) {
    out.clear();
    out.extend(detections.iter().filter_map(Detection::bbox).take(slots));
    let from_detector = out.len();
    for m in motion {
        if out.len() == slots {
            break;
        }
        let covered = out[..from_detector]
            .iter()
            .any(|d| d.intersection(m) as f32 >= cover * m.area() as f32);
        if !covered {
            out.push(*m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x0: f32, y0: f32, x1: f32, y1: f32, score: f32) -> Detection {
        Detection {
            x0,
            y0,
            x1,
            y1,
            score,
        }
    }

    #[test]
    fn letterbox_matches_ultralytics_for_ped2_into_160() {
        let lb = Letterbox::new(192, 128, 160, 160);
        assert!((lb.scale - 160.0 / 192.0).abs() < 1e-6);
        assert_eq!((lb.new_width, lb.new_height), (160, 107));
        assert_eq!((lb.left, lb.top), (0, 26));
        let (x, y) = lb.to_frame(80.0, 26.0 + 53.5);
        assert!(
            (x - 96.0).abs() < 1e-4 && (y - 64.2).abs() < 1e-3,
            "{x} {y}"
        );
        // Same size: identity.
        let id = Letterbox::new(64, 48, 64, 48);
        assert_eq!((id.scale, id.left, id.top), (1.0, 0, 0));
    }

    #[test]
    fn yolov8_decode_keeps_listed_classes_above_threshold() {
        // 3 anchors, 2 classes: rows cx, cy, w, h, class0, class1.
        let out = [
            10.0,
            20.0,
            30.0, // cx
            10.0,
            20.0,
            30.0, // cy
            4.0,
            4.0,
            4.0, // w
            2.0,
            2.0,
            2.0, // h
            0.9,
            0.2,
            f32::NAN, // class 0
            0.1,
            0.8,
            0.9, // class 1
        ];
        let mut found = Vec::new();
        decode(DetectorLayout::Yolov8, &out, 3, &[0], 0.5, &mut found);
        assert_eq!(found, vec![det(8.0, 9.0, 12.0, 11.0, 0.9)]);
        found.clear();
        decode(DetectorLayout::Yolov8, &out, 3, &[0, 1], 0.5, &mut found);
        assert_eq!(found.len(), 3);
        assert_eq!(found[1].score, 0.8);
        // anchor 2: class 0 is NaN, class 1 still counts
        assert_eq!(found[2].score, 0.9);
    }

    #[test]
    fn yolov5_decode_multiplies_objectness() {
        // 2 anchors x (5 + 1 class).
        let out = [
            50.0, 50.0, 10.0, 20.0, 0.9, 0.8, // 0.72
            5.0, 5.0, 2.0, 2.0, 0.4, 1.0, // 0.40
        ];
        let mut found = Vec::new();
        decode(DetectorLayout::Yolov5, &out, 2, &[0], 0.5, &mut found);
        assert_eq!(found.len(), 1);
        assert!((found[0].score - 0.72).abs() < 1e-6);
        assert_eq!((found[0].x0, found[0].y1), (45.0, 60.0));
    }

    #[test]
    fn nms_keeps_the_most_confident_of_overlapping_boxes() {
        let mut c = vec![
            det(0.0, 0.0, 10.0, 10.0, 0.6),
            det(1.0, 1.0, 11.0, 11.0, 0.9), // IoU with the first 0.68
            det(20.0, 0.0, 30.0, 10.0, 0.7),
            det(5.0, 0.0, 15.0, 10.0, 0.8), // IoU 0.33 with the 0.9 one
        ];
        let mut kept = Vec::new();
        nms(&mut c, 0.45, 10, &mut kept);
        let scores: Vec<f32> = kept.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.9, 0.8, 0.7]);
        nms(&mut c, 0.2, 10, &mut kept);
        assert_eq!(kept.len(), 2);
        nms(&mut c, 0.45, 1, &mut kept);
        assert_eq!(kept.len(), 1);
    }

    #[test]
    fn merge_adds_only_uncovered_motion_boxes_up_to_the_slots() {
        let b = |x0, y0, x1, y1| BoundingBox { x0, y0, x1, y1 };
        let dets = [det(10.2, 10.0, 19.5, 30.0, 0.9)];
        let motion = [b(11, 12, 19, 28), b(40, 40, 50, 60), b(18, 10, 30, 30)];
        let mut out = Vec::new();
        merge_boxes(&dets, &motion, 0.6, 16, &mut out);
        // the first motion box lies inside the detection; the third only 2/12 of it
        assert_eq!(
            out,
            vec![b(10, 10, 20, 30), b(40, 40, 50, 60), b(18, 10, 30, 30)]
        );
        merge_boxes(&dets, &motion, 0.6, 2, &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn spec_check_names_the_problem() {
        let spec = |layout, classes: Vec<u32>| DetectorSpec {
            file: "d.onnx".into(),
            sha256: String::new(),
            layout,
            classes,
            score_threshold: 0.5,
            nms_iou: 0.45,
            cover: 0.6,
        };
        let iface = |inp: Vec<usize>, out: Vec<usize>| OnnxInterface {
            inputs: vec![TensorSpec {
                name: "images".into(),
                shape: inp,
            }],
            outputs: vec![TensorSpec {
                name: "output0".into(),
                shape: out,
            }],
            opset: Some(17),
        };
        let yolo8 = iface(vec![1, 3, 640, 640], vec![1, 84, 8400]);
        let ok = spec(DetectorLayout::Yolov8, vec![0, 2])
            .check(&yolo8)
            .expect("COCO YOLOv8 shape");
        assert_eq!((ok.classes, ok.anchors), (80, 8400));
        let err = |s: DetectorSpec, i: &OnnxInterface| s.check(i).unwrap_err().to_string();
        assert!(err(spec(DetectorLayout::Yolov5, vec![0]), &yolo8).contains("layout"));
        assert!(err(spec(DetectorLayout::Yolov8, vec![80]), &yolo8).contains("class 80"));
        assert!(err(spec(DetectorLayout::Yolov8, vec![]), &yolo8).contains("classes"));
        let dynamic = iface(vec![1, 3, 0, 0], vec![1, 84, 0]);
        assert!(err(spec(DetectorLayout::Yolov8, vec![0]), &dynamic).contains("fixed image size"));
        let mut bad = spec(DetectorLayout::Yolov8, vec![0]);
        bad.nms_iou = 1.5;
        assert!(err(bad, &yolo8).contains("nms_iou"));
        let yolo5 = iface(vec![1, 3, 640, 640], vec![1, 25200, 85]);
        assert_eq!(
            spec(DetectorLayout::Yolov5, vec![0])
                .check(&yolo5)
                .unwrap()
                .classes,
            80
        );
    }
}
