//! Benign background: staff using OWA, Outlook and phones, Exchange health probes,
//! admins running ordinary cmdlets, logons, workstation processes, register staff
//! opening register exports on the file share, MFA pushes at sign-in.

use portcullis_event::Timestamp;

use crate::{Config, DAY, END, HOUR, Output, Rng, SECOND, START, WinEvent, at};

pub const DOMAIN: &str = "electoralcommission.example";
pub const NETBIOS: &str = "EC";
pub const EXCH: &str = "EXCH01";
pub const EXCH_FQDN: &str = "EXCH01.ec.local";
pub const EXCH_IP: &str = "10.10.0.25";
/// Exchange 2016 CU19 without the May 2021 security update: open to ProxyShell.
pub const EXCH_BUILD: &str = "15.1.2176.2";

const FIRST: [&str; 40] = [
    "Amelia", "Oliver", "Isla", "George", "Ava", "Arthur", "Mia", "Noah", "Ivy", "Leo", "Grace", "Oscar", "Freya", "Harry", "Lily", "Jack",
    "Rosie", "Charlie", "Ella", "Thomas", "Sophia", "Henry", "Evie", "Alfie", "Poppy", "Theo", "Isabella", "Finley", "Daisy", "Archie",
    "Harper", "Jacob", "Sienna", "Edward", "Ruby", "Rory", "Matilda", "Hugo", "Phoebe", "Reuben",
];
const LAST: [&str; 40] = [
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Robinson", "Wright", "Thompson", "Evans",
    "Walker", "White", "Roberts", "Green", "Hall", "Thomas", "Clarke", "Jackson", "Wood", "Harris", "Edwards", "Turner", "Martin",
    "Cooper", "Hill", "Ward", "Hughes", "Moore", "Clark", "King", "Harrison", "Lewis", "Baker", "Lee", "Allen", "Morris", "Khan",
];

pub struct User {
    pub sam: String,
    pub display: String,
    pub email: String,
    pub ws: String,
    pub ip: String,
}

pub struct Org {
    pub users: Vec<User>,
    pub admins: Vec<usize>,
    pub register_staff: Vec<usize>,
}

impl Org {
    pub fn new(rng: &mut Rng) -> Org {
        let mut users = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while users.len() < 120 {
            let f = *rng.pick(&FIRST);
            let l = *rng.pick(&LAST);
            let sam = format!("{}.{}", f.to_lowercase(), l.to_lowercase());
            if !seen.insert(sam.clone()) {
                continue;
            }
            let n = users.len();
            users.push(User {
                email: format!("{sam}@{DOMAIN}"),
                display: format!("{f} {l}"),
                ws: format!("WS{:03}", n + 1),
                ip: format!("10.20.{}.{}", 1 + n / 200, 10 + n % 200),
                sam,
            });
        }
        Org { users, admins: vec![0, 1, 2], register_staff: vec![10, 11, 12, 13, 14, 15] }
    }
}

pub fn month(ts: i64) -> (i64, u32) {
    let (y, m, ..) = Timestamp(ts).civil();
    (y, m)
}

pub fn iis_path(ts: i64) -> String {
    let (y, m) = month(ts);
    format!("EXCH01/inetpub/logs/LogFiles/W3SVC1/u_ex{:02}{m:02}.log", y % 100)
}

pub fn iis_header(ts: i64) -> Vec<String> {
    let (y, m) = month(ts);
    vec![
        "#Software: Microsoft Internet Information Services 10.0".into(),
        "#Version: 1.0".into(),
        format!("#Date: {y}-{m:02}-01 00:00:00"),
        "#Fields: date time s-sitename s-computername s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken".into(),
    ]
}

fn w3c_escape(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.replace(' ', "+") }
}

/// One IIS line.
#[allow(clippy::too_many_arguments)]
pub fn iis_line(ts: i64, method: &str, stem: &str, query: &str, user: &str, ip: &str, ua: &str, status: u16, taken: u32) -> String {
    let t = Timestamp(ts).to_string();
    let (date, time) = (&t[..10], &t[11..19]);
    let sub = if status == 401 { 1 } else { 0 };
    format!(
        "{date} {time} W3SVC1 {EXCH} {EXCH_IP} {method} {stem} {} 443 {} {ip} {} - {status} {sub} 0 {taken}",
        if query.is_empty() { "-".into() } else { query.to_string() },
        if user.is_empty() { "-".into() } else { user.to_string() },
        w3c_escape(ua)
    )
}

fn exchange_header(log_type: &str, fields: &str, ts: i64) -> Vec<String> {
    let (y, m) = month(ts);
    vec![
        "#Software: Microsoft Exchange Server".into(),
        "#Version: 15.01.2176.002".into(),
        format!("#Log-type: {log_type}"),
        format!("#Date: {y}-{m:02}-01T00:00:00.000Z"),
        format!("#Fields: {fields}"),
    ]
}

pub const HTTPPROXY_FIELDS: &str = "DateTime,RequestId,MajorVersion,MinorVersion,BuildVersion,RevisionVersion,ClientRequestId,Protocol,UrlHost,UrlStem,ProtocolAction,AuthenticationType,IsAuthenticated,AuthenticatedUser,Organization,AnchorMailbox,UserAgent,ClientIpAddress,ServerHostName,FrontEndServer,HttpStatus,BackEndStatus,ErrorCode,Method,ProxyAction,TargetServer,TargetServerVersion,RoutingType,RoutingHint,UrlQuery,GenericInfo,GenericErrors";

pub fn httpproxy_path(ts: i64, protocol: &str) -> String {
    let (y, m) = month(ts);
    format!("EXCH01/Exchange/Logging/HttpProxy/{protocol}/HttpProxy_{y}{m:02}0100-1.LOG")
}

pub fn httpproxy_header(ts: i64) -> Vec<String> {
    exchange_header("HttpProxy Logs", HTTPPROXY_FIELDS, ts)
}

fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

#[allow(clippy::too_many_arguments)]
pub fn httpproxy_line(
    rng: &mut Rng,
    ts: i64,
    protocol: &str,
    stem: &str,
    query: &str,
    user: &str,
    anchor: &str,
    ua: &str,
    ip: &str,
    status: u16,
    method: &str,
    routing: &str,
) -> String {
    let id = format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        rng.next() as u32,
        rng.below(65536),
        rng.below(4096),
        rng.below(4096),
        rng.next() & 0xffff_ffff_ffff
    );
    [
        Timestamp(ts).to_string(),
        id,
        "15".into(),
        "1".into(),
        "2176".into(),
        "2".into(),
        String::new(),
        protocol.into(),
        "mail.electoralcommission.example".into(),
        stem.into(),
        String::new(),
        if user.is_empty() { "Anonymous".into() } else { "Negotiate".into() },
        (!user.is_empty()).to_string(),
        user.into(),
        String::new(),
        anchor.into(),
        ua.into(),
        ip.into(),
        EXCH.into(),
        EXCH.into(),
        status.to_string(),
        status.to_string(),
        String::new(),
        method.into(),
        "ProxyRequest".into(),
        EXCH_FQDN.into(),
        "Version 15.1 (Build 2176.2)".into(),
        routing.into(),
        anchor.into(),
        query.into(),
        String::new(),
        String::new(),
    ]
    .iter()
    .map(|s| csv(s))
    .collect::<Vec<_>>()
    .join(",")
}

pub const RPS_FIELDS: &str = "DateTime,StartTime,RequestId,MajorVersion,MinorVersion,BuildVersion,RevisionVersion,ClientRequestId,UrlHost,UrlStem,AuthenticationType,IsAuthenticated,AuthenticatedUser,Organization,ManagedOrganization,ClientIpAddress,ServerHostName,FrontEndServer,HttpStatus,SubStatus,ErrorCode,Action,CommandId,CommandName,SessionId,ShellId,FailFast,ContributeToFailFast,RequestBytes,ClientInfo,CPU,Memory,ActiveRunspaces,RunspaceSettingsCreationHint,UsersRunspaces,TenantRunspaces,TimeInGC,BudgetStatus,UrlQuery,GenericInfo,GenericLatency,GenericErrors";

pub fn rps_path(ts: i64) -> String {
    let (y, m) = month(ts);
    format!("EXCH01/Exchange/Logging/CmdletInfra/Powershell-Proxy/Http/Rps_Http_{y}{m:02}0100-1.LOG")
}

pub fn rps_header(ts: i64) -> Vec<String> {
    exchange_header("Rps Http Logs", RPS_FIELDS, ts)
}

pub fn rps_line(rng: &mut Rng, ts: i64, user: &str, ip: &str, status: u16, client_info: &str, command: &str, query: &str) -> String {
    let t = Timestamp(ts).to_string();
    let mut cols = vec![String::new(); 42];
    cols[0] = t.clone();
    cols[1] = t;
    cols[2] = format!("{:032x}", rng.next() as u128 * 7919);
    cols[3] = "15".into();
    cols[4] = "1".into();
    cols[5] = "2176".into();
    cols[6] = "2".into();
    cols[8] = EXCH_FQDN.to_ascii_lowercase();
    cols[9] = "/powershell".into();
    cols[10] = "Kerberos".into();
    cols[11] = (!user.is_empty()).to_string();
    cols[12] = user.into();
    cols[15] = ip.into();
    cols[16] = EXCH.into();
    cols[17] = EXCH_FQDN.into();
    cols[18] = status.to_string();
    cols[19] = "0".into();
    cols[21] = "Command".into();
    cols[23] = command.into();
    cols[29] = client_info.into();
    cols[38] = query.into();
    cols.iter().map(|s| csv(s)).collect::<Vec<_>>().join(",")
}

pub const MSGTRK_FIELDS: &str = "date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,connector-id,source,event-id,internal-message-id,message-id,network-message-id,recipient-address,recipient-status,total-bytes,recipient-count,related-recipient-address,reference,message-subject,sender-address,return-path,message-info,directionality,tenant-id,original-client-ip,original-server-ip,custom-data,transport-traffic-type,log-id,schema-version";

pub fn msgtrk_path(ts: i64) -> String {
    let (y, m) = month(ts);
    format!("EXCH01/Exchange/TransportRoles/Logs/MessageTracking/MSGTRK{y}{m:02}0100-1.LOG")
}

pub fn msgtrk_header(ts: i64) -> Vec<String> {
    exchange_header("Message Tracking Log", MSGTRK_FIELDS, ts)
}

#[allow(clippy::too_many_arguments)]
pub fn msgtrk_line(
    rng: &mut Rng,
    ts: i64,
    event: &str,
    source: &str,
    sender: &str,
    recipients: &[&str],
    subject: &str,
    client_ip: &str,
) -> String {
    let mid = format!("<{:016x}@{DOMAIN}>", rng.next());
    let cols = [
        Timestamp(ts).to_string(),
        client_ip.into(),
        String::new(),
        EXCH_IP.into(),
        EXCH.into(),
        String::new(),
        String::new(),
        source.into(),
        event.into(),
        rng.below(1_000_000).to_string(),
        mid,
        format!("{:08x}-0000-0000-0000-{:012x}", rng.next() as u32, rng.next() & 0xffff_ffff_ffff),
        recipients.join(";"),
        String::new(),
        (2000 + rng.below(80_000)).to_string(),
        recipients.len().to_string(),
        String::new(),
        String::new(),
        subject.into(),
        sender.into(),
        sender.into(),
        String::new(),
        if source == "SMTP" && event == "SEND" { "Outgoing".into() } else { "Incoming".into() },
        String::new(),
        client_ip.into(),
        EXCH_IP.into(),
        String::new(),
        "Email".into(),
        "MessageTrackingLog".into(),
        "15.01.2176.002".into(),
    ];
    cols.iter().map(|s| csv(s)).collect::<Vec<_>>().join(",")
}

pub fn evt_path(host: &str, log: &str, ts: i64) -> String {
    let (y, m) = month(ts);
    format!("{host}/EventLogs/{log}-{y}-{m:02}.jsonl")
}

pub fn data(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub fn sysmon(computer: &str, event_id: u32, pairs: &[(&str, &str)]) -> WinEvent {
    WinEvent {
        computer: computer.into(),
        channel: "Microsoft-Windows-Sysmon/Operational",
        provider: "Microsoft-Windows-Sysmon",
        event_id,
        data: data(pairs),
    }
}

pub fn security(computer: &str, event_id: u32, pairs: &[(&str, &str)]) -> WinEvent {
    WinEvent {
        computer: computer.into(),
        channel: "Security",
        provider: "Microsoft-Windows-Security-Auditing",
        event_id,
        data: data(pairs),
    }
}

pub fn cmdlet(cmd: &str, params: &str, user: &str) -> WinEvent {
    WinEvent {
        computer: EXCH_FQDN.into(),
        channel: "MSExchange Management",
        provider: "MSExchange CmdletLogs",
        event_id: 1,
        data: vec![
            (String::new(), cmd.into()),
            (String::new(), params.into()),
            (String::new(), format!("{NETBIOS}\\{user}")),
            (String::new(), "S-1-5-21-1004336348-1177238915-682003330-1112".into()),
            (String::new(), "Remote-PowerShell-Unknown".into()),
            (String::new(), "".into()),
        ],
    }
}

pub fn okta_line(rng: &mut Rng, ts: i64, event_type: &str, message: &str, user: &User, ip: &str, result: &str) -> String {
    serde_json::json!({
        "uuid": format!("{:08x}-{:04x}-11ec-{:04x}-{:012x}", rng.next() as u32, rng.below(65536), rng.below(65536), rng.next() & 0xffff_ffff_ffff),
        "published": Timestamp(ts).to_string(),
        "eventType": event_type,
        "displayMessage": message,
        "severity": "INFO",
        "outcome": {"result": result},
        "actor": {"id": format!("00u{:x}", rng.next() & 0xffff_ffff), "type": "User", "alternateId": user.email, "displayName": user.display},
        "client": {"ipAddress": ip, "userAgent": {"rawUserAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/92.0.4515.131 Safari/537.36"}},
    })
    .to_string()
}

pub fn okta_path(ts: i64) -> String {
    let (y, m) = month(ts);
    format!("Okta/okta-system-log-{y}-{m:02}.jsonl")
}

const OUTLOOK_UA: &str = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.14326; Pro)";
const BROWSER_UA: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/92.0.4515.131 Safari/537.36";
const PHONE_UA: &str = "Apple-iPhone13C2/1805.114";

pub fn working_time(rng: &mut Rng, day: i64) -> i64 {
    // Mostly office hours (UTC), some evenings.
    let hour = if rng.chance(0.85) { 8 + rng.below(10) as i64 } else { rng.below(24) as i64 };
    day + hour * HOUR + rng.below(3600) as i64 * SECOND + rng.below(1_000_000) as i64
}

/// Volumes below are per day at scale 1 before this factor, which calibrates scale 1 to ~300 MB.
const VOLUME: f64 = 2.4;

pub fn count(rng: &mut Rng, base: f64, scale: f64) -> usize {
    let x = base * scale * VOLUME;
    let whole = x.floor();
    whole as usize + usize::from(rng.chance(x - whole))
}

/// The whole background, day by day.
pub fn generate(o: &mut Output, org: &Org, cfg: &Config, rng: &mut Rng) {
    let start = at(START);
    let end = at(END);
    let mut day = start;
    while day < end {
        let weekend = matches!((day / DAY + 4).rem_euclid(7), 5 | 6);
        let f = if weekend { 0.15 } else { 1.0 };
        let n = count(rng, 180.0 * f, cfg.scale);
        iis_day(o, org, rng, day, n);
        let n = count(rng, 96.0, cfg.scale);
        health_probes(o, rng, day, n);
        let n = count(rng, 120.0 * f, cfg.scale);
        mail_day(o, org, rng, day, n);
        let n = count(rng, 40.0 * f, cfg.scale);
        logons_day(o, org, rng, day, n);
        let n = count(rng, 30.0 * f, cfg.scale);
        processes_day(o, org, rng, day, n);
        let n = count(rng, 4.0 * f, cfg.scale);
        admin_day(o, org, rng, day, n);
        let n = count(rng, 12.0 * f, cfg.scale);
        registers_day(o, org, rng, day, n);
        day += DAY;
    }
}

fn iis_day(o: &mut Output, org: &Org, rng: &mut Rng, day: i64, sessions: usize) {
    for _ in 0..sessions {
        let u = rng.pick(&org.users);
        let ts = working_time(rng, day);
        let user = format!("{NETBIOS}\\{}", u.sam);
        let path = iis_path(ts);
        let header = iis_header(ts);
        match rng.below(4) {
            0 => {
                // OWA in a browser.
                let seq: [(&str, &str, &str, &str, u16); 6] = [
                    ("GET", "/owa/", "", "", 302),
                    ("GET", "/owa/auth/logon.aspx", "url=https%3a%2f%2fmail.electoralcommission.example%2fowa%2f&reason=0", "", 200),
                    ("GET", "/owa/auth/15.1.2176/themes/resources/favicon.ico", "", "", 200),
                    ("POST", "/owa/auth.owa", "", "", 302),
                    ("GET", "/owa/", "bO=1", &user, 200),
                    ("POST", "/owa/service.svc", "action=GetFolder&EP=1&ID=-8&AC=1", &user, 200),
                ];
                for (i, (m, stem, q, usr, st)) in seq.iter().enumerate() {
                    let t = ts + i as i64 * 700_000;
                    o.text(&path, &header, t, iis_line(t, m, stem, q, usr, &u.ip, BROWSER_UA, *st, 15 + rng.below(200) as u32), None);
                }
                let t = ts + 5 * SECOND;
                let line = httpproxy_line(
                    rng,
                    t,
                    "Owa",
                    "/owa/",
                    "bO=1",
                    &user,
                    &format!("SMTP:{}", u.email),
                    BROWSER_UA,
                    &u.ip,
                    200,
                    "GET",
                    "Smtp-UserCookie",
                );
                o.text(&httpproxy_path(t, "Owa"), &httpproxy_header(t), t, line, None);
            }
            1 => {
                // Outlook: autodiscover, then MAPI over HTTP with an NTLM round.
                let t = ts;
                o.text(&path, &header, t, iis_line(t, "POST", "/autodiscover/autodiscover.xml", "", "", &u.ip, OUTLOOK_UA, 401, 1), None);
                let t2 = t + 200_000;
                o.text(
                    &path,
                    &header,
                    t2,
                    iis_line(t2, "POST", "/autodiscover/autodiscover.xml", "", &user, &u.ip, OUTLOOK_UA, 200, 31),
                    None,
                );
                let line = httpproxy_line(
                    rng,
                    t2,
                    "Autodiscover",
                    "/autodiscover/autodiscover.xml",
                    "",
                    &user,
                    &format!("SMTP:{}", u.email),
                    OUTLOOK_UA,
                    &u.ip,
                    200,
                    "POST",
                    "Smtp-AutodiscoverRequest",
                );
                o.text(&httpproxy_path(t2, "Autodiscover"), &httpproxy_header(t2), t2, line, None);
                for k in 0..3 {
                    let t3 = t2 + (k + 1) * 30 * SECOND;
                    let q = format!("MailboxId={}&ClientRequestInfo=R:{{{:08X}}}", u.email, rng.next() as u32);
                    o.text(&path, &header, t3, iis_line(t3, "POST", "/mapi/emsmdb/", &q, &user, &u.ip, OUTLOOK_UA, 200, 8), None);
                }
            }
            2 => {
                // Phone over ActiveSync.
                let q = format!("Cmd=Sync&User={}&DeviceId=APPL{:010X}&DeviceType=iPhone", u.sam, rng.next() & 0xff_ffff_ffff);
                o.text(
                    &path,
                    &header,
                    ts,
                    iis_line(ts, "POST", "/Microsoft-Server-ActiveSync/default.eas", &q, &user, &u.ip, PHONE_UA, 200, 60),
                    None,
                );
            }
            _ => {
                // Outlook EWS (calendar, free/busy).
                o.text(&path, &header, ts, iis_line(ts, "POST", "/EWS/Exchange.asmx", "", &user, &u.ip, OUTLOOK_UA, 200, 22), None);
            }
        }
    }
}

fn health_probes(o: &mut Output, rng: &mut Rng, day: i64, n: usize) {
    for i in 0..n {
        let ts = day + (i as i64 * DAY / n.max(1) as i64) + rng.below(60) as i64 * SECOND;
        o.text(
            &iis_path(ts),
            &iis_header(ts),
            ts,
            iis_line(ts, "GET", "/owa/healthcheck.htm", "", "", "127.0.0.1", "AMProbe/Local/ClientAccess", 200, 0),
            None,
        );
        if i % 8 == 0 {
            let line = rps_line(
                rng,
                ts,
                &format!("{NETBIOS}\\HealthMailbox7b3f"),
                "127.0.0.1",
                200,
                "Exchange BackEnd Probes",
                "Get-ExchangeServer",
                "serializationLevel=Full;clientApplication=ActiveMonitor",
            );
            o.text(&rps_path(ts), &rps_header(ts), ts, line, None);
        }
    }
}

fn mail_day(o: &mut Output, org: &Org, rng: &mut Rng, day: i64, n: usize) {
    const SUBJECTS: [&str; 8] = [
        "Electoral registration update",
        "Minutes of the Board meeting",
        "Re: Guidance for EROs",
        "Polling station accessibility review",
        "Canvass reform: next steps",
        "FW: Candidate spending returns",
        "Weekly team catch-up",
        "Re: Local elections timetable",
    ];
    const PARTNERS: [&str; 5] =
        ["council.example.gov.uk", "cabinetoffice.example.gov.uk", "aea.example.org.uk", "press.example.co.uk", "ico.example.org.uk"];
    for _ in 0..n {
        let ts = working_time(rng, day);
        let u = rng.pick(&org.users);
        let subject = *rng.pick(&SUBJECTS);
        let path = msgtrk_path(ts);
        let header = msgtrk_header(ts);
        if rng.chance(0.5) {
            let other = rng.pick(&org.users);
            o.text(&path, &header, ts, msgtrk_line(rng, ts, "RECEIVE", "STOREDRIVER", &u.email, &[&other.email], subject, &u.ip), None);
            o.text(
                &path,
                &header,
                ts + SECOND,
                msgtrk_line(rng, ts + SECOND, "DELIVER", "STOREDRIVER", &u.email, &[&other.email], subject, &u.ip),
                None,
            );
        } else if rng.chance(0.5) {
            let ext = format!("{}.{}@{}", rng.pick(&FIRST).to_lowercase(), rng.pick(&LAST).to_lowercase(), rng.pick(&PARTNERS));
            o.text(&path, &header, ts, msgtrk_line(rng, ts, "RECEIVE", "SMTP", &ext, &[&u.email], subject, "203.0.113.25"), None);
            o.text(
                &path,
                &header,
                ts + SECOND,
                msgtrk_line(rng, ts + SECOND, "DELIVER", "STOREDRIVER", &ext, &[&u.email], subject, "203.0.113.25"),
                None,
            );
        } else {
            let ext = format!("{}.{}@{}", rng.pick(&FIRST).to_lowercase(), rng.pick(&LAST).to_lowercase(), rng.pick(&PARTNERS));
            o.text(&path, &header, ts, msgtrk_line(rng, ts, "SEND", "SMTP", &u.email, &[&ext], subject, EXCH_IP), None);
        }
    }
}

fn logons_day(o: &mut Output, org: &Org, rng: &mut Rng, day: i64, n: usize) {
    for _ in 0..n {
        let ts = working_time(rng, day);
        let u = rng.pick(&org.users);
        let path = evt_path("DC01", "Security", ts);
        let failed = rng.chance(0.04);
        let ev = security(
            "DC01.ec.local",
            if failed { 4625 } else { 4624 },
            &[
                ("SubjectUserSid", "S-1-0-0"),
                ("SubjectUserName", "-"),
                ("SubjectDomainName", "-"),
                ("TargetUserName", &u.sam),
                ("TargetDomainName", NETBIOS),
                ("LogonType", "3"),
                ("LogonProcessName", "Kerberos"),
                ("AuthenticationPackageName", "Kerberos"),
                ("WorkstationName", "-"),
                ("IpAddress", &u.ip),
                ("IpPort", "0"),
                ("Status", if failed { "0xc000006d" } else { "0x0" }),
            ],
        );
        o.win(&path, ts, ev, None);
        // A sign-in to the cloud services prompts an MFA push, sometimes two.
        if !failed && rng.chance(0.3) {
            for k in 0..(1 + rng.below(2)) {
                let t = ts + k as i64 * 20 * SECOND;
                let line = okta_line(rng, t, "system.push.send_factor_verify_push", "A push verification was sent", u, &u.ip, "SUCCESS");
                o.text(&okta_path(t), &[], t, line, None);
            }
            let t = ts + 45 * SECOND;
            let line = okta_line(rng, t, "user.authentication.auth_via_mfa", "Authentication of user via MFA", u, &u.ip, "SUCCESS");
            o.text(&okta_path(t), &[], t, line, None);
        }
    }
}

fn processes_day(o: &mut Output, org: &Org, rng: &mut Rng, day: i64, n: usize) {
    const APPS: [(&str, &str); 5] = [
        ("C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe", "\"C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe\""),
        (
            "C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE",
            "\"C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE\"",
        ),
        (
            "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE",
            "\"C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE\" /n",
        ),
        (
            "C:\\Program Files\\Microsoft Office\\root\\Office16\\EXCEL.EXE",
            "\"C:\\Program Files\\Microsoft Office\\root\\Office16\\EXCEL.EXE\"",
        ),
        ("C:\\Windows\\System32\\notepad.exe", "\"C:\\Windows\\System32\\notepad.exe\""),
    ];
    for i in 0..n {
        let ts = working_time(rng, day);
        let u = rng.pick(&org.users);
        let (image, cmd) = *rng.pick(&APPS);
        let computer = format!("{}.ec.local", u.ws);
        let user = format!("{NETBIOS}\\{}", u.sam);
        let guid = format!(
            "{{{:08X}-{:04X}-{:04X}-0000-{:012X}}}",
            rng.next() as u32,
            rng.below(65536),
            rng.below(65536),
            rng.next() & 0xffff_ffff_ffff
        );
        let ev = sysmon(
            &computer,
            1,
            &[
                ("RuleName", "-"),
                ("UtcTime", &sysmon_utc_time(ts)),
                ("ProcessGuid", &guid),
                ("ProcessId", &(1000 + rng.below(30000)).to_string()),
                ("Image", image),
                ("CommandLine", cmd),
                ("CurrentDirectory", "C:\\Windows\\system32\\"),
                ("User", &user),
                ("IntegrityLevel", "Medium"),
                ("ParentImage", "C:\\Windows\\explorer.exe"),
                ("ParentCommandLine", "C:\\Windows\\Explorer.EXE"),
            ],
        );
        o.win(&evt_path("Workstations", "Sysmon", ts), ts, ev, None);
        if i % 3 == 0 {
            // Exchange's own health workers on the server.
            let ev = sysmon(
                EXCH_FQDN,
                1,
                &[
                    ("RuleName", "-"),
                    ("Image", "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Bin\\MSExchangeHMWorker.exe"),
                    ("CommandLine", "\"C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Bin\\MSExchangeHMWorker.exe\" -workerId:3"),
                    ("CurrentDirectory", "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Bin\\"),
                    ("User", "NT AUTHORITY\\SYSTEM"),
                    ("IntegrityLevel", "System"),
                    ("ParentImage", "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Bin\\MSExchangeHMHost.exe"),
                    ("ParentCommandLine", "\"C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Bin\\MSExchangeHMHost.exe\""),
                ],
            );
            o.win(&evt_path("EXCH01", "Sysmon", ts), ts, ev, None);
        }
        if i % 4 == 0 {
            let doc = format!("C:\\Users\\{}\\Documents\\{}.docx", u.sam, ["notes", "draft", "briefing", "minutes"][i % 4]);
            let ev = sysmon(&computer, 11, &[("RuleName", "-"), ("Image", APPS[2].0), ("TargetFilename", &doc), ("User", &user)]);
            o.win(&evt_path("Workstations", "Sysmon", ts + SECOND), ts + SECOND, ev, None);
        }
    }
}

fn admin_day(o: &mut Output, org: &Org, rng: &mut Rng, day: i64, n: usize) {
    const CMDS: [(&str, &str); 4] = [
        ("Get-Mailbox", "-ResultSize \"Unlimited\""),
        ("Get-MessageTrackingLog", "-Start \"08/01/2021\" -Sender \"press@electoralcommission.example\""),
        ("Set-Mailbox", "-Identity \"{u}\" -ProhibitSendQuota \"10GB\""),
        ("Get-MailboxDatabaseCopyStatus", "-Server \"EXCH01\""),
    ];
    for _ in 0..n {
        let ts = working_time(rng, day);
        let admin = &org.users[*rng.pick(&org.admins)];
        let target = rng.pick(&org.users);
        let (cmd, params) = *rng.pick(&CMDS);
        let params = params.replace("{u}", &target.sam);
        o.win(&evt_path("EXCH01", "MSExchange-Management", ts), ts, cmdlet(cmd, &params, &admin.sam), None);
        let line = rps_line(
            rng,
            ts,
            &format!("{NETBIOS}\\{}", admin.sam),
            &admin.ip,
            200,
            "Microsoft WinRM Client",
            cmd,
            "serializationLevel=Full;clientApplication=RemotePowershell",
        );
        o.text(&rps_path(ts), &rps_header(ts), ts, line, None);
    }
}

fn registers_day(o: &mut Output, org: &Org, rng: &mut Rng, day: i64, n: usize) {
    for _ in 0..n {
        let ts = working_time(rng, day);
        let u = &org.users[*rng.pick(&org.register_staff)];
        let file = *rng.pick(&crate::register::FILES);
        file_access(o, ts, &u.sam, &u.ip, file, None);
    }
}

/// A 5145 share check and a 4663 object access on the register share.
pub fn file_access(o: &mut Output, ts: i64, user: &str, ip: &str, rel: &str, step: Option<usize>) {
    let path = evt_path("FS01", "Security", ts);
    let share_rel = rel.trim_start_matches("FS01/Shares/Registers/").replace('/', "\\");
    let ev = security(
        "FS01.ec.local",
        5145,
        &[
            ("SubjectUserName", user),
            ("SubjectDomainName", NETBIOS),
            ("ObjectType", "File"),
            ("IpAddress", ip),
            ("ShareName", "\\\\*\\Registers"),
            ("ShareLocalPath", "\\??\\D:\\Shares\\Registers"),
            ("RelativeTargetName", &share_rel),
            ("AccessMask", "0x120089"),
        ],
    );
    o.win(&path, ts, ev, step);
    let ev = security(
        "FS01.ec.local",
        4663,
        &[
            ("SubjectUserName", user),
            ("SubjectDomainName", NETBIOS),
            ("ObjectServer", "Security"),
            ("ObjectType", "File"),
            ("ObjectName", &format!("D:\\Shares\\Registers\\{share_rel}")),
            ("AccessMask", "0x1"),
            ("ProcessName", "System"),
        ],
    );
    o.win(&path, ts + 50_000, ev, step);
}

/// Sysmon's `UtcTime`: `2021-09-19 16:12:37.000` (milliseconds always present).
fn sysmon_utc_time(ts: i64) -> String {
    let (y, mo, d, h, mi, s) = Timestamp(ts).civil();
    let ms = ts.rem_euclid(1_000_000) / 1000;
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{ms:03}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn sysmon_time_has_milliseconds_even_on_a_whole_second() {
        assert_eq!(super::sysmon_utc_time(1_632_067_957_000_000), "2021-09-19 16:12:37.000");
        assert_eq!(super::sysmon_utc_time(1_632_067_957_123_456), "2021-09-19 16:12:37.123");
    }
}
