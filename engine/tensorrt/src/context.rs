//! Execution contexts: one per camera, each with its own CUDA stream, pinned host staging buffers
//! and device buffers, bound to the engine's tensors by name once at creation.

use crate::engine::Engine;
use crate::error::{call, TrtError};
use crate::ffi;
use crate::runtime::{DataType, TrtRuntime};
use std::ffi::{c_void, CString};
use std::ptr::NonNull;
use std::sync::Arc;

/// A CUDA stream, destroyed on drop.
pub(crate) struct Stream {
    raw: NonNull<ffi::vtrt_stream>,
}

impl Stream {
    fn new(rt: &TrtRuntime) -> Result<Self, TrtError> {
        let mut raw = std::ptr::null_mut();
        call("vtrt_stream_create", |e, n| unsafe {
            ffi::vtrt_stream_create(rt.raw(), &mut raw, e, n)
        })?;
        NonNull::new(raw)
            .map(|raw| Self { raw })
            .ok_or_else(|| no_handle("vtrt_stream_create"))
    }

    fn sync(&mut self) -> Result<(), TrtError> {
        call("vtrt_stream_sync", |e, n| unsafe {
            ffi::vtrt_stream_sync(self.raw.as_ptr(), e, n)
        })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: created by vtrt_stream_create, destroyed once.
        unsafe { ffi::vtrt_stream_destroy(self.raw.as_ptr()) }
    }
}

/// Page-locked host memory: the only kind CUDA copies asynchronously.
struct HostBuffer {
    ptr: NonNull<c_void>,
}

/// GPU memory (on Jetson the same DRAM, but owned by the GPU's allocator).
struct DeviceBuffer {
    ptr: NonNull<c_void>,
}

fn no_handle(op: &'static str) -> TrtError {
    TrtError::Shim {
        op,
        code: ffi::VTRT_OK,
        message: "reported success but returned a NULL handle".to_owned(),
    }
}

impl HostBuffer {
    fn new(rt: &TrtRuntime, bytes: usize) -> Result<Self, TrtError> {
        let mut p = std::ptr::null_mut();
        call("vtrt_host_alloc", |e, n| unsafe {
            ffi::vtrt_host_alloc(rt.raw(), bytes, &mut p, e, n)
        })?;
        let ptr = NonNull::new(p).ok_or_else(|| no_handle("vtrt_host_alloc"))?;
        if ptr.as_ptr().align_offset(std::mem::align_of::<f32>()) != 0 {
            // Free it before reporting; cudaHostAlloc is page aligned, so this is a broken shim.
            unsafe { ffi::vtrt_host_free(ptr.as_ptr()) };
            return Err(TrtError::Shim {
                op: "vtrt_host_alloc",
                code: ffi::VTRT_OK,
                message: "returned memory not aligned for f32".to_owned(),
            });
        }
        Ok(Self { ptr })
    }
}

impl Drop for HostBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated by vtrt_host_alloc, freed once, after the stream was synchronised.
        unsafe { ffi::vtrt_host_free(self.ptr.as_ptr()) }
    }
}

impl DeviceBuffer {
    fn new(rt: &TrtRuntime, bytes: usize) -> Result<Self, TrtError> {
        let mut p = std::ptr::null_mut();
        call("vtrt_device_alloc", |e, n| unsafe {
            ffi::vtrt_device_alloc(rt.raw(), bytes, &mut p, e, n)
        })?;
        NonNull::new(p)
            .map(|ptr| Self { ptr })
            .ok_or_else(|| no_handle("vtrt_device_alloc"))
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated by vtrt_device_alloc, freed once, after the stream was synchronised.
        unsafe { ffi::vtrt_device_free(self.ptr.as_ptr()) }
    }
}

struct Binding {
    /// Number of f32 elements.
    len: usize,
    host: HostBuffer,
    device: DeviceBuffer,
    input: bool,
}

impl Binding {
    fn bytes(&self) -> usize {
        self.len * std::mem::size_of::<f32>()
    }
}

struct ContextHandle(NonNull<ffi::vtrt_context>);

impl Drop for ContextHandle {
    fn drop(&mut self) {
        // SAFETY: created by vtrt_context_create, destroyed once, before the buffers it points at
        // and before its engine (field order in ExecutionContext).
        unsafe { ffi::vtrt_context_destroy(self.0.as_ptr()) }
    }
}

/// One execution context of an engine with its own stream and buffers. Use one per camera:
/// contexts of the same engine run concurrently, a context never runs two frames at once.
pub struct ExecutionContext {
    // Drop order matters and is the declaration order (after `Drop::drop` syncs the stream):
    // the TensorRT context, then the buffers it was bound to, then the stream, then the engine.
    handle: ContextHandle,
    bindings: Vec<Binding>,
    stream: Stream,
    engine: Engine,
}

// SAFETY: a context, its stream and its buffers have no thread affinity (every shim call sets the
// CUDA device first); `&mut self` on every operation keeps them to one thread at a time.
unsafe impl Send for ExecutionContext {}

impl std::fmt::Debug for ExecutionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionContext")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A new execution context with its own stream and pinned/device buffers for every I/O
    /// tensor. Only static-shape, linear, f32 I/O is supported; anything else is a typed error
    /// here, before any buffer exists.
    pub fn create_context(&self) -> Result<ExecutionContext, TrtError> {
        let mut sizes = Vec::with_capacity(self.tensors().len());
        for t in self.tensors() {
            let shape = t.spec()?.shape;
            if t.dtype != DataType::Float {
                return Err(TrtError::DType {
                    name: t.name.clone(),
                    got: t.dtype,
                });
            }
            if t.vectorized {
                return Err(TrtError::Unsupported {
                    message: format!(
                        "tensor `{}` uses a vectorized layout; build the engine with linear FP32 I/O",
                        t.name
                    ),
                });
            }
            sizes.push(shape.iter().product::<usize>());
        }
        let rt = TrtRuntime {
            inner: Arc::clone(&self.inner.runtime),
        };
        let handle = {
            let _serial = self
                .inner
                .context_lock
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut raw = std::ptr::null_mut();
            call("vtrt_context_create", |e, n| unsafe {
                ffi::vtrt_context_create(self.inner.raw.as_ptr(), &mut raw, e, n)
            })?;
            ContextHandle(NonNull::new(raw).ok_or_else(|| no_handle("vtrt_context_create"))?)
        };
        let stream = Stream::new(&rt)?;
        let mut bindings = Vec::with_capacity(sizes.len());
        for (t, &len) in self.tensors().iter().zip(&sizes) {
            let bytes = len * std::mem::size_of::<f32>();
            // A zero-element tensor still needs a valid address; allocate a token amount.
            let alloc = bytes.max(std::mem::size_of::<f32>());
            let binding = Binding {
                len,
                host: HostBuffer::new(&rt, alloc)?,
                device: DeviceBuffer::new(&rt, alloc)?,
                input: t.is_input(),
            };
            let name = CString::new(t.name.as_str()).map_err(|_| TrtError::Unsupported {
                message: format!("tensor name {:?} contains a NUL byte", t.name),
            })?;
            call("vtrt_context_set_tensor_address", |e, n| unsafe {
                ffi::vtrt_context_set_tensor_address(
                    handle.0.as_ptr(),
                    name.as_ptr(),
                    binding.device.ptr.as_ptr(),
                    bytes,
                    e,
                    n,
                )
            })
            .map_err(|err| match err {
                TrtError::Shim {
                    code: ffi::VTRT_E_NOT_FOUND,
                    ..
                } => TrtError::MissingTensor {
                    name: t.name.clone(),
                    available: self.tensor_names(),
                },
                other => other,
            })?;
            bindings.push(binding);
        }
        Ok(ExecutionContext {
            handle,
            bindings,
            stream,
            engine: self.clone(),
        })
    }
}

impl ExecutionContext {
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Position of tensor `name` in [`Engine::tensors`].
    pub fn tensor_index(&self, name: &str) -> Option<usize> {
        self.engine.tensors().iter().position(|t| t.name == name)
    }

    fn index_of(&self, name: &str, want_input: bool) -> Result<usize, TrtError> {
        match self.tensor_index(name) {
            Some(i) if self.bindings[i].input == want_input => Ok(i),
            _ => Err(TrtError::MissingTensor {
                name: name.to_owned(),
                available: self.engine.tensor_names(),
            }),
        }
    }

    /// The pinned staging buffer of input `name`: write the frame's values here, then [`run`].
    ///
    /// [`run`]: ExecutionContext::run
    pub fn input_mut(&mut self, name: &str) -> Result<&mut [f32], TrtError> {
        let i = self.index_of(name, true)?;
        Ok(self.host_mut(i))
    }

    /// The pinned buffer of output `name`, valid after [`run`](ExecutionContext::run) returns.
    pub fn output(&self, name: &str) -> Result<&[f32], TrtError> {
        let i = self.index_of(name, false)?;
        Ok(self.host(i))
    }

    pub(crate) fn host(&self, index: usize) -> &[f32] {
        let b = &self.bindings[index];
        // SAFETY: the allocation holds at least `len` f32s, is f32-aligned (checked at
        // allocation), lives as long as self, and no copy into it is pending: run() synchronises
        // the stream before returning, and no other method enqueues work.
        unsafe { std::slice::from_raw_parts(b.host.ptr.as_ptr().cast::<f32>(), b.len) }
    }

    pub(crate) fn host_mut(&mut self, index: usize) -> &mut [f32] {
        let b = &self.bindings[index];
        // SAFETY: as in host(); &mut self makes the view unique.
        unsafe { std::slice::from_raw_parts_mut(b.host.ptr.as_ptr().cast::<f32>(), b.len) }
    }

    /// Copies every input to the GPU, runs the engine and copies every output back, on this
    /// context's stream, then waits for it. Allocates nothing.
    pub fn run(&mut self) -> Result<(), TrtError> {
        let result = self.enqueue_all();
        // Synchronise even after an error, so no pending copy outlives a buffer it touches.
        let synced = self.stream.sync();
        result.and(synced)
    }

    fn enqueue_all(&mut self) -> Result<(), TrtError> {
        let stream = self.stream.raw.as_ptr();
        for b in self.bindings.iter().filter(|b| b.input) {
            call("vtrt_memcpy_h2d_async", |e, n| unsafe {
                ffi::vtrt_memcpy_h2d_async(
                    b.device.ptr.as_ptr(),
                    b.host.ptr.as_ptr(),
                    b.bytes(),
                    stream,
                    e,
                    n,
                )
            })?;
        }
        call("vtrt_context_enqueue", |e, n| unsafe {
            ffi::vtrt_context_enqueue(self.handle.0.as_ptr(), stream, e, n)
        })?;
        for b in self.bindings.iter().filter(|b| !b.input) {
            call("vtrt_memcpy_d2h_async", |e, n| unsafe {
                ffi::vtrt_memcpy_d2h_async(
                    b.host.ptr.as_ptr(),
                    b.device.ptr.as_ptr(),
                    b.bytes(),
                    stream,
                    e,
                    n,
                )
            })?;
        }
        Ok(())
    }
}

impl Drop for ExecutionContext {
    fn drop(&mut self) {
        if let Err(e) = self.stream.sync() {
            log::warn!("TensorRT context teardown: {e}");
        }
    }
}
