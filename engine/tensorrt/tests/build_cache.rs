//! Engine builds through the shim (the double's builder) and the engine cache: a restart with
//! the same inputs reuses the engine, each changed input forces exactly one rebuild, failures
//! leave nothing half-written, and an unwritable cache stops start-up with a clear error.

use crate::common;

use common::{demo_onnx, runtime, write_onnx};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use vigil_engine::backend::Backend;
use vigil_engine::tensor::Tensor;
use vigil_tensorrt::double::{self, EngineDesc, Faults, Sim, TIMING_MAGIC};
use vigil_tensorrt::{
    load_or_build, shell_join, trtexec_command, BuildEvent, BuildOptions, Device, EngineCache,
    EngineKey, Precision, TensorRtBackend, TrtError, TrtVersion,
};

fn calib(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!("TRT-100300-EntropyCalibration2\nframes: 3c010a14\n{body}\n"),
    )
    .unwrap();
    p
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn builds_from_onnx_with_progress_and_a_timing_cache() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = demo_onnx(dir.path(), "a");
    let rt = runtime();
    let mut events = Vec::new();
    let out = rt
        .build_engine(&BuildOptions::new(&onnx, Precision::Fp16), None, |e| {
            events.push(format!("{e:?}"));
            true
        })
        .unwrap();
    let desc = EngineDesc::from_bytes(&out.engine).unwrap();
    assert!(desc.fp16 && !desc.int8 && desc.dla_core.is_none());
    assert_eq!(desc.timing_cache_in, 0);
    let timing = out.timing_cache.expect("timing cache");
    assert!(timing.starts_with(TIMING_MAGIC.as_bytes()));
    // Coarse phases from the shim, nested ones as TensorRT 10 reports them.
    assert!(
        events[0].contains("PhaseStart") && events[0].contains("\"parse\""),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.contains("Some(\"build\")")),
        "{events:?}"
    );
    assert!(events.iter().any(|e| e.contains("Step")), "{events:?}");
    assert!(
        events.last().unwrap().contains("PhaseEnd") && events.last().unwrap().contains("\"build\"")
    );

    // The engine runs the ONNX's interface.
    let engine = rt.deserialize(&out.engine, None).unwrap();
    let names: Vec<&str> = engine.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["frames", "flow", "recon", "error"]);
    let mut backend = TensorRtBackend::from_engine(&engine).unwrap();
    let ins = [
        Tensor::new(&[1, 2, 4, 4], vec![1.0; 32]).unwrap(),
        Tensor::zeros(&[1, 2, 4, 4]),
    ];
    let mut outs = backend.alloc_outputs();
    backend.run(&ins, &mut outs).unwrap();
    assert_eq!(outs[1].data(), &[4.0; 16]);

    // A second build gets the first one's timing cache.
    let out2 = rt
        .build_engine(
            &BuildOptions::new(&onnx, Precision::Fp32),
            Some(&timing),
            |_| true,
        )
        .unwrap();
    assert_eq!(
        EngineDesc::from_bytes(&out2.engine)
            .unwrap()
            .timing_cache_in,
        timing.len()
    );
}

#[test]
fn tensorrt_8_6_reports_only_coarse_phases() {
    let _g = double::simulate(Sim {
        trt_version: (8, 6, 2),
        ..Sim::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let onnx = demo_onnx(dir.path(), "a");
    let rt = runtime();
    let mut phases = Vec::new();
    rt.build_engine(&BuildOptions::new(&onnx, Precision::Fp16), None, |e| {
        if let BuildEvent::PhaseStart { phase, .. } = e {
            phases.push(phase.to_string());
        }
        true
    })
    .unwrap();
    assert_eq!(phases, ["parse", "build"]);
}

#[test]
fn cancelling_or_panicking_progress_stops_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = demo_onnx(dir.path(), "a");
    let rt = runtime();
    let opts = BuildOptions::new(&onnx, Precision::Fp16);
    let err = rt
        .build_engine(&opts, None, |e| {
            !matches!(e, BuildEvent::Step { step: 2, .. })
        })
        .unwrap_err();
    assert!(matches!(err, TrtError::Cancelled), "{err:?}");
    let before = double::builds_on_this_thread();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.build_engine(&opts, None, |_| panic!("progress bar broke"))
    }));
    let payload = panicked.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"progress bar broke"));
    assert_eq!(double::builds_on_this_thread(), before);
}

#[test]
fn build_failures_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = demo_onnx(dir.path(), "a");
    let rt = runtime();
    let build = |o: &BuildOptions| rt.build_engine(o, None, |_| true).unwrap_err();

    let err = build(&BuildOptions::new(&onnx, Precision::Int8));
    assert!(
        matches!(err, TrtError::Config { ref reason } if reason.contains("calib")),
        "{err:?}"
    );
    let mut dla32 = BuildOptions::new(&onnx, Precision::Fp32);
    dla32.dla_core = Some(0);
    assert!(matches!(build(&dla32), TrtError::Config { .. }));
    let mut dla5 = BuildOptions::new(&onnx, Precision::Fp16);
    dla5.dla_core = Some(5);
    assert!(matches!(build(&dla5), TrtError::Unsupported { .. }));

    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"not protobuf at all \xff\xff").unwrap();
    let err = build(&BuildOptions::new(&garbage, Precision::Fp16));
    assert!(matches!(err, TrtError::Parse { .. }), "{err:?}");

    let dynamic = write_onnx(
        &dir.path().join("dyn.onnx"),
        &[("x", &[-1, 3, 8, 8])],
        &[("y", &[-1, 3, 8, 8])],
        "d",
    );
    let err = build(&BuildOptions::new(&dynamic, Precision::Fp16));
    assert!(
        matches!(err, TrtError::Build { ref message } if message.contains("optimization profile")),
        "{err:?}"
    );

    let _g = double::inject(Faults {
        build_fails: true,
        ..Faults::default()
    });
    assert!(matches!(
        build(&BuildOptions::new(&onnx, Precision::Fp16)),
        TrtError::Build { .. }
    ));
}

#[test]
fn key_names_every_input_and_ignores_calibration_where_unused() {
    let sha = "AB".repeat(32);
    let key = EngineKey::new(
        &sha,
        Precision::Int8,
        Some(&"cd".repeat(32)),
        TrtVersion::new(10, 3, 0),
        Device::Dla {
            core: 1,
            sm: (8, 7),
        },
    );
    assert_eq!(
        key.file_stem(),
        "abababababababab-int8-cdcdcdcdcdcdcdcd-trt10.3.0-sm87-dla1"
    );
    let fp16 = EngineKey::new(
        &sha,
        Precision::Fp16,
        Some("ff"),
        TrtVersion::new(8, 6, 2),
        Device::Gpu { sm: (7, 2) },
    );
    assert_eq!(fp16.calib_sha256, None);
    assert_eq!(
        fp16.file_stem(),
        "abababababababab-fp16-nocalib-trt8.6.2-sm72"
    );
    // Anything that is not hex cannot reach a file name.
    let odd = EngineKey::new(
        "../../etc/passwd",
        Precision::Fp32,
        None,
        TrtVersion::new(10, 3, 0),
        Device::Gpu { sm: (8, 7) },
    );
    assert!(!odd.file_stem().contains('/'));
}

/// What one `vigil run` start does; returns whether it built.
fn start(cache_dir: &Path, opts: &BuildOptions) -> bool {
    let rt = runtime();
    let cache = EngineCache::open(cache_dir).unwrap();
    let prepared = load_or_build(&rt, &cache, opts, |_| true).unwrap();
    assert_eq!(prepared.engine.tensors().len(), 4);
    prepared.built
}

#[test]
fn restarts_reuse_and_each_changed_input_rebuilds_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("engines");
    let onnx_a = demo_onnx(dir.path(), "a");
    let onnx_b = demo_onnx(dir.path(), "b");
    let cal1 = calib(dir.path(), "calib1.cache", "input: 3c010a14");
    let cal2 = calib(dir.path(), "calib2.cache", "input: 3c020a14");
    let builds = || double::builds_on_this_thread();
    let base = builds();

    let fp16 = BuildOptions::new(&onnx_a, Precision::Fp16);
    assert!(start(&cache_dir, &fp16));
    assert_eq!(builds() - base, 1);
    // Restart (new runtime, new cache handle, same directory): no build.
    assert!(!start(&cache_dir, &fp16));
    assert!(!start(&cache_dir, &fp16));
    assert_eq!(builds() - base, 1);

    // ONNX bytes changed (same interface): one rebuild, then reused.
    let retrained = BuildOptions::new(&onnx_b, Precision::Fp16);
    assert!(start(&cache_dir, &retrained));
    assert!(!start(&cache_dir, &retrained));
    assert_eq!(builds() - base, 2);

    // Precision changed.
    let fp32 = BuildOptions::new(&onnx_a, Precision::Fp32);
    assert!(start(&cache_dir, &fp32));
    assert!(!start(&cache_dir, &fp32));
    assert_eq!(builds() - base, 3);

    // INT8, then its calibration cache changed.
    let mut int8 = BuildOptions::new(&onnx_a, Precision::Int8);
    int8.calib_cache = Some(cal1.clone());
    assert!(start(&cache_dir, &int8));
    assert!(!start(&cache_dir, &int8));
    int8.calib_cache = Some(cal2.clone());
    assert!(start(&cache_dir, &int8));
    assert!(!start(&cache_dir, &int8));
    assert_eq!(builds() - base, 5);

    // A calibration change does not touch an FP16 engine, which never read it.
    let mut fp16_cal = fp16.clone();
    fp16_cal.calib_cache = Some(cal1);
    assert!(!start(&cache_dir, &fp16_cal));
    assert_eq!(builds() - base, 5);

    // TensorRT upgraded (JetPack update): one rebuild, then reused.
    {
        let _g = double::simulate(Sim {
            trt_version: (10, 3, 1),
            ..Sim::default()
        });
        assert!(start(&cache_dir, &fp16));
        assert!(!start(&cache_dir, &fp16));
    }
    assert_eq!(builds() - base, 6);

    // DLA core: its own engine.
    let mut dla = fp16.clone();
    dla.dla_core = Some(0);
    assert!(start(&cache_dir, &dla));
    assert!(!start(&cache_dir, &dla));
    assert_eq!(builds() - base, 7);

    // And every earlier variant is still cached.
    for opts in [&fp16, &retrained, &fp32, &int8] {
        assert!(!start(&cache_dir, opts));
    }
    assert_eq!(builds() - base, 7);
    let names = files(&cache_dir);
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".engine")).count(),
        7,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".json")).count(),
        7,
        "{names:?}"
    );
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}

#[test]
fn the_timing_cache_is_persisted_and_fed_back() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("engines");
    let onnx = demo_onnx(dir.path(), "a");
    let rt = runtime();
    let cache = EngineCache::open(&cache_dir).unwrap();
    let first = load_or_build(
        &rt,
        &cache,
        &BuildOptions::new(&onnx, Precision::Fp16),
        |_| true,
    )
    .unwrap();
    let device = Device::Gpu { sm: (8, 7) };
    let tc = cache.timing_cache_path(&TrtVersion::new(10, 3, 0), &device);
    assert_eq!(tc.file_name().unwrap(), "timing-trt10.3.0-sm87.cache");
    let saved = std::fs::read(&tc).unwrap();
    assert!(saved.starts_with(TIMING_MAGIC.as_bytes()));
    assert_eq!(
        EngineDesc::from_bytes(&std::fs::read(&first.path).unwrap())
            .unwrap()
            .timing_cache_in,
        0
    );

    let second = load_or_build(
        &rt,
        &cache,
        &BuildOptions::new(&onnx, Precision::Fp32),
        |_| true,
    )
    .unwrap();
    let desc = EngineDesc::from_bytes(&std::fs::read(&second.path).unwrap()).unwrap();
    assert_eq!(desc.timing_cache_in, saved.len());
    assert!(std::fs::read(&tc).unwrap().len() > saved.len());
}

#[test]
fn damaged_engines_are_rebuilt_once() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("engines");
    let onnx = demo_onnx(dir.path(), "a");
    let opts = BuildOptions::new(&onnx, Precision::Fp16);
    let base = double::builds_on_this_thread();
    assert!(start(&cache_dir, &opts));
    let rt = runtime();
    let key = EngineKey::for_build(&opts, rt.info()).unwrap();
    let cache = EngineCache::open(&cache_dir).unwrap();
    let engine = cache.engine_path(&key);

    // Truncated (power cut while copying, full disk): rebuilt, then reused.
    let bytes = std::fs::read(&engine).unwrap();
    std::fs::write(&engine, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(cache.lookup(&key), None);
    assert!(start(&cache_dir, &opts));
    assert!(!start(&cache_dir, &opts));
    assert_eq!(double::builds_on_this_thread() - base, 2);

    // Same size, flipped content.
    let mut bytes = std::fs::read(&engine).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&engine, &bytes).unwrap();
    assert!(start(&cache_dir, &opts));
    assert_eq!(double::builds_on_this_thread() - base, 3);

    // Record lost: rebuilt.
    let sidecar = engine.with_extension("json");
    std::fs::remove_file(&sidecar).unwrap();
    assert!(start(&cache_dir, &opts));
    assert_eq!(double::builds_on_this_thread() - base, 4);

    // Checksum fine but TensorRT refuses the file (here: a plan of another TensorRT written
    // with a matching record): load_or_build rebuilds once instead of failing every boot.
    let mut foreign = EngineDesc::from_bytes(&std::fs::read(&engine).unwrap()).unwrap();
    foreign.trt_version = (9, 9, 9);
    let foreign = foreign.to_bytes();
    std::fs::write(&engine, &foreign).unwrap();
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    record["engine_sha256"] = vigil_tensorrt::sha256_file(&engine).unwrap().into();
    record["engine_bytes"] = (foreign.len() as u64).into();
    std::fs::write(&sidecar, serde_json::to_vec(&record).unwrap()).unwrap();
    assert_eq!(cache.lookup(&key), Some(engine.clone()));
    assert!(start(&cache_dir, &opts));
    assert!(!start(&cache_dir, &opts));
    assert_eq!(double::builds_on_this_thread() - base, 5);
}

#[test]
fn a_failed_build_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("engines");
    let onnx = demo_onnx(dir.path(), "a");
    let rt = runtime();
    let cache = EngineCache::open(&cache_dir).unwrap();
    {
        let _g = double::inject(Faults {
            build_fails: true,
            ..Faults::default()
        });
        let err = load_or_build(
            &rt,
            &cache,
            &BuildOptions::new(&onnx, Precision::Fp16),
            |_| true,
        )
        .unwrap_err();
        assert!(matches!(err, TrtError::Build { .. }), "{err:?}");
    }
    assert_eq!(files(&cache_dir), Vec::<String>::new());

    // A build closure that writes half a file and then fails, or panics.
    let key = EngineKey::for_build(&BuildOptions::new(&onnx, Precision::Fp16), rt.info()).unwrap();
    let err = cache
        .get_or_build(&key, |tmp| {
            std::fs::write(tmp, b"half an engi").unwrap();
            Err(TrtError::Build {
                message: "disk full".to_owned(),
            })
        })
        .unwrap_err();
    assert!(matches!(err, TrtError::Build { .. }));
    let panicked = std::panic::catch_unwind(|| {
        let _ = cache.get_or_build(&key, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            panic!("builder crashed")
        });
    });
    assert!(panicked.is_err());
    let err = cache.get_or_build(&key, |_| Ok(())).unwrap_err();
    assert!(
        matches!(err, TrtError::Io { .. } | TrtError::Build { .. }),
        "{err:?}"
    );
    assert_eq!(files(&cache_dir), Vec::<String>::new());

    // get_or_build calls its builder once and never when the engine is cached.
    let calls = Cell::new(0);
    let build = |tmp: &Path| {
        calls.set(calls.get() + 1);
        std::fs::write(tmp, b"engine bytes").map_err(|e| TrtError::Build {
            message: e.to_string(),
        })
    };
    assert!(cache.get_or_build(&key, build).unwrap().built);
    assert!(!cache.get_or_build(&key, build).unwrap().built);
    assert_eq!(calls.get(), 1);
}

#[test]
fn an_unwritable_cache_directory_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // Tests run as root on CI and dev machines, where chmod does not stop writes; a directory
    // "under" a regular file can never be created, whoever we are.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = EngineCache::open(file.join("engines")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TrtError::CacheDir { .. }));
    assert!(
        msg.contains("not-a-dir/engines") && msg.contains("cannot be created"),
        "{msg}"
    );
    assert!(
        msg.contains("ReadWritePaths") && msg.contains("install -d -o vigil"),
        "{msg}"
    );
    let err = EngineCache::open(&file).unwrap_err();
    assert!(
        err.to_string().contains("not a directory")
            || err.to_string().contains("cannot be created"),
        "{err}"
    );

    // Without root, a read-only directory is refused by the write probe.
    use std::os::unix::fs::PermissionsExt;
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let privileged = std::fs::write(ro.join("probe"), b"x").is_ok();
    if privileged {
        eprintln!("running with CAP_DAC_OVERRIDE (root): the read-only-directory case cannot be observed here");
    } else {
        let err = EngineCache::open(&ro).unwrap_err();
        assert!(err.to_string().contains("is not writable"), "{err}");
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn temporary_files_of_dead_builds_are_cleaned_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir
        .path()
        .join(".abc-fp16-nocalib-trt10.3.0-sm87.engine.tmp-999999999-0");
    let live = dir
        .path()
        .join(format!(".abc.engine.tmp-{}-7", std::process::id()));
    std::fs::write(&dead, b"partial").unwrap();
    std::fs::write(&live, b"partial").unwrap();
    EngineCache::open(dir.path()).unwrap();
    assert!(!dead.exists());
    assert!(live.exists());
}

#[test]
fn the_shipped_model_package_builds_and_runs_through_the_manifest_specs() {
    let pkg_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/ped2-bdfi");
    let pkg = vigil_engine::package::ModelPackage::load(&pkg_dir).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let cache = EngineCache::open(dir.path()).unwrap();
    let prepared = load_or_build(
        &rt,
        &cache,
        &BuildOptions::new(pkg.onnx_path(), Precision::Fp16),
        |_| true,
    )
    .unwrap();
    let key = &prepared.key;
    assert_eq!(
        key.onnx_sha256,
        pkg.manifest.onnx.sha256.to_ascii_lowercase()
    );
    let m = &pkg.manifest.onnx;
    let mut backend = TensorRtBackend::new(&prepared.engine, &m.inputs, &m.outputs).unwrap();
    let ins = backend.alloc_inputs();
    let mut outs = backend.alloc_outputs();
    backend.run(&ins, &mut outs).unwrap();
    // Zero inputs: every output k is bias + k.
    for (k, o) in outs.iter().enumerate() {
        let engine_k = prepared
            .engine
            .outputs()
            .position(|t| t.name == m.outputs[k].name)
            .unwrap();
        assert!(o.data().iter().all(|&v| v == 1.0 + engine_k as f32));
    }
}

#[test]
fn trtexec_equivalents() {
    let mut o = BuildOptions::new(
        "/usr/share/vigil/models/ped2-bdfi/model.onnx",
        Precision::Fp16,
    );
    assert_eq!(
        shell_join(&trtexec_command(&o, Path::new("/var/lib/vigil/engines/x.engine"), None)),
        "trtexec --onnx=/usr/share/vigil/models/ped2-bdfi/model.onnx --saveEngine=/var/lib/vigil/engines/x.engine --skipInference --fp16"
    );
    o.precision = Precision::Int8;
    o.calib_cache = Some("/pkg/calib.cache".into());
    o.dla_core = Some(1);
    o.workspace_mb = Some(1024);
    let cmd = trtexec_command(
        &o,
        Path::new("/e/x.engine"),
        Some(Path::new("/e/timing-trt10.3.0-sm87-dla1.cache")),
    );
    assert_eq!(
        cmd[3..],
        [
            "--skipInference",
            "--int8",
            "--calib=/pkg/calib.cache",
            "--useDLACore=1",
            "--allowGPUFallback",
            "--memPoolSize=workspace:1024",
            "--timingCacheFile=/e/timing-trt10.3.0-sm87-dla1.cache"
        ]
    );
    o.precision = Precision::Best;
    o.gpu_fallback = false;
    o.onnx = "/my models/it's.onnx".into();
    let cmd = trtexec_command(&o, Path::new("/e/x.engine"), None);
    assert!(cmd.contains(&"--fp16".to_owned()) && cmd.contains(&"--int8".to_owned()));
    assert!(!cmd
        .iter()
        .any(|a| a == "--best" || a == "--allowGPUFallback"));
    assert!(shell_join(&cmd).starts_with(r"trtexec '--onnx=/my models/it'\''s.onnx' "));
}

#[test]
fn precision_parses_from_the_command_line() {
    assert_eq!("FP16".parse::<Precision>(), Ok(Precision::Fp16));
    assert_eq!("best".parse::<Precision>(), Ok(Precision::Best));
    assert!("fp8"
        .parse::<Precision>()
        .unwrap_err()
        .contains("fp32, fp16, int8 or best"));
}
