//! `vigil check`: every check `vigil run` makes at start, without connecting or scoring.

use super::run::{load_config, ConfigArg};
use anyhow::{Context, Result};

pub fn run(args: ConfigArg) -> Result<()> {
    let config = args.config;
    let cfg = load_config(&config)?;
    // The very checks `vigil run` makes before it connects (vigil_daemon::preflight).
    let checked = vigil_daemon::preflight(&cfg, vigil_daemon::Purpose::Check)
        .with_context(|| format!("config {}", config.display()))?;
    for cam in &cfg.cameras {
        match checked.cameras.iter().find(|c| c.name() == cam.name) {
            Some(c) => println!("camera {}: {}", cam.name, c.describe()),
            None => println!("camera {}: device busy, not opened (see above)", cam.name),
        }
    }
    println!("{}: OK", config.display());
    Ok(())
}
