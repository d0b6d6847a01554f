//! Each analyser on hand-made messages: beacons, tokens, impersonation and confusables,
//! and the benign look-alikes that must stay low (read receipts, newsletters, real outlets).

use portcullis_mail::analyse::{self, Analyser, Context};
use portcullis_mail::campaign::{Severity, message_severity};
use portcullis_mail::{Lists, Members, Options};
use portcullis_mailbox::Location;

fn ctx() -> Context {
    Context::new(Lists::builtin(), vec!["parliament.example".into()])
}

fn msg(from: &str, extra_headers: &str, html: &str) -> String {
    format!(
        "From: {from}\r\nTo: \"Jane Doe MP\" <jane.doe@parliament.example>\r\nSubject: hello\r\nDate: Mon, 18 Jan 2021 09:00:00 +0000\r\nMessage-ID: <{:x}@x>\r\n{extra_headers}MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n",
        html.len() ^ from.len() << 8
    )
}

fn analysed(raw: &str) -> analyse::Analysed {
    let mail = portcullis_mailbox::parse(raw.as_bytes()).expect("a message");
    analyse::analyse(mail, Location { path: std::path::Path::new("t.eml").into(), index: None }, 0, &ctx())
}

fn signals(a: &analyse::Analysed, which: Analyser) -> Vec<String> {
    a.signals.iter().filter(|s| s.analyser == which).map(|s| format!("{}:{}", s.score, s.what)).collect()
}

#[test]
fn tiny_hidden_pixel_with_recipient_token() {
    let a = analysed(&msg(
        "\"Press Desk\" <desk@example-news.net>",
        "",
        r#"<p>Hi</p><img src="https://px.tracker.example/o/amFuZS5kb2VAcGFybGlhbWVudC5leGFtcGxl/i.gif" width="1" height="1" alt="">"#,
    ));
    let b = signals(&a, Analyser::Beacon);
    assert_eq!(b.len(), 1, "{b:?}");
    assert!(b[0].starts_with("3:"), "pixel + token + unrelated host: {b:?}");
    assert!(b[0].contains("the recipient's address in base64"), "{b:?}");
    assert!(a.urls[0].beacon);
    assert_eq!(&*a.urls[0].template, "px.tracker.example/o/{t}/i.gif");
}

#[test]
fn css_hidden_background_and_hidden_ancestor_beacons() {
    let a = analysed(&msg("a@news-example.org", "", r#"<td style="background-image:url(https://t.example.org/bg?rid=a81f22)">x</td>"#));
    assert_eq!(signals(&a, Analyser::Beacon).len(), 1, "{:?}", a.signals);
    let a = analysed(&msg(
        "a@news-example.org",
        "",
        r#"<div style="position:absolute;left:-9999px"><img src="https://t.example.org/i.png"></div>"#,
    ));
    let b = signals(&a, Analyser::Beacon);
    assert!(b[0].contains("inside a hidden element"), "{b:?}");
    // A visible logo is not a beacon.
    let a = analysed(&msg("a@news-example.org", "", r#"<img src="https://cdn.example.org/logo.png" width="200" height="50" alt="Logo">"#));
    assert!(signals(&a, Analyser::Beacon).is_empty());
}

#[test]
fn redirector_chains_are_noted() {
    let a = analysed(&msg("a@x.example", "", r#"<a href="https://r.example/c?u=https%3A%2F%2Flogin.evil.example%2F">read</a>"#));
    assert!(signals(&a, Analyser::Beacon).iter().any(|s| s.contains("redirector") && s.contains("login.evil.example")));
}

#[test]
fn outlet_name_on_free_webmail() {
    let a = analysed(&msg("\"Alex Porter, BBC News\" <alex.porter.bbc@gmail.com>", "", "<p>Hello</p>"));
    let i = signals(&a, Analyser::Impersonation);
    assert!(i.iter().any(|s| s.starts_with("3:") && s.contains("BBC News") && s.contains("free webmail")), "{i:?}");
}

#[test]
fn the_real_outlet_is_not_impersonation() {
    let a = analysed(&msg("\"Alex Porter, BBC News\" <alex.porter@bbc.co.uk>", "", "<p>Hello</p>"));
    assert!(signals(&a, Analyser::Impersonation).is_empty(), "{:?}", a.signals);
    // "Financial Times" is not "The Times".
    let a = analysed(&msg("\"Sam Reid, Financial Times\" <sam.reid@ft.com>", "", "<p>Hello</p>"));
    assert!(signals(&a, Analyser::Impersonation).is_empty(), "{:?}", a.signals);
}

#[test]
fn look_alike_and_confusable_domains() {
    for (from, want) in [
        ("desk@theguardlan.com", "looks like The Guardian"),
        ("desk@reuters-desk.com", "looks like Reuters"),
        ("desk@nropnews.com", "looks like NPR"),
        // A Cyrillic "ѕ" in bbcnewѕ: punycode, decoded, then compared as a skeleton.
        ("desk@xn--bbcnew-nvf.com", "punycode for bbcnewѕ.com"),
        ("desk@xn--bbcnew-nvf.com", "looks like BBC News (bbcnews: uses look-alike characters)"),
    ] {
        let a = analysed(&msg(from, "", "<p>Hello</p>"));
        let i = signals(&a, Analyser::Impersonation);
        assert!(i.iter().any(|s| s.contains(want)), "{from}: {i:?}");
    }
    // Ordinary domains near no outlet stay clean.
    for from in ["a@gmail.com", "a@example.org", "a@hansardsociety.org.uk"] {
        let a = analysed(&msg(from, "", "<p>Hello</p>"));
        assert!(signals(&a, Analyser::Impersonation).iter().all(|s| !s.contains("looks like")), "{from}: {:?}", a.signals);
    }
}

#[test]
fn protected_journalist_names_from_the_user() {
    let mut lists = Lists::builtin();
    lists.add_protected("name,domains\nMaria Ressa,rappler.com\n").unwrap();
    let ctx = Context::new(lists, vec!["parliament.example".into()]);
    let raw = msg("\"Maria Ressa\" <maria@rappler-news.org>", "", "<p>Hello</p>");
    let a = analyse::analyse(
        portcullis_mailbox::parse(raw.as_bytes()).unwrap(),
        Location { path: std::path::Path::new("t").into(), index: None },
        0,
        &ctx,
    );
    assert!(
        a.signals.iter().any(|s| s.analyser == Analyser::Impersonation && s.score == 3 && s.what.contains("Maria Ressa")),
        "{:?}",
        a.signals
    );
    let raw = msg("\"Maria Ressa\" <maria@rappler.com>", "", "<p>Hello</p>");
    let a = analyse::analyse(
        portcullis_mailbox::parse(raw.as_bytes()).unwrap(),
        Location { path: std::path::Path::new("t").into(), index: None },
        0,
        &ctx,
    );
    assert!(a.signals.iter().all(|s| s.analyser != Analyser::Impersonation), "{:?}", a.signals);
}

#[test]
fn reply_to_elsewhere() {
    let a = analysed(&msg("\"D. Wright\" <d.wright@example-media.net>", "Reply-To: dwright@gmail.com\r\n", "<p>Hi</p>"));
    assert!(signals(&a, Analyser::Impersonation).iter().any(|s| s.starts_with("2:") && s.contains("replies go to gmail.com")));
}

#[test]
fn read_receipt_and_newsletter_pixels_stay_low() {
    let receipt = analysed(&msg(
        "\"Sam Lee\" <sam.lee@gmail.com>",
        "",
        r#"<div>Thanks</div><img width="0" height="0" alt="" style="display:none" src="https://mailtrack.io/trace/mail/9f8e7d6c5b4a39281706f5e4d3c2b1a0.png?u=1234">"#,
    ));
    assert!(receipt.read_receipt);
    assert_eq!(message_severity(&receipt), Severity::Low);
    let newsletter = analysed(&msg(
        "\"Guardian Today\" <newsletters@theguardian.com>",
        "List-Unsubscribe: <https://theguardian.com/u?x=1>\r\nReceived: from o7.email.sendgrid.net (o7.email.sendgrid.net [203.0.113.150]) by mx1.parliament.example; Mon, 18 Jan 2021 09:00:00 +0000\r\n",
        r#"<table><tr><td>News</td></tr></table><img src="https://u1.ct.sendgrid.net/wf/open?upn=Zk3q9XyL2mP8rT4w" width="1" height="1" alt="">"#,
    ));
    assert!(newsletter.score(Analyser::Beacon) >= 2);
    assert_eq!(newsletter.bulk_relay.as_deref(), Some("sendgrid.net"));
    assert!(signals(&newsletter, Analyser::Impersonation).is_empty());
    assert_eq!(message_severity(&newsletter), Severity::Low);
}

#[test]
fn beacon_plus_impersonation_novelty_and_members_is_high_in_a_corpus() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..12 {
        let raw = format!(
            "From: \"Daniel Wright, NPR News\" <d.wright{}@nprnevvs.com>\r\nTo: m{i}@parliament.example\r\nSubject: Interview\r\nDate: Mon, {} Jan 2021 09:00:00 +0000\r\nMessage-ID: <c{i}@x>\r\nContent-Type: text/html\r\n\r\n<p>Dear member</p><img src=\"https://t.nprnevvs.com/o/{}Zq81LmV0x/l.gif\" style=\"display:none\">\r\n",
            i % 3,
            10 + i,
            i
        );
        std::fs::write(dir.path().join(format!("c{i}.eml")), raw).unwrap();
    }
    for i in 0..5 {
        let raw = format!(
            "From: colleague{i}@parliament.example\r\nTo: m{i}@parliament.example\r\nSubject: Papers\r\nDate: Mon, 11 Jan 2021 09:00:00 +0000\r\nMessage-ID: <b{i}@x>\r\n\r\nSee attached.\r\n"
        );
        std::fs::write(dir.path().join(format!("b{i}.eml")), raw).unwrap();
    }
    let mut csv = String::from("name,addresses\n");
    for i in 0..4 {
        csv.push_str(&format!("Member {i},m{i}@parliament.example\n"));
    }
    let opts = Options { members: Members::parse(&csv).unwrap(), ..Options::default() };
    let r = portcullis_mail::run(&[dir.path().to_path_buf()], &opts, &|_| {});
    assert_eq!(r.messages, 17);
    assert_eq!(r.internal_domains, vec!["parliament.example"]);
    assert_eq!(r.campaigns.len(), 1, "{:#?}", r.campaigns);
    let c = &r.campaigns[0];
    assert_eq!(c.severity, Severity::High);
    assert_eq!((c.messages, c.senders.len(), c.recipients.len(), c.members_targeted), (12, 3, 12, 4));
    assert!(c.iocs.iter().any(|i| i.kind == "domain" && i.value == "nprnevvs.com"));
    assert_eq!(r.severities.get("high"), Some(&4), "members' messages are high: {:?}", r.severities);
}

fn lookalike_signals(from: &str) -> Vec<String> {
    let a = analysed(&msg(from, "", "<p>Hello</p>"));
    a.signals.iter().filter(|s| s.kind == portcullis_mail::SignalKind::LookAlikeSender).map(|s| format!("{}:{}", s.score, s.what)).collect()
}

#[test]
fn benign_pairs_are_not_look_alikes() {
    // Real names a small edit apart, real outlets, and widely used domains.
    for from in [
        "easmith@beatrice.rutgers.edu",
        "news@latimes.com",
        "a@politics.co.uk",
        "dilbert@ummail4.unitedmedia.com",
        "guterman@mediaunspun.imakenews.net",
        "x@cnet.com",
        "x@youtube.com",
    ] {
        assert!(lookalike_signals(from).is_empty(), "{from}: {:?}", lookalike_signals(from));
    }
    // A link to a real outlet is not a look-alike link.
    let a = analysed(&msg("a@example.org", "", r#"<a href="https://www.latimes.com/story?id=8f3KzQ1x9LmP2vW7">x</a>"#));
    assert!(a.signals.iter().all(|s| s.kind != portcullis_mail::SignalKind::LookAlikeLink), "{:?}", a.signals);
    // Under a restricted suffix a small edit is a coincidence of names, and is said to be.
    let a = analysed(&msg("a@reuter.ac.uk", "", "<p>Hello</p>"));
    assert!(a.signals.iter().all(|s| s.kind != portcullis_mail::SignalKind::LookAlikeSender), "{:?}", a.signals);
    assert!(
        a.signals.iter().any(|s| s.kind == portcullis_mail::SignalKind::Established
            && s.what.contains("resembles Reuters")
            && s.what.contains(".ac.uk")),
        "{:?}",
        a.signals
    );
}

#[test]
fn look_alikes_that_must_still_fire() {
    for (from, want) in [
        ("desk@reutres.com", "looks like Reuters (reuters: swaps adjacent letters)"),
        ("desk@reuters-news.com", "looks like Reuters (reuters: adds news words to the name)"),
        ("desk@nropnews.com", "looks like NPR (nprnews: is a small misspelling)"),
        ("desk@bbc-news.co", "looks like BBC News"),
        ("desk@bbc.co", "looks like BBC News (bbc: the same name on another domain)"),
        // A restricted suffix does not excuse an outlet's name with news words added.
        ("desk@reuters-news.ac.uk", "looks like Reuters (reuters: adds news words to the name)"),
        ("desk@nytimes-daily.com", "looks like The New York Times"),
    ] {
        let got = lookalike_signals(from);
        assert!(got.iter().any(|s| s.contains(want)), "{from}: {got:?}");
    }
}

const GATEWAY: &str = "Received: from mail.outside.example (mail.outside.example [198.51.100.9]) by mx1.parliament.example; Mon, 18 Jan 2021 09:00:00 +0000\r\n";

#[test]
fn authentication_the_gateway_wrote_is_believed_and_claims_in_the_message_are_not() {
    let pixel = r#"<table><tr><td>News</td></tr></table><img src="https://ping.news.bbc.co.uk/o/Zk3q9XyL2mP8rT4w.gif" width="1" height="1" alt="">"#;
    // The gateway (above its Received hop) says DMARC failed for bbc.co.uk: a spoof.
    let spoof = analysed(&msg(
        "\"BBC News\" <news@bbc.co.uk>",
        &format!(
            "Authentication-Results: mx1.parliament.example; spf=fail smtp.mailfrom=bbc.co.uk; dkim=none; dmarc=fail header.from=bbc.co.uk\r\n{GATEWAY}"
        ),
        pixel,
    ));
    assert!(spoof.signals.iter().any(|s| s.kind == portcullis_mail::SignalKind::SpoofedDomain && s.score == 3), "{:?}", spoof.signals);
    assert_eq!(message_severity(&spoof), Severity::Medium);
    // The same failure written by the sender, below the gateway's hop, is not believed.
    let claimed = analysed(&msg(
        "\"BBC News\" <news@bbc.co.uk>",
        &format!("{GATEWAY}Authentication-Results: mx1.parliament.example; dmarc=fail header.from=bbc.co.uk\r\n"),
        pixel,
    ));
    assert!(claimed.signals.iter().all(|s| s.kind != portcullis_mail::SignalKind::SpoofedDomain), "{:?}", claimed.signals);
    // A forged pass below the gateway does not vouch either; the gateway's own pass does.
    let forged = analysed(&msg(
        "\"NROP News\" <d@nropnews.com>",
        &format!("{GATEWAY}Authentication-Results: mx1.parliament.example; dmarc=pass header.from=nropnews.com\r\n"),
        pixel,
    ));
    assert!(forged.signals.iter().all(|s| s.kind != portcullis_mail::SignalKind::Authenticated), "{:?}", forged.signals);
    let real = analysed(&msg(
        "\"BBC News Daily\" <newsletters@bbc.co.uk>",
        &format!(
            "Authentication-Results: mx1.parliament.example; dkim=pass header.d=bbc.co.uk; dmarc=pass header.from=bbc.co.uk\r\n{GATEWAY}"
        ),
        pixel,
    ));
    assert!(
        real.signals.iter().any(|s| s.kind == portcullis_mail::SignalKind::Authenticated && s.what.contains("dmarc=pass")),
        "{:?}",
        real.signals
    );
    assert_eq!(message_severity(&real), Severity::Low);
}

#[test]
fn a_real_outlets_own_newsletter_without_list_headers_stays_low_in_a_corpus() {
    // From its own domain, a tracking pixel and a per-recipient token, no list headers, to
    // members: a newsletter, not reconnaissance.
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("name,addresses\n");
    for i in 0..12 {
        csv.push_str(&format!("Member {i},m{i}@parliament.example\n"));
        let raw = format!(
            "From: \"The Economist Today\" <newsletters@economist.com>\r\nTo: m{i}@parliament.example\r\nSubject: The world in brief\r\nDate: Mon, {} Jan 2021 07:00:00 +0000\r\nMessage-ID: <e{i}@economist.com>\r\n{GATEWAY}Content-Type: text/html\r\n\r\n<table><tr><td>Today</td></tr></table><img src=\"https://t.economist.com/o/{}Zq81LmV0xR4kT/p.gif\" width=\"1\" height=\"1\">\r\n",
            10 + i,
            i
        );
        std::fs::write(dir.path().join(format!("e{i}.eml")), raw).unwrap();
    }
    let opts = Options { members: Members::parse(&csv).unwrap(), ..Options::default() };
    let r = portcullis_mail::run(&[dir.path().to_path_buf()], &opts, &|_| {});
    assert_eq!(r.campaigns.len(), 1, "{:#?}", r.campaigns);
    let c = &r.campaigns[0];
    assert_eq!(c.severity, Severity::Low, "{:#?}", c.signals);
    assert!(c.signals.iter().any(|s| s.kind == portcullis_mail::SignalKind::PersonalBulk));
    assert!(
        c.signals.iter().any(|s| s.kind == portcullis_mail::SignalKind::Established && s.what.contains("The Economist's own domain")),
        "{:#?}",
        c.signals
    );
}

/// A plain message, for the corpus-wide walks.
fn plain(from: &str, to: &str, date: &str, id: &str) -> Box<analyse::Analysed> {
    let raw = format!("From: {from}\r\nTo: {to}\r\nSubject: hi\r\nDate: {date}\r\nMessage-ID: <{id}@x>\r\n\r\nHello\r\n");
    Box::new(analysed(&raw))
}

#[test]
fn novelty_learns_domains_and_correspondents_in_time_order() {
    use analyse::SignalKind::{NewCorrespondent, NewDomain, RecentDomain};
    let jane = "jane.doe@parliament.example";
    // Listed out of time order on purpose (the walk sorts by date); the comments give each
    // message's index, which the assertions use, and its place in time.
    let messages = vec![
        // [0], sent last: a correspondent the institution wrote to first is neither new nor a new domain.
        plain("y@known.example", jane, "Mon, 18 Jan 2021 12:00:00 +0000", "m4"),
        // [1], second: a new domain and a new correspondent, even with its recipient named twice.
        plain("x@new.example", &format!("{jane}, {jane}"), "Mon, 18 Jan 2021 09:00:00 +0000", "m1"),
        // [2], third: the same sender to the same member: the domain is recent, the pair known.
        plain("x@new.example", jane, "Mon, 18 Jan 2021 10:00:00 +0000", "m2"),
        // [3], fourth: to the member and to someone new: not new to all of its recipients.
        plain("x@new.example", &format!("{jane}, bob.roe@parliament.example"), "Mon, 18 Jan 2021 11:00:00 +0000", "m3"),
        // [4], first: the institution writes to y@known.example.
        plain(jane, "y@known.example", "Mon, 18 Jan 2021 08:00:00 +0000", "m0"),
    ];
    let found = portcullis_mail::campaign::novelty_signals(&messages, &ctx());
    let kinds = |i: usize| -> Vec<analyse::SignalKind> {
        found.iter().filter(|(j, _)| *j == i).flat_map(|(_, s)| s.iter().map(|s| s.kind)).collect()
    };
    assert_eq!(kinds(1), vec![NewDomain, NewCorrespondent]);
    assert_eq!(kinds(2), vec![RecentDomain]);
    assert_eq!(kinds(3), vec![RecentDomain]);
    assert!(kinds(0).is_empty() && kinds(4).is_empty(), "{found:?}");
}

#[test]
fn a_large_cluster_counted_in_slices_keeps_first_names_and_whole_counts() {
    // More messages than one slice of a campaign's tally, so they are counted on several
    // threads and merged; each address's name is the one on its first message, counts are
    // whole and the first and last times span every slice.
    let n = 9_000usize;
    let day = |i: usize| format!("{:02} Feb 2021 {:02}:{:02}:00 +0000", 1 + (i * 7919) % 28, (i / 60) % 24, i % 60);
    let messages: Vec<Box<analyse::Analysed>> = (0..n)
        .map(|i| {
            plain(&format!("\"Alias {i}\" <s{}@x.example>", i % 7), &format!("r{}@parliament.example", i % 50), &day(i), &format!("m{i}"))
        })
        .collect();
    let group: Vec<usize> = (0..n).collect();
    let severities = vec![Severity::Low; n];
    let members = Members::parse("name,addresses\nR Zero,r0@parliament.example\n").unwrap();
    let c = portcullis_mail::assemble::build_campaign(&messages, &group, &members, &severities);
    assert_eq!(c.messages, n);
    assert_eq!(c.senders.len(), 7);
    for s in &c.senders {
        let k: usize = s.address[1..s.address.find('@').unwrap()].parse().unwrap();
        assert_eq!(s.name.as_deref(), Some(format!("Alias {k}").as_str()), "{s:?}");
        assert_eq!(s.messages, (0..n).filter(|i| i % 7 == k).count());
    }
    assert_eq!(c.recipients.len(), 50);
    assert_eq!(c.members_targeted, 1);
    let times: Vec<i64> = messages.iter().filter_map(|m| m.date.map(|d| d.0)).collect();
    assert_eq!(times.len(), n);
    let ts = |t: i64| portcullis_event::Timestamp(t).to_string();
    assert_eq!(c.first_seen, Some(ts(*times.iter().min().unwrap())));
    assert_eq!(c.last_seen, Some(ts(*times.iter().max().unwrap())));
    for r in &c.recipients {
        let k: usize = r.address[1..r.address.find('@').unwrap()].parse().unwrap();
        let mine: Vec<i64> = (0..n).filter(|i| i % 50 == k).map(|i| times[i]).collect();
        assert_eq!(r.messages, mine.len());
        assert_eq!(r.first_received, Some(ts(*mine.iter().min().unwrap())), "{r:?}");
    }
    assert_eq!(c.severity, Severity::Low);
}

#[test]
fn a_large_mailbox_is_read_in_file_order_across_batches() {
    // About 4 MiB in one mbox: several batches analysed by the pool, put back in file order.
    // Each message is padded to ~2 KiB; the last copies repeat earlier Message-IDs (the same
    // message exported twice), and the first copy read must be the one kept.
    let dir = tempfile::tempdir().unwrap();
    let pad = "x".repeat(2000);
    let mut mbox = String::new();
    let n = 2000;
    for i in 0..n + 20 {
        let id = if i < n { i } else { i - n };
        mbox.push_str(&format!(
            "From sender@example Mon Jan 18 09:00:00 2021\nFrom: \"Daniel Wright, NPR News\" <d.wright@nprnevvs.com>\nTo: m{i}@parliament.example\nSubject: Interview\nDate: Mon, 18 Jan 2021 09:00:00 +0000\nMessage-ID: <c{id}@x>\nContent-Type: text/html\n\n<p>Dear member {pad}</p><img src=\"https://t.nprnevvs.com/o/{id}Zq81LmV0x/l.gif\" style=\"display:none\">\n\n"
        ));
    }
    std::fs::write(dir.path().join("journal.mbox"), &mbox).unwrap();
    assert!(mbox.len() > 4 << 20);
    for threads in [1, 2, 4] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let r = pool.install(|| portcullis_mail::run(&[dir.path().to_path_buf()], &Options::default(), &|_| {}));
        assert_eq!((r.messages, r.duplicates), (n + 20, 20), "{threads} threads");
        assert_eq!(r.campaigns.len(), 1, "{threads} threads: {:#?}", r.campaigns.len());
        let c = &r.campaigns[0];
        assert_eq!(c.messages, n, "{threads} threads");
        // The first three messages of the file, in order; a copy's recipient joined the first.
        let numbers: Vec<&str> =
            c.examples.iter().map(|e| e.split("(message ").nth(1).and_then(|r| r.split(',').next()).unwrap_or("")).collect();
        assert_eq!(numbers, ["1", "2", "3"], "{threads} threads: {:?}", c.examples);
        assert_eq!(c.recipients.len(), n + 20, "{threads} threads");
    }
}

#[test]
fn a_forwarder_in_front_is_not_the_sender_and_internal_senders_lose_impersonation_signals() {
    // Every message reaches the institution through one forwarder (203.0.113.9), which hands
    // over mail from 26 sender domains: it is a relay, and the campaign's sending addresses
    // are the hops below it. An internal sender whose display name names an outlet is not
    // impersonating it once the institution's domain is known.
    let dir = tempfile::tempdir().unwrap();
    let received = |ip: &str| {
        format!(
            "Received: from relay.forwarder.example (relay.forwarder.example [203.0.113.9]) by mx.parliament.example; Mon, 18 Jan 2021 09:00:05 +0000\r\nReceived: from mail.sender.example (mail.sender.example [{ip}]) by relay.forwarder.example; Mon, 18 Jan 2021 09:00:00 +0000\r\n"
        )
    };
    for i in 0..12 {
        let raw = format!(
            "{}From: \"Daniel Wright, NPR News\" <d.wright@nprnevvs.com>\r\nTo: m{i}@parliament.example\r\nSubject: Interview\r\nDate: Mon, {} Jan 2021 09:00:00 +0000\r\nMessage-ID: <c{i}@x>\r\nContent-Type: text/html\r\n\r\n<p>Dear member</p><img src=\"https://t.nprnevvs.com/o/{i}Zq81LmV0x/l.gif\" style=\"display:none\">\r\n",
            received(&format!("198.51.100.{}", i % 2)),
            10 + i
        );
        std::fs::write(dir.path().join(format!("c{i}.eml")), raw).unwrap();
    }
    for i in 0..25 {
        let raw = format!(
            "{}From: someone@sender{i}.example\r\nTo: m{i}@parliament.example\r\nSubject: Hello\r\nDate: Mon, 4 Jan 2021 09:00:00 +0000\r\nMessage-ID: <b{i}@x>\r\n\r\nHello.\r\n",
            received(&format!("192.0.2.{i}"))
        );
        std::fs::write(dir.path().join(format!("b{i}.eml")), raw).unwrap();
    }
    let internal = "From: \"BBC News\" <press.office@parliament.example>\r\nTo: m1@parliament.example\r\nSubject: Coverage\r\nDate: Mon, 4 Jan 2021 10:00:00 +0000\r\nMessage-ID: <i1@x>\r\n\r\nToday's coverage.\r\n";
    std::fs::write(dir.path().join("internal.eml"), internal).unwrap();
    let r = portcullis_mail::run(&[dir.path().to_path_buf()], &Options::default(), &|_| {});
    assert_eq!(r.messages, 38);
    assert_eq!(r.internal_domains, vec!["parliament.example"]);
    assert_eq!(r.campaigns.len(), 1, "{:#?}", r.campaigns);
    assert_eq!(r.campaigns[0].sending_ips, ["198.51.100.0", "198.51.100.1"]);
    assert!(!r.campaigns[0].iocs.iter().any(|i| i.value == "203.0.113.9"), "{:?}", r.campaigns[0].iocs);
    // The 25 plain messages and the internal one: no signal left that counts.
    assert_eq!(r.severities.get("informational"), Some(&26), "{:?}", r.severities);
}

/// Impersonation is remembered per thread for messages that share its inputs: a copy gets
/// the same signals, and a message that differs in any one input is analysed afresh.
#[test]
fn remembered_impersonation_follows_every_input() {
    let imp = |from: &str, headers: &str, html: &str| signals(&analysed(&msg(from, headers, html)), Analyser::Impersonation);
    let webmail = "\"Alex Porter, BBC News\" <alex.porter.bbc@gmail.com>";
    let first = imp(webmail, "", "<p>Hello</p>");
    assert!(first.iter().any(|s| s.contains("BBC News")), "{first:?}");
    assert_eq!(imp(webmail, "", "<p>Hello again</p>"), first, "a copy, same sender");
    // The same address with another display name.
    assert!(imp("\"Alex Porter\" <alex.porter.bbc@gmail.com>", "", "<p>Hello</p>").is_empty());
    // The same display name on another domain.
    assert!(imp("\"Alex Porter, BBC News\" <alex.porter@bbc.co.uk>", "", "<p>Hello</p>").is_empty());
    // A reply-to elsewhere is added; a link host that looks like an outlet's is too.
    let with_reply = imp(webmail, "Reply-To: desk@example-media.net\r\n", "<p>Hello</p>");
    assert!(with_reply.iter().any(|s| s.contains("replies go to example-media.net")), "{with_reply:?}");
    let plain = "\"D. Wright\" <d.wright@wrightconsulting.example>";
    assert!(imp(plain, "", "<p>Hi</p>").is_empty());
    let linked = imp(plain, "", r#"<a href="https://reutres.com/x?id=8f3KzQ1xLm9pQ2">Read</a>"#);
    assert!(linked.iter().any(|s| s.contains("links to reutres.com")), "{linked:?}");
    assert!(imp(plain, "", "<p>Hi</p>").is_empty(), "the link's message did not change the plain one's");
    // Inputs too long to remember are analysed each time, with the same answer.
    let padded = format!("\"Alex Porter, BBC News {}\" <alex.porter.bbc@gmail.com>", "x".repeat(2_000));
    let long = imp(&padded, "", "<p>Hello</p>");
    assert!(long.iter().any(|s| s.contains("BBC News") && s.contains("free webmail")), "{long:?}");
    assert_eq!(imp(&padded, "", "<p>Hello</p>"), long);
}
