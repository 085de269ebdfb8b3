//! The engine cache: built engines keyed by everything that makes an engine valid, so a restart
//! never rebuilds a matching engine (minutes on a Jetson) and any change of input rebuilds once.
//!
//! Layout of the cache directory (default `/var/lib/vigil/engines`):
//!
//! ```text
//! <onnx sha256[..16]>-<precision>-<calib sha256[..16]|nocalib>-trt<M.m.p>-sm<XY>[-dla<N>].engine
//! <same stem>.json                      full key + engine sha256/size: the commit record
//! timing-trt<M.m.p>-sm<XY>[-dla<N>].cache   TensorRT timing cache shared by all builds
//! ```
//!
//! An engine is reused only if its sidecar parses, holds exactly the requested key, and the
//! engine file has the size and sha256 the sidecar records. Anything else (no sidecar, truncated
//! or corrupted engine, hash-prefix collision) is rebuilt with a warning: the cache is derived
//! data and a rebuild is always correct. Writes go to a temporary file in the same directory,
//! are fsynced and renamed, the engine before its sidecar, so a crash at any point leaves either
//! the old state or an engine without sidecar (rebuilt), never a half-written engine in use.

use crate::builder::{BuildEvent, BuildOptions, Precision};
use crate::engine::Engine;
use crate::error::TrtError;
use crate::runtime::{RuntimeInfo, TrtRuntime, TrtVersion};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Where an engine runs: TensorRT engines are specific to the GPU architecture (SM) and, for DLA
/// engines, to the DLA core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Device {
    Gpu { sm: (u32, u32) },
    Dla { core: u32, sm: (u32, u32) },
}

impl Device {
    pub fn new(info: &RuntimeInfo, dla_core: Option<u32>) -> Self {
        match dla_core {
            None => Self::Gpu { sm: info.sm },
            Some(core) => Self::Dla { core, sm: info.sm },
        }
    }

    pub fn dla_core(&self) -> Option<u32> {
        match self {
            Self::Gpu { .. } => None,
            Self::Dla { core, .. } => Some(*core),
        }
    }

    /// `sm87` or `sm87-dla0`.
    fn tag(&self) -> String {
        match self {
            Self::Gpu { sm } => format!("sm{}{}", sm.0, sm.1),
            Self::Dla { core, sm } => format!("sm{}{}-dla{core}", sm.0, sm.1),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gpu { sm } => write!(f, "GPU sm {}.{}", sm.0, sm.1),
            Self::Dla { core, sm } => write!(f, "DLA core {core} (sm {}.{})", sm.0, sm.1),
        }
    }
}

/// Everything an engine depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EngineKey {
    pub onnx_sha256: String,
    pub precision: Precision,
    /// Only for precisions that read the calibration cache: an FP16 engine does not change when
    /// the INT8 calibration does, so it is not rebuilt for it.
    pub calib_sha256: Option<String>,
    pub trt_version: TrtVersion,
    pub device: Device,
}

fn hex_only(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn prefix(s: &str) -> &str {
    &s[..s.len().min(16)]
}

impl EngineKey {
    pub fn new(
        onnx_sha256: &str,
        precision: Precision,
        calib_sha256: Option<&str>,
        trt_version: TrtVersion,
        device: Device,
    ) -> Self {
        Self {
            onnx_sha256: hex_only(onnx_sha256),
            precision,
            calib_sha256: calib_sha256
                .filter(|_| precision.uses_calibration())
                .map(hex_only),
            trt_version,
            device,
        }
    }

    /// The key of the engine `opts` builds on the runtime's device (hashes the ONNX and, for
    /// INT8, the calibration cache).
    pub fn for_build(opts: &BuildOptions, info: &RuntimeInfo) -> Result<Self, TrtError> {
        let onnx = sha256_file(&opts.onnx)?;
        let calib = match (&opts.calib_cache, opts.precision.uses_calibration()) {
            (Some(p), true) => Some(sha256_file(p)?),
            _ => None,
        };
        Ok(Self::new(
            &onnx,
            opts.precision,
            calib.as_deref(),
            info.trt_version,
            Device::new(info, opts.dla_core),
        ))
    }

    /// File name without extension; stable across releases (engines survive upgrades of vigil
    /// that do not change TensorRT).
    pub fn file_stem(&self) -> String {
        let calib = self
            .calib_sha256
            .as_deref()
            .map(prefix)
            .unwrap_or("nocalib");
        format!(
            "{}-{}-{}-trt{}-{}",
            prefix(&self.onnx_sha256),
            self.precision,
            calib,
            self.trt_version,
            self.device.tag()
        )
    }
}

impl fmt::Display for EngineKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ONNX {}, {}, {}, TensorRT {}, {}",
            prefix(&self.onnx_sha256),
            self.precision,
            match &self.calib_sha256 {
                Some(c) => format!("calibration {}", prefix(c)),
                None => "no calibration".to_owned(),
            },
            self.trt_version,
            self.device
        )
    }
}

pub fn sha256_file(path: &Path) -> Result<String, TrtError> {
    vigil_engine::package::sha256_file(path).map_err(|e| TrtError::io(path, e))
}

const SIDECAR_SCHEMA: &str = "vigil.trt-engine/1";

#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    schema: String,
    key: EngineKey,
    engine_sha256: String,
    engine_bytes: u64,
    /// Informational: when and by which vigil the engine was built.
    built_unix: u64,
    vigil_version: String,
}

/// Result of [`EngineCache::get_or_build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedEngine {
    pub path: PathBuf,
    /// True if this call built the engine, false if it reused one.
    pub built: bool,
}

enum Status {
    Valid,
    Missing,
    Invalid(String),
}

/// A directory of built engines. See the module documentation for the layout and guarantees.
#[derive(Debug, Clone)]
pub struct EngineCache {
    dir: PathBuf,
}

/// Unique temp-file suffixes within this process (the pid separates processes).
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

fn temp_name(final_name: &str) -> String {
    format!(
        ".{final_name}.tmp-{}-{}",
        std::process::id(),
        TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes the temporary file on drop unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes `bytes` to `path` and fsyncs it (not atomic by itself; callers rename).
pub fn write_file_synced(path: &Path, bytes: &[u8]) -> Result<(), TrtError> {
    let io = |e| TrtError::io(path, e);
    let mut f = File::create(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

impl EngineCache {
    /// Opens (creating it if needed) the cache directory and proves it writable by writing a
    /// probe file. Fails with [`TrtError::CacheDir`], which says how to fix it: an unwritable
    /// cache must stop `vigil run` at start, not turn every boot into a silent rebuild.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, TrtError> {
        let dir = dir.into();
        let cache_err = |reason: String| TrtError::CacheDir {
            dir: dir.clone(),
            reason,
        };
        if let Err(e) = fs::create_dir_all(&dir) {
            return Err(cache_err(format!(
                "does not exist and cannot be created ({e})"
            )));
        }
        if !dir.is_dir() {
            return Err(cache_err("is not a directory".to_owned()));
        }
        let probe = dir.join(temp_name("vigil-write-probe"));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .and_then(|mut f| {
                f.write_all(b"vigil engine cache write probe\n")?;
                f.sync_all()
            });
        let _ = fs::remove_file(&probe);
        if let Err(e) = written {
            return Err(cache_err(format!("is not writable ({e})")));
        }
        let cache = Self { dir };
        cache.remove_stale_temps();
        Ok(cache)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn engine_path(&self, key: &EngineKey) -> PathBuf {
        self.dir.join(format!("{}.engine", key.file_stem()))
    }

    fn sidecar_path(&self, key: &EngineKey) -> PathBuf {
        self.dir.join(format!("{}.json", key.file_stem()))
    }

    /// The timing cache shared by every build for this TensorRT version and device.
    pub fn timing_cache_path(&self, trt: &TrtVersion, device: &Device) -> PathBuf {
        self.dir
            .join(format!("timing-trt{trt}-{}.cache", device.tag()))
    }

    /// The saved timing cache, if any. An unreadable one is logged and ignored: it only saves
    /// build time.
    pub fn read_timing_cache(&self, trt: &TrtVersion, device: &Device) -> Option<Vec<u8>> {
        let path = self.timing_cache_path(trt, device);
        match fs::read(&path) {
            Ok(bytes) if !bytes.is_empty() => Some(bytes),
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                log::warn!("ignoring timing cache {}: {e}", path.display());
                None
            }
        }
    }

    pub fn write_timing_cache(
        &self,
        trt: &TrtVersion,
        device: &Device,
        bytes: &[u8],
    ) -> Result<(), TrtError> {
        let path = self.timing_cache_path(trt, device);
        let tmp = self.temp_file(&path);
        write_file_synced(&tmp.path, bytes)?;
        self.commit(tmp, &path)?;
        self.sync_dir();
        Ok(())
    }

    /// The cached engine for `key` if it is valid.
    pub fn lookup(&self, key: &EngineKey) -> Option<PathBuf> {
        match self.status(key) {
            Status::Valid => Some(self.engine_path(key)),
            _ => None,
        }
    }

    fn status(&self, key: &EngineKey) -> Status {
        let engine = self.engine_path(key);
        let sidecar = self.sidecar_path(key);
        if !engine.exists() && !sidecar.exists() {
            return Status::Missing;
        }
        let text = match fs::read_to_string(&sidecar) {
            Ok(t) => t,
            Err(e) => {
                return Status::Invalid(format!(
                    "its record {} is unreadable: {e}",
                    sidecar.display()
                ))
            }
        };
        let record: Sidecar = match serde_json::from_str(&text) {
            Ok(r) => r,
            Err(e) => {
                return Status::Invalid(format!("its record {} is damaged: {e}", sidecar.display()))
            }
        };
        if record.schema != SIDECAR_SCHEMA {
            return Status::Invalid(format!("its record has schema `{}`", record.schema));
        }
        if record.key != *key {
            return Status::Invalid(format!("it was built for a different key ({})", record.key));
        }
        let len = match fs::metadata(&engine) {
            Ok(m) => m.len(),
            Err(e) => return Status::Invalid(format!("the engine file is unreadable: {e}")),
        };
        if len != record.engine_bytes {
            return Status::Invalid(format!(
                "the engine file has {len} bytes, {} were written (truncated or replaced)",
                record.engine_bytes
            ));
        }
        match sha256_file(&engine) {
            Ok(sha) if sha == record.engine_sha256 => Status::Valid,
            Ok(_) => Status::Invalid(
                "the engine file's sha256 differs from the one recorded (corrupted)".to_owned(),
            ),
            Err(e) => Status::Invalid(e.to_string()),
        }
    }

    /// Returns the cached engine for `key`, building it first if it is missing or invalid.
    /// `build` writes the engine to the path it is given (a temporary file in the cache
    /// directory); the cache then fsyncs, records and renames it. If `build` fails (or
    /// panics) nothing is left behind.
    pub fn get_or_build(
        &self,
        key: &EngineKey,
        build: impl FnOnce(&Path) -> Result<(), TrtError>,
    ) -> Result<CachedEngine, TrtError> {
        let path = self.engine_path(key);
        match self.status(key) {
            Status::Valid => {
                log::info!("reusing cached TensorRT engine {} ({key})", path.display());
                return Ok(CachedEngine { path, built: false });
            }
            Status::Missing => log::info!(
                "building TensorRT engine for {key} (first start with this model, precision and TensorRT; this takes minutes) into {}",
                path.display()
            ),
            Status::Invalid(reason) => log::warn!(
                "cached TensorRT engine {} is unusable: {reason}; rebuilding it (this takes minutes)",
                path.display()
            ),
        }
        let started = Instant::now();
        let tmp = self.temp_file(&path);
        build(&tmp.path)?;
        // Whatever wrote the file, make it durable before it is recorded.
        File::open(&tmp.path)
            .and_then(|f| f.sync_all())
            .map_err(|e| TrtError::io(&tmp.path, e))?;
        let engine_bytes = fs::metadata(&tmp.path)
            .map_err(|e| TrtError::io(&tmp.path, e))?
            .len();
        if engine_bytes == 0 {
            return Err(TrtError::Build {
                message: "the build wrote an empty engine file".to_owned(),
            });
        }
        let record = Sidecar {
            schema: SIDECAR_SCHEMA.to_owned(),
            key: key.clone(),
            engine_sha256: sha256_file(&tmp.path)?,
            engine_bytes,
            built_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            vigil_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let sidecar = self.sidecar_path(key);
        let sidecar_tmp = self.temp_file(&sidecar);
        let json = serde_json::to_vec_pretty(&record).map_err(|e| TrtError::Build {
            message: format!("cannot record the engine: {e}"),
        })?;
        write_file_synced(&sidecar_tmp.path, &json)?;
        // The sidecar marks an engine valid: drop the old one first so that no moment exists
        // where an old record vouches for a new file (or the reverse).
        match fs::remove_file(&sidecar) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(TrtError::io(&sidecar, e)),
        }
        self.commit(tmp, &path)?;
        self.commit(sidecar_tmp, &sidecar)?;
        self.sync_dir();
        log::info!(
            "built TensorRT engine {} in {:.0} s ({} MiB)",
            path.display(),
            started.elapsed().as_secs_f64(),
            engine_bytes >> 20
        );
        Ok(CachedEngine { path, built: true })
    }

    /// Forgets the engine for `key` (e.g. TensorRT refused a file whose checksum was fine).
    pub fn invalidate(&self, key: &EngineKey) -> Result<(), TrtError> {
        for p in [self.sidecar_path(key), self.engine_path(key)] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(TrtError::io(&p, e)),
            }
        }
        self.sync_dir();
        Ok(())
    }

    fn temp_file(&self, final_path: &Path) -> TempFile {
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        TempFile {
            path: self.dir.join(temp_name(&name)),
            keep: false,
        }
    }

    fn commit(&self, mut tmp: TempFile, to: &Path) -> Result<(), TrtError> {
        fs::rename(&tmp.path, to).map_err(|e| TrtError::io(to, e))?;
        tmp.keep = true;
        Ok(())
    }

    /// Makes the renames durable (ext4 on a Jetson's eMMC loses them on power cut otherwise).
    fn sync_dir(&self) {
        if let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all()) {
            log::warn!("cannot fsync {}: {e}", self.dir.display());
        }
    }

    /// Removes temporary files left by a vigil that died mid-build. Files of live processes
    /// (another vigil building right now) are left alone.
    fn remove_stale_temps(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((_, rest)) = name.split_once(".tmp-") else {
                continue;
            };
            if !name.starts_with('.') {
                continue;
            }
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                log::info!("removing {} left by an interrupted build", name);
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// An engine ready to run, and where it came from.
#[derive(Debug, Clone)]
pub struct PreparedEngine {
    pub engine: Engine,
    pub key: EngineKey,
    pub path: PathBuf,
    /// True if it was built during this call.
    pub built: bool,
}

/// What `vigil run` does at start for each model: reuse the cached engine for `opts` on this
/// device, or build it once (persisting the timing cache), then deserialize it. A cached engine
/// that passes its checksum but that TensorRT refuses is rebuilt once.
pub fn load_or_build(
    rt: &TrtRuntime,
    cache: &EngineCache,
    opts: &BuildOptions,
    mut progress: impl FnMut(&BuildEvent<'_>) -> bool,
) -> Result<PreparedEngine, TrtError> {
    opts.validate()?;
    let key = EngineKey::for_build(opts, rt.info())?;
    let mut build = |tmp: &Path| -> Result<(), TrtError> {
        let timing = cache.read_timing_cache(&key.trt_version, &key.device);
        let out = rt.build_engine(opts, timing.as_deref(), &mut progress)?;
        write_file_synced(tmp, &out.engine)?;
        if let Some(tc) = &out.timing_cache {
            if let Err(e) = cache.write_timing_cache(&key.trt_version, &key.device, tc) {
                log::warn!("could not save the TensorRT timing cache: {e}");
            }
        }
        Ok(())
    };
    let cached = cache.get_or_build(&key, &mut build)?;
    let dla = key.device.dla_core();
    let (engine, cached) = match rt.load_engine(&cached.path, dla) {
        Ok(engine) => (engine, cached),
        Err(e) if !cached.built => {
            log::warn!(
                "TensorRT refused cached engine {} ({e}); rebuilding it once",
                cached.path.display()
            );
            cache.invalidate(&key)?;
            let rebuilt = cache.get_or_build(&key, &mut build)?;
            (rt.load_engine(&rebuilt.path, dla)?, rebuilt)
        }
        Err(e) => return Err(e),
    };
    Ok(PreparedEngine {
        engine,
        key,
        path: cached.path,
        built: cached.built,
    })
}
