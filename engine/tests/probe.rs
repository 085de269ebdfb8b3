//! The activation probe (INT8 calibration and simulation) on the shipped model and real Ped2
//! frames: without a hook it computes what the production tract backend computes; its hook sees
//! the network inputs and the intermediate activations under their ONNX names; quantising every
//! activation changes the outputs, by an amount that shrinks as the grid gets finer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use vigil_engine::analyzer::Analyzer;
use vigil_engine::backend::probe::{
    fake_quantize, Activation, ActivationHook, NoHook, ProbeBackend,
};
use vigil_engine::backend::Backend;
use vigil_engine::frame::Frame;
use vigil_engine::imageio;
use vigil_engine::package::ModelPackage;
use vigil_engine::tensor::Tensor;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The network inputs the analyzer prepares from three real frames of Ped2 test video 01.
fn real_inputs(pkg: &ModelPackage) -> Vec<Tensor> {
    let mut analyzer = Analyzer::cpu(pkg, 1).unwrap();
    let clip = repo().join("firmware/cli/assets/demo/ped2-test01");
    for i in 69..=71u64 {
        let mut f: Frame = imageio::load(&clip.join(format!("{i:03}.jpg")), i).unwrap();
        f.index = i;
        analyzer.push(&f).unwrap();
    }
    analyzer.inputs().to_vec()
}

fn run(backend: &mut dyn Backend, inputs: &[Tensor]) -> Vec<Tensor> {
    let mut out = backend.alloc_outputs();
    backend.run(inputs, &mut out).unwrap();
    out
}

fn max_abs_diff(a: &[Tensor], b: &[Tensor]) -> f32 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.data().iter().zip(y.data()).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

/// Records the largest |x| per activation.
#[derive(Default)]
struct AbsMax(HashMap<String, f32>, Vec<String>);
impl ActivationHook for AbsMax {
    fn visit(&mut self, act: &Activation, data: &mut [f32]) {
        let name = act.name.as_str();
        let m = data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let e = self.0.entry(name.to_owned()).or_insert_with(|| {
            self.1.push(name.to_owned());
            0.0
        });
        *e = e.max(m);
    }
}

/// Quantises the activations an INT8 engine would hold in INT8 to `levels` steps each side of
/// zero: with 127, exactly `fake_quantize`.
struct Quantise(HashMap<String, f32>, f32);
impl ActivationHook for Quantise {
    fn visit(&mut self, act: &Activation, data: &mut [f32]) {
        let Some(&s) = self.0.get(&act.name).filter(|_| act.int8) else {
            return;
        };
        if self.1 == 127.0 {
            fake_quantize(data, s);
        } else {
            for v in data {
                *v = (*v / s).round().clamp(-self.1, self.1) * s;
            }
        }
    }
}

#[test]
fn probe_without_hook_equals_the_production_backend_and_sees_named_activations() {
    let pkg = ModelPackage::load(&repo().join("engine/models/ped2-bdfi")).unwrap();
    let m = &pkg.manifest;
    let inputs = real_inputs(&pkg);
    let mut tract = vigil_engine::backend::tract::TractBackend::load(
        &pkg.onnx_path(),
        &m.onnx.inputs,
        &m.onnx.outputs,
    )
    .unwrap();
    let mut plain =
        ProbeBackend::load(&pkg.onnx_path(), &m.onnx.inputs, &m.onnx.outputs, NoHook).unwrap();
    let want = run(&mut tract, &inputs);
    let got = run(&mut plain, &inputs);
    let d = max_abs_diff(&want, &got);
    // Decluttered vs optimised graph: the same maths in another summation order.
    assert!(d <= 1e-4, "probe differs from the tract backend by {d}");

    let mut rec = ProbeBackend::load(
        &pkg.onnx_path(),
        &m.onnx.inputs,
        &m.onnx.outputs,
        AbsMax::default(),
    )
    .unwrap();
    let acts = rec.activations();
    let names: Vec<String> = acts.iter().map(|a| a.name.clone()).collect();
    run(&mut rec, &inputs);
    let hook = rec.into_hook();
    assert_eq!(
        hook.1, names,
        "the hook sees exactly the announced activations, in order"
    );
    assert!(
        names.len() > 20,
        "only {} activations: {names:?}",
        names.len()
    );
    for input in &m.onnx.inputs {
        assert!(
            names.contains(&input.name),
            "network input {} not seen",
            input.name
        );
    }
    for output in &m.onnx.outputs {
        assert!(
            names.contains(&output.name),
            "network output {} not seen",
            output.name
        );
    }
    // Convolution inputs are read in INT8; warp index maths, gathers and outputs stay float.
    let int8 = |name: &str| acts.iter().find(|a| a.name == name).map(|a| a.int8);
    assert_eq!(
        int8("/flow/net/e0/e0.0/e0.0.1/LeakyRelu_output_0"),
        Some(true),
        "{acts:?}"
    );
    assert_eq!(int8("/warp/Floor_output_0"), Some(false), "{acts:?}");
    for output in &m.onnx.outputs {
        assert_eq!(
            int8(&output.name),
            Some(false),
            "network output {}",
            output.name
        );
    }
    let n = acts.iter().filter(|a| a.int8).count();
    assert!(
        n > 10 && n < acts.len(),
        "{n} of {} marked INT8",
        acts.len()
    );
    let nonzero = hook.0.values().filter(|&&v| v > 0.0).count();
    assert!(
        nonzero * 10 >= names.len() * 9,
        "most activations are non-zero on real frames"
    );
}

#[test]
fn quantising_every_activation_costs_accuracy_in_proportion_to_the_step() {
    let pkg = ModelPackage::load(&repo().join("engine/models/ped2-bdfi")).unwrap();
    let m = &pkg.manifest;
    let inputs = real_inputs(&pkg);
    let mut rec = ProbeBackend::load(
        &pkg.onnx_path(),
        &m.onnx.inputs,
        &m.onnx.outputs,
        AbsMax::default(),
    )
    .unwrap();
    let fp32 = run(&mut rec, &inputs);
    let maxes = rec.into_hook().0;

    let err_at = |levels: f32| {
        let scales = maxes
            .iter()
            .filter(|(_, &v)| v > 0.0)
            .map(|(k, &v)| (k.clone(), v / levels))
            .collect();
        let mut q = ProbeBackend::load(
            &pkg.onnx_path(),
            &m.onnx.inputs,
            &m.onnx.outputs,
            Quantise(scales, levels),
        )
        .unwrap();
        max_abs_diff(&fp32, &run(&mut q, &inputs))
    };
    let int8 = err_at(127.0);
    let int16 = err_at(32767.0);
    assert!(int8 > 0.0, "quantisation must change the outputs");
    assert!(
        int16 < int8 / 10.0,
        "a 258x finer grid must cut the error: int8 {int8}, int16 {int16}"
    );
}
