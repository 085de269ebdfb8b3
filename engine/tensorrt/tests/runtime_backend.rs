//! The safe runtime/engine/context/backend layer against the test double: data flows through
//! name-bound buffers, and every failure the shim can report arrives as a typed error.

use crate::common;

use common::runtime;
use std::ffi::CString;
use vigil_engine::backend::{Backend, BackendError, TensorSpec};
use vigil_engine::tensor::Tensor;
use vigil_tensorrt::double::{self, DoubleTensor, EngineDesc, Faults, Sim};
use vigil_tensorrt::{ffi, DataType, IoMode, TensorRtBackend, TrtError, TrtVersion};

fn spec(name: &str, shape: &[usize]) -> TensorSpec {
    TensorSpec {
        name: name.to_owned(),
        shape: shape.to_vec(),
    }
}

/// Engine order: inputs a, b then outputs y, z.
fn two_by_two() -> EngineDesc {
    EngineDesc::new(vec![
        DoubleTensor::input("a", &[1, 1, 2, 2]),
        DoubleTensor::input("b", &[1, 1, 2, 2]),
        DoubleTensor::output("y", &[1, 1, 2, 2]),
        DoubleTensor::output("z", &[1, 2]),
    ])
}

#[test]
fn runtime_reports_the_simulated_device() {
    let rt = runtime();
    let i = rt.info();
    assert_eq!(i.trt_version, TrtVersion::new(10, 3, 0));
    assert_eq!(i.compiled_against, TrtVersion::new(10, 3, 0));
    assert_eq!(i.sm, (8, 7));
    assert_eq!(i.dla_cores, 2);
    assert!(i.integrated);
    assert_eq!(i.cuda_runtime, (12, 6));
    assert!(i.device_name.contains("test double"));
    assert!(!i.native);
    assert_eq!(i.native, vigil_tensorrt::NATIVE);
}

#[test]
fn engine_describes_its_tensors() {
    let rt = runtime();
    let engine = rt.deserialize(&two_by_two().to_bytes(), None).unwrap();
    let t = engine.tensors();
    assert_eq!(t.len(), 4);
    assert_eq!((t[0].name.as_str(), t[0].mode), ("a", IoMode::Input));
    assert_eq!((t[3].name.as_str(), t[3].mode), ("z", IoMode::Output));
    assert_eq!(t[3].dims, vec![1, 2]);
    assert_eq!(t[0].dtype, DataType::Float);
    assert_eq!(engine.inputs().count(), 2);
    assert_eq!(
        engine.tensor("y").unwrap().static_shape(),
        Some(vec![1, 1, 2, 2])
    );
}

#[test]
fn data_flows_through_bindings_matched_by_name() {
    let rt = runtime();
    let engine = rt.deserialize(&two_by_two().to_bytes(), None).unwrap();
    // The caller's order is the reverse of the engine's on both sides.
    let mut backend = TensorRtBackend::new(
        &engine,
        &[spec("b", &[1, 1, 2, 2]), spec("a", &[1, 1, 2, 2])],
        &[spec("z", &[1, 2]), spec("y", &[1, 1, 2, 2])],
    )
    .unwrap();
    assert_eq!(backend.name(), "tensorrt");
    let b = Tensor::new(&[1, 1, 2, 2], vec![10.0, 20.0, 30.0, 40.0]).unwrap();
    let a = Tensor::new(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let mut outs = backend.alloc_outputs();
    backend.run(&[b, a], &mut outs).unwrap();
    // y = 2 * (1*a + 2*b) + 1 + 0 ; z = 2 * (1*a + 2*b) + 1 + 1 over z's two elements.
    assert_eq!(outs[1].data(), &[43.0, 85.0, 127.0, 169.0]);
    assert_eq!(outs[0].data(), &[44.0, 86.0]);

    // Second frame through the same buffers: new values, no stale data.
    let b = Tensor::new(&[1, 1, 2, 2], vec![0.0; 4]).unwrap();
    let a = Tensor::new(&[1, 1, 2, 2], vec![-1.0, 0.0, 1.0, 2.0]).unwrap();
    backend.run(&[b, a], &mut outs).unwrap();
    assert_eq!(outs[1].data(), &[-1.0, 1.0, 3.0, 5.0]);
}

#[test]
fn from_engine_uses_the_engine_order_and_context_api_works() {
    let rt = runtime();
    let engine = rt.deserialize(&two_by_two().to_bytes(), None).unwrap();
    let backend = TensorRtBackend::from_engine(&engine).unwrap();
    let names: Vec<&str> = backend.inputs().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);

    let mut ctx = engine.create_context().unwrap();
    ctx.input_mut("a")
        .unwrap()
        .copy_from_slice(&[1.0, 1.0, 1.0, 1.0]);
    ctx.input_mut("b").unwrap().fill(0.5);
    ctx.run().unwrap();
    assert_eq!(ctx.output("z").unwrap(), &[6.0, 6.0]);
    assert!(matches!(
        ctx.input_mut("y"),
        Err(TrtError::MissingTensor { .. })
    ));
    assert!(matches!(
        ctx.output("nope"),
        Err(TrtError::MissingTensor { .. })
    ));
}

#[test]
fn two_cameras_run_concurrently_on_one_engine() {
    let rt = runtime();
    let engine = rt.deserialize(&two_by_two().to_bytes(), None).unwrap();
    let handles: Vec<_> = (0..2)
        .map(|cam| {
            let mut backend = TensorRtBackend::from_engine(&engine).unwrap();
            std::thread::spawn(move || {
                let mut outs = backend.alloc_outputs();
                for frame in 0..50 {
                    let v = (cam * 1000 + frame) as f32;
                    let a = Tensor::new(&[1, 1, 2, 2], vec![v; 4]).unwrap();
                    let b = Tensor::new(&[1, 1, 2, 2], vec![0.0; 4]).unwrap();
                    backend.run(&[a, b], &mut outs).unwrap();
                    assert_eq!(outs[0].data(), &[2.0 * v + 1.0; 4]);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn wrong_names_shapes_and_counts_are_refused_before_any_copy() {
    let rt = runtime();
    let engine = rt.deserialize(&two_by_two().to_bytes(), None).unwrap();
    let outs = [spec("y", &[1, 1, 2, 2]), spec("z", &[1, 2])];
    let err = TensorRtBackend::new(
        &engine,
        &[spec("a", &[1, 1, 2, 2]), spec("c", &[1, 1, 2, 2])],
        &outs,
    )
    .unwrap_err();
    match err {
        TrtError::MissingTensor { name, available } => {
            assert_eq!(name, "c");
            assert!(
                available.contains("`a`") && available.contains("`z`"),
                "{available}"
            );
        }
        other => panic!("{other:?}"),
    }
    let err = TensorRtBackend::new(
        &engine,
        &[spec("a", &[1, 1, 4, 1]), spec("b", &[1, 1, 2, 2])],
        &outs,
    )
    .unwrap_err();
    assert!(
        matches!(&err, TrtError::ShapeMismatch { name, expected, got } if name == "a" && expected == &[1, 1, 2, 2] && got == &[1, 1, 4, 1]),
        "{err:?}"
    );
    let err = TensorRtBackend::new(&engine, &[spec("a", &[1, 1, 2, 2])], &outs).unwrap_err();
    assert!(
        matches!(
            err,
            TrtError::Arity {
                what: "inputs",
                expected: 2,
                got: 1
            }
        ),
        "{err:?}"
    );
    let err = TensorRtBackend::new(
        &engine,
        &[spec("a", &[1, 1, 2, 2]), spec("a", &[1, 1, 2, 2])],
        &outs,
    )
    .unwrap_err();
    assert!(matches!(err, TrtError::Arity { .. }), "{err:?}");
    // An output name given as an input is not a match either.
    let err = TensorRtBackend::new(
        &engine,
        &[spec("a", &[1, 1, 2, 2]), spec("y", &[1, 1, 2, 2])],
        &outs,
    )
    .unwrap_err();
    assert!(matches!(err, TrtError::MissingTensor { .. }), "{err:?}");

    let mut backend = TensorRtBackend::from_engine(&engine).unwrap();
    let good = Tensor::zeros(&[1, 1, 2, 2]);
    let mut o = backend.alloc_outputs();
    let e = backend
        .run(&[good.clone(), Tensor::zeros(&[1, 4])], &mut o)
        .unwrap_err();
    assert!(
        matches!(e, BackendError::Shape { ref name, .. } if name == "b"),
        "{e:?}"
    );
    let e = backend
        .run(std::slice::from_ref(&good), &mut o)
        .unwrap_err();
    assert!(
        matches!(
            e,
            BackendError::Arity {
                expected: 2,
                got: 1
            }
        ),
        "{e:?}"
    );
    let mut short = vec![Tensor::zeros(&[1, 1, 2, 2])];
    let e = backend.run(&[good.clone(), good], &mut short).unwrap_err();
    assert!(matches!(e, BackendError::Arity { .. }), "{e:?}");
}

#[test]
fn non_f32_io_is_a_typed_dtype_error() {
    let rt = runtime();
    let mut desc = two_by_two();
    desc.tensors[1].dtype = "half".to_owned();
    let engine = rt.deserialize(&desc.to_bytes(), None).unwrap();
    assert_eq!(engine.tensor("b").unwrap().dtype, DataType::Half);
    let err = TensorRtBackend::from_engine(&engine).unwrap_err();
    match &err {
        TrtError::DType { name, got } => assert_eq!((name.as_str(), *got), ("b", DataType::Half)),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("float16"), "{err}");
}

#[test]
fn dynamic_shapes_are_refused() {
    let rt = runtime();
    let mut desc = two_by_two();
    desc.tensors[0].dims = vec![-1, 1, 2, 2];
    let engine = rt.deserialize(&desc.to_bytes(), None).unwrap();
    let err = engine.create_context().unwrap_err();
    assert!(
        matches!(err, TrtError::DynamicShape { ref name, .. } if name == "a"),
        "{err:?}"
    );
}

#[test]
fn injected_enqueue_and_sync_failures_are_typed_and_recoverable() {
    let rt = runtime();
    let engine = rt.deserialize(&two_by_two().to_bytes(), None).unwrap();
    let mut backend = TensorRtBackend::from_engine(&engine).unwrap();
    let ins = backend.alloc_inputs();
    let mut outs = backend.alloc_outputs();
    {
        let _g = double::inject(Faults {
            enqueue_fails: true,
            ..Faults::default()
        });
        let err = backend.run_typed(&ins, &mut outs).unwrap_err();
        assert!(
            matches!(err, TrtError::Enqueue { ref message } if message.contains("enqueueV3")),
            "{err:?}"
        );
        let err = backend.run(&ins, &mut outs).unwrap_err();
        assert!(
            matches!(err, BackendError::Run(ref m) if m.contains("enqueue")),
            "{err:?}"
        );
    }
    {
        let _g = double::inject(Faults {
            sync_fails: true,
            ..Faults::default()
        });
        let err = backend.run_typed(&ins, &mut outs).unwrap_err();
        assert!(
            matches!(
                err,
                TrtError::Cuda {
                    op: "vtrt_stream_sync",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    // The context survives both and runs the next frame.
    backend.run(&ins, &mut outs).unwrap();
    assert_eq!(outs[0].data(), &[1.0; 4]);
}

#[test]
fn allocation_and_device_failures_are_typed() {
    let rt = runtime();
    let engine = rt.deserialize(&two_by_two().to_bytes(), None).unwrap();
    {
        let _g = double::inject(Faults {
            alloc_fails: true,
            ..Faults::default()
        });
        let err = engine.create_context().unwrap_err();
        assert!(matches!(err, TrtError::Cuda { .. }), "{err:?}");
    }
    let _g = double::inject(Faults {
        no_device: true,
        ..Faults::default()
    });
    let err = vigil_tensorrt::TrtRuntime::new(0).unwrap_err();
    assert!(
        matches!(err, TrtError::Cuda { ref message, .. } if message.contains("NoDevice")),
        "{err:?}"
    );
}

#[test]
fn engines_for_another_tensorrt_or_gpu_or_a_real_plan_do_not_load() {
    let rt = runtime();
    let mut desc = two_by_two();
    desc.trt_version = (10, 0, 1);
    let err = rt.deserialize(&desc.to_bytes(), None).unwrap_err();
    assert!(
        matches!(err, TrtError::Load { ref reason, .. } if reason.contains("not compatible")),
        "{err:?}"
    );

    let mut desc = two_by_two();
    desc.sm = (7, 2);
    let err = rt.deserialize(&desc.to_bytes(), None).unwrap_err();
    assert!(
        matches!(err, TrtError::Load { ref reason, .. } if reason.contains("sm 7.2")),
        "{err:?}"
    );

    // What a real TensorRT plan looks like to this build: the message says why.
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("real.engine");
    std::fs::write(&plan, b"ftrt\x00\x00\x00\x00binary plan").unwrap();
    let err = rt.load_engine(&plan, None).unwrap_err();
    match err {
        TrtError::Load { what, reason } => {
            assert_eq!(what, plan.display().to_string());
            assert!(reason.contains("native"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        rt.deserialize(&[], None),
        Err(TrtError::Load { .. })
    ));
}

#[test]
fn dla_engines_need_their_core() {
    let rt = runtime();
    let mut desc = two_by_two();
    desc.dla_core = Some(1);
    let bytes = desc.to_bytes();
    assert!(matches!(
        rt.deserialize(&bytes, None),
        Err(TrtError::Load { .. })
    ));
    assert!(matches!(
        rt.deserialize(&bytes, Some(0)),
        Err(TrtError::Load { .. })
    ));
    assert!(matches!(
        rt.deserialize(&bytes, Some(2)),
        Err(TrtError::Unsupported { .. })
    ));
    let engine = rt.deserialize(&bytes, Some(1)).unwrap();
    assert_eq!(engine.dla_core(), Some(1));
}

#[test]
fn a_library_older_than_the_headers_is_refused() {
    let _g = double::simulate(Sim {
        trt_version: (10, 0, 1),
        compiled_against: Some((10, 3, 0)),
        ..Sim::default()
    });
    let err = vigil_tensorrt::TrtRuntime::new(0).unwrap_err();
    assert!(
        matches!(err, TrtError::LibraryVersion { loaded, compiled } if loaded == TrtVersion::new(10, 0, 1) && compiled == TrtVersion::new(10, 3, 0)),
        "{err:?}"
    );
    // The loaded library's version is known without a runtime, and so without a GPU.
    assert_eq!(vigil_tensorrt::library_version(), TrtVersion::new(10, 0, 1));
}

#[test]
fn double_enforces_tensorrt_rules_at_the_c_abi() {
    // What the safe layer never does, checked at the ABI so the double is known to catch it.
    unsafe {
        let mut err = [0 as std::ffi::c_char; 256];
        let e = err.as_mut_ptr();
        let mut rt = std::ptr::null_mut();
        assert_eq!(ffi::vtrt_runtime_create(0, &mut rt, e, 256), ffi::VTRT_OK);
        let plan = two_by_two().to_bytes();
        let mut engine = std::ptr::null_mut();
        assert_eq!(
            ffi::vtrt_engine_deserialize(
                rt,
                plan.as_ptr().cast(),
                plan.len(),
                -1,
                &mut engine,
                e,
                256
            ),
            ffi::VTRT_OK
        );
        let mut ctx = std::ptr::null_mut();
        assert_eq!(
            ffi::vtrt_context_create(engine, &mut ctx, e, 256),
            ffi::VTRT_OK
        );
        let mut stream = std::ptr::null_mut();
        assert_eq!(
            ffi::vtrt_stream_create(rt, &mut stream, e, 256),
            ffi::VTRT_OK
        );
        let mut dev = std::ptr::null_mut();
        assert_eq!(
            ffi::vtrt_device_alloc(rt, 16, &mut dev, e, 256),
            ffi::VTRT_OK
        );
        let mut host = std::ptr::null_mut();
        assert_eq!(
            ffi::vtrt_host_alloc(rt, 16, &mut host, e, 256),
            ffi::VTRT_OK
        );
        let name = |s: &str| CString::new(s).unwrap();

        // Nothing bound yet: enqueue names the first unbound tensor.
        assert_eq!(
            ffi::vtrt_context_enqueue(ctx, stream, e, 256),
            ffi::VTRT_E_UNBOUND
        );
        assert!(std::ffi::CStr::from_ptr(e)
            .to_string_lossy()
            .contains("`a`"));
        // Unknown name, wrong size, a host pointer where a device one belongs.
        assert_eq!(
            ffi::vtrt_context_set_tensor_address(ctx, name("q").as_ptr(), dev, 16, e, 256),
            ffi::VTRT_E_NOT_FOUND
        );
        assert_eq!(
            ffi::vtrt_context_set_tensor_address(ctx, name("a").as_ptr(), dev, 12, e, 256),
            ffi::VTRT_E_SIZE
        );
        assert!(std::ffi::CStr::from_ptr(e)
            .to_string_lossy()
            .contains("needs 16 bytes"));
        assert_eq!(
            ffi::vtrt_context_set_tensor_address(ctx, name("a").as_ptr(), host, 16, e, 256),
            ffi::VTRT_E_INVALID
        );
        // A copy from pageable (non-pinned) memory is refused.
        let pageable = [0u8; 16];
        assert_eq!(
            ffi::vtrt_memcpy_h2d_async(dev, pageable.as_ptr().cast(), 16, stream, e, 256),
            ffi::VTRT_E_CUDA
        );

        // Work runs at synchronisation, not before: an output read early is stale.
        host.cast::<f32>().write(7.0);
        assert_eq!(
            ffi::vtrt_memcpy_h2d_async(dev, host, 16, stream, e, 256),
            ffi::VTRT_OK
        );
        let mut back = std::ptr::null_mut();
        assert_eq!(
            ffi::vtrt_host_alloc(rt, 16, &mut back, e, 256),
            ffi::VTRT_OK
        );
        assert_eq!(
            ffi::vtrt_memcpy_d2h_async(back, dev, 16, stream, e, 256),
            ffi::VTRT_OK
        );
        assert_eq!(back.cast::<f32>().read(), 0.0);
        assert_eq!(ffi::vtrt_stream_sync(stream, e, 256), ffi::VTRT_OK);
        assert_eq!(back.cast::<f32>().read(), 7.0);

        // Freed memory with work still queued is an error at sync, not silent corruption.
        assert_eq!(
            ffi::vtrt_memcpy_d2h_async(back, dev, 16, stream, e, 256),
            ffi::VTRT_OK
        );
        ffi::vtrt_device_free(dev);
        assert_eq!(ffi::vtrt_stream_sync(stream, e, 256), ffi::VTRT_E_CUDA);

        ffi::vtrt_host_free(back);
        ffi::vtrt_host_free(host);
        ffi::vtrt_stream_destroy(stream);
        ffi::vtrt_context_destroy(ctx);
        ffi::vtrt_engine_destroy(engine);
        ffi::vtrt_runtime_destroy(rt);
    }
}
