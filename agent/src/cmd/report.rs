//! `cairn report`: the HTML report of the configured jobs (see
//! `cairn::report`).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use cairn::exit::Outcome;
use cairn::job::config::Config;
use cairn::job::files::write_atomic;
use cairn::report::{JobHistory, render};

use super::common::{ConfigArgs, print};

/// Options of `cairn report`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The page is made from the run history that `cairn run` keeps in state_dir \
and from each job's recovery point objective (its rpo setting; by default \
the schedule's period plus randomized_delay plus one hour, a day plus those \
without a regular schedule). It needs no repository or password and loads \
nothing from the network: open it in any browser, or mail it.")]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// Write the page to FILE (replaced atomically) instead of standard
    /// output.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Report only this job (repeatable; default every job).
    #[arg(long = "job", value_name = "JOB")]
    jobs: Vec<String>,
}

/// Runs `cairn report`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let path = &args.config.config;
    let config = Config::load(path)?;
    let names: Vec<String> = if args.jobs.is_empty() {
        config.jobs.keys().cloned().collect()
    } else {
        args.jobs.clone()
    };
    let mut jobs = Vec::with_capacity(names.len());
    for name in &names {
        let job = config.job(name, path)?;
        jobs.push(JobHistory::read(&config.state_dir, name, job.rpo())?);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let page = render(&jobs, now, &cairn::repo::hostname());
    match &args.output {
        Some(file) => write_atomic(file, page.as_bytes(), 0o644).with_context(|| {
            format!(
                "cannot write the report to {}; check that its directory exists and is writable",
                file.display()
            )
        })?,
        None => print(&page)?,
    }
    Ok(Outcome::Clean)
}
