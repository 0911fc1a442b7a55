//! `cairn run JOB`: run a job of the configuration file (see
//! `cairn::job::run` for the steps).

use std::time::Duration;

use cairn::exit::Outcome;
use cairn::job::config::Seconds;
use cairn::job::hooks::log_stderr;

use super::common::ConfigArgs;

/// Options of `cairn run`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Runs the job's pre hook, freezes and snapshots what it names, backs up, \
applies its retention (forget, then prune), checks, runs its post or on_failure hook, \
and writes its status, history and metrics files (see docs/jobs.md). A \
run that finds the job still running exits with 13 and does nothing. Log \
lines go to standard error (with syslog priorities when it is the journal).")]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// Wait a random time of up to DURATION before starting (seconds, or
    /// 30s, 15m, 1h), so that machines scheduled alike do not all start at
    /// once; cron entries use it.
    #[arg(long, value_name = "DURATION")]
    random_delay: Option<Seconds>,
    /// Print the run's events on standard output, one JSON object per
    /// line: start, stage (pre, backup, forget, prune, check, post, ...),
    /// warning, error, end (the status record).
    #[arg(long)]
    json: bool,
    /// The job, as named in the configuration.
    #[arg(value_name = "JOB")]
    job: String,
}

/// Runs `cairn run`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let (config, job) = args.config.job(&args.job)?;
    if args.json {
        cairn::log::enable_events();
    }
    if let Some(Seconds(max)) = args.random_delay {
        let wait = cairn::job::run::random_delay(max);
        if wait > Duration::ZERO {
            log_stderr(&format!("waiting {} s before starting", wait.as_secs()));
            std::thread::sleep(wait);
        }
    }
    cairn::job::run::run(&config, &args.job, &job)
}
