//! `vigil run`: the daemon, what systemd starts. Its configuration loading is shared with
//! `vigil check`.

use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use vigil_daemon::config::Config;

#[derive(clap::Args, Debug)]
pub struct ConfigArg {
    /// The configuration file (every key: docs/configuration.md).
    #[arg(long, short, default_value = "/etc/vigil/vigil.toml")]
    pub config: PathBuf,
}

pub fn run(args: ConfigArg) -> Result<()> {
    let cfg = load_config(&args.config)?;
    let stop = Arc::new(AtomicBool::new(false));
    vigil_daemon::install_signal_handlers(&stop)?;
    vigil_daemon::run(&cfg, stop)
}

/// The broker password may come from the environment (a systemd `EnvironmentFile=` readable by
/// root only), which keeps it out of the config file; it wins over the file's keys.
const PASSWORD_ENV: &str = "VIGIL_MQTT_PASSWORD";

pub fn load_config(path: &Path) -> Result<Config> {
    let mut cfg = Config::load(path)?;
    if let Some(pw) = std::env::var_os(PASSWORD_ENV) {
        let pw = pw
            .into_string()
            .map_err(|_| anyhow::anyhow!("{PASSWORD_ENV} is not valid UTF-8"))?;
        anyhow::ensure!(
            cfg.mqtt.username.is_some(),
            "{PASSWORD_ENV} is set but [mqtt] username is not; MQTT needs both"
        );
        cfg.mqtt.password = Some(pw);
        cfg.mqtt.password_file = None;
    }
    Ok(cfg)
}
