//! The parliament scenario: a legislature's mail in the first half of 2021 — internal mail,
//! constituents, journalists from real outlets, newsletters and read receipts carrying
//! tracking pixels — with an APT31-style reconnaissance campaign planted along the public
//! record (threat brief §3–4): ten sender accounts on a mass-mailing service, the look-alike
//! outlet domain `nropnews.com`, journalist display names, real-looking article text and a
//! hidden beacon with a per-recipient token, about 1,000 mails to 400 accounts of whom a
//! configurable number are members. Around it: proxy logs (opens and clicks of the beacon by
//! some recipients), Entra ID sign-in logs and Exchange cmdlet logs covering the period, and
//! no compromise (none of the targeted parliamentary accounts was compromised).
//!
//! Writes `Mail/journal/*.mbox` (mboxrd), a Maildir for three targeted members,
//! `Mail/reported/*.eml` (messages users forwarded to security), `Logs/…`, `members.csv`
//! (the `mail --members` format) and `truth.json` with the planted campaign's senders and
//! every recipient's expected grade under `mail_campaigns`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use portcullis_event::Timestamp;
use serde_json::json;

use crate::{Config, DAY, HOUR, MINUTE, Output, Rng, SECOND, Truth, WinEvent, at};

pub const DOMAIN: &str = "parliament.example";
pub const START: &str = "2021-01-01 00:00:00";
pub const END: &str = "2021-06-30 23:59:59";
const CAMPAIGN_START: &str = "2021-01-18 08:00:00";
const CAMPAIGN_DAYS: i64 = 46;
pub const CAMPAIGN_DOMAIN: &str = "nropnews.com";
const BEACON_HOST: &str = "track.nropnews.com";
const RELAY: &str = "bulkmerge.example";
const MEMBERS_TOTAL: usize = 120;
const STAFF_TOTAL: usize = 900;
const CAMPAIGN_RECIPIENTS: usize = 400;
const CAMPAIGN_MESSAGES: usize = 1000;

const FIRST: &[&str] = &[
    "Alice", "Ben", "Chloe", "Daniel", "Emma", "Farah", "George", "Hannah", "Imran", "Jack", "Katie", "Liam", "Maya", "Noah", "Olivia",
    "Priya", "Quentin", "Rachel", "Samuel", "Tara", "Umar", "Victoria", "William", "Yasmin", "Zoe", "Aidan", "Bethan", "Callum", "Deborah",
    "Ewan", "Fiona", "Gareth", "Helen", "Isla", "James", "Kieran", "Laura", "Martin", "Niamh", "Owen", "Pippa", "Rhys", "Sian", "Thomas",
];
const LAST: &[&str] = &[
    "Abbott",
    "Bennett",
    "Carter",
    "Davies",
    "Evans",
    "Fletcher",
    "Graham",
    "Hughes",
    "Iqbal",
    "Jones",
    "Kaur",
    "Lewis",
    "Morgan",
    "Nash",
    "Owens",
    "Patel",
    "Quinn",
    "Roberts",
    "Shah",
    "Thomas",
    "Underwood",
    "Vaughan",
    "Walsh",
    "Young",
    "Ahmed",
    "Baker",
    "Clarke",
    "Doyle",
    "Ellis",
    "Foster",
    "Gill",
    "Hall",
    "Jenkins",
    "Khan",
    "Lloyd",
    "Murray",
    "Price",
    "Reid",
    "Stewart",
    "Turner",
    "Ward",
    "Wilson",
];

#[derive(Clone)]
struct Person {
    name: String,
    address: String,
    member: bool,
    /// Office workstation address (proxy logs) and usual public addresses (sign-ins).
    ws_ip: String,
    home_ip: String,
}

struct Mail {
    ts: i64,
    text: String,
    /// Internal recipients who get a Maildir copy.
    to: Vec<String>,
}

/// Generates the parliament scenario into `out`.
pub fn generate(cfg: &Config, members_targeted: usize, out: &Path) -> io::Result<Truth> {
    std::fs::create_dir_all(out)?;
    let mut rng = Rng::new(cfg.seed ^ 0x5041_524c);
    let start = at(START);
    let end = at(END);
    let (members, staff) = people(&mut rng);
    let mut mails: Vec<Mail> = Vec::new();
    let mut logs = Output::default();
    let everyone: Vec<&Person> = members.iter().chain(staff.iter()).collect();

    // Benign mail.
    let volume = |n: f64| ((n * cfg.scale).round() as usize).max(1);
    internal_mail(&mut rng, &everyone, volume(7000.0), start, end, &mut mails);
    let constituents = constituent_mail(&mut rng, &everyone, volume(3000.0), start, end, &mut mails);
    journalist_mail(&mut rng, &everyone, volume(600.0), start, end, &mut mails);
    let newsletter_senders = newsletters(&mut rng, &everyone, cfg.scale, start, end, &mut mails, &mut logs);
    let receipt_senders = read_receipts(&mut rng, &everyone, volume(300.0), start, end, &mut mails);

    // The campaign.
    let members_targeted = members_targeted.min(members.len()).min(CAMPAIGN_RECIPIENTS);
    let mut targets: Vec<&Person> = members.iter().take(members_targeted).collect();
    targets.extend(staff.iter().take(CAMPAIGN_RECIPIENTS - members_targeted));
    let campaign = plant_campaign(&mut rng, &targets, &mut mails, &mut logs);

    background_logs(&mut rng, &everyone, &targets, cfg.scale, start, end, &mut logs);

    mails.sort_by_key(|m| m.ts);
    write_mail(out, &mails, &targets, &campaign.reported)?;
    let (_, files) = logs.write(out, 0)?;
    let mut csv = String::from("name,addresses,group\n");
    for m in &members {
        csv.push_str(&format!("{},{},member\n", m.name, m.address));
    }
    std::fs::write(out.join("members.csv"), csv)?;

    let recipients: Vec<serde_json::Value> = targets
        .iter()
        .map(|p| {
            let g = campaign.grades.get(&p.address).copied().unwrap_or("received");
            json!({"address": p.address, "member": if p.member { Some(p.name.clone()) } else { None }, "grade": g})
        })
        .collect();
    let truth = Truth {
        scenario: "parliament",
        seed: cfg.seed,
        scale: cfg.scale,
        start: Timestamp(start).to_string(),
        end: Timestamp(end).to_string(),
        steps: Vec::new(),
        files,
        mail_campaigns: vec![json!({
            "name": "APT31-style reconnaissance (hidden beacons, journalist personas)",
            "senders": campaign.senders,
            "domains": [CAMPAIGN_DOMAIN],
            "beacon_host": BEACON_HOST,
            "sending_ips": campaign.ips,
            "messages": campaign.messages,
            "first_seen": Timestamp(campaign.first).to_string(),
            "last_seen": Timestamp(campaign.last).to_string(),
            "members_targeted": members_targeted,
            "recipients": recipients,
            "compromised": 0,
        })],
        exposure: None,
        benign_mail: Some(json!({
            "messages": mails.len() - campaign.messages,
            "newsletter_senders": newsletter_senders,
            "read_receipt_senders": receipt_senders,
            "constituent_senders": constituents,
        })),
        posture: None,
    };
    let f = std::fs::File::create(out.join("truth.json"))?;
    serde_json::to_writer_pretty(BufWriter::new(f), &truth)?;
    Ok(truth)
}

fn people(rng: &mut Rng) -> (Vec<Person>, Vec<Person>) {
    let mut used = BTreeSet::new();
    let mut make = |rng: &mut Rng, member: bool, i: usize| {
        loop {
            let first = *rng.pick(FIRST);
            let last = *rng.pick(LAST);
            let local = format!("{}.{}", first.to_lowercase(), last.to_lowercase());
            let local = if used.contains(&local) { format!("{local}{}", i) } else { local };
            if used.insert(local.clone()) {
                let name = if member { format!("{first} {last} MP") } else { format!("{first} {last}") };
                return Person {
                    name,
                    address: format!("{local}@{DOMAIN}"),
                    member,
                    ws_ip: format!("10.20.{}.{}", 1 + i / 250, 1 + i % 250),
                    home_ip: format!("81.{}.{}.{}", 100 + rng.below(50), rng.below(256), 1 + rng.below(254)),
                };
            }
        }
    };
    let members = (0..MEMBERS_TOTAL).map(|i| make(rng, true, i)).collect();
    let staff = (0..STAFF_TOTAL).map(|i| make(rng, false, MEMBERS_TOTAL + i)).collect();
    (members, staff)
}

/// RFC 5322 date.
fn rfc2822(ts: i64) -> String {
    let t = Timestamp(ts);
    let (y, mo, d, h, mi, s) = t.civil();
    let days = ts.div_euclid(DAY);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!("{}, {d} {} {y} {h:02}:{mi:02}:{s:02} +0000", WD[days.rem_euclid(7) as usize], MON[(mo - 1) as usize])
}

fn token(rng: &mut Rng, n: usize) -> String {
    const A: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    loop {
        let t: String = (0..n).map(|_| A[rng.below(A.len() as u64) as usize] as char).collect();
        let digits = t.bytes().filter(u8::is_ascii_digit).count();
        if digits >= 2 && t.bytes().any(|c| c.is_ascii_uppercase()) && t.bytes().any(|c| c.is_ascii_lowercase()) {
            return t;
        }
    }
}

fn office_hours(rng: &mut Rng, start: i64, end: i64) -> i64 {
    let days = (end - start) / DAY;
    let d = start + rng.below(days as u64) as i64 * DAY;
    d + 8 * HOUR + rng.below(10 * 3600) as i64 * SECOND
}

fn received(rng: &mut Rng, host: &str, ip: &str, ts: i64) -> String {
    format!(
        "Received: from {host} ({host} [{ip}])\n\tby mx{}.{DOMAIN} (Postfix) with ESMTPS id {:X};\n\t{}\n",
        1 + rng.below(2),
        rng.next() & 0xff_ffff_ffff,
        rfc2822(ts)
    )
}

fn internal_received(rng: &mut Rng, ts: i64) -> String {
    format!(
        "Received: from EXCH0{}.{DOMAIN} (10.10.0.{}) by EXCH01.{DOMAIN} with Microsoft SMTP Server id 15.1.2176.2;\n\t{}\n",
        1 + rng.below(2),
        11 + rng.below(2),
        rfc2822(ts)
    )
}

fn addr(name: &str, address: &str) -> String {
    if name.is_empty() { address.to_string() } else { format!("\"{name}\" <{address}>") }
}

fn internal_mail(rng: &mut Rng, everyone: &[&Person], n: usize, start: i64, end: i64, mails: &mut Vec<Mail>) {
    const SUBJECTS: &[&str] = &[
        "Committee papers for Thursday",
        "Re: constituency surgery rota",
        "Draft written question",
        "Briefing: Environment Bill amendments",
        "Diary update",
        "Re: casework follow-up",
        "Select committee evidence session",
        "Room booking confirmed",
        "Recess arrangements",
    ];
    for i in 0..n {
        let ts = office_hours(rng, start, end);
        let from = *rng.pick(everyone);
        let to = *rng.pick(everyone);
        let subject = *rng.pick(SUBJECTS);
        let text = format!(
            "{}From: {}\nTo: {}\nSubject: {subject}\nDate: {}\nMessage-ID: <{:016x}.{i}@EXCH01.{DOMAIN}>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=\"utf-8\"\n\nHi {},\n\nPlease see below regarding {}. Let me know if anything needs changing before the deadline.\n\nThanks,\n{}\n",
            internal_received(rng, ts),
            addr(&from.name, &from.address),
            addr(&to.name, &to.address),
            rfc2822(ts),
            rng.next(),
            to.name.split(' ').next().unwrap_or(""),
            subject.to_lowercase(),
            from.name
        );
        mails.push(Mail { ts, text, to: vec![to.address.clone()] });
    }
}

fn constituent_mail(rng: &mut Rng, everyone: &[&Person], n: usize, start: i64, end: i64, mails: &mut Vec<Mail>) -> usize {
    const FREEMAIL: &[&str] = &["gmail.com", "outlook.com", "hotmail.co.uk", "yahoo.co.uk", "btinternet.com", "icloud.com"];
    const TOPICS: &[&str] = &[
        "the bus route closure",
        "my housing repair",
        "the planning application on Mill Lane",
        "school places",
        "a visa delay",
        "the GP surgery",
    ];
    let members: Vec<&&Person> = everyone.iter().filter(|p| p.member).collect();
    let mut senders = BTreeSet::new();
    for i in 0..n {
        let ts = start + rng.below(((end - start) / SECOND) as u64) as i64 * SECOND;
        let first = *rng.pick(FIRST);
        let last = *rng.pick(LAST);
        let dom = *rng.pick(FREEMAIL);
        let sender = format!("{}.{}{}@{dom}", first.to_lowercase(), last.to_lowercase(), rng.below(90) + 10);
        senders.insert(sender.clone());
        let mp = **rng.pick(&members);
        let topic = *rng.pick(TOPICS);
        let ip = format!("203.0.113.{}", 1 + rng.below(120));
        let text = format!(
            "{}From: {}\nTo: {}\nSubject: Help with {topic}\nDate: {}\nMessage-ID: <CA{:016x}{i}@mail.{dom}>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=\"utf-8\"\n\nDear {},\n\nI am writing about {topic}. I have waited for weeks and would be grateful for your help.\n\nFrom a constituent,\n{first} {last}\n",
            received(rng, &format!("mail-out.{dom}"), &ip, ts),
            addr(&format!("{first} {last}"), &sender),
            addr(&mp.name, &mp.address),
            rfc2822(ts),
            rng.next(),
            mp.name,
        );
        mails.push(Mail { ts, text, to: vec![mp.address.clone()] });
        // Most get a reply, which makes the correspondent known.
        if rng.chance(0.6) {
            let rts = ts + DAY + rng.below(3 * 86400) as i64 * SECOND;
            let text = format!(
                "{}From: {}\nTo: {}\nSubject: Re: Help with {topic}\nDate: {}\nMessage-ID: <{:016x}.r{i}@EXCH01.{DOMAIN}>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=\"utf-8\"\n\nThank you for contacting me about {topic}. My office has taken this up.\n",
                internal_received(rng, rts),
                addr(&mp.name, &mp.address),
                sender,
                rfc2822(rts),
                rng.next()
            );
            mails.push(Mail { ts: rts, text, to: Vec::new() });
        }
    }
    senders.len()
}

/// Journalists at real outlets writing from their own domains, and a freelancer on webmail.
fn journalist_mail(rng: &mut Rng, everyone: &[&Person], n: usize, start: i64, end: i64, mails: &mut Vec<Mail>) {
    const OUTLETS: &[(&str, &str, &str)] = &[
        ("BBC News", "bbc.co.uk", "212.58.224."),
        ("The Guardian", "theguardian.com", "77.91.248."),
        ("Financial Times", "ft.com", "64.15.112."),
        ("Reuters", "reuters.com", "206.197.161."),
        ("POLITICO", "politico.eu", "52.31.220."),
    ];
    for i in 0..n {
        let ts = office_hours(rng, start, end);
        let to = *rng.pick(everyone);
        let first = *rng.pick(FIRST);
        let last = *rng.pick(LAST);
        let (display, address, host, ip) = if i % 10 == 9 {
            (
                format!("{first} {last} (freelance journalist)"),
                format!("{}{}writes@gmail.com", first.to_lowercase(), last.to_lowercase()),
                "mail-sor-f41.google.com".to_string(),
                "209.85.220.41".to_string(),
            )
        } else {
            let (outlet, dom, net) = *rng.pick(OUTLETS);
            (
                format!("{first} {last}, {outlet}"),
                format!("{}.{}@{dom}", first.to_lowercase(), last.to_lowercase()),
                format!("mail.{dom}"),
                format!("{net}{}", 10 + rng.below(200)),
            )
        };
        let dom = address.rsplit('@').next().unwrap_or("");
        let text = format!(
            "{}DKIM-Signature: v=1; a=rsa-sha256; d={dom}; s=s1; b=AAAA\nFrom: {}\nTo: {}\nSubject: Request for comment: committee report\nDate: {}\nMessage-ID: <{:016x}.{i}@{dom}>\nMIME-Version: 1.0\nContent-Type: text/html; charset=\"utf-8\"\n\n<html><body><p>Dear {},</p><p>We are running a piece on the committee's report tomorrow and would welcome a comment by 5pm.</p><p>Best wishes,<br>{display}</p><img src=\"https://{host}/signature/logo.png\" width=\"120\" height=\"40\" alt=\"Logo\"></body></html>\n",
            received(rng, &host, &ip, ts),
            addr(&display, &address),
            addr(&to.name, &to.address),
            rfc2822(ts),
            rng.next(),
            to.name,
        );
        mails.push(Mail { ts, text, to: vec![to.address.clone()] });
    }
}

/// Newsletters with per-recipient open pixels and List-Unsubscribe, sent through real
/// mass-mailing services (as such newsletters are); subscribers open some (proxy log lines).
fn newsletters(
    rng: &mut Rng,
    everyone: &[&Person],
    scale: f64,
    start: i64,
    end: i64,
    mails: &mut Vec<Mail>,
    logs: &mut Output,
) -> Vec<String> {
    struct Nl {
        name: &'static str,
        from: &'static str,
        relay_host: &'static str,
        dkim: &'static str,
        pixel: &'static str,
        every_days: i64,
    }
    let list = [
        Nl {
            name: "Guardian Today",
            from: "newsletters@theguardian.com",
            relay_host: "o7.email.sendgrid.net",
            dkim: "theguardian.com",
            pixel: "https://u1234.ct.sendgrid.net/wf/open?upn={t}",
            every_days: 1,
        },
        Nl {
            name: "POLITICO London Playbook",
            from: "playbook@politico.eu",
            relay_host: "mail183.atl101.mcsv.net",
            dkim: "politico.eu",
            pixel: "https://politico.us1.list-manage.com/track/open.php?u=9b1f2e&id=4c3d2a&e={t}",
            every_days: 1,
        },
        Nl {
            name: "Institute for Government",
            from: "bulletin@instituteforgovernment.org.uk",
            relay_host: "mta12.cmail20.com",
            dkim: "cmail20.com",
            pixel: "https://instituteforgovernment.cmail20.com/t/o-{t}.gif",
            every_days: 7,
        },
        Nl {
            name: "Hansard Society Digest",
            from: "digest@hansardsociety.org.uk",
            relay_host: "mail9.suw12.mcsv.net",
            dkim: "hansardsociety.org.uk",
            pixel: "https://hansardsociety.us5.list-manage.com/track/open.php?u=77aa&id=12bc&e={t}",
            every_days: 14,
        },
        Nl {
            name: "BBC News Daily",
            from: "newsletters@bbc.co.uk",
            relay_host: "a48-93.smtp-out.eu-west-1.amazonses.com",
            dkim: "bbc.co.uk",
            pixel: "https://ping.news.bbc.co.uk/o/{t}.gif",
            every_days: 1,
        },
    ];
    let mut senders = Vec::new();
    let subscribers_per = ((40.0 * scale).round() as usize).clamp(3, everyone.len());
    for (k, nl) in list.iter().enumerate() {
        senders.push(nl.from.to_string());
        let subs: Vec<&Person> = (0..subscribers_per).map(|j| everyone[(k * 97 + j * 7) % everyone.len()]).collect();
        let mut ts = start + 6 * HOUR + k as i64 * 17 * MINUTE;
        let mut issue = 0;
        while ts < end {
            issue += 1;
            for (j, p) in subs.iter().enumerate() {
                let t = ts + j as i64 * 2 * SECOND;
                let tok = token(rng, 20);
                let pixel = nl.pixel.replace("{t}", &tok);
                let ip = format!("203.0.113.{}", 150 + k);
                let text = format!(
                    "{}Return-Path: <bounces+{tok}@{}>\nDKIM-Signature: v=1; a=rsa-sha256; d={}; s=m1; b=AAAA\nFrom: \"{}\" <{}>\nTo: {}\nSubject: {} – issue {issue}\nDate: {}\nMessage-ID: <nl{k}.{issue}.{j}.{:x}@{}>\nList-Unsubscribe: <https://{}/unsubscribe?u={tok}>\nPrecedence: bulk\nMIME-Version: 1.0\nContent-Type: text/html; charset=\"utf-8\"\n\n<html><body><table width=\"600\"><tr><td><h1>{}</h1><p>Today's top stories in politics and policy.</p><p><a href=\"https://{}/story/{issue}\">Read more</a></p></td></tr></table><img src=\"{}\" width=\"1\" height=\"1\" border=\"0\" alt=\"\" style=\"height:1px;width:1px;border:0\"></body></html>\n",
                    received(rng, nl.relay_host, &ip, t),
                    nl.relay_host,
                    nl.dkim,
                    nl.name,
                    nl.from,
                    addr(&p.name, &p.address),
                    nl.name,
                    rfc2822(t),
                    rng.next(),
                    nl.relay_host,
                    nl.from.rsplit('@').next().unwrap_or(""),
                    nl.name,
                    nl.from.rsplit('@').next().unwrap_or(""),
                    pixel.replace('&', "&amp;"),
                );
                mails.push(Mail { ts: t, text, to: vec![p.address.clone()] });
                if rng.chance(0.3) {
                    let ot = t + rng.below(8 * 3600) as i64 * SECOND;
                    proxy_fetch(logs, ot, p, &pixel, "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.13530; Pro)");
                }
            }
            ts += nl.every_days * DAY;
        }
    }
    senders
}

/// Person-to-person mail from constituents whose mail client adds a read-receipt pixel.
fn read_receipts(rng: &mut Rng, everyone: &[&Person], n: usize, start: i64, end: i64, mails: &mut Vec<Mail>) -> Vec<String> {
    let mut senders = BTreeSet::new();
    for i in 0..n {
        let ts = office_hours(rng, start, end);
        let to = *rng.pick(everyone);
        let first = *rng.pick(FIRST);
        let last = *rng.pick(LAST);
        let sender = format!("{}.{}.{}@gmail.com", first.to_lowercase(), last.to_lowercase(), i % 40);
        senders.insert(sender.clone());
        let text = format!(
            "{}From: {}\nTo: {}\nSubject: Following up on our meeting\nDate: {}\nMessage-ID: <CAM{:016x}{i}@mail.gmail.com>\nMIME-Version: 1.0\nContent-Type: text/html; charset=\"utf-8\"\n\n<div dir=\"ltr\">Thanks for your time today; notes attached as promised.</div><img width=\"0\" height=\"0\" alt=\"\" style=\"display:none\" src=\"https://mailtrack.io/trace/mail/{:016x}{:08x}.png?u={}\">\n",
            received(rng, "mail-sor-f41.google.com", "209.85.220.41", ts),
            addr(&format!("{first} {last}"), &sender),
            addr(&to.name, &to.address),
            rfc2822(ts),
            rng.next(),
            rng.next(),
            rng.next() as u32,
            1000 + rng.below(9000),
        );
        mails.push(Mail { ts, text, to: vec![to.address.clone()] });
    }
    senders.into_iter().collect()
}

struct Planted {
    senders: Vec<String>,
    ips: Vec<String>,
    messages: usize,
    first: i64,
    last: i64,
    grades: BTreeMap<String, &'static str>,
    /// Message texts users reported to security (written as EML).
    reported: Vec<String>,
}

const PERSONAS: &[(&str, &str)] = &[
    ("Daniel Wright", "d.wright"),
    ("Sophie Lin", "sophie.lin"),
    ("Marcus Hale", "m.hale"),
    ("Elena Novak", "e.novak"),
    ("Tom Ashworth", "tom.ashworth"),
    ("Grace Okafor", "g.okafor"),
    ("Hugo Brennan", "h.brennan"),
    ("Nadia Farouk", "nadia.farouk"),
    ("Peter Lindqvist", "p.lindqvist"),
    ("Julia Moreau", "j.moreau"),
];

const ARTICLES: &[(&str, &str, &str)] = &[
    (
        "Interview request: parliamentary scrutiny of supply chains",
        "supply-chain-scrutiny",
        "Legislators across Europe are pressing for tougher due-diligence rules on imports linked to forced labour. Ministers have promised a review, but campaigners say the timetable slips every session. We are speaking to members who have raised the issue in committee and would value your view on what the review should cover.",
    ),
    (
        "Hong Kong one year on: a request for comment",
        "hong-kong-one-year-on",
        "A year after the national security law came into force, newsrooms, universities and civil society groups in the city describe a narrowing space for dissent. Several former lawmakers now live abroad. Our correspondent is preparing a long read on how parliaments have responded and would like to include your perspective.",
    ),
    (
        "Briefing: the alliance's next steps on sanctions",
        "alliance-sanctions-briefing",
        "Members of the cross-party alliance met this week to coordinate their positions ahead of the summit. Officials expect a joint statement, though diplomats warn that the wording is still contested. Please find our briefing below; we would welcome a short quote by Friday.",
    ),
];

fn plant_campaign(rng: &mut Rng, targets: &[&Person], mails: &mut Vec<Mail>, logs: &mut Output) -> Planted {
    let start = at(CAMPAIGN_START);
    let senders: Vec<(String, String)> =
        PERSONAS.iter().map(|(name, local)| (format!("{name}, NROP News"), format!("{local}@{CAMPAIGN_DOMAIN}"))).collect();
    let ips: Vec<String> = (0..4).map(|i| format!("198.51.100.{}", 23 + i * 7)).collect();
    let mut planted = Planted {
        senders: senders.iter().map(|(_, a)| a.clone()).collect(),
        ips: ips.clone(),
        messages: 0,
        first: i64::MAX,
        last: i64::MIN,
        grades: BTreeMap::new(),
        reported: Vec::new(),
    };
    // Everyone gets one message in the first wave, then follow-ups to a random subset.
    let mut sends: Vec<usize> = (0..targets.len()).collect();
    while sends.len() < CAMPAIGN_MESSAGES {
        sends.push(rng.below(targets.len() as u64) as usize);
    }
    for (n, &ti) in sends.iter().enumerate() {
        let p = targets[ti];
        let wave_day =
            if n < targets.len() { n as i64 * 10 / targets.len() as i64 } else { 10 + rng.below((CAMPAIGN_DAYS - 10) as u64) as i64 };
        let ts = start + wave_day * DAY + rng.below(9 * 3600) as i64 * SECOND;
        let (display, from) = &senders[n % senders.len()];
        let (subject, slug, body) = ARTICLES[(n / 7) % ARTICLES.len()];
        let tok = token(rng, 16);
        let ip = &ips[n % ips.len()];
        let reply_to =
            if n % 2 == 0 { format!("Reply-To: {}.nropnews@gmail.com\n", from.split('@').next().unwrap_or("")) } else { String::new() };
        let beacon = format!("https://{BEACON_HOST}/o/{tok}/logo.gif");
        let link = format!("https://{CAMPAIGN_DOMAIN}/articles/2021/{slug}?rid={tok}");
        let link_qp = link.replace('=', "=3D");
        let text = format!(
            "{}Return-Path: <bounce-{}@{RELAY}>\nDKIM-Signature: v=1; a=rsa-sha256; d={RELAY}; s=bm1; b=AAAA\nFrom: \"{display}\" <{from}>\n{reply_to}To: {}\nSubject: {subject}\nDate: {}\nMessage-ID: <{}.{n}@mta.{RELAY}>\nX-Mailer: BulkMerge 4.2\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"=_bm{n}\"\n\n--=_bm{n}\nContent-Type: text/plain; charset=\"utf-8\"\n\nDear {},\n\n{body}\n\nRead the article: {link}\n\n{display}\n\n--=_bm{n}\nContent-Type: text/html; charset=\"utf-8\"\nContent-Transfer-Encoding: quoted-printable\n\n<html><head><style>p{{font-family:Georgia,serif}}</style></head><body><table width=3D\"640\"><tr><td><p>Dear {},</p><p>{body}</p><p><a href=3D\"{link_qp}\">Read the article</a></p><p>{display}</p></td></tr></table><img src=3D\"{beacon}\" width=3D\"1\" height=3D\"1\" alt=3D\"\" style=3D\"display:none\"></body></html>\n--=_bm{n}--\n",
            received(rng, &format!("mta{}.{RELAY}", n % ips.len() + 1), ip, ts),
            token(rng, 10),
            addr(&p.name, &p.address),
            rfc2822(ts),
            token(rng, 24),
            p.name,
            p.name,
        );
        if planted.reported.len() < 4 && n % 97 == 5 {
            planted.reported.push(text.clone());
        }
        mails.push(Mail { ts, text, to: vec![p.address.clone()] });
        planted.messages += 1;
        planted.first = planted.first.min(ts);
        planted.last = planted.last.max(ts);
        // About a third of recipients open in Outlook on the office network (the proxy sees
        // the beacon fetch); a few follow the link.
        let open_ts = ts + (5 * 60 + rng.below(2 * 86400)) as i64 * SECOND;
        if rng.chance(0.3) {
            proxy_fetch(logs, open_ts, p, &beacon, "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.13530; Pro)");
            let g = planted.grades.entry(p.address.clone()).or_insert("opened");
            if *g == "received" {
                *g = "opened";
            }
            if rng.chance(0.08) {
                proxy_fetch(
                    logs,
                    open_ts + 40 * SECOND,
                    p,
                    &link,
                    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/88.0.4324.150 Safari/537.36",
                );
                planted.grades.insert(p.address.clone(), "clicked");
            }
        }
    }
    planted
}

fn proxy_path(ts: i64) -> String {
    let (y, m, ..) = Timestamp(ts).civil();
    format!("Logs/proxy/proxy-{y}-{m:02}.log")
}

fn proxy_header(ts: i64) -> Vec<String> {
    let (y, m, ..) = Timestamp(ts).civil();
    vec![
        "#Software: Forward proxy (W3C extended log)".into(),
        "#Version: 1.0".into(),
        format!("#Date: {y}-{m:02}-01 00:00:00"),
        "#Fields: date time c-ip cs-username cs-method cs-host cs-uri-stem cs-uri-query sc-status cs(User-Agent)".into(),
    ]
}

fn proxy_fetch(logs: &mut Output, ts: i64, p: &Person, url: &str, ua: &str) {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (stem, query) = path.split_once('?').unwrap_or((path, "-"));
    let t = Timestamp(ts).to_string();
    let user = format!("PARL\\{}", p.address.split('@').next().unwrap_or(""));
    let line = format!("{} {} {} {user} GET {host} {stem} {query} 200 {}", &t[..10], &t[11..19], p.ws_ip, ua.replace(' ', "+"));
    logs.text(&proxy_path(ts), &proxy_header(ts), ts, line, None);
}

fn signin_line(rng: &mut Rng, ts: i64, p: &Person, ip: &str) -> String {
    json!({
        "time": Timestamp(ts).to_string(),
        "category": "SignInLogs",
        "operationName": "Sign-in activity",
        "resultType": "0",
        "properties": {
            "id": format!("{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}", rng.next() as u32, rng.below(65536), rng.below(4096), rng.below(4096), rng.next() & 0xffff_ffff_ffff),
            "userPrincipalName": p.address,
            "ipAddress": ip,
            "appDisplayName": "Office 365 Exchange Online",
            "clientAppUsed": "Mobile Apps and Desktop clients",
            "status": {"errorCode": 0},
        }
    })
    .to_string()
}

fn signin_path(ts: i64) -> String {
    let (y, m, ..) = Timestamp(ts).civil();
    format!("Logs/signin/entra-signins-{y}-{m:02}.json")
}

fn cmdlet(cmd: &str, params: &str, user: &str) -> WinEvent {
    WinEvent {
        computer: format!("EXCH01.{DOMAIN}"),
        channel: "MSExchange Management",
        provider: "MSExchange CmdletLogs",
        event_id: 1,
        data: vec![
            (String::new(), cmd.into()),
            (String::new(), params.into()),
            (String::new(), format!("PARL\\{user}")),
            (String::new(), "S-1-5-21-3623811015-3361044348-30300820-1013".into()),
            (String::new(), "Remote-PowerShell-Unknown".into()),
        ],
    }
}

/// Browsing, sign-ins and mailbox administration over the whole period, so the logs cover
/// the campaign; some targeted recipients travel (sign-ins from a new address) or add an
/// ordinary inbox rule after the campaign — each alone is no compromise.
fn background_logs(rng: &mut Rng, everyone: &[&Person], targets: &[&Person], scale: f64, start: i64, end: i64, logs: &mut Output) {
    const SITES: &[(&str, &str)] = &[
        ("www.bbc.co.uk", "/news/uk-politics"),
        ("www.gov.uk", "/government/publications"),
        ("hansard.parliament.uk", "/commons/2021-02-01/debates"),
        ("www.legislation.gov.uk", "/ukpga/2021/1"),
        ("www.theguardian.com", "/politics"),
        ("outlook.office365.com", "/owa/"),
    ];
    let n = ((20_000.0 * scale).round() as usize).max(200);
    for _ in 0..n {
        let ts = office_hours(rng, start, end);
        let p = *rng.pick(everyone);
        let (host, path) = *rng.pick(SITES);
        proxy_fetch(
            logs,
            ts,
            p,
            &format!("https://{host}{path}"),
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/88.0.4324.150 Safari/537.36",
        );
    }
    let office_ip = "194.60.38.10";
    for p in everyone {
        // Every account signs in from the office and from home in the first fortnight, then
        // through the whole period.
        for (k, ip) in [office_ip, p.home_ip.as_str()].into_iter().enumerate() {
            let ts = start + (2 + k as i64 * 5) * DAY + rng.below(86400) as i64 * SECOND;
            let line = signin_line(rng, ts, p, ip);
            logs.text(&signin_path(ts), &[], ts, line, None);
        }
        let mut ts = start + rng.below(2 * 86400) as i64 * SECOND;
        while ts < end {
            let ip = if rng.chance(0.7) { office_ip } else { p.home_ip.as_str() };
            let line = signin_line(rng, ts, p, ip);
            logs.text(&signin_path(ts), &[], ts, line, None);
            ts += ((4.0 / scale.max(0.05)) * 86400.0) as i64 * SECOND + rng.below(86400) as i64 * SECOND;
        }
    }
    let campaign_start = at(CAMPAIGN_START);
    for (i, p) in targets.iter().enumerate().filter(|(i, _)| i % 80 == 7) {
        let ts = campaign_start + (20 + i as i64 % 30) * DAY + 9 * HOUR;
        let ip = format!("185.{}.{}.{}", 40 + i % 50, rng.below(256), 1 + rng.below(254));
        let line = signin_line(rng, ts, p, &ip);
        logs.text(&signin_path(ts), &[], ts, line, None);
    }
    for (i, p) in targets.iter().enumerate().filter(|(i, _)| i % 90 == 11) {
        let ts = campaign_start + (25 + i as i64 % 20) * DAY + 14 * HOUR;
        let local = p.address.split('@').next().unwrap_or("");
        let ev = cmdlet(
            "New-InboxRule",
            &format!("-Mailbox \"{local}\" -Name \"Committee\" -From \"committees@{DOMAIN}\" -MoveToFolder \"Committees\""),
            local,
        );
        logs.win("Logs/exchange/MSExchange-Management.jsonl", ts, ev, None);
    }
    let mut ts = start + 9 * HOUR;
    while ts < end {
        let p = *rng.pick(everyone);
        let local = p.address.split('@').next().unwrap_or("");
        logs.win(
            "Logs/exchange/MSExchange-Management.jsonl",
            ts,
            cmdlet("Set-Mailbox", &format!("-Identity \"{local}\" -ProhibitSendQuota \"10GB\""), "exadmin"),
            None,
        );
        ts += 2 * DAY + rng.below(86400) as i64 * SECOND;
    }
}

fn write_mail(out: &Path, mails: &[Mail], targets: &[&Person], reported: &[String]) -> io::Result<()> {
    let journal = out.join("Mail/journal");
    std::fs::create_dir_all(&journal)?;
    let mut current: Option<(String, BufWriter<std::fs::File>)> = None;
    let maildir_owners: Vec<&str> = targets.iter().take(3).map(|p| p.address.as_str()).collect();
    for owner in &maildir_owners {
        let local = owner.split('@').next().unwrap_or("");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(out.join(format!("Mail/Maildir/{local}/{sub}")))?;
        }
    }
    for (i, m) in mails.iter().enumerate() {
        let (y, mo, ..) = Timestamp(m.ts).civil();
        let name = format!("journal-{y}-{mo:02}.mbox");
        if current.as_ref().is_none_or(|(n, _)| *n != name) {
            if let Some((_, mut w)) = current.take() {
                w.flush()?;
            }
            current = Some((name.clone(), BufWriter::with_capacity(1 << 20, std::fs::File::create(journal.join(&name))?)));
        }
        let w = &mut current.as_mut().expect("opened above").1;
        writeln!(w, "From MAILER-DAEMON {}", rfc2822(m.ts))?;
        for line in m.text.lines() {
            // mboxrd: `From ` (after any `>`s) gets one more `>`.
            if line.trim_start_matches('>').starts_with("From ") {
                w.write_all(b">")?;
            }
            w.write_all(line.as_bytes())?;
            w.write_all(b"\n")?;
        }
        w.write_all(b"\n")?;
        for owner in m.to.iter().filter(|t| maildir_owners.contains(&t.as_str())) {
            let local = owner.split('@').next().unwrap_or("");
            let file = out.join(format!("Mail/Maildir/{local}/cur/{}.M{i}P1.mx1:2,S", m.ts / SECOND));
            std::fs::write(file, format!("Delivered-To: {owner}\n{}", m.text))?;
        }
    }
    if let Some((_, mut w)) = current {
        w.flush()?;
    }
    let rep = out.join("Mail/reported");
    std::fs::create_dir_all(&rep)?;
    for (i, text) in reported.iter().enumerate() {
        std::fs::write(rep.join(format!("reported-{}.eml", i + 1)), text.replace('\n', "\r\n"))?;
    }
    Ok(())
}
