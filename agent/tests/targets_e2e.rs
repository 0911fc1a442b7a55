#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What cairn does about the semantics of its target (docs/targets.md,
//! "What cairn relies on from a target"), through the real binary: the
//! create-only probe of `init`, and a repository used normally (backups,
//! lock-taking maintenance, check) on a target that ignores create-only
//! writes (the `CAIRN_TEST_IGNORE_CREATE_ONLY` test hook).

mod common;

use common::target::Target;
use common::{fill, same_tree};

const IGNORE: &str = "CAIRN_TEST_IGNORE_CREATE_ONLY";
const WARNING: &str = "does not refuse to overwrite an existing object";

fn init_json(t: &Target, extra: &[(&str, &str)]) -> (serde_json::Value, String) {
    let args = ["init", "--kdf-memory", "8", "--json"];
    let out = t
        .command(&args)
        .envs(extra.iter().copied())
        .output()
        .unwrap();
    let out = common::succeeded(&args, out);
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn init_says_whether_the_target_refuses_overwrites() {
    let honest = Target::local();
    let (json, stderr) = init_json(&honest, &[]);
    assert_eq!(json["create_only_writes"], true, "{json}");
    assert!(!stderr.contains("warning"), "{stderr}");

    let lax = Target::local();
    let (json, stderr) = init_json(&lax, &[(IGNORE, "1")]);
    assert_eq!(json["create_only_writes"], false, "{json}");
    // One warning, saying what it means and what is weaker.
    assert_eq!(stderr.matches(WARNING).count(), 1, "{stderr}");
    for words in ["stays correct", "locks do not depend", "two `cairn init`"] {
        assert!(stderr.contains(words), "{words:?} in {stderr}");
    }
    // The probe object is gone.
    let locks = std::fs::read_dir(std::path::Path::new(&lax.repo).join("locks")).unwrap();
    assert_eq!(locks.count(), 0);
}

#[test]
fn a_repository_on_a_target_that_ignores_create_only_works_end_to_end() {
    let t = Target::local();
    let lax = [(IGNORE, "1")];
    init_json(&t, &lax);
    let run = |args: &[&str]| {
        let out = t.command(args).envs(lax.iter().copied()).output().unwrap();
        common::succeeded(args, out)
    };
    let src = t.env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..6u64 {
        std::fs::write(
            src.join(format!("f{i}")),
            fill(i, 50_000 + i as usize * 70_000),
        )
        .unwrap();
    }
    run(&["backup", "-q", "--tag", "one", src.to_str().unwrap()]);
    std::fs::write(src.join("f0"), fill(99, 123_456)).unwrap();
    // The same data again: every pack, index and snapshot name it writes
    // that exists already is rewritten with the same bytes, harmlessly.
    run(&["backup", "-q", "--tag", "two", src.to_str().unwrap()]);
    run(&["forget", "-q", "--keep-last", "1"]);
    run(&["prune", "-q"]);
    let report: serde_json::Value =
        serde_json::from_slice(&run(&["check", "--json", "-q", "--read-data"]).stdout).unwrap();
    assert_eq!(report["problems_total"], 0, "{report}");
    let out = t.env.path("restored");
    run(&["restore", "latest", "--target", out.to_str().unwrap(), "-q"]);
    same_tree(&src, &out.join(src.strip_prefix("/").unwrap()));
}

/// A fake S3 endpoint on 127.0.0.1 that fails: it answers 503 to every
/// request but, when `listing_works`, a listing (which it answers with an
/// empty list, so a repository opens as far as reading its config). It
/// records every request line.
struct FakeS3 {
    port: u16,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeS3 {
    fn start(listing_works: bool) -> FakeS3 {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                let mut length = 0usize;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = header.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let request = line.trim().to_string();
                seen.lock().unwrap().push(request.clone());
                let listing = request.starts_with("GET ") && request.contains("list-type=2");
                let head = request.starts_with("HEAD ");
                let (status, body) = if listing && listing_works {
                    (
                        "200 OK",
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
                         <ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                         <Name>bucket</Name><Prefix>p/keys/</Prefix><KeyCount>0</KeyCount>\
                         <MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>\
                         </ListBucketResult>",
                    )
                } else {
                    (
                        "503 Service Unavailable",
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error>\
                         <Code>ServiceUnavailable</Code><Message>injected by the test</Message>\
                         </Error>",
                    )
                };
                let sent = if head { "" } else { body };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{sent}",
                    sent.len()
                );
                let _ = stream.flush();
            }
        });
        FakeS3 { port, requests }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests so far whose line starts with `method`, and forgets
    /// them all.
    fn take(&self, method: &str) -> usize {
        let mut all = self.requests.lock().unwrap();
        let n = all.iter().filter(|r| r.starts_with(method)).count();
        all.clear();
        n
    }
}

/// `cairn args` against `s3://bucket/p` at `endpoint`, with made-up
/// credentials and nothing from the caller's own cloud settings.
fn s3_cairn(endpoint: &str, args: &[&str]) -> std::process::Output {
    let env = common::Env::new();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.args(args)
        .env("CAIRN_REPO", "s3://bucket/p")
        .env("CAIRN_PASSWORD_FILE", env.path("pw"))
        .env("CAIRN_CACHE_DIR", env.path("cache"))
        .env("CAIRN_S3_ENDPOINT", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("CAIRN_TARGET_TIMEOUT", "10");
    for var in [
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_SESSION_TOKEN",
        "CAIRN_RETRIES",
        "CAIRN_TARGET_RETRIES",
        "CAIRN_PASSWORD_COMMAND",
        "CAIRN_KEY_FILE",
    ] {
        cmd.env_remove(var);
    }
    for hook in common::target::TEST_HOOKS {
        cmd.env_remove(hook);
    }
    cmd.output().unwrap()
}

#[test]
fn a_failing_call_is_attempted_retries_plus_one_times() {
    // Opening fails: its listing gets 503 every time.
    let server = FakeS3::start(false);
    for retries in [0u32, 2] {
        let n = retries.to_string();
        let out = s3_cairn(&server.endpoint(), &["snapshots", "--retries", &n]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("503"), "{stderr}");
        assert_eq!(server.take("GET"), retries as usize + 1, "{stderr}");
        let attempts = retries + 1;
        for a in 1..attempts {
            assert!(
                stderr.contains(&format!("(attempt {a} of {attempts})")),
                "{stderr}"
            );
        }
        assert!(
            !stderr.contains(&format!("(attempt {attempts} of")),
            "{stderr}"
        );
    }

    // Opening works; reading the config then fails: every later call is
    // retried by the one layer too (two layers made (3 + 1) × (3 + 1) = 16
    // requests of it here).
    let server = FakeS3::start(true);
    let out = s3_cairn(&server.endpoint(), &["snapshots", "--retries", "3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("attempt 3 of 4"), "{stderr}");
    assert_eq!(server.take("HEAD"), 4, "{stderr}");
}

#[test]
fn a_closed_port_is_tried_retries_plus_one_times_then_reported() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        format!("http://127.0.0.1:{port}")
    };
    let out = s3_cairn(&closed, &["snapshots", "--retries", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert_eq!(stderr.matches("retrying in").count(), 2, "{stderr}");
    assert!(stderr.contains("(attempt 2 of 3)"), "{stderr}");
    // No retries hidden inside the HTTP client.
    assert!(
        !stderr.contains("after 1 retries") && !stderr.contains("max_retries: 3"),
        "{stderr}"
    );
}

#[test]
fn the_old_client_retry_variable_is_refused_with_advice() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["snapshots", "--repo", "s3://bucket/p"])
        .env("CAIRN_TARGET_RETRIES", "3")
        .env("CAIRN_S3_ENDPOINT", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("CAIRN_TARGET_RETRIES") && stderr.contains("CAIRN_RETRIES"),
        "{stderr}"
    );
}

/// Runs `cairn args --transfers N` with every target call delayed 5 ms (as
/// on a distant target, so that calls overlap) and returns the most calls
/// that ran against the target at once.
fn max_in_flight(t: &Target, transfers: usize, args: &[&str]) -> usize {
    let file = t.env.path("max-in-flight");
    let _ = std::fs::remove_file(&file);
    let n = transfers.to_string();
    let mut all = args.to_vec();
    all.extend(["--transfers", n.as_str()]);
    let out = t
        .command(&all)
        .env("CAIRN_TEST_MAX_IN_FLIGHT", &file)
        .env("CAIRN_TEST_FAULTS", "seed=1,delay=1:5ms")
        .output()
        .unwrap();
    common::succeeded(&all, out);
    std::fs::read_to_string(&file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn transfers_caps_the_calls_in_flight_of_backup_restore_copy_and_check() {
    let t = Target::local();
    t.ok(&["init", "--kdf-memory", "8", "--pack-size", "1", "-q"]);
    let src = t.env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..12u64 {
        std::fs::write(src.join(format!("f{i}")), fill(i, 1 << 20)).unwrap();
    }
    let s = src.to_str().unwrap();
    let mut seen = Vec::new();

    // One transfer: never two calls at once, whatever runs in parallel.
    let one = max_in_flight(&t, 1, &["backup", "-q", "--tag", "a", s]);
    assert_eq!(one, 1);
    std::fs::write(src.join("f0"), fill(100, 1 << 20)).unwrap();
    let backup = max_in_flight(&t, 3, &["backup", "-q", "--tag", "b", s]);
    seen.push(("backup", 3, backup));

    let out = t.env.path("restored");
    let out = out.to_str().unwrap();
    let restore = max_in_flight(&t, 2, &["restore", "latest", "--target", out, "-q"]);
    seen.push(("restore", 2, restore));
    same_tree(
        &src,
        &std::path::Path::new(out).join(src.strip_prefix("/").unwrap()),
    );

    let check = max_in_flight(&t, 3, &["check", "-q", "--read-data"]);
    seen.push(("check --read-data", 3, check));

    let dest = t.env.path("copy");
    let dest = dest.to_str().unwrap();
    let repo = t.repo.clone();
    t.ok(&[
        "init",
        "--repo",
        dest,
        "--kdf-memory",
        "8",
        "-q",
        "--copy-chunker-params-from",
        &repo,
    ]);
    let copy = max_in_flight(
        &t,
        2,
        &["copy", "-q", "--to-repo", dest, "--from-repo", &repo],
    );
    seen.push(("copy", 2, copy));

    eprintln!("most calls in flight (command, --transfers, seen): {seen:?}");
    for (what, limit, max) in &seen {
        assert!(
            (1..=*limit).contains(max),
            "{what}: {max} calls at once, limit {limit}"
        );
    }
    // Reading packs for check, 3 at once with 5 ms per call, overlaps.
    assert!(check >= 2, "{seen:?}");
}
