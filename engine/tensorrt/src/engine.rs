//! Deserialized engines and their I/O description.

use crate::error::{call, TrtError};
use crate::ffi;
use crate::runtime::{DataType, RuntimeInner, TrtRuntime};
use std::ffi::CStr;
use std::fmt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use vigil_engine::backend::TensorSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    Input,
    Output,
}

/// One I/O tensor of an engine, as TensorRT describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorDesc {
    pub name: String,
    pub mode: IoMode,
    pub dtype: DataType,
    /// -1 marks a dynamic dimension.
    pub dims: Vec<i64>,
    /// True for vectorized layouts (e.g. DLA's CHW16) that a plain row-major buffer cannot feed.
    pub vectorized: bool,
}

impl TensorDesc {
    pub fn is_input(&self) -> bool {
        self.mode == IoMode::Input
    }

    /// The shape if every dimension is static.
    pub fn static_shape(&self) -> Option<Vec<usize>> {
        self.dims.iter().map(|&d| usize::try_from(d).ok()).collect()
    }

    /// Name and static shape, the currency of `vigil_engine::backend`.
    pub fn spec(&self) -> Result<TensorSpec, TrtError> {
        let shape = self.static_shape().ok_or_else(|| TrtError::DynamicShape {
            name: self.name.clone(),
            dims: self.dims.clone(),
        })?;
        Ok(TensorSpec {
            name: self.name.clone(),
            shape,
        })
    }
}

pub(crate) struct EngineInner {
    pub(crate) raw: NonNull<ffi::vtrt_engine>,
    pub(crate) tensors: Vec<TensorDesc>,
    pub(crate) dla_core: Option<u32>,
    /// Serialises context creation: cheap, rare, and it keeps us clear of any doubt about
    /// ICudaEngine::createExecutionContext's thread safety.
    pub(crate) context_lock: Mutex<()>,
    /// Declared last so the runtime outlives the engine (TensorRT requires it).
    pub(crate) runtime: Arc<RuntimeInner>,
}

// SAFETY: an ICudaEngine is immutable after deserialisation; the one mutating use (creating
// contexts) is serialised by `context_lock`.
unsafe impl Send for EngineInner {}
unsafe impl Sync for EngineInner {}

impl Drop for EngineInner {
    fn drop(&mut self) {
        // SAFETY: created by vtrt_engine_deserialize, destroyed once; every context holds an
        // Engine (an Arc to this), so none outlives it.
        unsafe { ffi::vtrt_engine_destroy(self.raw.as_ptr()) }
    }
}

/// A deserialized engine, shared by the execution contexts (one per camera) made from it.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("tensors", &self.inner.tensors)
            .field("dla_core", &self.inner.dla_core)
            .finish()
    }
}

impl Engine {
    /// All I/O tensors in the engine's order.
    pub fn tensors(&self) -> &[TensorDesc] {
        &self.inner.tensors
    }

    pub fn inputs(&self) -> impl Iterator<Item = &TensorDesc> {
        self.inner.tensors.iter().filter(|t| t.is_input())
    }

    pub fn outputs(&self) -> impl Iterator<Item = &TensorDesc> {
        self.inner.tensors.iter().filter(|t| !t.is_input())
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorDesc> {
        self.inner.tensors.iter().find(|t| t.name == name)
    }

    pub fn dla_core(&self) -> Option<u32> {
        self.inner.dla_core
    }

    /// "`a`, `b`" for error messages.
    pub(crate) fn tensor_names(&self) -> String {
        let names: Vec<String> = self
            .inner
            .tensors
            .iter()
            .map(|t| format!("`{}`", t.name))
            .collect();
        names.join(", ")
    }
}

impl TrtRuntime {
    /// Deserializes an engine. `dla_core` must be the core the engine was built for (`None` for
    /// a GPU engine).
    pub fn deserialize(&self, plan: &[u8], dla_core: Option<u32>) -> Result<Engine, TrtError> {
        if plan.is_empty() {
            return Err(TrtError::Load {
                what: "from memory".to_owned(),
                reason: "the engine is empty".to_owned(),
            });
        }
        let core = match dla_core {
            None => -1,
            Some(c) => i32::try_from(c).map_err(|_| TrtError::Unsupported {
                message: format!("DLA core {c}"),
            })?,
        };
        let mut raw = std::ptr::null_mut();
        call("vtrt_engine_deserialize", |e, n| unsafe {
            ffi::vtrt_engine_deserialize(
                self.raw(),
                plan.as_ptr().cast(),
                plan.len(),
                core,
                &mut raw,
                e,
                n,
            )
        })?;
        let raw = NonNull::new(raw).ok_or_else(|| TrtError::Shim {
            op: "vtrt_engine_deserialize",
            code: ffi::VTRT_OK,
            message: "reported success but returned no engine".to_owned(),
        })?;
        // Owned from here: an error below drops (and destroys) it.
        let mut inner = EngineInner {
            raw,
            tensors: Vec::new(),
            dla_core,
            context_lock: Mutex::new(()),
            runtime: Arc::clone(&self.inner),
        };
        inner.tensors = read_tensors(raw)?;
        Ok(Engine {
            inner: Arc::new(inner),
        })
    }

    /// Reads and deserializes an engine file.
    pub fn load_engine(&self, path: &Path, dla_core: Option<u32>) -> Result<Engine, TrtError> {
        let plan = std::fs::read(path).map_err(|e| TrtError::io(path, e))?;
        self.deserialize(&plan, dla_core).map_err(|e| match e {
            TrtError::Load { reason, .. } => TrtError::Load {
                what: path.display().to_string(),
                reason,
            },
            other => other,
        })
    }
}

fn read_tensors(raw: NonNull<ffi::vtrt_engine>) -> Result<Vec<TensorDesc>, TrtError> {
    // SAFETY: raw is a live engine.
    let n = unsafe { ffi::vtrt_engine_num_io(raw.as_ptr()) };
    let n = usize::try_from(n).map_err(|_| TrtError::Shim {
        op: "vtrt_engine_num_io",
        code: n,
        message: "negative tensor count".to_owned(),
    })?;
    let mut tensors = Vec::with_capacity(n);
    for index in 0..n {
        let mut d = ffi::vtrt_tensor_desc::default();
        call("vtrt_engine_io", |e, len| unsafe {
            ffi::vtrt_engine_io(raw.as_ptr(), index as i32, &mut d, e, len)
        })?;
        if d.name.is_null() {
            return Err(TrtError::Shim {
                op: "vtrt_engine_io",
                code: ffi::VTRT_OK,
                message: format!("I/O tensor {index} has no name"),
            });
        }
        let nb = usize::try_from(d.nb_dims)
            .ok()
            .filter(|&nb| nb <= ffi::VTRT_MAX_DIMS)
            .ok_or_else(|| TrtError::Shim {
                op: "vtrt_engine_io",
                code: ffi::VTRT_OK,
                message: format!("I/O tensor {index} has {} dimensions", d.nb_dims),
            })?;
        // SAFETY: the name is owned by the engine, NUL-terminated and alive; copied at once.
        let name = unsafe { CStr::from_ptr(d.name) }
            .to_string_lossy()
            .into_owned();
        tensors.push(TensorDesc {
            name,
            mode: if d.is_input != 0 {
                IoMode::Input
            } else {
                IoMode::Output
            },
            dtype: DataType::from_code(d.dtype),
            dims: d.dims[..nb].to_vec(),
            vectorized: d.vectorized_dim != -1,
        });
    }
    Ok(tensors)
}
