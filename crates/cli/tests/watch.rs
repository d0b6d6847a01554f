//! `watch` end to end: the simulated institution written out piece by piece (lines cut
//! mid-way, files appearing one after another, a log rotated by rename) while `watch`
//! follows it, killed with SIGKILL several times and restarted, gives exactly the finding
//! ids of a batch `hunt` over the same files: none lost, none repeated, none announced twice.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
}

fn ids(case: &Path) -> BTreeSet<String> {
    let conn = rusqlite::Connection::open(case).unwrap();
    let mut q = conn.prepare("SELECT id FROM findings").unwrap();
    q.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    out
}

fn start_watch(dir: &Path, case: &Path, alerts: &Path) -> Child {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(alerts).unwrap();
    bin()
        .args(["watch", "--interval", "0.05", "--idle-flush", "0.3", "-q", "--case"])
        .arg(case)
        .arg(dir)
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn replay_with_kills_gives_the_batch_findings_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = tmp.path().join("sim");
    let st = bin().args(["simulate", "electoral-commission", "--scale", "0.02", "--seed", "7", "--out"]).arg(&sim).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    std::fs::remove_file(sim.join("truth.json")).unwrap();
    let batch = tmp.path().join("batch.sqlite");
    let st = bin().arg("hunt").arg(&sim).arg("--case").arg(&batch).args(["-q", "-o"]).arg(tmp.path().join("h.txt")).output().unwrap();
    assert!(st.status.code().is_some_and(|c| c == 0 || c == 2), "{}", String::from_utf8_lossy(&st.stderr));
    let expected = ids(&batch);
    assert!(expected.len() > 50, "the simulated intrusion gives findings ({})", expected.len());

    // Replay: each file written in three pieces cut at arbitrary bytes; watch killed with
    // SIGKILL after every few files and started again.
    let live = tmp.path().join("live");
    std::fs::create_dir(&live).unwrap();
    let case = tmp.path().join("live.sqlite");
    let alerts = tmp.path().join("alerts.jsonl");
    let mut child = start_watch(&live, &case, &alerts);
    let files = files_under(&sim);
    let mut kills = 0;
    for (n, src) in files.iter().enumerate() {
        let rel = src.strip_prefix(&sim).unwrap();
        let dst = live.join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        let data = std::fs::read(src).unwrap();
        let cuts = [0, data.len() / 3 + 7, data.len() * 2 / 3 + 1, data.len()];
        // The IIS log of one day is written under a temporary name and rotated into place.
        let rotate = n == 40;
        let writing = if rotate { dst.with_extension("current") } else { dst.clone() };
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&writing).unwrap();
        for w in cuts.windows(2) {
            let (a, b) = (w[0].min(data.len()), w[1].min(data.len()));
            f.write_all(&data[a..b]).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(15));
        }
        drop(f);
        if rotate {
            std::fs::rename(&writing, &dst).unwrap();
        }
        if n % 37 == 20 {
            let _ = child.kill(); // SIGKILL: no chance to finish the step
            let _ = child.wait();
            kills += 1;
            child = start_watch(&live, &case, &alerts);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = child.kill();
    let _ = child.wait();
    assert!(kills >= 3);
    // What remains is read by a last run that stops when everything is read.
    let st = bin().args(["watch", "--once", "-q", "--case"]).arg(&case).arg(&live).stdout(Stdio::piped()).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    std::fs::OpenOptions::new().append(true).open(&alerts).unwrap().write_all(&st.stdout).unwrap();

    let got = ids(&case);
    let lost: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&expected).collect();
    assert!(lost.is_empty() && extra.is_empty(), "lost {} {:?}\nextra {} {:?}", lost.len(), lost, extra.len(), extra);

    // Every finding was announced exactly once across the kills.
    let text = std::fs::read_to_string(&alerts).unwrap();
    let announced: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    let unique: BTreeSet<String> = announced.iter().cloned().collect();
    assert_eq!(unique, expected, "every finding announced");
    // A kill between the commit and the printing of its alerts can lose an announcement
    // (never a finding); a repeat is never allowed.
    assert_eq!(announced.len(), unique.len(), "no finding announced twice");
}

#[test]
fn a_rotated_and_truncated_log_is_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    std::fs::create_dir(&dir).unwrap();
    let case = tmp.path().join("c.sqlite");
    let header = "#Software: Microsoft Internet Information Services 10.0\n#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) sc-status\n";
    let line = |i: u32| {
        format!(
            "2021-08-24 02:{:02}:{:02} 10.0.0.5 POST /autodiscover/autodiscover.json @evil.corp/powershell/?X-Rps-CAT=x&Email=autodiscover/autodiscover.json%3F@evil.corp 443 - 203.0.113.9 python-requests/2.25.1 200\n",
            i / 60,
            i % 60
        )
    };
    let log = dir.join("u_ex210824.log");
    std::fs::write(&log, format!("{header}{}{}", line(1), line(2))).unwrap();
    let once = || {
        let out = bin().args(["watch", "--once", "-q", "--case"]).arg(&case).arg(&dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // Detections only (a correlation over the exploit requests may fire as they add up).
        String::from_utf8(out.stdout).unwrap().lines().filter(|l| !l.contains("\"record\":null")).count()
    };
    let first = once();
    assert!(first >= 2, "both exploit lines alert ({first})");
    // Nothing new: nothing announced.
    assert_eq!(once(), 0);
    // Rotated by rename, a new file at the old name, more written to both.
    std::fs::rename(&log, dir.join("u_ex210824.log.1")).unwrap();
    std::fs::OpenOptions::new().append(true).open(dir.join("u_ex210824.log.1")).unwrap().write_all(line(3).as_bytes()).unwrap();
    std::fs::write(&log, format!("{header}{}", line(4))).unwrap();
    let after_rotation = once();
    assert_eq!(after_rotation, first, "lines 3 and 4 alert like lines 1 and 2");
    // Truncated in place (copytruncate) and written again: read from the start.
    std::fs::write(&log, format!("{header}{}", line(5))).unwrap();
    assert_eq!(once() * 2, first, "line 5 after the truncation");
}

#[test]
fn a_line_still_being_written_waits_and_once_still_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    std::fs::create_dir(&dir).unwrap();
    let case = tmp.path().join("c.sqlite");
    let exploit = "2021-08-24 02:10:17 10.0.0.5 POST /autodiscover/autodiscover.json @evil.corp/powershell/?X-Rps-CAT=x&Email=autodiscover/autodiscover.json%3F@evil.corp 443 - 203.0.113.9 python-requests/2.25.1 200";
    let header = "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) sc-status\n";
    let log = dir.join("u_ex.log");
    // The second line has no line break yet: it is not read.
    std::fs::write(&log, format!("{header}{exploit}\n{}", &exploit[..60])).unwrap();
    let once = || {
        let mut child = bin().args(["watch", "--once", "-q", "--case"]).arg(&case).arg(&dir).stdout(Stdio::piped()).spawn().unwrap();
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            assert!(started.elapsed() < Duration::from_secs(60), "watch --once must stop although a line is unfinished");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut out = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
        out.lines().filter(|l| l.contains("\"record\":2")).count() + 1000 * out.lines().filter(|l| l.contains("\"record\":3")).count()
    };
    let first = once();
    assert!(first > 0 && first < 1000, "line 2 alerts, the unfinished line 3 does not ({first})");
    std::fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(format!("{}\n", &exploit[60..]).as_bytes()).unwrap();
    assert_eq!(once(), first * 1000, "line 3 alerts once finished, like line 2");
}

#[test]
fn a_complete_compressed_log_is_read_on_the_first_poll() {
    // Files read whole (EVTX, gzip, ZIP) that are not being written are read at once, so
    // `watch --once` over a finished collection gives what `hunt` gives.
    use flate2::{Compression, write::GzEncoder};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    std::fs::create_dir(&dir).unwrap();
    let header = "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) sc-status\n";
    let exploit = "2021-08-24 02:10:17 10.0.0.5 POST /autodiscover/autodiscover.json @evil.corp/powershell/?X-Rps-CAT=x&Email=autodiscover/autodiscover.json%3F@evil.corp 443 - 203.0.113.9 python-requests/2.25.1 200\n";
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(format!("{header}{exploit}").as_bytes()).unwrap();
    std::fs::write(dir.join("u_ex210824.log.gz"), gz.finish().unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(2100)); // no longer being written
    let (batch, live) = (tmp.path().join("b.sqlite"), tmp.path().join("w.sqlite"));
    let st = bin().arg("hunt").arg(&dir).arg("--case").arg(&batch).args(["-q", "-o"]).arg(tmp.path().join("h.txt")).output().unwrap();
    assert!(st.status.code().is_some_and(|c| c == 0 || c == 2));
    let st = bin().args(["watch", "--once", "-q", "--case"]).arg(&live).arg(&dir).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let expected = ids(&batch);
    assert!(!expected.is_empty());
    assert_eq!(ids(&live), expected);
}
