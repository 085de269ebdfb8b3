//! The shipped Ped2 package and damaged copies of it: the package validates itself on load and
//! names what is wrong; the `bdfi` recipe fuses its components as docs/models.md says.

use std::path::{Path, PathBuf};
use vigil_engine::package::{ModelPackage, PackageError};
use vigil_engine::recipe::{self, RecipeError, MAX_COMPONENTS};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ped2-bdfi")
}

/// A copy of the shipped package whose manifest went through `edit`.
fn copy_with(edit: impl FnOnce(&mut toml::Table)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.onnx", "model.toml", "calib.cache"] {
        // Not every package has its INT8 cache yet (engine/tests/int8_caches.rs).
        if shipped().join(f).exists() {
            std::fs::copy(shipped().join(f), dir.path().join(f)).unwrap();
        }
    }
    let path = dir.path().join("model.toml");
    let mut t: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    edit(&mut t);
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
    dir
}

fn table<'a>(t: &'a mut toml::Table, key: &str) -> &'a mut toml::Table {
    t.get_mut(key)
        .and_then(|v| v.as_table_mut())
        .unwrap_or_else(|| panic!("[{key}] missing"))
}

#[test]
fn shipped_package_loads_with_the_flow_component_calibrated() {
    let pkg = ModelPackage::load(&shipped()).unwrap();
    let r = recipe::build(&pkg).unwrap();
    assert_eq!(r.name(), "bdfi");
    assert_eq!(r.component_names(), ["int", "con", "flow"]);
    let cal = pkg
        .manifest
        .calibration
        .as_ref()
        .expect("the shipped package is calibrated");
    for c in r.component_names() {
        assert!(cal.components[*c].std > 0.0, "component {c}");
    }
}

#[test]
fn streaming_fusion_is_the_documented_weighted_sum_of_z_scores() {
    let pkg = ModelPackage::load(&shipped()).unwrap();
    let r = recipe::build(&pkg).unwrap();
    let p = &pkg.manifest.params;
    let alpha = p["alpha"].as_float().unwrap() as f32;
    let w = p["flow_weight"].as_float().unwrap() as f32;
    let cal = pkg.manifest.calibration.as_ref().unwrap();
    let z = |name: &str, v: f32| (v - cal.components[name].mean) / cal.components[name].std;
    let mut c = [0.0f32; MAX_COMPONENTS];
    c[..3].copy_from_slice(&[0.0009, 0.2701, 1.7]);
    let expected =
        (1.0 - w) * (alpha * z("int", c[0]) + (1.0 - alpha) * z("con", c[1])) + w * z("flow", c[2]);
    let got = r.fuse(&c);
    assert!(
        (got - expected).abs() <= 1e-4 * expected.abs().max(1.0),
        "fuse {got} != {expected}"
    );
}

#[test]
fn flow_weight_zero_is_the_papers_score() {
    let dir = copy_with(|t| {
        let p = table(t, "params");
        p.insert("alpha".into(), 0.3.into());
        p.insert("flow_weight".into(), 0.0.into());
    });
    let pkg = ModelPackage::load(dir.path()).unwrap();
    let r = recipe::build(&pkg).unwrap();
    assert_eq!(r.component_names(), ["int", "con"]);
    // Paper protocol: per-video min-max of each component, 0.3 * S_int + 0.7 * S_con.
    let int = vec![1.0, 3.0, 2.0];
    let con = vec![10.0, 10.0, 30.0];
    let got = r.paper_scores(&[int, con, vec![5.0, 6.0, 7.0]]);
    let expected = [0.0, 0.3, 0.3 * 0.5 + 0.7];
    for (g, e) in got.iter().zip(expected) {
        assert!((g - e).abs() < 1e-6, "{got:?} != {expected:?}");
    }
    // the package scores as the paper does: nothing separate to report
    assert!(r
        .paper_formula_scores(&[vec![1.0, 2.0], vec![3.0, 4.0]])
        .is_none());
}

#[test]
fn other_weights_still_report_the_papers_own_formula() {
    let dir = copy_with(|t| {
        let p = table(t, "params");
        p.insert("alpha".into(), 1.0.into());
        p.insert("flow_weight".into(), 0.5.into());
    });
    let pkg = ModelPackage::load(dir.path()).unwrap();
    let r = recipe::build(&pkg).unwrap();
    let (int, con, flow) = (
        vec![1.0, 3.0, 2.0],
        vec![10.0, 10.0, 30.0],
        vec![5.0, 7.0, 6.0],
    );
    let c = [int, con, flow];
    // the package's: 0.5 S_int + 0.5 S_flow; the paper's: 0.3 S_int + 0.7 S_con
    let shipped = r.paper_scores(&c);
    let paper = r
        .paper_formula_scores(&c)
        .expect("weights differ from the paper's");
    for (g, e) in shipped.iter().zip([0.0, 1.0, 0.5]) {
        assert!((g - e).abs() < 1e-6, "{shipped:?}");
    }
    for (g, e) in paper.iter().zip([0.0, 0.3, 0.3 * 0.5 + 0.7]) {
        assert!((g - e).abs() < 1e-6, "{paper:?}");
    }
}

#[test]
fn out_of_range_flow_weight_names_the_parameter() {
    let dir = copy_with(|t| {
        table(t, "params").insert("flow_weight".into(), 1.5.into());
    });
    let pkg = ModelPackage::load(dir.path()).unwrap();
    let e = recipe::build(&pkg)
        .err()
        .expect("flow_weight 1.5 must be rejected");
    assert!(
        matches!(&e, RecipeError::Param { key, .. } if key == "flow_weight"),
        "{e}"
    );
    assert!(e.to_string().contains("outside [0, 1]"), "{e}");
}

#[test]
fn calibration_without_the_flow_component_says_to_recalibrate() {
    let dir = copy_with(|t| {
        let cal = table(t, "calibration");
        table(cal, "components").remove("flow");
    });
    let pkg = ModelPackage::load(dir.path()).unwrap();
    let e = recipe::build(&pkg)
        .err()
        .expect("missing calibration must be rejected")
        .to_string();
    assert!(
        e.contains("`flow`") && e.contains("vigil calib scores"),
        "{e}"
    );
}

#[test]
fn a_replaced_onnx_file_fails_the_checksum() {
    let dir = copy_with(|_| {});
    let onnx = dir.path().join("model.onnx");
    let mut bytes = std::fs::read(&onnx).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&onnx, bytes).unwrap();
    let e = ModelPackage::load(dir.path()).expect_err("a damaged ONNX must be rejected");
    assert!(matches!(e, PackageError::Checksum { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("re-export the package or restore the file"),
        "{e}"
    );
}

#[test]
fn a_manifest_output_the_graph_lacks_is_named() {
    let dir = copy_with(|t| {
        let outs = table(t, "onnx")
            .get_mut("outputs")
            .and_then(|v| v.as_array_mut())
            .unwrap();
        outs[2]
            .as_table_mut()
            .unwrap()
            .insert("name".into(), "flows".into());
    });
    let e = ModelPackage::load(dir.path())
        .expect_err("a wrong output name must be rejected")
        .to_string();
    assert!(e.contains("flows"), "{e}");
}

#[test]
fn an_unknown_manifest_key_is_an_error_not_ignored() {
    let dir = copy_with(|t| {
        table(t, "input").insert("widht".into(), 192.into());
    });
    let e = ModelPackage::load(dir.path())
        .expect_err("a misspelt key must be rejected")
        .to_string();
    assert!(e.contains("widht") && e.contains("model.toml"), "{e}");
}

#[test]
fn a_directory_without_a_manifest_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let e = ModelPackage::load(dir.path()).err().unwrap().to_string();
    assert!(
        e.contains("model.toml not found") && e.contains("docs/model-package.md"),
        "{e}"
    );
}

fn shipped_package(name: &str) -> ModelPackage {
    ModelPackage::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(name),
    )
    .unwrap()
}

/// A copy of a shipped package `name` whose manifest went through `edit`.
fn copy_package_with(name: &str, edit: impl FnOnce(&mut toml::Table)) -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name);
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.onnx", "model.toml", "calib.cache"] {
        // Not every package has its INT8 cache yet (engine/tests/int8_caches.rs).
        if src.join(f).exists() {
            std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
        }
    }
    let path = dir.path().join("model.toml");
    let mut t: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    edit(&mut t);
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
    dir
}

#[test]
fn flow_recipes_load_and_refuse_a_package_without_flow() {
    for (name, recipe, components) in [
        ("ped2-maam-net", "maam-net", &["pscd", "img", "flow"][..]),
        ("ped2-stm-ae", "stm-ae", &["psnr"][..]),
    ] {
        let pkg = shipped_package(name);
        assert!(pkg.manifest.flow.is_some(), "{name} ships a [flow] table");
        let r = recipe::build(&pkg).unwrap();
        assert_eq!(r.name(), recipe);
        assert_eq!(r.component_names(), components);

        let dir = copy_package_with(name, |t| {
            t.remove("flow");
        });
        let pkg = ModelPackage::load(dir.path()).unwrap();
        let err = recipe::build(&pkg)
            .err()
            .expect("a flow recipe without [flow] is refused");
        assert!(err.to_string().contains("[flow]"), "{name}: {err}");

        // a bad estimator parameter is caught when the package loads, naming the key
        let dir = copy_package_with(name, |t| {
            table(t, "flow").insert("poly_n".into(), toml::Value::Integer(6));
        });
        let err = ModelPackage::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("poly_n"), "{name}: {err}");

        // an unknown key or estimator is a manifest error, not silently ignored
        let dir = copy_package_with(name, |t| {
            table(t, "flow").insert("win_size".into(), toml::Value::Integer(15));
        });
        let err = ModelPackage::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("win_size"), "{name}: {err}");
        let dir = copy_package_with(name, |t| {
            table(t, "flow").insert("method".into(), toml::Value::String("dis".into()));
        });
        let err = ModelPackage::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("dis"), "{name}: {err}");
    }
}

#[test]
fn maam_net_paper_scores_are_per_video_minmax_of_pscd_and_stm_ae_inverts_psnr() {
    let maam = recipe::build(&shipped_package("ped2-maam-net")).unwrap();
    let s = maam.paper_scores(&[
        vec![2.0, 4.0, 3.0],
        vec![9.0, 0.0, 1.0],
        vec![0.0, 9.0, 1.0],
    ]);
    assert_eq!(s, vec![0.0, 1.0, 0.5], "only pscd enters the score");
    let stm = recipe::build(&shipped_package("ped2-stm-ae")).unwrap();
    // high PSNR = normal: the paper's S = 1 - minmax(PSNR)
    assert_eq!(
        stm.paper_scores(&[vec![30.0, 20.0, 25.0]]),
        vec![0.0, 1.0, 0.5]
    );
    let mut c = [0.0; MAX_COMPONENTS];
    c[0] = 30.0;
    let high = stm.fuse(&c);
    c[0] = 20.0;
    assert!(
        stm.fuse(&c) > high,
        "a lower PSNR must give a higher streaming score"
    );
}

#[test]
fn hf2vad_package_checks_its_objects_table_against_the_graph() {
    let pkg = shipped_package("ped2-hf2vad");
    let o = pkg
        .manifest
        .objects
        .expect("ped2-hf2vad ships [objects]")
        .params();
    assert_eq!((o.slots, o.cube), (16, 32));
    let r = recipe::build(&pkg).unwrap();
    assert_eq!(
        r.component_names(),
        ["score", "flow_err", "frame_err", "objects"]
    );

    // the table's slot count must be the graph's batch
    let dir = copy_package_with("ped2-hf2vad", |t| {
        table(t, "objects").insert("slots".into(), toml::Value::Integer(8));
    });
    let err = ModelPackage::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("8 slots"), "{err}");
    // without [objects] the cube inputs are not frames of the model resolution
    let dir = copy_package_with("ped2-hf2vad", |t| {
        t.remove("objects");
    });
    let err = ModelPackage::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("input `frames`"), "{err}");
    // a bad extractor parameter and an unknown one are named
    let dir = copy_package_with("ped2-hf2vad", |t| {
        table(t, "objects").insert("min_area".into(), toml::Value::Integer(0));
    });
    let err = ModelPackage::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("min_area"), "{err}");
    let dir = copy_package_with("ped2-hf2vad", |t| {
        table(t, "objects").insert("min_size".into(), toml::Value::Integer(3));
    });
    let err = ModelPackage::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("min_size"), "{err}");
    // the training statistics are required, not defaulted
    let dir = copy_package_with("ped2-hf2vad", |t| {
        table(t, "params").remove("sr_std");
    });
    let pkg = ModelPackage::load(dir.path()).unwrap();
    let err = recipe::build(&pkg).err().expect("sr_std is required");
    assert!(
        matches!(&err, RecipeError::Param { key, .. } if key == "sr_std"),
        "{err}"
    );
}

#[test]
fn hf2vad_scores_frames_by_the_median_of_17_and_ustn_dsc_by_non_overlapping_clips() {
    let hf = recipe::build(&shipped_package("ped2-hf2vad")).unwrap();
    // the official median filter (width 17, zero padded as scipy.signal.medfilt) removes a
    // one-frame spike and keeps a 9-frame event
    let spike: Vec<f32> = (0..40).map(|i| if i == 20 { 9.0 } else { 1.0 }).collect();
    assert_eq!(hf.paper_scores(&[spike]), vec![1.0; 40]);
    let event: Vec<f32> = (0..40)
        .map(|i| if (16..25).contains(&i) { 9.0 } else { 1.0 })
        .collect();
    assert_eq!(hf.paper_scores(&[event])[20], 9.0);

    let ustn = recipe::build(&shipped_package("ped2-ustn-dsc")).unwrap();
    assert_eq!(ustn.window_len(), 9);
    // frames 0..8 take the clip ending at 8, 9..17 the one ending at 17, 18..19 the last one;
    // then 1 - minmax of the PSNR
    let psnr: Vec<f32> = (0..20).map(|i| i as f32).collect();
    let s = ustn.paper_scores(&[psnr]);
    let expected = |v: f32| 1.0 - (v - 8.0) / (19.0 - 8.0);
    for (i, got) in s.iter().enumerate() {
        let clip_end = [8.0, 17.0, 19.0][i / 9];
        assert!((got - expected(clip_end)).abs() < 1e-6, "frame {i}: {got}");
    }
    let dir = copy_package_with("ped2-ustn-dsc", |t| {
        table(t, "params").insert("clip".into(), toml::Value::Integer(8));
    });
    let err = recipe::build(&ModelPackage::load(dir.path()).unwrap())
        .err()
        .expect("an even clip has no middle keyframe");
    assert!(err.to_string().contains("odd"), "{err}");
}
