//! One module per subcommand of `vigil`.

pub mod backend;
pub mod bench;
pub mod calib;
pub mod check;
pub mod dataset;
pub mod demo;
pub mod engine;
pub mod eval;
pub mod run;
