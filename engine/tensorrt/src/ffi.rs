//! Rust declarations of `shim/vigil_trt.h`, one to one. Either the C++ shim (feature `native`)
//! or `crate::double` defines these symbols; `double` checks its definitions against these
//! declarations at compile time and `tests/abi_layout.rs` checks the struct layouts against the
//! header with the system C compiler.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void};

pub const VTRT_ABI_VERSION: u32 = 2;
pub const VTRT_MAX_DIMS: usize = 8;
pub const VTRT_NAME_LEN: usize = 256;

pub const VTRT_OK: i32 = 0;
pub const VTRT_E_INVALID: i32 = 1;
pub const VTRT_E_CUDA: i32 = 2;
pub const VTRT_E_LOAD: i32 = 3;
pub const VTRT_E_NOT_FOUND: i32 = 4;
pub const VTRT_E_SIZE: i32 = 5;
pub const VTRT_E_DTYPE: i32 = 6;
pub const VTRT_E_UNBOUND: i32 = 7;
pub const VTRT_E_ENQUEUE: i32 = 8;
pub const VTRT_E_PARSE: i32 = 9;
pub const VTRT_E_BUILD: i32 = 10;
pub const VTRT_E_UNSUPPORTED: i32 = 11;
pub const VTRT_E_CANCELLED: i32 = 12;
pub const VTRT_E_INTERNAL: i32 = 99;

pub const VTRT_DTYPE_FLOAT: i32 = 0;
pub const VTRT_DTYPE_HALF: i32 = 1;
pub const VTRT_DTYPE_INT8: i32 = 2;
pub const VTRT_DTYPE_INT32: i32 = 3;
pub const VTRT_DTYPE_BOOL: i32 = 4;
pub const VTRT_DTYPE_UINT8: i32 = 5;
pub const VTRT_DTYPE_FP8: i32 = 6;
pub const VTRT_DTYPE_BF16: i32 = 7;
pub const VTRT_DTYPE_INT64: i32 = 8;
pub const VTRT_DTYPE_INT4: i32 = 9;
pub const VTRT_DTYPE_OTHER: i32 = 255;

pub const VTRT_LOG_INTERNAL_ERROR: i32 = 0;
pub const VTRT_LOG_ERROR: i32 = 1;
pub const VTRT_LOG_WARNING: i32 = 2;
pub const VTRT_LOG_INFO: i32 = 3;
pub const VTRT_LOG_VERBOSE: i32 = 4;

pub const VTRT_PHASE_START: i32 = 0;
pub const VTRT_PHASE_STEP: i32 = 1;
pub const VTRT_PHASE_END: i32 = 2;

/// Opaque handles: only ever behind pointers.
#[repr(C)]
pub struct vtrt_runtime {
    _private: [u8; 0],
}
#[repr(C)]
pub struct vtrt_engine {
    _private: [u8; 0],
}
#[repr(C)]
pub struct vtrt_context {
    _private: [u8; 0],
}
#[repr(C)]
pub struct vtrt_stream {
    _private: [u8; 0],
}
#[repr(C)]
pub struct vtrt_blob {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vtrt_device_info {
    pub trt_major: i32,
    pub trt_minor: i32,
    pub trt_patch: i32,
    pub header_major: i32,
    pub header_minor: i32,
    pub header_patch: i32,
    pub cuda_device: i32,
    pub sm_major: i32,
    pub sm_minor: i32,
    pub dla_cores: i32,
    pub integrated: i32,
    pub cuda_runtime_version: i32,
    pub device_name: [c_char; VTRT_NAME_LEN],
}

impl Default for vtrt_device_info {
    fn default() -> Self {
        Self {
            trt_major: 0,
            trt_minor: 0,
            trt_patch: 0,
            header_major: 0,
            header_minor: 0,
            header_patch: 0,
            cuda_device: 0,
            sm_major: 0,
            sm_minor: 0,
            dla_cores: 0,
            integrated: 0,
            cuda_runtime_version: 0,
            device_name: [0; VTRT_NAME_LEN],
        }
    }
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vtrt_tensor_desc {
    pub name: *const c_char,
    pub is_input: i32,
    pub dtype: i32,
    pub nb_dims: i32,
    pub vectorized_dim: i32,
    pub dims: [i64; VTRT_MAX_DIMS],
}

impl Default for vtrt_tensor_desc {
    fn default() -> Self {
        Self {
            name: std::ptr::null(),
            is_input: 0,
            dtype: VTRT_DTYPE_OTHER,
            nb_dims: 0,
            vectorized_dim: -1,
            dims: [0; VTRT_MAX_DIMS],
        }
    }
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vtrt_build_options {
    pub onnx_path: *const c_char,
    pub fp16: i32,
    pub int8: i32,
    pub calib_cache: *const u8,
    pub calib_cache_len: usize,
    pub timing_cache: *const u8,
    pub timing_cache_len: usize,
    pub dla_core: i32,
    pub gpu_fallback: i32,
    pub workspace_bytes: u64,
}

pub type vtrt_log_fn = Option<unsafe extern "C" fn(severity: i32, msg: *const c_char)>;
pub type vtrt_progress_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        event: i32,
        phase: *const c_char,
        parent: *const c_char,
        step: i32,
        nb_steps: i32,
    ) -> i32,
>;

extern "C" {
    pub fn vtrt_abi_version() -> u32;
    pub fn vtrt_library_version(major: *mut i32, minor: *mut i32, patch: *mut i32);
    pub fn vtrt_set_logger(f: vtrt_log_fn);

    pub fn vtrt_runtime_create(
        cuda_device: i32,
        out: *mut *mut vtrt_runtime,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    pub fn vtrt_runtime_destroy(rt: *mut vtrt_runtime);
    pub fn vtrt_runtime_info(
        rt: *mut vtrt_runtime,
        out: *mut vtrt_device_info,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;

    pub fn vtrt_engine_deserialize(
        rt: *mut vtrt_runtime,
        data: *const c_void,
        len: usize,
        dla_core: i32,
        out: *mut *mut vtrt_engine,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    pub fn vtrt_engine_destroy(engine: *mut vtrt_engine);
    pub fn vtrt_engine_num_io(engine: *const vtrt_engine) -> i32;
    pub fn vtrt_engine_io(
        engine: *const vtrt_engine,
        index: i32,
        out: *mut vtrt_tensor_desc,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;

    pub fn vtrt_context_create(
        engine: *mut vtrt_engine,
        out: *mut *mut vtrt_context,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    pub fn vtrt_context_destroy(ctx: *mut vtrt_context);
    pub fn vtrt_context_set_tensor_address(
        ctx: *mut vtrt_context,
        name: *const c_char,
        device_ptr: *mut c_void,
        bytes: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    pub fn vtrt_context_enqueue(
        ctx: *mut vtrt_context,
        stream: *mut vtrt_stream,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;

    pub fn vtrt_stream_create(
        rt: *mut vtrt_runtime,
        out: *mut *mut vtrt_stream,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    pub fn vtrt_stream_destroy(stream: *mut vtrt_stream);
    pub fn vtrt_stream_sync(stream: *mut vtrt_stream, err: *mut c_char, err_len: usize) -> i32;

    pub fn vtrt_host_alloc(
        rt: *mut vtrt_runtime,
        bytes: usize,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    pub fn vtrt_host_free(ptr: *mut c_void);
    pub fn vtrt_device_alloc(
        rt: *mut vtrt_runtime,
        bytes: usize,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    pub fn vtrt_device_free(ptr: *mut c_void);
    pub fn vtrt_memcpy_h2d_async(
        dst_device: *mut c_void,
        src_host: *const c_void,
        bytes: usize,
        stream: *mut vtrt_stream,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    pub fn vtrt_memcpy_d2h_async(
        dst_host: *mut c_void,
        src_device: *const c_void,
        bytes: usize,
        stream: *mut vtrt_stream,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;

    pub fn vtrt_build(
        rt: *mut vtrt_runtime,
        opts: *const vtrt_build_options,
        progress: vtrt_progress_fn,
        progress_user: *mut c_void,
        engine_out: *mut *mut vtrt_blob,
        timing_cache_out: *mut *mut vtrt_blob,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    pub fn vtrt_blob_data(blob: *const vtrt_blob) -> *const u8;
    pub fn vtrt_blob_size(blob: *const vtrt_blob) -> usize;
    pub fn vtrt_blob_destroy(blob: *mut vtrt_blob);
}

/// Caller-side error buffer for one shim call.
pub(crate) struct ErrBuf([c_char; 1024]);

impl ErrBuf {
    pub fn new() -> Self {
        Self([0; 1024])
    }
    pub fn ptr(&mut self) -> *mut c_char {
        self.0.as_mut_ptr()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// The message the shim wrote (lossy UTF-8), or a placeholder if it wrote none.
    pub fn message(&self) -> String {
        let bytes: Vec<u8> = self
            .0
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        if bytes.is_empty() {
            "(the TensorRT shim gave no message)".to_owned()
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }
}
