//! `vigil calib scores`: statistics of a package's scores on normal (training) frames, written
//! into its manifest. They make the streaming score comparable across components (z-scores) and
//! give the default normaliser its starting level and scale (`vigil_engine::scoring::default_normalizer`).

pub mod int8;
mod plan;

use crate::cmd::eval::score_video;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vigil_daemon::backend::BackendConfig;
use vigil_engine::dataset::{Dataset, Split};
use vigil_engine::package::{Calibration, ModelPackage, ScoreQuantiles, Stats};
use vigil_engine::recipe::{self, MAX_COMPONENTS};

#[derive(clap::Subcommand)]
pub enum CalibCmd {
    /// Score statistics on normal training frames, written into the package's manifest.
    Scores {
        /// Model package (its model.toml is updated in place).
        model: PathBuf,
        /// Dataset root or split directory with normal videos.
        #[arg(long)]
        dataset: PathBuf,
        /// Videos of the dataset to keep out (comma-separated ids, e.g. `14,15,16`): validation
        /// footage that false alarms are then measured on; recorded as `[calibration] held_out`.
        #[arg(long, value_delimiter = ',')]
        hold_out: Vec<String>,
        #[command(flatten)]
        backend: crate::cmd::backend::BackendArgs,
    },
    /// INT8 activation calibration on the CPU: TensorRT's calibration cache (EntropyCalibration2
    /// by default), written into the package.
    Int8(int8::Int8Args),
    /// Save short clips of a configured camera (PNG, dataset layout) for `calib int8` and
    /// `calib scores` on the scene the box watches.
    Collect(int8::CollectArgs),
}

pub fn run(cmd: CalibCmd) -> Result<()> {
    match cmd {
        CalibCmd::Scores {
            model,
            dataset,
            hold_out,
            backend,
        } => scores(&model, &dataset, &hold_out, &backend.single()?),
        CalibCmd::Int8(args) => int8::calibrate(&args).map(|_| ()),
        CalibCmd::Collect(args) => int8::collect(&args).map(|_| ()),
    }
}

pub fn scores(
    model: &Path,
    dataset: &Path,
    hold_out: &[String],
    backend: &BackendConfig,
) -> Result<()> {
    let mut pkg = ModelPackage::load(model)?;
    let mut ds = Dataset::open(dataset, Split::Training)?;
    if let Some(missing) = hold_out
        .iter()
        .find(|id| !ds.videos.iter().any(|v| &v.id == *id))
    {
        let ids: Vec<&str> = ds.videos.iter().map(|v| v.id.as_str()).collect();
        anyhow::bail!(
            "--hold-out {missing}: {} has no such video (its videos: {})",
            ds.root.display(),
            ids.join(", ")
        );
    }
    ds.videos.retain(|v| !hold_out.contains(&v.id));
    if ds.videos.is_empty() {
        anyhow::bail!(
            "--hold-out keeps out every video of {}: nothing left to calibrate on",
            ds.root.display()
        );
    }
    let mut analyzer = crate::cmd::backend::analyzer(&pkg, backend, 1)?;
    let names = analyzer.recipe().component_names();
    let bar = indicatif::ProgressBar::new(ds.frame_count() as u64);
    let mut series: Vec<Vec<f32>> = vec![Vec::new(); names.len()];
    for v in &ds.videos {
        let s = score_video(&mut analyzer, v, || bar.inc(1))?;
        for (all, c) in series.iter_mut().zip(s.components) {
            all.extend(c);
        }
    }
    bar.finish_and_clear();
    let mut components = BTreeMap::new();
    for (name, s) in names.iter().zip(&series) {
        let ms = vigil_calib::mean_std(s).with_context(|| format!("component {name}"))?;
        components.insert(
            name.to_string(),
            Stats {
                mean: ms.mean,
                std: ms.std,
            },
        );
    }
    // The fused score depends on the statistics just computed: rebuild the recipe with them and
    // fuse the recorded components (the network need not run again).
    pkg.manifest.calibration = Some(Calibration {
        frames: series[0].len(),
        dataset: ds.root.display().to_string(),
        held_out: hold_out.to_vec(),
        components,
        score: ScoreQuantiles {
            mean: 0.0,
            std: 1.0,
            p50: 0.0,
            p99: 0.0,
            p999: 0.0,
            max: 0.0,
        },
    });
    let recipe = recipe::build(&pkg)?;
    let fused: Vec<f32> = (0..series[0].len())
        .map(|t| {
            let mut c = [0.0; MAX_COMPONENTS];
            for (k, s) in series.iter().enumerate() {
                c[k] = s[t];
            }
            recipe.fuse(&c)
        })
        .collect();
    let q = vigil_calib::quantiles(&fused)?;
    if let Some(c) = pkg.manifest.calibration.as_mut() {
        c.score = ScoreQuantiles {
            mean: q.mean,
            std: q.std,
            p50: q.p50,
            p99: q.p99,
            p999: q.p999,
            max: q.max,
        };
    }
    pkg.save_manifest()?;
    println!(
        "calibrated {} on {} frames of {}: fused score p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
        pkg.manifest.name,
        series[0].len(),
        ds.root.display(),
        q.p50,
        q.p99,
        q.p999,
        q.max
    );
    Ok(())
}
