//! Logging setup: plain lines on a terminal, syslog-style priority prefixes (`<3>` ...) under
//! systemd, which journald turns into real priorities (see sd-daemon(3)).

use std::io::Write;

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
        b.format(|f, r| {
            let prio = match r.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            writeln!(f, "<{prio}>{}: {}", r.target(), r.args())
        });
    } else {
        b.format_timestamp_millis();
    }
    // A second init (tests) is harmless.
    let _ = b.try_init();
}
