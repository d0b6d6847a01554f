//! `report` and `serve` end to end without a browser (the browser tests are
//! tests/browser/run.sh): the report of a hostile case is one self-contained document with
//! every payload escaped; the UI refuses requests without its token and changes without
//! its CSRF token, records triage as annotations, and will not listen beyond loopback
//! unless told to.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};

const PAYLOAD: &str = "<script>window.__pwned=1</script>";

const IIS: &str = "#Software: Microsoft Internet Information Services 10.0
#Fields: date time s-computername s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) sc-status sc-substatus sc-win32-status time-taken
2021-08-24 02:13:00 EXCH01 10.0.0.5 POST /autodiscover/autodiscover.json @evil.corp/powershell/?X-Rps-CAT=<img+src=x>&Email=autodiscover/autodiscover.json%3F@evil.corp 443 - 185.220.101.182 <script>window.__pwned=1</script> 200 0 0 312
";

const RULE: &str = "title: <script>window.__pwned=1</script> rule
id: 0e3b4c9a-1111-4000-8000-000000000001
level: high
tags: [attack.initial-access, attack.t1190]
logsource: {category: webserver}
detection:
    sel:
        cs-uri-stem|contains: autodiscover
    condition: sel
";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
}

fn hostile_case(dir: &Path) -> std::path::PathBuf {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("\"><svg onload=x>.log"), IIS).unwrap();
    std::fs::write(dir.join("rule.yml"), RULE).unwrap();
    let case = dir.join("case.sqlite");
    let out = bin().arg("hunt").arg(&logs).arg("--sigma").arg(dir.join("rule.yml")).arg("--case").arg(&case).arg("-q").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    case
}

#[test]
fn report_is_self_contained_and_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let case = hostile_case(dir.path());
    let html_path = dir.path().join("r.html");
    let out = bin().arg("report").arg(&case).arg("-o").arg(&html_path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&html_path).unwrap();
    for section in ["id=\"summary\"", "id=\"notification\"", "id=\"incidents\"", "id=\"coverage\"", "<svg class=\"chain\""] {
        assert!(html.contains(section), "{section} missing");
    }
    assert!(html.contains("Content-Security-Policy") && html.contains("default-src 'none'"), "strict CSP");
    assert!(!html.contains("<script") && !html.contains("<img") && !html.contains("<svg onload"), "no payload became markup");
    assert!(html.contains("&lt;script&gt;window.__pwned=1&lt;/script&gt; rule"), "the rule title is shown, escaped");
    assert!(!html.contains("http://") || !html.contains("src=\"http"), "nothing loaded from elsewhere");
    // The coverage section says which file was read and the period it covers.
    assert!(html.contains("&quot;&gt;&lt;svg onload=x&gt;.log"), "the file name is shown, escaped");
    assert!(html.contains("2021-08-24 02:13 UTC"), "the period covered");

    // Not a case: refused naming the file, exit 1.
    let junk = dir.path().join("junk.txt");
    std::fs::write(&junk, "x".repeat(200)).unwrap();
    let out = bin().arg("report").arg(&junk).arg("-o").arg(dir.path().join("j.html")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.txt"));
}

fn request(addr: &str, raw: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status: u16 = resp.split_whitespace().nth(1).unwrap_or("0").parse().unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (status, head.to_ascii_lowercase(), body.to_string())
}

struct Served(std::process::Child);
impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_requires_its_token_and_csrf_and_records_triage() {
    let dir = tempfile::tempdir().unwrap();
    let case = hostile_case(dir.path());
    let token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let mut child = bin()
        .arg("serve")
        .arg(&case)
        .args(["--bind", "127.0.0.1:0", "--author", "tester"])
        .env("PORTCULLIS_SERVE_TOKEN", token)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _served = Served(child);
    let mut url = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(u) = line.trim().strip_prefix("http://") {
            url = u.to_string();
            break;
        }
    }
    let addr = url.split('/').next().unwrap().to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{url}");
    let get = |path: &str, cookie: bool| {
        let c = if cookie { format!("Cookie: portcullis_session={token}\r\n") } else { String::new() };
        request(&addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{c}Connection: close\r\n\r\n"))
    };
    let (status, _, _) = get("/", false);
    assert_eq!(status, 403, "no token, no page");
    let (status, head, _) = get(&format!("/?token={token}"), false);
    assert_eq!(status, 303, "the token is exchanged for a cookie");
    assert!(head.contains("set-cookie: portcullis_session=") && head.contains("httponly") && head.contains("samesite=strict"), "{head}");
    let (status, head, body) = get("/", true);
    assert_eq!(status, 200);
    assert!(head.contains("content-security-policy: default-src 'none'"), "{head}");
    assert!(!body.contains(PAYLOAD));
    let (status, _, body) = get("/findings", true);
    assert_eq!(status, 200);
    assert!(body.contains("&lt;script&gt;window.__pwned=1&lt;/script&gt; rule") && !body.contains(PAYLOAD));
    let incident = body.split("/findings/").nth(1).map(|s| s.split('"').next().unwrap().to_string()).expect("a finding link");
    let (status, _, page) = get(&format!("/findings/{incident}"), true);
    assert_eq!(status, 200);
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();

    let post = |form: &str, origin: &str| {
        request(
            &addr,
            &format!(
                "POST /annotate HTTP/1.1\r\nHost: {addr}\r\nCookie: portcullis_session={token}\r\nOrigin: {origin}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
                form.len()
            ),
        )
    };
    let own = format!("http://{addr}");
    let (status, _, _) = post(&format!("csrf=wrong&target=finding&id={incident}&verdict=benign&note=x"), &own);
    assert_eq!(status, 403, "wrong CSRF token refused");
    let (status, _, _) = post(&format!("csrf={csrf}&target=finding&id={incident}&verdict=benign&note=x"), "http://evil.example");
    assert_eq!(status, 403, "another origin refused");
    let (status, head, _) = post(&format!("csrf={csrf}&target=finding&id={incident}&verdict=benign&note=%3Cb%3Eseen%3C%2Fb%3E"), &own);
    assert_eq!(status, 303, "{head}");
    assert!(head.contains(&format!("location: /findings/{incident}")), "{head}");
    let (_, _, page) = get(&format!("/findings/{incident}"), true);
    assert!(page.contains("benign") && page.contains("by tester") && page.contains("&lt;b&gt;seen&lt;/b&gt;"), "annotation shown, escaped");
    let (status, _, _) = post(&format!("csrf={csrf}&target=finding&id=nope&verdict=benign"), &own);
    assert_eq!(status, 400, "an annotation of nothing is refused");
    // Findings themselves are unchanged: still one level, no verdict column.
    let conn = rusqlite::Connection::open(&case).unwrap();
    let (n, verdict): (i64, String) = conn
        .query_row("SELECT COUNT(*), max(verdict) FROM annotations WHERE target_kind = 'finding'", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!((n, verdict.as_str()), (1, "benign"));
}

#[test]
fn serve_stays_on_loopback_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let case = hostile_case(dir.path());
    let out = bin().arg("serve").arg(&case).args(["--bind", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
}
