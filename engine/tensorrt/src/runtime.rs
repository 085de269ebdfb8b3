//! The TensorRT runtime (one per process and GPU) and what it reports about the device.

use crate::error::{call, TrtError};
use crate::ffi;
use serde::{Deserialize, Serialize};
use std::ffi::{c_char, CStr};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

/// A TensorRT version as the loaded library reports it. Engines are only valid for the exact
/// version that built them, so this is part of the engine cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TrtVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl TrtVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for TrtVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Element type of an engine I/O tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Float,
    Half,
    Int8,
    Int32,
    Bool,
    Uint8,
    Fp8,
    Bf16,
    Int64,
    Int4,
    /// A type newer than this binding knows (raw shim code).
    Other(i32),
}

impl DataType {
    pub(crate) fn from_code(code: i32) -> Self {
        match code {
            ffi::VTRT_DTYPE_FLOAT => Self::Float,
            ffi::VTRT_DTYPE_HALF => Self::Half,
            ffi::VTRT_DTYPE_INT8 => Self::Int8,
            ffi::VTRT_DTYPE_INT32 => Self::Int32,
            ffi::VTRT_DTYPE_BOOL => Self::Bool,
            ffi::VTRT_DTYPE_UINT8 => Self::Uint8,
            ffi::VTRT_DTYPE_FP8 => Self::Fp8,
            ffi::VTRT_DTYPE_BF16 => Self::Bf16,
            ffi::VTRT_DTYPE_INT64 => Self::Int64,
            ffi::VTRT_DTYPE_INT4 => Self::Int4,
            other => Self::Other(other),
        }
    }

    pub fn code(self) -> i32 {
        match self {
            Self::Float => ffi::VTRT_DTYPE_FLOAT,
            Self::Half => ffi::VTRT_DTYPE_HALF,
            Self::Int8 => ffi::VTRT_DTYPE_INT8,
            Self::Int32 => ffi::VTRT_DTYPE_INT32,
            Self::Bool => ffi::VTRT_DTYPE_BOOL,
            Self::Uint8 => ffi::VTRT_DTYPE_UINT8,
            Self::Fp8 => ffi::VTRT_DTYPE_FP8,
            Self::Bf16 => ffi::VTRT_DTYPE_BF16,
            Self::Int64 => ffi::VTRT_DTYPE_INT64,
            Self::Int4 => ffi::VTRT_DTYPE_INT4,
            Self::Other(c) => c,
        }
    }

    /// Storage bits per element, `None` if unknown.
    pub fn bits(self) -> Option<u64> {
        Some(match self {
            Self::Float | Self::Int32 => 32,
            Self::Half | Self::Bf16 => 16,
            Self::Int8 | Self::Bool | Self::Uint8 | Self::Fp8 => 8,
            Self::Int64 => 64,
            Self::Int4 => 4,
            Self::Other(_) => return None,
        })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Float => f.write_str("float32"),
            Self::Half => f.write_str("float16"),
            Self::Int8 => f.write_str("int8"),
            Self::Int32 => f.write_str("int32"),
            Self::Bool => f.write_str("bool"),
            Self::Uint8 => f.write_str("uint8"),
            Self::Fp8 => f.write_str("fp8"),
            Self::Bf16 => f.write_str("bfloat16"),
            Self::Int64 => f.write_str("int64"),
            Self::Int4 => f.write_str("int4"),
            Self::Other(c) => write!(f, "an unknown TensorRT type (code {c})"),
        }
    }
}

/// What the runtime found: library, GPU and DLA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeInfo {
    /// Version of the libnvinfer actually loaded; engines are tied to it.
    pub trt_version: TrtVersion,
    /// Version of the TensorRT headers the shim was compiled against.
    pub compiled_against: TrtVersion,
    pub cuda_device: i32,
    /// CUDA compute capability, e.g. (8, 7) on Orin, (7, 2) on Xavier.
    pub sm: (u32, u32),
    pub dla_cores: u32,
    /// True on Jetson, where the GPU shares DRAM with the CPU.
    pub integrated: bool,
    /// CUDA runtime version as (major, minor), e.g. (12, 6).
    pub cuda_runtime: (u32, u32),
    pub device_name: String,
    /// False when the Rust test double stands in for TensorRT.
    pub native: bool,
}

impl RuntimeInfo {
    fn from_ffi(i: &ffi::vtrt_device_info) -> Self {
        let u = |v: i32| u32::try_from(v).unwrap_or(0);
        // SAFETY: the array is ours; the shim NUL-terminates it, and the last byte is forced to
        // NUL so a misbehaving implementation cannot make us read past it.
        let mut name = i.device_name;
        name[ffi::VTRT_NAME_LEN - 1] = 0;
        let device_name = unsafe { CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Self {
            trt_version: TrtVersion::new(u(i.trt_major), u(i.trt_minor), u(i.trt_patch)),
            compiled_against: TrtVersion::new(
                u(i.header_major),
                u(i.header_minor),
                u(i.header_patch),
            ),
            cuda_device: i.cuda_device,
            sm: (u(i.sm_major), u(i.sm_minor)),
            dla_cores: u(i.dla_cores),
            integrated: i.integrated != 0,
            cuda_runtime: (
                u(i.cuda_runtime_version / 1000),
                u((i.cuda_runtime_version % 1000) / 10),
            ),
            device_name,
            native: crate::NATIVE,
        }
    }
}

pub(crate) struct RuntimeInner {
    pub(crate) raw: NonNull<ffi::vtrt_runtime>,
    pub(crate) info: RuntimeInfo,
}

// SAFETY: the shim's runtime is safe to use from several threads (IRuntime is; the one piece of
// state it mutates, the DLA core for the next deserialisation, is guarded by a mutex in the shim).
unsafe impl Send for RuntimeInner {}
unsafe impl Sync for RuntimeInner {}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        // SAFETY: created by vtrt_runtime_create, destroyed once; engines hold an Arc to this, so
        // none outlives it.
        unsafe { ffi::vtrt_runtime_destroy(self.raw.as_ptr()) }
    }
}

/// A TensorRT runtime on one CUDA device. Cheap to clone; engines keep it alive.
#[derive(Clone)]
pub struct TrtRuntime {
    pub(crate) inner: Arc<RuntimeInner>,
}

impl fmt::Debug for TrtRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrtRuntime")
            .field("info", &self.inner.info)
            .finish()
    }
}

/// Forwards TensorRT's logger to `log` under target `tensorrt`. TensorRT's INFO is chatty
/// (hundreds of lines per engine build), so it is logged at debug.
unsafe extern "C" fn log_from_shim(severity: i32, msg: *const c_char) {
    if msg.is_null() {
        return;
    }
    let level = match severity {
        ffi::VTRT_LOG_INTERNAL_ERROR | ffi::VTRT_LOG_ERROR => log::Level::Error,
        ffi::VTRT_LOG_WARNING => log::Level::Warn,
        ffi::VTRT_LOG_INFO => log::Level::Debug,
        _ => log::Level::Trace,
    };
    // A panicking logger must not unwind into C++.
    let _ = std::panic::catch_unwind(|| {
        if log::log_enabled!(target: "tensorrt", level) {
            // SAFETY: the shim passes a NUL-terminated string valid for this call.
            let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
            log::log!(target: "tensorrt", level, "{}", text.trim_end());
        }
    });
}

/// The version of the libnvinfer this process loaded, read without a GPU or CUDA driver: what a
/// box can report even when no runtime can be created. In a build with the test double
/// ([`crate::NATIVE`] false) it is the simulated version.
pub fn library_version() -> TrtVersion {
    let (mut major, mut minor, mut patch) = (0i32, 0i32, 0i32);
    // SAFETY: three valid out-pointers; both implementations only write through them.
    unsafe { ffi::vtrt_library_version(&mut major, &mut minor, &mut patch) };
    let u = |x: i32| x.max(0) as u32;
    TrtVersion::new(u(major), u(minor), u(patch))
}

impl TrtRuntime {
    /// Opens CUDA device `cuda_device` (0 on a Jetson) and TensorRT's runtime.
    pub fn new(cuda_device: i32) -> Result<Self, TrtError> {
        // SAFETY: no arguments; both implementations return a constant.
        let abi = unsafe { ffi::vtrt_abi_version() };
        if abi != ffi::VTRT_ABI_VERSION {
            return Err(TrtError::Abi {
                shim: abi,
                expected: ffi::VTRT_ABI_VERSION,
            });
        }
        // SAFETY: log_from_shim is a 'static function that never unwinds.
        unsafe { ffi::vtrt_set_logger(Some(log_from_shim)) };
        let mut raw = std::ptr::null_mut();
        call("vtrt_runtime_create", |e, n| unsafe {
            ffi::vtrt_runtime_create(cuda_device, &mut raw, e, n)
        })?;
        let raw = NonNull::new(raw).ok_or_else(|| TrtError::Shim {
            op: "vtrt_runtime_create",
            code: ffi::VTRT_OK,
            message: "reported success but returned no runtime".to_owned(),
        })?;
        // Owned from here on: an early return below destroys it.
        let mut inner = RuntimeInner {
            raw,
            info: RuntimeInfo::from_ffi(&ffi::vtrt_device_info::default()),
        };
        let mut info = ffi::vtrt_device_info::default();
        call("vtrt_runtime_info", |e, n| unsafe {
            ffi::vtrt_runtime_info(inner.raw.as_ptr(), &mut info, e, n)
        })?;
        inner.info = RuntimeInfo::from_ffi(&info);
        let i = &inner.info;
        // Calling virtual methods the loaded library does not have would be undefined behaviour,
        // so an older library than the headers is refused, not warned about.
        if i.trt_version.major != i.compiled_against.major
            || i.trt_version.minor < i.compiled_against.minor
        {
            return Err(TrtError::LibraryVersion {
                loaded: i.trt_version,
                compiled: i.compiled_against,
            });
        }
        if crate::NATIVE {
            log::info!(
                "TensorRT {} on CUDA device {} ({}, sm {}.{}, {} DLA core(s), CUDA runtime {}.{})",
                i.trt_version,
                i.cuda_device,
                i.device_name,
                i.sm.0,
                i.sm.1,
                i.dla_cores,
                i.cuda_runtime.0,
                i.cuda_runtime.1
            );
        } else {
            log::warn!(
                "TensorRT test double in use ({}): engines are simulated, not run on a GPU; build vigil with the `tensorrt` feature on the device for real inference",
                i.device_name
            );
        }
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    pub fn info(&self) -> &RuntimeInfo {
        &self.inner.info
    }

    pub(crate) fn raw(&self) -> *mut ffi::vtrt_runtime {
        self.inner.raw.as_ptr()
    }
}

/// Bytes owned by the shim (a serialized engine or timing cache), freed on drop.
pub struct Blob {
    raw: NonNull<ffi::vtrt_blob>,
}

// SAFETY: an immutable byte buffer with no thread affinity.
unsafe impl Send for Blob {}
unsafe impl Sync for Blob {}

impl Blob {
    pub(crate) fn from_raw(raw: *mut ffi::vtrt_blob) -> Option<Self> {
        NonNull::new(raw).map(|raw| Self { raw })
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: the blob is alive for &self; data/size describe one allocation it owns.
        unsafe {
            let data = ffi::vtrt_blob_data(self.raw.as_ptr());
            let size = ffi::vtrt_blob_size(self.raw.as_ptr());
            if data.is_null() || size == 0 {
                &[]
            } else {
                std::slice::from_raw_parts(data, size)
            }
        }
    }
}

impl std::ops::Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.as_bytes().len())
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        // SAFETY: created by vtrt_build, destroyed once.
        unsafe { ffi::vtrt_blob_destroy(self.raw.as_ptr()) }
    }
}
