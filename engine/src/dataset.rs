//! Video datasets on disk in the layout of `shared/datasets/ped2`:
//!
//! ```text
//! <split>/frames/<video>/NNN.jpg     (any of jpg/png/tif)
//! <split>/labels.json                (test splits: `videos.<id>.{frames, anomalous}`)
//! ```
//!
//! Given the dataset root (`.../ped2`) the `testing` split is used for evaluation and
//! `training` for export; a split directory itself can be passed too. UCSD's original
//! `UCSDped2.m` ground truth (1-based `[a:b]` ranges per video) is read when `labels.json` is
//! absent, since that is what real users of the benchmark have.

use crate::flow::{Farneback, FarnebackParams};
use crate::frame::Frame;
use crate::imageio::{self, ImageIoError};
use crate::objects::{crop_cube_into, ObjectFinder};
use crate::package::ObjectsSection;
use crate::preprocess::{InputGeometry, PreprocessError, Preprocessor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DatasetError {
    #[error("dataset {path}: no `frames/<video>/` directories found (expected the layout of shared/datasets/ped2: <split>/frames/<video>/NNN.jpg)")]
    NoFrames { path: PathBuf },
    #[error("dataset {path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("labels {path}: {reason}")]
    Labels { path: PathBuf, reason: String },
    #[error("dataset {path}: no labels.json or UCSDped2.m; evaluation needs ground truth")]
    NoLabels { path: PathBuf },
    #[error("video {video} was not found in {path}; available: {available}")]
    UnknownVideo {
        video: String,
        path: PathBuf,
        available: String,
    },
    #[error(transparent)]
    Image(#[from] ImageIoError),
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error("flow: {0}")]
    Flow(String),
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// Which part of a benchmark to use when given its root directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Training,
    Testing,
}

impl Split {
    fn dir_name(self) -> &'static str {
        match self {
            Split::Training => "training",
            Split::Testing => "testing",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Video {
    pub id: String,
    pub frames: Vec<PathBuf>,
    /// Per-frame ground truth (true = anomalous), when the split has labels.
    pub labels: Option<Vec<bool>>,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub videos: Vec<Video>,
}

impl Dataset {
    /// Opens `path`, which is either a split directory (holding `frames/`) or a benchmark root
    /// holding `<split>/frames/`.
    pub fn open(path: &Path, split: Split) -> Result<Self, DatasetError> {
        let root = if path.join("frames").is_dir() {
            path.to_owned()
        } else if path.join(split.dir_name()).join("frames").is_dir() {
            path.join(split.dir_name())
        } else {
            return Err(DatasetError::NoFrames {
                path: path.to_owned(),
            });
        };
        let frames_dir = root.join("frames");
        let mut ids = list_dir(&frames_dir)?
            .into_iter()
            .filter(|p| p.is_dir())
            .collect::<Vec<_>>();
        ids.sort();
        let mut videos = Vec::new();
        for dir in ids {
            let frames = imageio::frame_files(&dir).map_err(|source| DatasetError::Io {
                path: dir.clone(),
                source,
            })?;
            if frames.is_empty() {
                continue;
            }
            let id = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            videos.push(Video {
                id,
                frames,
                labels: None,
            });
        }
        if videos.is_empty() {
            return Err(DatasetError::NoFrames { path: root });
        }
        let mut ds = Dataset { root, videos };
        ds.attach_labels()?;
        Ok(ds)
    }

    fn attach_labels(&mut self) -> Result<(), DatasetError> {
        let json = self.root.join("labels.json");
        let matlab = self.root.join("UCSDped2.m");
        let ranges = if json.is_file() {
            read_labels_json(&json)?
        } else if matlab.is_file() {
            read_ucsd_m(&matlab, &self.videos)?
        } else {
            return Ok(());
        };
        for v in &mut self.videos {
            if let Some(r) = ranges.get(&v.id) {
                let mut labels = vec![false; v.frames.len()];
                for &(a, b) in r {
                    for l in labels.iter_mut().take(b.saturating_add(1)).skip(a) {
                        *l = true;
                    }
                }
                v.labels = Some(labels);
            }
        }
        Ok(())
    }

    pub fn has_labels(&self) -> bool {
        self.videos.iter().all(|v| v.labels.is_some())
    }

    /// Keeps only the named videos (e.g. `["01", "03"]`), in the given order.
    pub fn select(&mut self, ids: &[String]) -> Result<(), DatasetError> {
        let mut chosen = Vec::new();
        for id in ids {
            let pos = self
                .videos
                .iter()
                .position(|v| &v.id == id)
                .ok_or_else(|| DatasetError::UnknownVideo {
                    video: id.clone(),
                    path: self.root.clone(),
                    available: self
                        .videos
                        .iter()
                        .map(|v| v.id.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                })?;
            chosen.push(self.videos[pos].clone());
        }
        self.videos = chosen;
        Ok(())
    }

    pub fn frame_count(&self) -> usize {
        self.videos.iter().map(|v| v.frames.len()).sum()
    }
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let io = |source| DatasetError::Io {
        path: dir.to_owned(),
        source,
    };
    std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()).map_err(io))
        .collect()
}

#[derive(Deserialize)]
struct LabelsFile {
    videos: BTreeMap<String, LabelsVideo>,
}
#[derive(Deserialize)]
struct LabelsVideo {
    #[allow(dead_code)]
    frames: usize,
    anomalous: Vec<[usize; 2]>,
}

fn read_labels_json(path: &Path) -> Result<BTreeMap<String, Vec<(usize, usize)>>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io {
        path: path.to_owned(),
        source,
    })?;
    let parsed: LabelsFile = serde_json::from_str(&text).map_err(|e| DatasetError::Labels {
        path: path.to_owned(),
        reason: format!(
            "{e} (expected {{\"videos\": {{\"01\": {{\"frames\": N, \"anomalous\": [[first, last], ...]}}}}}})"
        ),
    })?;
    Ok(parsed
        .videos
        .into_iter()
        .map(|(k, v)| (k, v.anomalous.into_iter().map(|[a, b]| (a, b)).collect()))
        .collect())
}

/// Reads UCSD's `UCSDped2.m`: lines `TestVideoFile{end}.gt_frame = [61:180];` in video order,
/// 1-based inclusive ranges (several ranges as `[a:b, c:d]`).
fn read_ucsd_m(
    path: &Path,
    videos: &[Video],
) -> Result<BTreeMap<String, Vec<(usize, usize)>>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io {
        path: path.to_owned(),
        source,
    })?;
    let bad = |reason: String| DatasetError::Labels {
        path: path.to_owned(),
        reason,
    };
    let mut per_video = Vec::new();
    for line in text.lines().filter(|l| l.contains("gt_frame")) {
        let inner = line
            .split_once('[')
            .and_then(|(_, r)| r.split_once(']'))
            .map(|(i, _)| i)
            .ok_or_else(|| bad(format!("cannot parse line `{}`", line.trim())))?;
        let mut ranges = Vec::new();
        for part in inner.split(',') {
            let (a, b) = part
                .trim()
                .split_once(':')
                .ok_or_else(|| bad(format!("expected `a:b` in `{}`", line.trim())))?;
            let a: usize = a
                .trim()
                .parse()
                .map_err(|_| bad(format!("bad number in `{}`", line.trim())))?;
            let b: usize = b
                .trim()
                .parse()
                .map_err(|_| bad(format!("bad number in `{}`", line.trim())))?;
            if a == 0 || b < a {
                return Err(bad(format!("range {a}:{b} is not a 1-based range")));
            }
            ranges.push((a - 1, b - 1));
        }
        per_video.push(ranges);
    }
    // The .m file lists all test videos in order; map them onto the numeric ids we have.
    let mut out = BTreeMap::new();
    for v in videos {
        let n: usize =
            v.id.trim_start_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .unwrap_or(0);
        if n >= 1 && n <= per_video.len() {
            out.insert(v.id.clone(), per_video[n - 1].clone());
        }
    }
    Ok(out)
}

/// Exports every video's model-resolution frames as `<video>.npy` (float32 `[T, C, H, W]`) and,
/// with `flow`, the engine's optical flow between consecutive frames as `<video>.flow.npy`
/// (float32 `[T-1, 2, H, W]`, entry t = flow from frame t to t+1, planar dx, dy in pixels),
/// computed by the same estimator the runtime uses; with `objects` (needs `flow`), the moving
/// objects' cubes as the hf2vad recipe crops them at run time ([`export_objects`]); then
/// `<out>/index.json`. `progress` is called after each frame.
pub fn export(
    ds: &Dataset,
    geo: InputGeometry,
    flow: Option<FarnebackParams>,
    mut objects: Option<ObjectFinder>,
    out: &Path,
    mut progress: impl FnMut(usize),
) -> Result<(), DatasetError> {
    let write_err = |path: &Path, reason: String| DatasetError::Write {
        path: path.to_owned(),
        reason,
    };
    std::fs::create_dir_all(out).map_err(|e| write_err(out, e.to_string()))?;
    let mut pre = Preprocessor::new(geo);
    let mut frame = Frame::blank(
        crate::frame::Geometry::new(1, 1, crate::frame::PixelLayout::Gray8).expect("1x1 is valid"),
    );
    let plane = geo.plane_len();
    let (w, h) = (geo.width as usize, geo.height as usize);
    let mut estimator = flow
        .map(|p| Farneback::new(p, w, h))
        .transpose()
        .map_err(|e| DatasetError::Flow(e.to_string()))?;
    if objects.is_some() && flow.is_none() {
        return Err(DatasetError::Flow(
            "object cubes carry the flow between their frames: add --flow".into(),
        ));
    }
    let mut index = Vec::new();
    for v in &ds.videos {
        let mut data = vec![0f32; plane * v.frames.len()];
        for (i, path) in v.frames.iter().enumerate() {
            imageio::load_into(path, &mut frame)?;
            pre.run(&frame, &mut data[i * plane..(i + 1) * plane])?;
            progress(1);
        }
        let mut entry = serde_json::json!({"id": v.id, "frames": v.frames.len(), "file": format!("{}.npy", v.id)});
        if let Some(fb) = estimator.as_mut() {
            let pairs = v.frames.len().saturating_sub(1);
            let mut flows = vec![0f32; pairs * 2 * w * h];
            let (mut a, mut b) = (fb.new_expansion(), fb.new_expansion());
            let mut field = fb.new_field();
            let mut luma = vec![0f32; w * h];
            for t in 0..v.frames.len() {
                crate::flow::luma_into(
                    &data[t * plane..(t + 1) * plane],
                    geo.channels as usize,
                    &mut luma,
                );
                fb.expand(&luma, geo.pixel_range, &mut b)
                    .map_err(|e| DatasetError::Flow(e.to_string()))?;
                if t > 0 {
                    fb.flow(&a, &b, &mut field);
                    flows[(t - 1) * 2 * w * h..t * 2 * w * h].copy_from_slice(field.as_slice());
                }
                std::mem::swap(&mut a, &mut b);
            }
            if let Some(ex) = objects.as_mut() {
                entry["objects"] = export_objects(ex, &v.id, &data, &flows, geo, out)?;
            }
            let arr = ndarray::Array4::from_shape_vec((pairs, 2, h, w), flows)
                .expect("buffer length is pairs * 2 * h * w by construction");
            let file = format!("{}.flow.npy", v.id);
            let path = out.join(&file);
            ndarray_npy::write_npy(&path, &arr).map_err(|e| write_err(&path, e.to_string()))?;
            entry["flow_file"] = file.into();
        }
        let arr = ndarray::Array4::from_shape_vec(
            (
                v.frames.len(),
                geo.channels as usize,
                geo.height as usize,
                geo.width as usize,
            ),
            data,
        )
        .expect("buffer length is frames * plane by construction");
        let file = format!("{}.npy", v.id);
        let path = out.join(&file);
        ndarray_npy::write_npy(&path, &arr).map_err(|e| write_err(&path, e.to_string()))?;
        index.push(entry);
    }
    let idx = serde_json::json!({
        "geometry": {"width": geo.width, "height": geo.height, "channels": geo.channels,
                      "pixel_range": geo.pixel_range, "resize": geo.resize},
        "flow": flow,
        "objects": objects.as_ref().map(|o| ObjectsSection::Motion(*o.params())),
        "detector": objects.as_ref().and_then(|o| o.detector()).map(|d| d.spec()),
        "source": ds.root.display().to_string(),
        "videos": index,
    });
    let path = out.join("index.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&idx).expect("json value serialises"),
    )
    .map_err(|e| write_err(&path, e.to_string()))?;
    Ok(())
}

/// Frames per object cube (t-4..t) and flows between them: HF2-VAD's clip.
pub const CUBE_FRAMES: usize = 5;

/// Runs the extractor over one video (`data`: its frames, `flows`: the flows between them) as
/// the runtime does, frame by frame from the first full clip, and writes every object's cube:
/// `<id>.obj_frames.npy` `[M, 5*C, S, S]` (frames t-4..t), `<id>.obj_flows.npy` `[M, 8, S, S]`
/// (flows t-4->t-3 .. t-1->t) and `<id>.obj_boxes.npy` `[M, 5]` (t, x0, y0, x1, y1 in model
/// pixels). Returns the index entry.
pub fn export_objects(
    ex: &mut ObjectFinder,
    id: &str,
    data: &[f32],
    flows: &[f32],
    geo: InputGeometry,
    out: &Path,
) -> Result<serde_json::Value, DatasetError> {
    let (w, h, c) = (
        geo.width as usize,
        geo.height as usize,
        geo.channels as usize,
    );
    let (plane, field) = (c * w * h, 2 * w * h);
    let side = ex.params().cube as usize;
    let frames_n = data.len() / plane;
    let (fs, ls) = (
        CUBE_FRAMES * c * side * side,
        2 * (CUBE_FRAMES - 1) * side * side,
    );
    let (mut cube_frames, mut cube_flows, mut boxes) = (Vec::new(), Vec::new(), Vec::new());
    ex.reset();
    for t in CUBE_FRAMES - 1..frames_n {
        let first = t + 1 - CUBE_FRAMES;
        let clip: Vec<&[f32]> = (first..=t)
            .map(|i| &data[i * plane..(i + 1) * plane])
            .collect();
        let clip_flows: Vec<&[f32]> = (first..t)
            .map(|i| &flows[i * field..(i + 1) * field])
            .collect();
        let found = ex
            .find(t as u64, &clip)
            .map_err(|e| DatasetError::Flow(format!("objects: {e}")))?;
        for b in found {
            let (a, l) = (cube_frames.len(), cube_flows.len());
            cube_frames.resize(a + fs, 0.0);
            cube_flows.resize(l + ls, 0.0);
            let (fo, lo) = (&mut cube_frames[a..], &mut cube_flows[l..]);
            crop_cube_into(&clip, &clip_flows, w, h, *b, side, fo, lo);
            boxes.extend([t as f32, b.x0 as f32, b.y0 as f32, b.x1 as f32, b.y1 as f32]);
        }
    }
    let m = boxes.len() / 5;
    let write = |name: &str, shape: Vec<usize>, v: Vec<f32>| -> Result<String, DatasetError> {
        let file = format!("{id}.{name}.npy");
        let path = out.join(&file);
        let arr = ndarray::ArrayD::from_shape_vec(shape, v).expect("lengths follow the cube sizes");
        ndarray_npy::write_npy(&path, &arr).map_err(|e| DatasetError::Write {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(file)
    };
    Ok(serde_json::json!({
        "count": m,
        "frames_file": write("obj_frames", vec![m, CUBE_FRAMES * c, side, side], cube_frames)?,
        "flows_file": write("obj_flows", vec![m, 2 * (CUBE_FRAMES - 1), side, side], cube_flows)?,
        "boxes_file": write("obj_boxes", vec![m, 5], boxes)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ucsd_m_ranges_are_converted_to_zero_based() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("UCSDped2.m");
        std::fs::write(
            &m,
            "TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [61:180];\nTestVideoFile{end+1}.gt_frame = [95:180];\nTestVideoFile{end+1}.gt_frame = [1:146, 150:151];\n",
        )
        .unwrap();
        let videos: Vec<Video> = ["01", "03"]
            .iter()
            .map(|id| Video {
                id: id.to_string(),
                frames: vec![],
                labels: None,
            })
            .collect();
        let r = read_ucsd_m(&m, &videos).unwrap();
        assert_eq!(r["01"], vec![(60, 179)]);
        assert_eq!(r["03"], vec![(0, 145), (149, 150)]);
    }
}
