//! Jobs: backups declared in a configuration file, run unattended.
//!
//! The one-shot commands (`backup`, `forget`, `check`) take everything
//! from the command line; a machine that backs itself up every night needs
//! the same steps declared once, run on a schedule, kept from overlapping,
//! wrapped in the application's own hooks and file-system freezes, and
//! reported to monitoring. This module holds those pieces, each small:
//!
//! - [`config`]: the TOML file and its validation;
//! - [`lock`]: one run of a job at a time;
//! - [`hooks`]: shell commands with timeouts and logged output;
//! - [`freeze`]: FIFREEZE/FITHAW (or commands) that always thaw;
//! - [`signals`]: SIGINT/SIGTERM/SIGHUP handling during a run;
//! - [`priority`]: nice and ionice;
//! - [`status`]: status file, run history and Prometheus metrics;
//! - [`run`]: the steps of `cairn run`, in order;
//! - [`schedule`]: systemd timers or cron entries for a job.
//!
//! docs/jobs.md describes the file and the behaviour for operators.

pub mod config;
pub mod files;
pub mod freeze;
pub mod hooks;
pub mod lock;
pub mod priority;
pub mod run;
pub mod schedule;
pub mod signals;
pub mod status;
