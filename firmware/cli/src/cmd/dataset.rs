//! `vigil dataset export`: training tensors made by the runtime's own preprocessing, so a model
//! is trained on exactly the pixels (and flow, and object cubes) it will be served.
//! `vigil dataset collect` (collect.rs): a configured camera's footage, in the layout `export`
//! reads.

mod collect;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use vigil_engine::dataset::{self, Dataset, Split};
use vigil_engine::objects::ObjectFinder;
use vigil_engine::package::ModelPackage;
use vigil_engine::preprocess::{InputGeometry, ResizeFilter};

#[derive(Subcommand)]
pub enum DatasetCmd {
    /// Write `<video>.npy` (float32 [T,C,H,W]) + index.json for every video of a split.
    Export(ExportArgs),
    /// Record a configured camera's frames into clips (`OUT/frames/<clip>/NNNN.png`, the layout
    /// `export` reads), leaving out frames while its model has an event open; docs/own-scene.md.
    Collect(collect::CollectArgs),
}

pub fn run(cmd: DatasetCmd) -> Result<()> {
    match cmd {
        DatasetCmd::Export(a) => export(a),
        DatasetCmd::Collect(a) => collect::collect(&a),
    }
}

#[derive(Args)]
pub struct ExportArgs {
    /// Dataset root or split directory.
    #[arg(long)]
    dataset: PathBuf,
    /// Split to use when given a dataset root.
    #[arg(long, default_value = "training", value_parser = ["training", "testing"])]
    split: String,
    #[arg(long)]
    out: PathBuf,
    /// Take the geometry from this package's manifest instead of the flags below.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 192)]
    width: u32,
    #[arg(long, default_value_t = 128)]
    height: u32,
    #[arg(long, default_value_t = 1)]
    channels: u32,
    /// Pixel range as LO,HI.
    #[arg(
        long,
        default_value = "-1,1",
        value_delimiter = ',',
        num_args = 2,
        allow_negative_numbers = true
    )]
    range: Vec<f32>,
    /// Also write the engine's optical flow between consecutive frames (`<video>.flow.npy`),
    /// with the `[flow]` parameters of `--model` when it has them, OpenCV's usual Farneback
    /// parameters otherwise.
    #[arg(long)]
    flow: bool,
    /// Also write the moving objects' cubes (`<video>.obj_{frames,flows,boxes}.npy`) for
    /// object-centric models (hf2vad), with the `[objects]` parameters of `--model` when it has
    /// them, the built-in motion extractor's defaults otherwise. Needs `--flow`.
    #[arg(long, requires = "flow")]
    objects: bool,
}

fn export(a: ExportArgs) -> Result<()> {
    let pkg = a.model.as_deref().map(ModelPackage::load).transpose()?;
    let flow = a.flow.then(|| {
        pkg.as_ref()
            .and_then(|p| p.manifest.flow)
            .map(|f| f.farneback())
            .unwrap_or_default()
    });
    let geo = match &pkg {
        Some(p) => p.manifest.input,
        None => {
            if a.range.len() != 2 || a.range[0] >= a.range[1] {
                bail!("--range must be LO,HI with LO < HI, got {:?}", a.range);
            }
            InputGeometry {
                width: a.width,
                height: a.height,
                channels: a.channels,
                pixel_range: [a.range[0], a.range[1]],
                resize: ResizeFilter::Bilinear,
            }
        }
    };
    // The package's object stage (motion parameters and its detector, if any), so the training
    // cubes are the ones the recipe will be served; the motion defaults without a package.
    let objects = if a.objects {
        let params = pkg
            .as_ref()
            .and_then(|p| p.manifest.objects)
            .map(|o| o.params())
            .unwrap_or_default();
        let detector = pkg
            .as_ref()
            .and_then(|p| p.manifest.detector.as_ref().map(|d| (d, p.dir.as_path())));
        Some(ObjectFinder::build(params, &geo, detector).context("--objects")?)
    } else {
        None
    };
    let split = if a.split == "training" {
        Split::Training
    } else {
        Split::Testing
    };
    let ds = Dataset::open(&a.dataset, split)?;
    let bar = indicatif::ProgressBar::new(ds.frame_count() as u64);
    let with_objects = objects.is_some();
    dataset::export(&ds, geo, flow, objects, &a.out, |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    println!(
        "exported {} videos, {} frames ({}x{}x{}){} to {}",
        ds.videos.len(),
        ds.frame_count(),
        geo.channels,
        geo.height,
        geo.width,
        match (flow.is_some(), with_objects) {
            (true, true) => " with flow and object cubes",
            (true, false) => " with flow",
            _ => "",
        },
        a.out.display()
    );
    Ok(())
}
