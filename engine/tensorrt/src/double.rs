//! The TensorRT test double: every symbol of `shim/vigil_trt.h`, implemented in Rust, linked
//! instead of the C++ shim unless the crate is built with feature `native`.
//!
//! It is faithful where the Rust side can get things wrong:
//!
//! - engines are text files of their own format ([`EngineDesc`]: a magic line, then JSON naming
//!   the I/O tensors with types and shapes) and run a deterministic computation, so tests see
//!   that data really flowed through the addresses bound by name:
//!   `output_k[j] = scale * sum_i (i + 1) * input_i[j mod len_i] + bias + k`
//!   (inputs and outputs numbered in engine order);
//! - it refuses what TensorRT refuses: engines of another TensorRT version or SM, unknown tensor
//!   names, buffers whose size does not match the engine's shape and type, enqueue with an
//!   address unset, DLA cores the device lacks, INT8 without a calibration cache, dynamic shapes
//!   without an optimization profile, real TensorRT plans (no magic line);
//! - it is stricter than CUDA where CUDA would corrupt memory silently: device and pinned host
//!   allocations are tracked, copies must go from pinned host to device memory (or back) within
//!   live allocations, and stream work runs only at `vtrt_stream_sync`, so reading an output
//!   before synchronising sees stale data, exactly the bug that would show on a GPU;
//! - its builder reads the ONNX interface with [`vigil_engine::backend::onnx::read_interface`],
//!   records precision, calibration and DLA settings in the engine, extends a timing cache, and
//!   counts builds per thread ([`builds_on_this_thread`]) for the engine-cache tests.
//!
//! The simulated device and injected faults are per thread ([`simulate`]), so parallel tests do
//! not see each other's settings. The only process-wide state is what a C ABI forces: the
//! registry of live allocations (keyed by address, so tests cannot collide) and the logger.

#![allow(clippy::missing_safety_doc)]

use crate::ffi::{self, vtrt_blob, vtrt_context, vtrt_engine, vtrt_runtime, vtrt_stream};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::alloc::Layout;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

/// First line of every engine the double writes or accepts.
pub const ENGINE_MAGIC: &str = "VIGIL-TRT-DOUBLE-ENGINE 1";
/// First line of the double's timing caches.
pub const TIMING_MAGIC: &str = "VIGIL-TRT-DOUBLE-TIMING 1";

/// Faults to inject (all off by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// `vtrt_runtime_create` fails as if no CUDA device were present.
    pub no_device: bool,
    /// Pinned and device allocations fail (cudaErrorMemoryAllocation).
    pub alloc_fails: bool,
    /// `enqueueV3` returns false.
    pub enqueue_fails: bool,
    /// `cudaStreamSynchronize` reports an error from earlier work.
    pub sync_fails: bool,
    /// The builder fails after parsing.
    pub build_fails: bool,
}

/// The simulated device; defaults to a Jetson Orin on JetPack 6.1/6.2 (TensorRT 10.3, sm 8.7,
/// two DLA cores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sim {
    pub trt_version: (u32, u32, u32),
    /// The headers the "shim" was compiled against; `None`: same as `trt_version`.
    pub compiled_against: Option<(u32, u32, u32)>,
    pub sm: (u32, u32),
    pub dla_cores: u32,
    pub device_name: String,
    pub faults: Faults,
}

impl Default for Sim {
    fn default() -> Self {
        Self {
            trt_version: (10, 3, 0),
            compiled_against: None,
            sm: (8, 7),
            dla_cores: 2,
            device_name: "Orin (TensorRT test double)".to_owned(),
            faults: Faults::default(),
        }
    }
}

thread_local! {
    static SIM: RefCell<Sim> = RefCell::new(Sim::default());
    static BUILDS: Cell<usize> = const { Cell::new(0) };
}

/// Restores the previous simulation of this thread when dropped.
#[must_use = "the simulation ends when the guard is dropped"]
pub struct SimGuard {
    previous: Option<Sim>,
}

impl Drop for SimGuard {
    fn drop(&mut self) {
        if let Some(p) = self.previous.take() {
            SIM.with(|s| *s.borrow_mut() = p);
        }
    }
}

/// Simulates `sim` on this thread until the guard is dropped. Device properties are read when a
/// runtime is created; faults when each call is made.
pub fn simulate(sim: Sim) -> SimGuard {
    let previous = SIM.with(|s| std::mem::replace(&mut *s.borrow_mut(), sim));
    SimGuard {
        previous: Some(previous),
    }
}

/// Changes only the faults of this thread's simulation, until the guard is dropped.
pub fn inject(faults: Faults) -> SimGuard {
    let mut sim = current();
    sim.faults = faults;
    simulate(sim)
}

pub fn current() -> Sim {
    SIM.with(|s| s.borrow().clone())
}

fn faults() -> Faults {
    SIM.with(|s| s.borrow().faults.clone())
}

/// Engines the double's builder produced on this thread so far.
pub fn builds_on_this_thread() -> usize {
    BUILDS.with(Cell::get)
}

/// One I/O tensor of a double engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoubleTensor {
    pub name: String,
    pub input: bool,
    /// "float", "half", "int8", "int32", "bool", "uint8", "fp8", "bf16", "int64", "int4".
    pub dtype: String,
    /// -1 marks a dynamic dimension.
    pub dims: Vec<i64>,
}

impl DoubleTensor {
    pub fn input(name: &str, dims: &[i64]) -> Self {
        Self {
            name: name.to_owned(),
            input: true,
            dtype: "float".to_owned(),
            dims: dims.to_vec(),
        }
    }
    pub fn output(name: &str, dims: &[i64]) -> Self {
        Self {
            input: false,
            ..Self::input(name, dims)
        }
    }
    fn code(&self) -> i32 {
        match self.dtype.as_str() {
            "float" => ffi::VTRT_DTYPE_FLOAT,
            "half" => ffi::VTRT_DTYPE_HALF,
            "int8" => ffi::VTRT_DTYPE_INT8,
            "int32" => ffi::VTRT_DTYPE_INT32,
            "bool" => ffi::VTRT_DTYPE_BOOL,
            "uint8" => ffi::VTRT_DTYPE_UINT8,
            "fp8" => ffi::VTRT_DTYPE_FP8,
            "bf16" => ffi::VTRT_DTYPE_BF16,
            "int64" => ffi::VTRT_DTYPE_INT64,
            "int4" => ffi::VTRT_DTYPE_INT4,
            _ => ffi::VTRT_DTYPE_OTHER,
        }
    }
    fn volume(&self) -> Option<u64> {
        self.dims
            .iter()
            .try_fold(1u64, |v, &d| u64::try_from(d).ok().map(|d| v * d))
    }
}

/// A double engine: what its file says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineDesc {
    pub trt_version: (u32, u32, u32),
    pub sm: (u32, u32),
    pub dla_core: Option<u32>,
    pub gpu_fallback: bool,
    pub fp16: bool,
    pub int8: bool,
    pub onnx_sha256: Option<String>,
    pub calib_sha256: Option<String>,
    pub workspace_bytes: u64,
    /// Size of the timing cache the builder was given (0: none).
    pub timing_cache_in: usize,
    pub tensors: Vec<DoubleTensor>,
    pub scale: f32,
    pub bias: f32,
}

impl EngineDesc {
    /// An engine for this thread's simulated device with the given tensors, computing
    /// `2 * sum + 1`.
    pub fn new(tensors: Vec<DoubleTensor>) -> Self {
        let sim = current();
        Self {
            trt_version: sim.trt_version,
            sm: sim.sm,
            dla_core: None,
            gpu_fallback: false,
            fp16: false,
            int8: false,
            onnx_sha256: None,
            calib_sha256: None,
            workspace_bytes: 0,
            timing_cache_in: 0,
            tensors,
            scale: 2.0,
            bias: 1.0,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let json = serde_json::to_string_pretty(self).unwrap_or_default();
        format!("{ENGINE_MAGIC}\n{json}\n").into_bytes()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes)
            .ok()
            .and_then(|t| t.strip_prefix(ENGINE_MAGIC))
            .ok_or_else(|| {
                "not an engine of the TensorRT test double (this vigil was built without the `native` TensorRT shim and cannot run real TensorRT plans)".to_owned()
            })?;
        serde_json::from_str(text).map_err(|e| format!("damaged test-double engine: {e}"))
    }

    /// The outputs the engine computes from `inputs` (engine order).
    pub fn compute(&self, inputs: &[&[f32]]) -> Vec<Vec<f32>> {
        self.tensors
            .iter()
            .filter(|t| !t.input)
            .enumerate()
            .map(|(k, t)| {
                let len = t.volume().unwrap_or(0) as usize;
                (0..len)
                    .map(|j| {
                        let sum: f32 = inputs
                            .iter()
                            .enumerate()
                            .filter(|(_, x)| !x.is_empty())
                            .map(|(i, x)| (i + 1) as f32 * x[j % x.len()])
                            .sum();
                        self.scale * sum + self.bias + k as f32
                    })
                    .collect()
            })
            .collect()
    }
}

// ---- plumbing -------------------------------------------------------------------------------

type Outcome = Result<(), (i32, String)>;

unsafe fn write_err(err: *mut c_char, err_len: usize, msg: &str) {
    if err.is_null() || err_len == 0 {
        return;
    }
    let n = msg.len().min(err_len - 1);
    // SAFETY: the caller provides err_len writable bytes at err.
    unsafe {
        std::ptr::copy_nonoverlapping(msg.as_ptr().cast::<c_char>(), err, n);
        *err.add(n) = 0;
    }
}

/// Runs `body`, reporting its error (or a panic, as VTRT_E_INTERNAL) through the error buffer,
/// like the C++ shim's guarded().
unsafe fn guarded(err: *mut c_char, err_len: usize, body: impl FnOnce() -> Outcome) -> i32 {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => ffi::VTRT_OK,
        Ok(Err((code, msg))) => {
            unsafe { write_err(err, err_len, &msg) };
            code
        }
        Err(_) => {
            unsafe { write_err(err, err_len, "panic in the TensorRT test double") };
            ffi::VTRT_E_INTERNAL
        }
    }
}

fn invalid(what: &str) -> (i32, String) {
    (ffi::VTRT_E_INVALID, format!("{what}: NULL argument"))
}

static LOGGER: Mutex<ffi::vtrt_log_fn> = Mutex::new(None);

fn log_shim(severity: i32, msg: &str) {
    let f = *LOGGER.lock().unwrap_or_else(|p| p.into_inner());
    if let (Some(f), Ok(c)) = (f, CString::new(msg)) {
        // SAFETY: f is the logger registered through vtrt_set_logger; c lives for the call.
        unsafe { f(severity, c.as_ptr()) };
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum MemKind {
    Host,
    Device,
}

type Registry = HashMap<usize, (usize, MemKind)>;

/// Live allocations, address -> (bytes, kind): process-wide because pointers are, and keyed by
/// address so parallel tests never see each other's entries.
fn with_registry<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    static REG: OnceLock<Mutex<Registry>> = OnceLock::new();
    let mut guard = REG
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    f(&mut guard)
}

/// cudaMalloc's alignment guarantee.
const ALIGN: usize = 256;

fn mem_alloc(bytes: usize, kind: MemKind) -> Result<*mut c_void, (i32, String)> {
    let call = match kind {
        MemKind::Host => "cudaHostAlloc",
        MemKind::Device => "cudaMalloc",
    };
    if bytes == 0 {
        return Err((ffi::VTRT_E_INVALID, format!("{call}: zero size")));
    }
    if faults().alloc_fails {
        return Err((
            ffi::VTRT_E_CUDA,
            format!("{call} failed: cudaErrorMemoryAllocation (out of memory) [injected]"),
        ));
    }
    let layout = Layout::from_size_align(bytes, ALIGN)
        .map_err(|e| (ffi::VTRT_E_INVALID, format!("{call}: {e}")))?;
    // SAFETY: non-zero size, valid layout.
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    if p.is_null() {
        return Err((
            ffi::VTRT_E_CUDA,
            format!("{call} failed: cudaErrorMemoryAllocation (out of memory)"),
        ));
    }
    with_registry(|r| r.insert(p as usize, (bytes, kind)));
    Ok(p.cast())
}

fn mem_free(ptr: *mut c_void, kind: MemKind) {
    if ptr.is_null() {
        return;
    }
    let len = with_registry(|r| match r.get(&(ptr as usize)) {
        Some(&(len, k)) if k == kind => {
            r.remove(&(ptr as usize));
            Some(len)
        }
        _ => None,
    });
    match len {
        // SAFETY: allocated by mem_alloc with exactly this layout, removed from the registry
        // above so it cannot be freed twice.
        Some(len) => unsafe {
            std::alloc::dealloc(ptr.cast(), Layout::from_size_align_unchecked(len, ALIGN))
        },
        None => log_shim(
            ffi::VTRT_LOG_ERROR,
            &format!(
                "free of {ptr:p}, which is not a live {kind:?} allocation (cudaErrorInvalidValue)"
            ),
        ),
    }
}

/// Checks that `[ptr, ptr + len)` lies inside one live allocation of `kind`.
fn check_range(ptr: usize, len: usize, kind: MemKind, what: &str) -> Result<(), String> {
    with_registry(|r| {
        let inside = r.iter().any(|(&base, &(size, k))| {
            k == kind && ptr >= base && ptr.checked_add(len).is_some_and(|end| end <= base + size)
        });
        if inside {
            Ok(())
        } else {
            Err(format!(
                "{what}: {len} bytes at {ptr:#x} are not inside a live {kind:?} allocation (cudaErrorInvalidValue)"
            ))
        }
    })
}

fn dtype_bits(code: i32) -> u64 {
    match code {
        ffi::VTRT_DTYPE_FLOAT | ffi::VTRT_DTYPE_INT32 => 32,
        ffi::VTRT_DTYPE_HALF | ffi::VTRT_DTYPE_BF16 => 16,
        ffi::VTRT_DTYPE_INT8
        | ffi::VTRT_DTYPE_BOOL
        | ffi::VTRT_DTYPE_UINT8
        | ffi::VTRT_DTYPE_FP8 => 8,
        ffi::VTRT_DTYPE_INT64 => 64,
        ffi::VTRT_DTYPE_INT4 => 4,
        _ => 0,
    }
}

fn version_text(v: (u32, u32, u32)) -> String {
    format!("{}.{}.{}", v.0, v.1, v.2)
}

struct RuntimeD {
    info: ffi::vtrt_device_info,
}

impl RuntimeD {
    fn version(&self) -> (u32, u32, u32) {
        let u = |v: i32| v as u32;
        (
            u(self.info.trt_major),
            u(self.info.trt_minor),
            u(self.info.trt_patch),
        )
    }
    fn sm(&self) -> (u32, u32) {
        (self.info.sm_major as u32, self.info.sm_minor as u32)
    }
}

struct EngineD {
    desc: Arc<EngineDesc>,
    names: Vec<CString>,
}

struct ContextD {
    desc: Arc<EngineDesc>,
    addrs: Vec<Option<usize>>,
}

enum Op {
    Copy {
        dst: usize,
        dst_kind: MemKind,
        src: usize,
        src_kind: MemKind,
        len: usize,
    },
    Compute {
        desc: Arc<EngineDesc>,
        addrs: Vec<usize>,
    },
}

#[derive(Default)]
struct StreamD {
    ops: Vec<Op>,
}

struct BlobD {
    bytes: Vec<u8>,
}

/// # Safety
/// `p` is NULL or a handle this module created and has not destroyed.
unsafe fn handle<'a, T, H>(p: *const H) -> Option<&'a T> {
    unsafe { p.cast::<T>().as_ref() }
}

unsafe fn handle_mut<'a, T, H>(p: *mut H) -> Option<&'a mut T> {
    unsafe { p.cast::<T>().as_mut() }
}

fn into_handle<T, H>(value: T) -> *mut H {
    Box::into_raw(Box::new(value)).cast()
}

unsafe fn destroy<T, H>(p: *mut H) {
    if !p.is_null() {
        // SAFETY: created by into_handle::<T, H>, destroyed once (the Rust side owns it).
        drop(unsafe { Box::from_raw(p.cast::<T>()) });
    }
}

impl StreamD {
    /// Runs the queued work in order, as the GPU would by the time cudaStreamSynchronize
    /// returns. Every buffer is re-checked: work that outlived its memory is an error here
    /// instead of silent corruption.
    fn run(&mut self) -> Outcome {
        for op in self.ops.drain(..) {
            match op {
                Op::Copy {
                    dst,
                    dst_kind,
                    src,
                    src_kind,
                    len,
                } => {
                    check_range(dst, len, dst_kind, "memcpy destination")
                        .and_then(|()| check_range(src, len, src_kind, "memcpy source"))
                        .map_err(|m| {
                            (
                                ffi::VTRT_E_CUDA,
                                format!("cudaStreamSynchronize: cudaErrorIllegalAddress: {m}"),
                            )
                        })?;
                    // SAFETY: both ranges are inside live allocations (checked just now).
                    unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, len) };
                }
                Op::Compute { desc, addrs } => {
                    let mut inputs = Vec::new();
                    for (t, &a) in desc.tensors.iter().zip(&addrs) {
                        let len = t.volume().unwrap_or(0) as usize;
                        check_range(a, len * 4, MemKind::Device, &format!("tensor `{}`", t.name))
                            .map_err(|m| {
                            (
                                ffi::VTRT_E_CUDA,
                                format!("cudaStreamSynchronize: cudaErrorIllegalAddress: {m}"),
                            )
                        })?;
                        if t.input {
                            // SAFETY: a live, 256-aligned device allocation of len f32s.
                            inputs.push(
                                unsafe { std::slice::from_raw_parts(a as *const f32, len) }
                                    .to_vec(),
                            );
                        }
                    }
                    let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
                    let outputs = desc.compute(&refs);
                    let out_addrs = desc.tensors.iter().zip(&addrs).filter(|(t, _)| !t.input);
                    for ((_, &a), values) in out_addrs.zip(outputs) {
                        // SAFETY: checked above to hold values.len() f32s.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                values.as_ptr(),
                                a as *mut f32,
                                values.len(),
                            )
                        };
                    }
                }
            }
        }
        Ok(())
    }
}

// ---- the C ABI ------------------------------------------------------------------------------

#[no_mangle]
pub unsafe extern "C" fn vtrt_abi_version() -> u32 {
    ffi::VTRT_ABI_VERSION
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_library_version(major: *mut i32, minor: *mut i32, patch: *mut i32) {
    let v = current().trt_version;
    // SAFETY: the caller passes valid pointers or NULL, as the header says.
    unsafe {
        for (p, x) in [(major, v.0), (minor, v.1), (patch, v.2)] {
            if let Some(p) = p.as_mut() {
                *p = x as i32;
            }
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_set_logger(f: ffi::vtrt_log_fn) {
    *LOGGER.lock().unwrap_or_else(|p| p.into_inner()) = f;
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_runtime_create(
    cuda_device: i32,
    out: *mut *mut vtrt_runtime,
    err: *mut c_char,
    err_len: usize,
) -> i32 {
    unsafe {
        guarded(err, err_len, || {
            let out = out.as_mut().ok_or_else(|| invalid("vtrt_runtime_create"))?;
            *out = std::ptr::null_mut();
            let sim = current();
            if sim.faults.no_device {
                return Err((
                    ffi::VTRT_E_CUDA,
                    "cudaGetDeviceCount failed: cudaErrorNoDevice (no CUDA-capable device is detected) [injected]".to_owned(),
                ));
            }
            if cuda_device != 0 {
                return Err((
                    ffi::VTRT_E_INVALID,
                    format!("CUDA device {cuda_device} does not exist (1 device(s) visible)"),
                ));
            }
            let header = sim.compiled_against.unwrap_or(sim.trt_version);
            let mut info = ffi::vtrt_device_info {
                trt_major: sim.trt_version.0 as i32,
                trt_minor: sim.trt_version.1 as i32,
                trt_patch: sim.trt_version.2 as i32,
                header_major: header.0 as i32,
                header_minor: header.1 as i32,
                header_patch: header.2 as i32,
                cuda_device,
                sm_major: sim.sm.0 as i32,
                sm_minor: sim.sm.1 as i32,
                dla_cores: sim.dla_cores as i32,
                integrated: 1,
                cuda_runtime_version: 12060,
                ..Default::default()
            };
            for (dst, src) in info
                .device_name
                .iter_mut()
                .zip(sim.device_name.bytes().take(ffi::VTRT_NAME_LEN - 1))
            {
                *dst = src as c_char;
            }
            *out = into_handle(RuntimeD { info });
            Ok(())
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_runtime_destroy(rt: *mut vtrt_runtime) {
    unsafe { destroy::<RuntimeD, _>(rt) }
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_runtime_info(
    rt: *mut vtrt_runtime,
    out: *mut ffi::vtrt_device_info,
    err: *mut c_char,
    err_len: usize,
) -> i32 {
    unsafe {
        guarded(err, err_len, || {
            let rt = handle::<RuntimeD, _>(rt).ok_or_else(|| invalid("vtrt_runtime_info"))?;
            let out = out.as_mut().ok_or_else(|| invalid("vtrt_runtime_info"))?;
            *out = rt.info;
            Ok(())
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_engine_deserialize(
    rt: *mut vtrt_runtime,
    data: *const c_void,
    len: usize,
    dla_core: i32,
    out: *mut *mut vtrt_engine,
    err: *mut c_char,
    err_len: usize,
) -> i32 {
    unsafe {
        guarded(err, err_len, || {
            let rt = handle::<RuntimeD, _>(rt).ok_or_else(|| invalid("vtrt_engine_deserialize"))?;
            let out = out
                .as_mut()
                .ok_or_else(|| invalid("vtrt_engine_deserialize"))?;
            *out = std::ptr::null_mut();
            if data.is_null() || len == 0 {
                return Err(invalid("vtrt_engine_deserialize"));
            }
            let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len);
            let load = |m: String| {
                log_shim(ffi::VTRT_LOG_ERROR, &m);
                (
                    ffi::VTRT_E_LOAD,
                    format!("TensorRT could not deserialize the engine: {m}"),
                )
            };
            let desc = EngineDesc::from_bytes(bytes).map_err(load)?;
            if desc.trt_version != rt.version() {
                return Err(load(format!(
                    "the engine plan file is not compatible with this version of TensorRT, expecting library version {} got {}, please rebuild",
                    version_text(rt.version()),
                    version_text(desc.trt_version)
                )));
            }
            if desc.sm != rt.sm() {
                return Err(load(format!(
                    "the engine was built for sm {}.{}, this device is sm {}.{}",
                    desc.sm.0, desc.sm.1, rt.info.sm_major, rt.info.sm_minor
                )));
            }
            if dla_core >= rt.info.dla_cores {
                return Err((
                    ffi::VTRT_E_UNSUPPORTED,
                    format!(
                        "the engine was built for DLA core {dla_core} but this device has {} DLA core(s)",
                        rt.info.dla_cores
                    ),
                ));
            }
            let requested = u32::try_from(dla_core).ok();
            if desc.dla_core != requested {
                return Err(load(format!(
                    "the engine targets {:?} but the runtime was set to DLA core {requested:?}",
                    desc.dla_core
                )));
            }
            let mut names = Vec::with_capacity(desc.tensors.len());
            for t in &desc.tensors {
                if t.dims.len() > ffi::VTRT_MAX_DIMS {
                    return Err(load(format!(
                        "tensor `{}` has {} dimensions",
                        t.name,
                        t.dims.len()
                    )));
                }
                if desc.tensors.iter().filter(|o| o.name == t.name).count() > 1 {
                    return Err(load(format!("tensor name `{}` is used twice", t.name)));
                }
                names.push(CString::new(t.name.as_str()).map_err(|e| load(e.to_string()))?);
            }
            *out = into_handle(EngineD {
                desc: Arc::new(desc),
                names,
            });
            Ok(())
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_engine_destroy(engine: *mut vtrt_engine) {
    unsafe { destroy::<EngineD, _>(engine) }
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_engine_num_io(engine: *const vtrt_engine) -> i32 {
    unsafe { handle::<EngineD, _>(engine) }.map_or(0, |e| e.desc.tensors.len() as i32)
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_engine_io(
    engine: *const vtrt_engine,
    index: i32,
    out: *mut ffi::vtrt_tensor_desc,
    err: *mut c_char,
    err_len: usize,
) -> i32 {
    unsafe {
        guarded(err, err_len, || {
            let e = handle::<EngineD, _>(engine).ok_or_else(|| invalid("vtrt_engine_io"))?;
            let out = out.as_mut().ok_or_else(|| invalid("vtrt_engine_io"))?;
            let i = usize::try_from(index)
                .ok()
                .filter(|&i| i < e.desc.tensors.len())
                .ok_or_else(|| {
                    (
                        ffi::VTRT_E_NOT_FOUND,
                        format!("I/O tensor index {index} out of range"),
                    )
                })?;
            let t = &e.desc.tensors[i];
            let mut d = ffi::vtrt_tensor_desc {
                name: e.names[i].as_ptr(),
                is_input: t.input as i32,
                dtype: t.code(),
                nb_dims: t.dims.len() as i32,
                vectorized_dim: -1,
                dims: [0; ffi::VTRT_MAX_DIMS],
            };
            d.dims[..t.dims.len()].copy_from_slice(&t.dims);
            *out = d;
            Ok(())
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_context_create(
    engine: *mut vtrt_engine,
    out: *mut *mut vtrt_context,
    err: *mut c_char,
    err_len: usize,
) -> i32 {
    unsafe {
        guarded(err, err_len, || {
            let e = handle::<EngineD, _>(engine).ok_or_else(|| invalid("vtrt_context_create"))?;
            let out = out.as_mut().ok_or_else(|| invalid("vtrt_context_create"))?;
            *out = std::ptr::null_mut();
            if faults().alloc_fails {
                return Err((
                    ffi::VTRT_E_CUDA,
                    "createExecutionContext failed (out of GPU memory?) [injected]".to_owned(),
                ));
            }
            *out = into_handle(ContextD {
                desc: Arc::clone(&e.desc),
                addrs: vec![None; e.desc.tensors.len()],
            });
            Ok(())
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_context_destroy(ctx: *mut vtrt_context) {
    unsafe { destroy::<ContextD, _>(ctx) }
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_context_set_tensor_address(
    ctx: *mut vtrt_context,
    name: *const c_char,
    device_ptr: *mut c_void,
    bytes: usize,
    err: *mut c_char,
    err_len: usize,
) -> i32 {
    unsafe {
        guarded(err, err_len, || {
            let c = handle_mut::<ContextD, _>(ctx)
                .ok_or_else(|| invalid("vtrt_context_set_tensor_address"))?;
            if name.is_null() || device_ptr.is_null() {
                return Err(invalid("vtrt_context_set_tensor_address"));
            }
            let name = CStr::from_ptr(name).to_string_lossy();
            let i = c
                .desc
                .tensors
                .iter()
                .position(|t| t.name == name)
                .ok_or_else(|| {
                    (
                        ffi::VTRT_E_NOT_FOUND,
                        format!("the engine has no I/O tensor named `{name}`"),
                    )
                })?;
            let t = &c.desc.tensors[i];
            let volume = t.volume().ok_or_else(|| {
                (
                    ffi::VTRT_E_SIZE,
                    format!(
                        "tensor `{name}` has dynamic shape {:?}; Vigil's engines are static",
                        t.dims
                    ),
                )
            })?;
            let bits = dtype_bits(t.code());
            if bits == 0 {
                return Err((
                    ffi::VTRT_E_DTYPE,
                    format!("tensor `{name}` has a data type this shim cannot size"),
                ));
            }
            let needed = (volume * bits).div_ceil(8);
            if needed != bytes as u64 {
                return Err((
                    ffi::VTRT_E_SIZE,
                    format!(
                        "tensor `{name}` of shape {:?} needs {needed} bytes, the buffer has {bytes}",
                        t.dims
                    ),
                ));
            }
            check_range(
                device_ptr as usize,
                bytes,
                MemKind::Device,
                &format!("setTensorAddress(`{name}`)"),
            )
            .map_err(|m| (ffi::VTRT_E_INVALID, m))?;
            c.addrs[i] = Some(device_ptr as usize);
            Ok(())
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_context_enqueue(
    ctx: *mut vtrt_context,
    stream: *mut vtrt_stream,
    err: *mut c_char,
    err_len: usize,
) -> i32 {
    unsafe {
        guarded(err, err_len, || {
            let c = handle::<ContextD, _>(ctx).ok_or_else(|| invalid("vtrt_context_enqueue"))?;
            let s =
                handle_mut::<StreamD, _>(stream).ok_or_else(|| invalid("vtrt_context_enqueue"))?;
            let mut addrs = Vec::with_capacity(c.addrs.len());
            for (t, a) in c.desc.tensors.iter().zip(&c.addrs) {
                addrs.push(a.ok_or_else(|| {
                    (
                        ffi::VTRT_E_UNBOUND,
                        format!("I/O tensor `{}` has no address bound", t.name),
                    )
                })?);
            }
            if faults().enqueue_fails {
                log_shim(ffi::VTRT_LOG_ERROR, "enqueueV3: injected failure");
                return Err((
                    ffi::VTRT_E_ENQUEUE,
                    "enqueueV3 failed: injected failure".to_owned(),
                ));
            }
            if let Some(t) = c
                .desc
                .tensors
                .iter()
                .find(|t| t.code() != ffi::VTRT_DTYPE_FLOAT)
            {
                return Err((
                    ffi::VTRT_E_DTYPE,
                    format!(
                        "the test double computes float tensors only; `{}` is {}",
                        t.name, t.dtype
                    ),
                ));
            }
            s.ops.push(Op::Compute {
                desc: Arc::clone(&c.desc),
                addrs,
            });
            Ok(())
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_stream_create(
    rt: *mut vtrt_runtime,
    out: *mut *mut vtrt_stream,
    err: *mut c_char,
    err_len: usize,
) -> i32 {
    unsafe {
        guarded(err, err_len, || {
            handle::<RuntimeD, _>(rt).ok_or_else(|| invalid("vtrt_stream_create"))?;
            let out = out.as_mut().ok_or_else(|| invalid("vtrt_stream_create"))?;
            *out = into_handle(StreamD::default());
            Ok(())
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_stream_destroy(stream: *mut vtrt_stream) {
    unsafe { destroy::<StreamD, _>(stream) }
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_stream_sync(
    stream: *mut vtrt_stream,
    err: *mut c_char,
    err_len: usize,
) -> i32 {
    unsafe {
        guarded(err, err_len, || {
            let s = handle_mut::<StreamD, _>(stream).ok_or_else(|| invalid("vtrt_stream_sync"))?;
            if faults().sync_fails {
                s.ops.clear();
                return Err((
                    ffi::VTRT_E_CUDA,
                    "cudaStreamSynchronize failed: cudaErrorLaunchFailure (unspecified launch failure) [injected]".to_owned(),
                ));
            }
            s.run()
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_host_alloc(
    rt: *mut vtrt_runtime,
    bytes: usize,
    out: *mut *mut c_void,
    err: *mut c_char,
    err_len: usize,
) -> i32 {
    unsafe {
        guarded(err, err_len, || {
            handle::<RuntimeD, _>(rt).ok_or_else(|| invalid("vtrt_host_alloc"))?;
            let out = out.as_mut().ok_or_else(|| invalid("vtrt_host_alloc"))?;
            *out = std::ptr::null_mut();
            *out = mem_alloc(bytes, MemKind::Host)?;
            Ok(())
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_host_free(ptr: *mut c_void) {
    mem_free(ptr, MemKind::Host)
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_device_alloc(
    rt: *mut vtrt_runtime,
    bytes: usize,
    out: *mut *mut c_void,
    err: *mut c_char,
    err_len: usize,
) -> i32 {
    unsafe {
        guarded(err, err_len, || {
            handle::<RuntimeD, _>(rt).ok_or_else(|| invalid("vtrt_device_alloc"))?;
            let out = out.as_mut().ok_or_else(|| invalid("vtrt_device_alloc"))?;
            *out = std::ptr::null_mut();
            *out = mem_alloc(bytes, MemKind::Device)?;
            Ok(())
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_device_free(ptr: *mut c_void) {
    mem_free(ptr, MemKind::Device)
}

unsafe fn queue_copy(
    stream: *mut vtrt_stream,
    dst: *mut c_void,
    dst_kind: MemKind,
    src: *const c_void,
    src_kind: MemKind,
    len: usize,
    what: &str,
) -> Outcome {
    let s = unsafe { handle_mut::<StreamD, _>(stream) }.ok_or_else(|| invalid(what))?;
    if dst.is_null() || src.is_null() {
        return Err(invalid(what));
    }
    // Checked when queued (cudaMemcpyAsync validates its arguments) and again when run.
    check_range(dst as usize, len, dst_kind, &format!("{what} destination"))
        .and_then(|()| check_range(src as usize, len, src_kind, &format!("{what} source")))
        .map_err(|m| (ffi::VTRT_E_CUDA, m))?;
    s.ops.push(Op::Copy {
        dst: dst as usize,
        dst_kind,
        src: src as usize,
        src_kind,
        len,
    });
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_memcpy_h2d_async(
    dst_device: *mut c_void,
    src_host: *const c_void,
    bytes: usize,
    stream: *mut vtrt_stream,
    err: *mut c_char,
    err_len: usize,
) -> i32 {
    unsafe {
        guarded(err, err_len, || {
            queue_copy(
                stream,
                dst_device,
                MemKind::Device,
                src_host,
                MemKind::Host,
                bytes,
                "cudaMemcpyAsync(host to device)",
            )
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_memcpy_d2h_async(
    dst_host: *mut c_void,
    src_device: *const c_void,
    bytes: usize,
    stream: *mut vtrt_stream,
    err: *mut c_char,
    err_len: usize,
) -> i32 {
    unsafe {
        guarded(err, err_len, || {
            queue_copy(
                stream,
                dst_host,
                MemKind::Host,
                src_device,
                MemKind::Device,
                bytes,
                "cudaMemcpyAsync(device to host)",
            )
        })
    }
}

/// # Safety
/// `p` is NULL or points to `n` readable bytes that outlive `'a`.
unsafe fn bytes_at<'a>(p: *const u8, n: usize) -> &'a [u8] {
    if p.is_null() || n == 0 {
        &[]
    } else {
        unsafe { std::slice::from_raw_parts(p, n) }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The double's timing cache: a header naming the TensorRT version and SM, then one line per
/// build it contributed to. Only the header is interpreted.
fn timing_header(rt: &RuntimeD) -> String {
    let (sm0, sm1) = rt.sm();
    format!(
        "{TIMING_MAGIC}\ntrt={} sm={sm0}{sm1}\n",
        version_text(rt.version())
    )
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_build(
    rt: *mut vtrt_runtime,
    opts: *const ffi::vtrt_build_options,
    progress: ffi::vtrt_progress_fn,
    progress_user: *mut c_void,
    engine_out: *mut *mut vtrt_blob,
    timing_cache_out: *mut *mut vtrt_blob,
    err: *mut c_char,
    err_len: usize,
) -> i32 {
    unsafe {
        guarded(err, err_len, || {
            let rt = handle::<RuntimeD, _>(rt).ok_or_else(|| invalid("vtrt_build"))?;
            let o = opts.as_ref().ok_or_else(|| invalid("vtrt_build"))?;
            let engine_out = engine_out.as_mut().ok_or_else(|| invalid("vtrt_build"))?;
            *engine_out = std::ptr::null_mut();
            if let Some(t) = timing_cache_out.as_mut() {
                *t = std::ptr::null_mut();
            }
            if o.onnx_path.is_null() {
                return Err(invalid("vtrt_build"));
            }
            let calib = bytes_at(o.calib_cache, o.calib_cache_len);
            let timing_in = bytes_at(o.timing_cache, o.timing_cache_len);
            if o.int8 != 0 && calib.is_empty() {
                return Err((
                    ffi::VTRT_E_INVALID,
                    "INT8 needs a calibration cache (vigil calib int8 writes calib.cache into the package)".to_owned(),
                ));
            }
            if o.dla_core >= rt.info.dla_cores {
                return Err((
                    ffi::VTRT_E_UNSUPPORTED,
                    format!(
                        "DLA core {} requested, this device has {} DLA core(s)",
                        o.dla_core, rt.info.dla_cores
                    ),
                ));
            }
            let emit =
                |event: i32, phase: &str, parent: Option<&str>, step: i32, nb: i32| -> Outcome {
                    let Some(f) = progress else { return Ok(()) };
                    let phase = CString::new(phase).unwrap_or_default();
                    let parent = parent.map(|p| CString::new(p).unwrap_or_default());
                    let parent_ptr = parent.as_ref().map_or(std::ptr::null(), |p| p.as_ptr());
                    if f(progress_user, event, phase.as_ptr(), parent_ptr, step, nb) != 0 {
                        return Err((ffi::VTRT_E_CANCELLED, "engine build cancelled".to_owned()));
                    }
                    Ok(())
                };

            emit(ffi::VTRT_PHASE_START, "parse", None, 0, 1)?;
            let path_str = CStr::from_ptr(o.onnx_path).to_string_lossy().into_owned();
            let path = Path::new(&path_str);
            let parse_err = |m: String| {
                (
                    ffi::VTRT_E_PARSE,
                    format!("the TensorRT ONNX parser rejected {path_str}; {m}"),
                )
            };
            let onnx_bytes =
                std::fs::read(path).map_err(|e| parse_err(format!("cannot read it: {e}")))?;
            let iface = vigil_engine::backend::onnx::read_interface(path).map_err(parse_err)?;
            emit(ffi::VTRT_PHASE_END, "parse", None, 1, 1)?;

            if faults().build_fails {
                log_shim(ffi::VTRT_LOG_ERROR, "builder: injected failure");
                return Err((
                    ffi::VTRT_E_BUILD,
                    "TensorRT could not build the engine: injected failure".to_owned(),
                ));
            }
            let mut tensors = Vec::new();
            for (spec, input) in iface
                .inputs
                .iter()
                .map(|s| (s, true))
                .chain(iface.outputs.iter().map(|s| (s, false)))
            {
                if spec.shape.is_empty() || spec.shape.contains(&0) {
                    let m = format!(
                        "Network has dynamic or shape inputs, but no optimization profile has been defined (tensor `{}` has shape {:?})",
                        spec.name, spec.shape
                    );
                    log_shim(ffi::VTRT_LOG_ERROR, &m);
                    return Err((
                        ffi::VTRT_E_BUILD,
                        format!("TensorRT could not build the engine: {m}"),
                    ));
                }
                tensors.push(DoubleTensor {
                    name: spec.name.clone(),
                    input,
                    dtype: "float".to_owned(),
                    dims: spec.shape.iter().map(|&d| d as i64).collect(),
                });
            }

            let header = timing_header(rt);
            let mut timing = String::new();
            if !timing_in.is_empty() {
                match std::str::from_utf8(timing_in) {
                    Ok(t) if t.starts_with(&header) => timing = t.to_owned(),
                    _ => log_shim(
                        ffi::VTRT_LOG_WARNING,
                        "the persisted timing cache does not fit this TensorRT/device; starting a new one",
                    ),
                }
            }
            if timing.is_empty() {
                timing = header;
            }

            emit(ffi::VTRT_PHASE_START, "build", None, 0, 1)?;
            if rt.info.trt_major >= 10 {
                // TensorRT 10's IProgressMonitor reports nested phases with steps.
                emit(
                    ffi::VTRT_PHASE_START,
                    "Building engine",
                    Some("build"),
                    0,
                    3,
                )?;
                for step in 1..=3 {
                    emit(ffi::VTRT_PHASE_STEP, "Building engine", None, step, 0)?;
                }
                emit(ffi::VTRT_PHASE_END, "Building engine", None, 0, 0)?;
            }
            let onnx_sha = sha256_hex(&onnx_bytes);
            let desc = EngineDesc {
                trt_version: rt.version(),
                sm: rt.sm(),
                dla_core: u32::try_from(o.dla_core).ok(),
                gpu_fallback: o.dla_core >= 0 && o.gpu_fallback != 0,
                fp16: o.fp16 != 0,
                int8: o.int8 != 0,
                onnx_sha256: Some(onnx_sha.clone()),
                calib_sha256: (o.int8 != 0).then(|| sha256_hex(calib)),
                workspace_bytes: o.workspace_bytes,
                timing_cache_in: timing_in.len(),
                tensors,
                scale: 2.0,
                bias: 1.0,
            };
            emit(ffi::VTRT_PHASE_END, "build", None, 1, 1)?;

            timing.push_str(&format!(
                "timed onnx={} fp16={} int8={} dla={}\n",
                &onnx_sha[..16],
                desc.fp16,
                desc.int8,
                o.dla_core
            ));
            if let Some(t) = timing_cache_out.as_mut() {
                *t = into_handle(BlobD {
                    bytes: timing.into_bytes(),
                });
            }
            *engine_out = into_handle(BlobD {
                bytes: desc.to_bytes(),
            });
            BUILDS.with(|b| b.set(b.get() + 1));
            Ok(())
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_blob_data(blob: *const vtrt_blob) -> *const u8 {
    unsafe { handle::<BlobD, _>(blob) }.map_or(std::ptr::null(), |b| b.bytes.as_ptr())
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_blob_size(blob: *const vtrt_blob) -> usize {
    unsafe { handle::<BlobD, _>(blob) }.map_or(0, |b| b.bytes.len())
}

#[no_mangle]
pub unsafe extern "C" fn vtrt_blob_destroy(blob: *mut vtrt_blob) {
    unsafe { destroy::<BlobD, _>(blob) }
}

/// Compile-time proof that every definition above has exactly the type `crate::ffi` declares:
/// an array of two function items only type-checks if both coerce to the same fn pointer.
#[allow(dead_code)]
fn abi_signatures_match() {
    macro_rules! same {
        ($($f:ident),* $(,)?) => { $( let _ = [crate::ffi::$f, $f]; )* };
    }
    same!(
        vtrt_abi_version,
        vtrt_library_version,
        vtrt_set_logger,
        vtrt_runtime_create,
        vtrt_runtime_destroy,
        vtrt_runtime_info,
        vtrt_engine_deserialize,
        vtrt_engine_destroy,
        vtrt_engine_num_io,
        vtrt_engine_io,
        vtrt_context_create,
        vtrt_context_destroy,
        vtrt_context_set_tensor_address,
        vtrt_context_enqueue,
        vtrt_stream_create,
        vtrt_stream_destroy,
        vtrt_stream_sync,
        vtrt_host_alloc,
        vtrt_host_free,
        vtrt_device_alloc,
        vtrt_device_free,
        vtrt_memcpy_h2d_async,
        vtrt_memcpy_d2h_async,
        vtrt_build,
        vtrt_blob_data,
        vtrt_blob_size,
        vtrt_blob_destroy,
    );
}
