//! The webhook sender: a failing endpoint is retried with back-off until it accepts, and
//! every alert arrives; an endpoint that never accepts costs drops that are counted.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use portcullis_live::{Alert, Backoff, Webhook};

const QUICK: Backoff = Backoff { attempts: 4, first: Duration::from_millis(20), max: Duration::from_millis(100) };

fn alert(id: &str) -> Alert {
    Alert {
        kind: "alert".into(),
        id: id.into(),
        level: "high".into(),
        rule_id: "r".into(),
        title: "t".into(),
        host: Some("exch01".into()),
        time: None,
        sentence: "<script>".into(),
        path: None,
        record: Some(1),
    }
}

/// A server answering each request with the next status of `statuses` (then 200),
/// keeping the bodies it received.
fn server(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        let mut statuses = statuses.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let status = statuses.next().unwrap_or(200);
            if status == 200 {
                kept.lock().unwrap().push(String::from_utf8(body).unwrap());
            }
            let _ = write!(stream, "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}

#[test]
fn a_failing_endpoint_is_retried_until_it_accepts() {
    let (url, bodies) = server(vec![500, 503]);
    let hook = Webhook::with_backoff(url, QUICK);
    for id in ["a", "b", "c"] {
        hook.send(alert(id));
    }
    let stats = hook.finish();
    assert!(stats.retries.load(Ordering::Relaxed) >= 2);
    assert_eq!(stats.sent.load(Ordering::Relaxed), 3);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    let received: Vec<Alert> = bodies.lock().unwrap().iter().flat_map(|b| serde_json::from_str::<Vec<Alert>>(b).unwrap()).collect();
    let ids: Vec<&str> = received.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(received[0].sentence, "<script>", "JSON carries the text; escaping is the display's job");
}

#[test]
fn an_unreachable_endpoint_counts_drops() {
    // A port nobody listens on: bind, learn the port, close.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let hook = Webhook::with_backoff(format!("http://127.0.0.1:{port}/hook"), QUICK);
    hook.send(alert("x"));
    let stats = hook.finish();
    assert_eq!(stats.sent.load(Ordering::Relaxed), 0);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
}
