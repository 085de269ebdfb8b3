//! `vigil eval`: frame-level ROC AUC of a model package on a labelled dataset, with the papers'
//! protocol (per-video min-max, all frames pooled) and with the causal streaming normaliser the
//! daemon uses, so the number users deploy with is reported beside the number papers print;
//! and the events the daemon would raise, counted against the labelled anomalous episodes.
//!
//! Two streaming protocols: `per_video` (each video a camera session of its own, the
//! normaliser starting from the package's calibration) and `continuous` (every video one after
//! the other in one camera session: the normaliser's history carries over, a video boundary
//! restarts only the recipe's window, as a frame gap does in the daemon).

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use vigil_engine::analyzer::Analyzer;
use vigil_engine::dataset::{Dataset, Split, Video};
use vigil_engine::frame::Frame;
use vigil_engine::imageio;
use vigil_engine::package::ModelPackage;
use vigil_engine::recipe::MAX_COMPONENTS;
use vigil_engine::scoring::{
    default_events, default_normalizer, eer, event_metrics, roc_auc, EventConfig, EventMetrics,
    EventSpan, NormalizerConfig, ScoreStream, StreamEvents,
};

/// Ped2's frame rate: what turns frames into seconds when the dataset does not say.
const DEFAULT_FPS: f64 = 10.0;

/// `vigil eval`'s arguments.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Model package directory (e.g. engine/models/ped2-bdfi).
    #[arg(long)]
    model: PathBuf,
    /// Dataset root (e.g. ../shared/datasets/ped2; its `testing` split is used) or split dir.
    #[arg(long)]
    dataset: PathBuf,
    /// Comma-separated video ids (default: all labelled videos).
    #[arg(long, value_delimiter = ',')]
    videos: Vec<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Write a PNG of the score curves with the ground truth shaded.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Write every frame's scores as CSV:
    /// video,frame,anomalous,score_paper,score_stream,score_stream_continuous,score_raw.
    #[arg(long)]
    scores_csv: Option<PathBuf>,
    /// Also evaluate with every activation quantised to INT8 at the calibration cache's
    /// scales, and report FP32 and simulated-INT8 AUC side by side.
    #[arg(long)]
    simulate_int8: bool,
    /// Calibration cache for --simulate-int8 (default: PKG/calib.cache).
    #[arg(long, requires = "simulate_int8")]
    calib: Option<PathBuf>,
    /// Frame rate of the dataset's videos (event timestamps, normal minutes, false events per
    /// hour).
    #[arg(long, default_value_t = DEFAULT_FPS)]
    fps: f64,
    #[command(flatten)]
    backend: super::backend::BackendArgs,
}

/// `vigil eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let pkg = ModelPackage::load(&args.model)?;
    let mut ds = Dataset::open(&args.dataset, Split::Testing)?;
    if !args.videos.is_empty() {
        ds.select(&args.videos)?;
    }
    if !(args.fps.is_finite() && args.fps > 0.0) {
        bail!(
            "--fps {} is not a frame rate: give the videos' frames per second, e.g. 10 for Ped2",
            args.fps
        );
    }
    let opts = Protocol {
        normalizer: None,
        events: default_events(),
        fps: args.fps,
    };
    let backend = args.backend.single()?;
    if args.simulate_int8 {
        if backend != vigil_daemon::backend::BackendConfig::Cpu {
            bail!(
                "--simulate-int8 runs on tract (it quantises tract's activations): drop --backend"
            );
        }
        let cache = args.calib.unwrap_or_else(|| pkg.calib_cache_path());
        return eval_int8(&pkg, &ds, &cache, &opts, args.json);
    }
    crate::warn_if_debug_build("eval");
    // The bar draws on stderr (and only on a terminal), so it never mixes into --json.
    let mut analyzer = super::backend::analyzer(&pkg, &backend, 1)?;
    let report = evaluate_with(&mut analyzer, &pkg, &ds, &opts, true)?;
    if let Some(p) = &args.plot {
        plot(&report, p)?;
    }
    if let Some(p) = &args.scores_csv {
        write_scores_csv(&report, p).with_context(|| format!("writing {}", p.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
        if let Some(p) = &args.plot {
            println!("plot: {}", p.display());
        }
    }
    Ok(())
}

/// `vigil eval --simulate-int8`: the FP32 evaluation and the simulated-INT8 one on the same
/// frames, side by side.
fn eval_int8(
    pkg: &ModelPackage,
    ds: &Dataset,
    cache: &Path,
    opts: &Protocol,
    json: bool,
) -> Result<()> {
    // The cache is checked first: a wrong one fails before minutes of FP32 evaluation.
    let mut analyzer = super::calib::int8::simulated_int8_analyzer(pkg, cache)?;
    let fp32 = evaluate(pkg, ds, opts, !json)?;
    let int8 = evaluate_with(&mut analyzer, pkg, ds, opts, !json)?;
    let max_diff = fp32
        .videos
        .iter()
        .zip(&int8.videos)
        .flat_map(|(a, b)| a.scores_stream.iter().zip(&b.scores_stream))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    if json {
        let v = serde_json::json!({
            "calibration_cache": cache.display().to_string(),
            "auc_fp32": fp32.auc,
            "auc_int8": int8.auc,
            "auc_delta": int8.auc - fp32.auc,
            "auc_stream_fp32": fp32.auc_stream,
            "auc_stream_int8": int8.auc_stream,
            "auc_stream_delta": int8.auc_stream - fp32.auc_stream,
            "max_abs_stream_score_diff": max_diff,
            "fp32": fp32,
            "int8_simulated": int8,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_report(&fp32);
        print_report(&int8);
        println!(
            "INT8 (simulated, {}): auc {:.4} vs FP32 {:.4} (delta {:+.4}); auc_stream {:.4} vs {:.4} (delta {:+.4}); max |score diff| {:.4}",
            cache.display(),
            int8.auc,
            fp32.auc,
            int8.auc - fp32.auc,
            int8.auc_stream,
            fp32.auc_stream,
            int8.auc_stream - fp32.auc_stream,
            max_diff
        );
    }
    Ok(())
}

fn print_report(r: &EvalReport) {
    println!(
        "model {} ({}) on {} [{} backend]",
        r.model, r.recipe, r.dataset, r.backend
    );
    println!(
        "{:>6} {:>7} {:>9} {:>8} {:>11}",
        "video", "frames", "anomalous", "auc", "auc_stream"
    );
    let f = |a: Option<f64>| a.map(|a| format!("{a:.4}")).unwrap_or_else(|| "-".into());
    for v in &r.videos {
        println!(
            "{:>6} {:>7} {:>9} {:>8} {:>11}",
            v.id,
            v.frames,
            v.anomalous_frames,
            f(v.auc),
            f(v.auc_stream)
        );
    }
    println!(
        "all    {:>7}           auc {:.4} (paper protocol)  auc_stream {:.4}  eer {:.4}  {:.1} fps",
        r.frames, r.auc, r.auc_stream, r.eer, r.fps
    );
    if let Some(a) = r.auc_paper_formula {
        println!(
            "the paper's own score formula on this network (the package's differs, docs/models.md): auc {a:.4}"
        );
    }
    println!(
        "continuous stream (one camera session, every video in turn): auc_stream {:.4}",
        r.auc_stream_continuous
    );
    for (name, e) in [
        ("per video", &r.events),
        ("continuous", &r.events_continuous),
    ] {
        let or_dash = |x: Option<f64>, digits: usize| {
            x.map(|x| format!("{x:.digits$}"))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "events ({name}): {} of {} anomalous episodes raised an event, median onset {} frames; {} false events in {:.1} min of normal footage ({} per hour); {} of anomalous frames inside an open event",
            e.episodes_detected,
            e.episodes,
            or_dash(e.onset_latency_frames_median, 1),
            e.false_events,
            e.normal_minutes,
            or_dash(e.false_events_per_hour, 1),
            e.anomalous_frames_covered
                .map(|c| format!("{:.0}%", 100.0 * c))
                .unwrap_or_else(|| "-".into()),
        );
    }
}

/// How the streaming scores and events are computed: what the daemon would be configured with.
#[derive(Debug, Clone)]
pub struct Protocol {
    /// `None`: the package's default normaliser, as `vigil run` uses when the camera names none.
    pub normalizer: Option<NormalizerConfig>,
    pub events: EventConfig,
    pub fps: f64,
}

#[derive(Debug, Serialize)]
pub struct VideoResult {
    pub id: String,
    pub frames: usize,
    pub anomalous_frames: usize,
    /// Per-video AUC (`null` when the video has one class only; `auc_note` says why).
    pub auc: Option<f64>,
    pub auc_stream: Option<f64>,
    /// Why `auc` is `null`: a video whose frames are all anomalous (or all normal) has no
    /// ROC curve; its frames still count in the pooled AUC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auc_note: Option<&'static str>,
    /// Paper-protocol frame scores, [0, 1].
    #[serde(skip)]
    pub scores: Vec<f32>,
    /// The paper's own formula where the package's differs ([`EvalReport::auc_paper_formula`]).
    #[serde(skip)]
    pub scores_paper_formula: Option<Vec<f32>>,
    /// Streaming-normalised frame scores, the video a camera session of its own.
    #[serde(skip)]
    pub scores_stream: Vec<f32>,
    /// The same in the continuous stream (history from the videos before it).
    #[serde(skip)]
    pub scores_stream_continuous: Vec<f32>,
    /// The recipe's raw streaming score.
    #[serde(skip)]
    pub raw: Vec<f32>,
    #[serde(skip)]
    pub scored: std::ops::Range<usize>,
    #[serde(skip)]
    pub labels: Vec<bool>,
    /// The events the daemon raises replaying this video alone (frame indices of the video).
    pub events: Vec<EventSpan>,
}

#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub recipe: String,
    pub dataset: String,
    pub backend: String,
    pub frames: usize,
    /// Paper protocol: per-video min-max of the recipe's components, pooled frame-level AUC.
    pub auc: f64,
    /// The same protocol with the paper's own score formula, where the package's score differs
    /// from it (BDFI's flow term and weights); null when the package scores as the paper does.
    pub auc_paper_formula: Option<f64>,
    /// Streaming protocol: the daemon's causal normaliser, each video a camera session of its
    /// own, pooled frame-level AUC.
    pub auc_stream: f64,
    /// The same normaliser with every video in one camera session, in order.
    pub auc_stream_continuous: f64,
    pub eer: f64,
    pub eer_stream: f64,
    pub normalizer: NormalizerConfig,
    pub event_config: EventConfig,
    /// Frame rate the events' times and the normal minutes assume.
    pub video_fps: f64,
    /// Events counted against the labelled episodes, each video a camera session.
    pub events: EventMetrics,
    /// The same in the continuous stream.
    pub events_continuous: EventMetrics,
    pub latency_frames: u32,
    /// Network frames per second during the evaluation (decode + preprocess + network + score).
    pub fps: f64,
    pub videos: Vec<VideoResult>,
}

/// Raw per-frame outputs of one video: component series and the streaming raw score. Frames the
/// recipe cannot score (the window's edges) copy the nearest scored frame, as the papers do.
pub struct VideoScores {
    pub components: Vec<Vec<f32>>,
    pub raw: Vec<f32>,
    /// The frames the recipe scored, the only ones the daemon's event stage sees.
    pub scored: std::ops::Range<usize>,
}

/// Runs the analyzer over one video's frames.
pub fn score_video(
    analyzer: &mut Analyzer,
    video: &Video,
    mut tick: impl FnMut(),
) -> Result<VideoScores> {
    analyzer.reset();
    let n = video.frames.len();
    let k = analyzer.recipe().component_names().len();
    let mut comps: Vec<Option<[f32; MAX_COMPONENTS]>> = vec![None; n];
    let mut raw: Vec<Option<f32>> = vec![None; n];
    let mut frame = Frame::placeholder();
    for (i, path) in video.frames.iter().enumerate() {
        imageio::load_into(path, &mut frame)?;
        frame.index = i as u64;
        frame.timestamp = std::time::Duration::from_millis(100 * i as u64);
        if let Some(s) = analyzer
            .push(&frame)
            .with_context(|| format!("video {} frame {}", video.id, path.display()))?
        {
            let t = s.frame_index as usize;
            comps[t] = Some(s.components);
            raw[t] = Some(s.raw);
        }
        tick();
    }
    let scored = match (
        raw.iter().position(Option::is_some),
        raw.iter().rposition(Option::is_some),
    ) {
        (Some(a), Some(b)) => a..b + 1,
        _ => bail!("video {} is too short to score", video.id),
    };
    let comps =
        fill_edges(&comps).with_context(|| format!("video {} is too short to score", video.id))?;
    let raw =
        fill_edges(&raw).with_context(|| format!("video {} is too short to score", video.id))?;
    Ok(VideoScores {
        components: (0..k)
            .map(|c| comps.iter().map(|v| v[c]).collect())
            .collect(),
        raw,
        scored,
    })
}

fn fill_edges<T: Copy>(v: &[Option<T>]) -> Option<Vec<T>> {
    let first = v.iter().position(Option::is_some)?;
    let mut last = v[first]?;
    let mut out = Vec::with_capacity(v.len());
    for (i, x) in v.iter().enumerate() {
        let val = if i < first {
            v[first]?
        } else {
            x.unwrap_or(last)
        };
        last = val;
        out.push(val);
    }
    Some(out)
}

pub fn evaluate(
    pkg: &ModelPackage,
    ds: &Dataset,
    opts: &Protocol,
    progress: bool,
) -> Result<EvalReport> {
    let mut analyzer = Analyzer::cpu(pkg, 1)?;
    evaluate_with(&mut analyzer, pkg, ds, opts, progress)
}

/// [`evaluate`] with a given analyzer (another backend: simulated INT8, TensorRT).
pub fn evaluate_with(
    analyzer: &mut Analyzer,
    pkg: &ModelPackage,
    ds: &Dataset,
    opts: &Protocol,
    progress: bool,
) -> Result<EvalReport> {
    if !ds.has_labels() {
        bail!(
            "dataset {} has no labels (labels.json or UCSDped2.m); `vigil eval` needs ground truth",
            ds.root.display()
        );
    }
    let norm_cfg = opts
        .normalizer
        .unwrap_or_else(|| default_normalizer(pkg.normal_scores()));
    let bar = if progress {
        indicatif::ProgressBar::new(ds.frame_count() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {pos}/{len} frames, {per_sec}, eta {eta}",
        )
        .expect("template is valid")
        .progress_chars("=> "),
    );
    let t0 = Instant::now();
    let mut videos = Vec::new();
    for v in &ds.videos {
        bar.set_message(format!("video {}", v.id));
        let s = score_video(analyzer, v, || bar.inc(1))?;
        let scores = analyzer.recipe().paper_scores(&s.components);
        let scores_paper_formula = analyzer.recipe().paper_formula_scores(&s.components);
        // Each test video a camera session of its own, as the daemon replays it.
        let mut session = ScoreStream::new(&norm_cfg, opts.events)?;
        let mut events = Vec::new();
        let scores_stream = replay_video(&mut session, &s.raw, &s.scored, 0, opts, &mut events)?;
        session.close(s.scored.end as u64 - 1, &mut events);
        let labels = v.labels.clone().context("labels checked above")?;
        let both = labels.iter().any(|&l| l) && labels.iter().any(|&l| !l);
        videos.push(VideoResult {
            id: v.id.clone(),
            frames: labels.len(),
            anomalous_frames: labels.iter().filter(|&&l| l).count(),
            auc: both.then(|| roc_auc(&scores, &labels)).transpose()?,
            auc_stream: both.then(|| roc_auc(&scores_stream, &labels)).transpose()?,
            auc_note: (!both).then_some(if labels.iter().all(|&l| l) {
                "every frame of this video is anomalous: a per-video AUC needs both classes (its frames count in the pooled AUC)"
            } else {
                "no frame of this video is anomalous: a per-video AUC needs both classes (its frames count in the pooled AUC)"
            }),
            scores,
            scores_paper_formula,
            scores_stream,
            scores_stream_continuous: Vec::new(),
            raw: s.raw,
            scored: s.scored,
            labels,
            events,
        });
    }
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let latency = analyzer.recipe().latency_frames();
    let per_video: Vec<StreamEvents> = videos
        .iter()
        .map(|v| StreamEvents {
            labels: &v.labels,
            offset: 0,
            video_starts: &[0],
            spans: &v.events,
        })
        .collect();
    let events = event_metrics(&per_video, latency, opts.fps);
    let (events_continuous, continuous) = continuous_stream(&videos, &norm_cfg, opts, latency)?;
    for (v, c) in videos.iter_mut().zip(continuous) {
        v.scores_stream_continuous = c;
    }
    let all = |f: fn(&VideoResult) -> &Vec<f32>| {
        videos
            .iter()
            .flat_map(|v| f(v).iter().copied())
            .collect::<Vec<f32>>()
    };
    let labels: Vec<bool> = videos
        .iter()
        .flat_map(|v| v.labels.iter().copied())
        .collect();
    let paper_formula: Option<Vec<f32>> = videos
        .iter()
        .map(|v| v.scores_paper_formula.clone())
        .collect::<Option<Vec<Vec<f32>>>>()
        .map(|v| v.concat());
    let (paper, stream, continuous) = (
        all(|v| &v.scores),
        all(|v| &v.scores_stream),
        all(|v| &v.scores_stream_continuous),
    );
    Ok(EvalReport {
        model: pkg.manifest.name.clone(),
        recipe: pkg.manifest.recipe.clone(),
        dataset: ds.root.display().to_string(),
        backend: analyzer.backend_name().to_owned(),
        frames: labels.len(),
        auc: roc_auc(&paper, &labels)?,
        auc_paper_formula: paper_formula.map(|s| roc_auc(&s, &labels)).transpose()?,
        auc_stream: roc_auc(&stream, &labels)?,
        auc_stream_continuous: roc_auc(&continuous, &labels)?,
        eer: eer(&paper, &labels)?,
        eer_stream: eer(&stream, &labels)?,
        normalizer: norm_cfg,
        event_config: opts.events,
        video_fps: opts.fps,
        events,
        events_continuous,
        latency_frames: latency,
        fps: labels.len() as f64 / secs,
        videos,
    })
}

/// Replays the frames of a video the recipe scored (frame `i` of the video is frame
/// `offset + i` of the stream) and returns a normalised score for every frame, the edges
/// copying the nearest scored one as [`score_video`] does.
fn replay_video(
    session: &mut ScoreStream,
    raw: &[f32],
    scored: &std::ops::Range<usize>,
    offset: u64,
    opts: &Protocol,
    spans: &mut Vec<EventSpan>,
) -> Result<Vec<f32>> {
    let inner = session.replay(
        &raw[scored.clone()],
        offset + scored.start as u64,
        opts.fps,
        spans,
    )?;
    let (first, last) = (inner[0], inner[inner.len() - 1]);
    let mut out = vec![first; scored.start];
    out.extend(inner);
    out.resize(raw.len(), last);
    Ok(out)
}

/// Every video in turn through one [`ScoreStream`]: the continuous protocol. Returns its event
/// metrics and each video's normalised scores.
fn continuous_stream(
    videos: &[VideoResult],
    norm: &NormalizerConfig,
    opts: &Protocol,
    latency: u32,
) -> Result<(EventMetrics, Vec<Vec<f32>>)> {
    let mut session = ScoreStream::new(norm, opts.events)?;
    let (mut spans, mut scores, mut starts, mut labels) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut last_scored = 0;
    for v in videos {
        let offset = labels.len() as u64;
        starts.push(labels.len());
        scores.push(replay_video(
            &mut session,
            &v.raw,
            &v.scored,
            offset,
            opts,
            &mut spans,
        )?);
        labels.extend_from_slice(&v.labels);
        last_scored = offset + v.scored.end as u64 - 1;
    }
    session.close(last_scored, &mut spans);
    let metrics = event_metrics(
        &[StreamEvents {
            labels: &labels,
            offset: 0,
            video_starts: &starts,
            spans: &spans,
        }],
        latency,
        opts.fps,
    );
    Ok((metrics, scores))
}

/// Writes every frame's scores, one row per frame:
/// `video,frame,anomalous,score_paper,score_stream,score_stream_continuous,score_raw` (the
/// first three scores in [0, 1]; the raw score is the recipe's, before normalisation; full f32
/// precision).
pub fn write_scores_csv(report: &EvalReport, path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        out,
        "video,frame,anomalous,score_paper,score_stream,score_stream_continuous,score_raw"
    )?;
    for v in &report.videos {
        for t in 0..v.labels.len() {
            writeln!(
                out,
                "{},{t},{},{:e},{:e},{:e},{:e}",
                v.id,
                u8::from(v.labels[t]),
                v.scores[t],
                v.scores_stream[t],
                v.scores_stream_continuous[t],
                v.raw[t]
            )?;
        }
    }
    out.flush()
}

/// Writes a PNG with one panel per video: paper-protocol and streaming scores over frames, the
/// labelled anomalous frames shaded.
pub fn plot(report: &EvalReport, out: &Path) -> Result<()> {
    use plotters::prelude::*;
    let font = include_bytes!("../../assets/DejaVuSans.ttf");
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("cannot load the plot font"))?;
    let n = report.videos.len().max(1);
    let cols = 2usize.min(n);
    let rows = n.div_ceil(cols);
    let root =
        BitMapBackend::new(out, (640 * cols as u32, 260 * rows as u32 + 40)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(40);
    title.draw_text(
        &format!(
            "{} on {}: AUC {:.3} (paper protocol), {:.3} (streaming)",
            report.model, report.dataset, report.auc, report.auc_stream
        ),
        &("sans-serif", 20).into_font().color(&BLACK),
        (10, 10),
    )?;
    for (v, area) in report.videos.iter().zip(body.split_evenly((rows, cols))) {
        let len = v.frames as f64;
        let mut chart = ChartBuilder::on(&area)
            .caption(
                format!(
                    "video {}  AUC {}",
                    v.id,
                    v.auc
                        .map(|a| format!("{a:.3}"))
                        .unwrap_or_else(|| "n/a".into())
                ),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(36)
            .build_cartesian_2d(0f64..len, 0f64..1.05f64)?;
        chart
            .configure_mesh()
            .x_desc("frame")
            .y_desc("score")
            .light_line_style(WHITE)
            .draw()?;
        // ground truth: shaded spans
        let mut i = 0;
        while i < v.labels.len() {
            if v.labels[i] {
                let s = i;
                while i < v.labels.len() && v.labels[i] {
                    i += 1;
                }
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(s as f64, 0.0), (i as f64, 1.05)],
                    RGBColor(255, 200, 200).filled(),
                )))?;
            }
            i += 1;
        }
        chart
            .draw_series(LineSeries::new(
                v.scores
                    .iter()
                    .enumerate()
                    .map(|(i, &s)| (i as f64, s as f64)),
                &BLUE,
            ))?
            .label("paper (per-video min-max)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        chart
            .draw_series(LineSeries::new(
                v.scores_stream
                    .iter()
                    .enumerate()
                    .map(|(i, &s)| (i as f64, s as f64)),
                &RGBColor(0, 140, 0),
            ))?
            .label("streaming (causal)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RGBColor(0, 140, 0)));
        // Events as the daemon raises them replaying this video: open from `start` to `end`.
        let last = v.frames.saturating_sub(1) as u64;
        let orange = RGBColor(230, 120, 0);
        for (k, e) in v.events.iter().enumerate() {
            let r = e.open_frames(last);
            let series = chart.draw_series(std::iter::once(Rectangle::new(
                [(*r.start() as f64, 1.0), (*r.end() as f64 + 1.0, 1.04)],
                orange.filled(),
            )))?;
            if k == 0 {
                series.label("event open (daemon)").legend(move |(x, y)| {
                    Rectangle::new([(x, y - 4), (x + 16, y + 4)], orange.filled())
                });
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
