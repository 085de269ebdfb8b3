//! Every shipped package carries an INT8 calibration cache made for its own ONNX (TensorRT's
//! cache format, written by `vigil calib int8`), so `vigil engine build --precision int8|best`
//! works for each of them on a Jetson. The cache holds no hash of the network, so the manifest's
//! `[int8]` table ties the two together; these tests fail when a package is re-exported without
//! a new cache, when the cache is edited, or when its tensor names are not the network's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use vigil_calib::int8::CalibrationCache;
use vigil_engine::backend::probe::{NoHook, ProbeBackend};
use vigil_engine::package::ModelPackage;

fn packages() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.toml").is_file())
        .collect();
    dirs.sort();
    assert_eq!(
        dirs.len(),
        5,
        "expected the five shipped packages in {root:?}"
    );
    dirs
}

#[test]
fn every_shipped_package_carries_a_cache_made_for_its_onnx() {
    for dir in packages() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        // Loading checks the cache's sha256 and that it was computed on this ONNX.
        let pkg = ModelPackage::load(&dir).unwrap();
        let q = pkg.manifest.int8.as_ref().unwrap_or_else(|| {
            panic!(
                "{name}: no [int8] table; run `vigil calib int8 {}`",
                dir.display()
            )
        });
        let text = std::fs::read_to_string(pkg.calib_cache_path()).unwrap();
        let cache = CalibrationCache::parse(&text).unwrap();
        let v: Vec<u32> = q.trt.split('.').map(|p| p.parse().unwrap()).collect();
        assert_eq!(
            cache.version().parts(),
            Some((v[0], v[1], v[2])),
            "{name}: the cache header and [int8] trt disagree"
        );
        let m = &pkg.manifest;
        let probe =
            ProbeBackend::load(&pkg.onnx_path(), &m.onnx.inputs, &m.onnx.outputs, NoHook).unwrap();
        let acts = probe.activations();
        let all: BTreeSet<&str> = acts.iter().map(|a| a.name.as_str()).collect();
        let strangers: Vec<&str> = cache
            .iter()
            .map(|(n, _)| n)
            .filter(|n| !all.contains(n))
            .collect();
        assert!(
            strangers.is_empty(),
            "{name}: cache names tensors the network lacks: {strangers:?}"
        );
        let unplanned: Vec<&str> = acts
            .iter()
            .filter(|a| {
                a.int8 && cache.get(&a.name).is_none() && !q.keep_float.contains_key(&a.name)
            })
            .map(|a| a.name.as_str())
            .collect();
        assert!(
            unplanned.is_empty(),
            "{name}: INT8-read tensors neither in the cache nor in [int8] keep_float: {unplanned:?}"
        );
        for (t, why) in &q.keep_float {
            assert!(
                all.contains(t.as_str()),
                "{name}: keep_float names `{t}`, not a tensor of the network"
            );
            assert!(
                cache.get(t).is_none(),
                "{name}: `{t}` is kept float but has a scale in the cache"
            );
            assert!(!why.is_empty(), "{name}: keep_float `{t}` gives no reason");
        }
        let int8_read = acts.iter().filter(|a| a.int8).count();
        println!(
            "{name}: {} scales, {} of {int8_read} INT8-read tensors kept float, TensorRT {}",
            cache.len(),
            q.keep_float.len(),
            q.trt
        );
    }
}

/// A copy of the BDFI package in a temporary directory.
fn copy_of_bdfi() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ped2-bdfi");
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.toml", "model.onnx", "calib.cache"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    dir
}

#[test]
fn a_cache_of_other_weights_or_an_edited_cache_is_refused_on_load() {
    let dir = copy_of_bdfi();
    ModelPackage::load(dir.path()).unwrap();

    // The manifest says the cache was made for another ONNX (a re-export without recalibration).
    let toml = dir.path().join("model.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let onnx_sha = ModelPackage::load(dir.path()).unwrap().manifest.onnx.sha256;
    let line = format!("onnx_sha256 = \"{onnx_sha}\"");
    assert!(text.contains(&line), "[int8] onnx_sha256 line not found");
    std::fs::write(
        &toml,
        text.replace(&line, &format!("onnx_sha256 = \"{}\"", "0".repeat(64))),
    )
    .unwrap();
    let e = ModelPackage::load(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("[int8]") && e.contains("vigil calib int8"),
        "{e}"
    );
    std::fs::write(&toml, &text).unwrap();

    // One scale edited by hand.
    let cache = dir.path().join("calib.cache");
    let mut c = std::fs::read_to_string(&cache).unwrap();
    let last = c.trim_end().rfind(':').unwrap();
    c.replace_range(
        last + 2..last + 3,
        if &c[last + 2..last + 3] == "3" {
            "4"
        } else {
            "3"
        },
    );
    std::fs::write(&cache, &c).unwrap();
    let e = ModelPackage::load(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("calib.cache has sha256") && e.contains("vigil calib int8"),
        "{e}"
    );

    // Gone.
    std::fs::remove_file(&cache).unwrap();
    let e = ModelPackage::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("calib.cache is missing"), "{e}");
}
