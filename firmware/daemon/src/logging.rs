//! Logging setup: plain lines on a terminal, syslog-style priority prefixes (`<3>` ...) under
//! systemd, which journald turns into real priorities (see sd-daemon(3)).
//!
//! Warnings and errors go through a per-call-site rate limiter first. A box runs for months: a
//! camera that fails every 100 ms, or a broker that refuses every reconnect, must not fill the
//! journal (journald's own limit then drops *everything* from the service, including the one
//! line that explains the outage). Each `file:line` may log `burst` such records per `window`;
//! the rest are counted, and the next record from that site after the window says how many were
//! suppressed. Info and below pass untouched: they are the daemon's narrative (events, state
//! changes), which an operator filters by level rather than loses.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::{Level, Log, Metadata, Record};

/// Target of the warnings that their call site already limits per camera (the pipeline's capture,
/// reconnect and inference warnings): the per-site limiter passes them untouched, so a warning
/// is never thinned twice and one camera's failures cannot silence another camera's at the same
/// line. It sits under the pipeline's module, so `--log vigil_daemon::pipeline=error` covers it.
pub const PER_CAMERA_TARGET: &str = "vigil_daemon::pipeline::per_camera";

/// Records per call site per window before suppression starts.
pub const DEFAULT_BURST: u32 = 5;
/// How long suppression lasts before a call site may log again.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);

pub fn init(filter: &str) {
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    let mut b = env_logger::Builder::new();
    // The embedded demo broker (rumqttd) logs every packet at ERROR level through `tracing`;
    // silence it unless the filter names it (`--log info,rumqttd=debug`).
    if !filter.contains("rumqttd") {
        b.parse_filters("rumqttd=off,tracing::span=off");
    }
    b.parse_filters(filter);
    if under_systemd {
        b.format(|f, r| writeln!(f, "<{}>{}: {}", priority(r.level()), r.target(), r.args()));
    } else {
        b.format_timestamp_millis();
    }
    let inner = b.build();
    let max = inner.filter();
    let logger = RateLimited::new(inner, DEFAULT_BURST, DEFAULT_WINDOW);
    // A second init (tests, or a library caller that set its own logger) is harmless.
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
    }
}

/// The syslog priority journald reads from a `<N>` prefix.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Where a record comes from. Records built at run time without a static file name (none in
/// this code base) share one site per target and level.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Site {
    file: &'static str,
    line: u32,
    level: Level,
    target: Option<String>,
}

impl Site {
    fn of(r: &Record) -> Site {
        match r.file_static() {
            Some(file) => Site {
                file,
                line: r.line().unwrap_or(0),
                level: r.level(),
                target: None,
            },
            None => Site {
                file: "",
                line: 0,
                level: r.level(),
                target: Some(r.target().to_owned()),
            },
        }
    }
}

#[derive(Debug)]
struct SiteState {
    window_start: Instant,
    emitted: u32,
    suppressed: u64,
}

/// What the limiter decided for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Log it. `suppressed_before` records from this site were dropped in the previous window
    /// (0: nothing to report); `last_in_burst` says this is the last one before suppression.
    Emit {
        suppressed_before: u64,
        last_in_burst: bool,
    },
    /// Drop it (counted).
    Suppress,
}

/// The per-site counting, separate from the clock and the output so it can be tested with a
/// made-up time line.
#[derive(Debug)]
pub struct Limiter {
    burst: u32,
    window: Duration,
    sites: HashMap<Site, SiteState>,
}

impl Limiter {
    pub fn new(burst: u32, window: Duration) -> Limiter {
        Limiter {
            burst: burst.max(1),
            window,
            sites: HashMap::new(),
        }
    }

    fn admit(&mut self, site: &Site, now: Instant) -> Admission {
        let window = self.window;
        let burst = self.burst;
        let st = self.sites.entry(site.clone()).or_insert(SiteState {
            window_start: now,
            emitted: 0,
            suppressed: 0,
        });
        let mut suppressed_before = 0;
        if now.saturating_duration_since(st.window_start) >= window {
            suppressed_before = st.suppressed;
            st.window_start = now;
            st.emitted = 0;
            st.suppressed = 0;
        }
        if st.emitted < burst {
            st.emitted += 1;
            Admission::Emit {
                suppressed_before,
                last_in_burst: st.emitted == burst,
            }
        } else {
            st.suppressed += 1;
            Admission::Suppress
        }
    }

    /// Sites with suppressed records not reported yet, and their counts; resets them.
    fn drain_suppressed(&mut self) -> Vec<(Site, u64)> {
        let mut out = Vec::new();
        for (site, st) in &mut self.sites {
            if st.suppressed > 0 {
                out.push((site.clone(), st.suppressed));
                st.suppressed = 0;
            }
        }
        out
    }
}

/// A `Log` that rate-limits each call site before handing records to `inner`.
pub struct RateLimited<L> {
    inner: L,
    limiter: Mutex<Limiter>,
}

impl<L: Log> RateLimited<L> {
    pub fn new(inner: L, burst: u32, window: Duration) -> RateLimited<L> {
        RateLimited {
            inner,
            limiter: Mutex::new(Limiter::new(burst, window)),
        }
    }

    fn log_at(&self, record: &Record, now: Instant) {
        if !self.inner.enabled(record.metadata()) {
            return;
        }
        if record.level() > Level::Warn || record.target() == PER_CAMERA_TARGET {
            self.inner.log(record);
            return;
        }
        let site = Site::of(record);
        let admission = match self.limiter.lock() {
            Ok(mut l) => l.admit(&site, now),
            // A thread panicked while holding the lock; logging must still work.
            Err(poisoned) => poisoned.into_inner().admit(&site, now),
        };
        let Admission::Emit {
            suppressed_before,
            last_in_burst,
        } = admission
        else {
            return;
        };
        let window = self.window_secs();
        match (suppressed_before, last_in_burst) {
            (0, false) => self.inner.log(record),
            (0, true) => self.forward(
                record,
                format_args!(
                    "{} (repeats from here are suppressed for {window} s)",
                    record.args()
                ),
            ),
            (n, false) => self.forward(
                record,
                format_args!("{} ({n} similar messages were suppressed)", record.args()),
            ),
            (n, true) => self.forward(
                record,
                format_args!(
                    "{} ({n} similar messages were suppressed; repeats from here are \
                     suppressed for {window} s)",
                    record.args()
                ),
            ),
        }
    }

    fn window_secs(&self) -> u64 {
        match self.limiter.lock() {
            Ok(l) => l.window.as_secs(),
            Err(p) => p.into_inner().window.as_secs(),
        }
    }

    fn forward(&self, like: &Record, args: std::fmt::Arguments) {
        self.inner.log(
            &Record::builder()
                .args(args)
                .level(like.level())
                .target(like.target())
                .module_path(like.module_path())
                .file(like.file())
                .line(like.line())
                .build(),
        );
    }
}

impl<L: Log> Log for RateLimited<L> {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        self.log_at(record, Instant::now());
    }

    /// Reports what is still suppressed (a site that went quiet would otherwise never say how
    /// many of its records were dropped), then flushes the output. Called at exit.
    fn flush(&self) {
        let pending = match self.limiter.lock() {
            Ok(mut l) => l.drain_suppressed(),
            Err(p) => p.into_inner().drain_suppressed(),
        };
        for (site, n) in pending {
            let target = site.target.as_deref().unwrap_or("vigil");
            self.inner.log(
                &Record::builder()
                    .args(format_args!(
                        "{n} similar messages from {}:{} were suppressed",
                        site.file, site.line
                    ))
                    .level(site.level)
                    .target(target)
                    .build(),
            );
        }
        self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Keeps what it is given, in order.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<(Level, String)>>>);

    impl Log for Capture {
        fn enabled(&self, m: &Metadata) -> bool {
            m.level() <= Level::Info
        }
        fn log(&self, r: &Record) {
            self.0
                .lock()
                .unwrap()
                .push((r.level(), r.args().to_string()));
        }
        fn flush(&self) {}
    }

    fn rec<'a>(args: std::fmt::Arguments<'a>, line: u32, level: Level) -> Record<'a> {
        Record::builder()
            .args(args)
            .level(level)
            .target("test")
            .file_static(Some("src/camera.rs"))
            .line(Some(line))
            .build()
    }

    #[test]
    fn a_flood_from_one_site_is_cut_to_the_burst_and_then_summarised() {
        let cap = Capture::default();
        let lim = RateLimited::new(cap.clone(), 5, Duration::from_secs(30));
        let t0 = Instant::now();
        // A camera failing every 100 ms for 60 s: 600 records.
        for i in 0..600u64 {
            let now = t0 + Duration::from_millis(100 * i);
            lim.log_at(
                &rec(format_args!("camera cam0: open failed"), 10, Level::Warn),
                now,
            );
        }
        let got = cap.0.lock().unwrap().clone();
        // Windows start at 0 s, 30 s: 5 each; the second window's first line reports the 295
        // suppressed in the first.
        assert_eq!(got.len(), 10, "{got:#?}");
        assert!(got[4]
            .1
            .ends_with("(repeats from here are suppressed for 30 s)"));
        assert!(
            got[5].1.contains("(295 similar messages were suppressed)"),
            "{}",
            got[5].1
        );
        lim.flush();
        let got = cap.0.lock().unwrap().clone();
        assert_eq!(got.len(), 11);
        assert_eq!(
            got[10].1,
            "295 similar messages from src/camera.rs:10 were suppressed"
        );
        assert_eq!(got[10].0, Level::Warn);
        // Nothing left to report twice.
        lim.flush();
        assert_eq!(cap.0.lock().unwrap().len(), 11);
    }

    #[test]
    fn sites_and_levels_are_limited_independently() {
        let cap = Capture::default();
        let lim = RateLimited::new(cap.clone(), 2, Duration::from_secs(10));
        let now = Instant::now();
        for _ in 0..10 {
            lim.log_at(&rec(format_args!("a"), 1, Level::Warn), now);
            lim.log_at(&rec(format_args!("b"), 2, Level::Warn), now);
            lim.log_at(&rec(format_args!("c"), 1, Level::Error), now);
        }
        let got: Vec<String> = cap.0.lock().unwrap().iter().map(|r| r.1.clone()).collect();
        assert_eq!(got.iter().filter(|s| s.starts_with('a')).count(), 2);
        assert_eq!(got.iter().filter(|s| s.starts_with('b')).count(), 2);
        assert_eq!(got.iter().filter(|s| s.starts_with('c')).count(), 2);
    }

    #[test]
    fn records_below_the_filter_do_not_use_up_the_burst() {
        let cap = Capture::default();
        let lim = RateLimited::new(cap.clone(), 1, Duration::from_secs(10));
        let now = Instant::now();
        lim.log_at(&rec(format_args!("debug"), 1, Level::Debug), now);
        lim.log_at(&rec(format_args!("debug"), 1, Level::Debug), now);
        assert!(cap.0.lock().unwrap().is_empty());
        lim.flush();
        assert!(
            cap.0.lock().unwrap().is_empty(),
            "filtered records were counted"
        );
    }

    #[test]
    fn occasional_warnings_are_never_suppressed() {
        let cap = Capture::default();
        let lim = RateLimited::new(cap.clone(), 5, Duration::from_secs(30));
        let t0 = Instant::now();
        // One reconnect warning a minute for an hour.
        for i in 0..60u64 {
            let now = t0 + Duration::from_secs(60 * i);
            lim.log_at(&rec(format_args!("reconnecting"), 7, Level::Warn), now);
        }
        let got = cap.0.lock().unwrap().clone();
        assert_eq!(got.len(), 60);
        assert!(got.iter().all(|r| r.1 == "reconnecting"));
    }

    #[test]
    fn info_is_never_limited() {
        let cap = Capture::default();
        let lim = RateLimited::new(cap.clone(), 2, Duration::from_secs(30));
        let now = Instant::now();
        for _ in 0..50 {
            lim.log_at(&rec(format_args!("event start"), 9, Level::Info), now);
        }
        assert_eq!(cap.0.lock().unwrap().len(), 50);
    }

    #[test]
    fn warnings_limited_per_camera_are_not_limited_again() {
        let cap = Capture::default();
        let lim = RateLimited::new(cap.clone(), 2, Duration::from_secs(30));
        let now = Instant::now();
        for cam in ["cam0", "cam1", "cam2"] {
            let args = format_args!("camera {cam}: still unavailable");
            let r = Record::builder()
                .args(args)
                .level(Level::Warn)
                .target(PER_CAMERA_TARGET)
                .file_static(Some("src/pipeline.rs"))
                .line(Some(300))
                .build();
            lim.log_at(&r, now);
        }
        assert_eq!(
            cap.0.lock().unwrap().len(),
            3,
            "a camera's warning was lost"
        );
        lim.flush();
        assert_eq!(cap.0.lock().unwrap().len(), 3, "nothing was suppressed");
    }

    #[test]
    fn journald_priorities() {
        assert_eq!(priority(Level::Error), 3);
        assert_eq!(priority(Level::Warn), 4);
        assert_eq!(priority(Level::Info), 6);
        assert_eq!(priority(Level::Debug), 7);
    }
}
