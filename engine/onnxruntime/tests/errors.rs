//! What a misconfigured ONNX Runtime backend says.

use crate::common::{library, repo};
use vigil_engine::backend::BackendError;
use vigil_engine::package::ModelPackage;
use vigil_onnxruntime::{OrtBackend, OrtOptions, Provider};

fn load(opts: &OrtOptions) -> Result<OrtBackend, BackendError> {
    let pkg = ModelPackage::load(&repo().join("engine/models/ped2-bdfi")).unwrap();
    let m = &pkg.manifest;
    OrtBackend::load(&pkg.onnx_path(), &m.onnx.inputs, &m.onnx.outputs, opts)
}

fn with_library() -> OrtOptions {
    OrtOptions {
        library: Some(library()),
        ..OrtOptions::default()
    }
}

#[test]
fn a_second_library_in_one_process_is_refused() {
    load(&with_library()).unwrap();
    let other = repo().join("target/libonnxruntime-other.so");
    let e = load(&OrtOptions {
        library: Some(other.clone()),
        ..OrtOptions::default()
    })
    .err()
    .expect("a different library must be refused")
    .to_string();
    assert!(
        e.contains("already loaded") && e.contains(&other.display().to_string()),
        "{e}"
    );
    let loaded = vigil_onnxruntime::library::loaded().unwrap();
    assert!(
        loaded.version.starts_with("1."),
        "version {:?}",
        loaded.version
    );
}

#[test]
fn zero_threads_is_refused() {
    let e = load(&OrtOptions {
        threads: 0,
        ..with_library()
    })
    .err()
    .expect("threads = 0 must be refused")
    .to_string();
    assert!(e.contains("threads must be at least 1"), "{e}");
}

/// The wheel is CPU-only: asking for CUDA must fail at start, not run on the CPU unannounced.
#[test]
fn a_provider_the_library_lacks_is_refused() {
    let e = load(&OrtOptions {
        providers: vec![Provider::Cuda],
        ..with_library()
    })
    .err()
    .expect("the CPU-only library has no CUDA provider")
    .to_string();
    assert!(e.contains("cuda"), "{e}");
}

#[test]
fn a_package_whose_shapes_disagree_is_refused() {
    let pkg = ModelPackage::load(&repo().join("engine/models/ped2-bdfi")).unwrap();
    let m = &pkg.manifest;
    let mut inputs = m.onnx.inputs.clone();
    inputs[0].shape[2] += 1;
    let e = OrtBackend::load(&pkg.onnx_path(), &inputs, &m.onnx.outputs, &with_library())
        .err()
        .expect("a shape mismatch must be refused at load")
        .to_string();
    assert!(
        e.contains(&inputs[0].name) && e.contains("package manifest"),
        "{e}"
    );
}
