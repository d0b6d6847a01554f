//! The institution's posture weaknesses, as the regulator found them: passwords reset by
//! the service desk (4724) that some accounts never changed (and some did: 4723 or a
//! 4738 of their own), some of them then used to log on; Entra ID sign-ins, a few with a
//! single factor and two legacy-protocol clients; and IIS logging on the Exchange server
//! stopped for six days. Drawn from their own random stream after everything else, so
//! the background and the planted intrusion are the same as without them.

use portcullis_event::Timestamp;
use serde_json::json;

use crate::background::{DOMAIN, EXCH, EXCH_BUILD, NETBIOS, Org, count, evt_path, iis_path, security, working_time};
use crate::{Config, DAY, END, HOUR, MINUTE, Output, Rng, START, at};

pub const HELPDESK: &str = "servicedesk";
/// The logging gap planted on EXCH01's IIS log (no planted intrusion evidence falls in it).
const GAP_FROM: &str = "2022-10-03 00:00:00";
const GAP_TO: &str = "2022-10-09 00:00:00";

fn reset(o: &mut Output, ts: i64, sam: &str) {
    let path = evt_path("DC01", "Security", ts);
    let target = [("TargetUserName", sam), ("TargetDomainName", NETBIOS), ("TargetSid", "S-1-5-21-1004336348-1177238915-682003330-2201")];
    let subject = [("SubjectUserName", HELPDESK), ("SubjectDomainName", NETBIOS), ("SubjectLogonId", "0x3e7a21")];
    let mut pairs: Vec<(&str, &str)> = subject.to_vec();
    pairs.extend(target);
    o.win(&path, ts, security("DC01.ec.local", 4724, &pairs), None);
    let pls = us_time(ts);
    let mut pairs: Vec<(&str, &str)> = subject.to_vec();
    pairs.extend(target);
    pairs.push(("PasswordLastSet", &pls));
    o.win(&path, ts + 10_000, security("DC01.ec.local", 4738, &pairs), None);
}

fn change(o: &mut Output, ts: i64, sam: &str, via_4738: bool) {
    let path = evt_path("DC01", "Security", ts);
    let pls = us_time(ts);
    let mut pairs = vec![
        ("SubjectUserName", sam),
        ("SubjectDomainName", NETBIOS),
        ("TargetUserName", sam),
        ("TargetDomainName", NETBIOS),
        ("TargetSid", "S-1-5-21-1004336348-1177238915-682003330-2201"),
    ];
    if via_4738 {
        pairs.push(("PasswordLastSet", &pls));
        o.win(&path, ts, security("DC01.ec.local", 4738, &pairs), None);
    } else {
        o.win(&path, ts, security("DC01.ec.local", 4723, &pairs), None);
    }
}

fn interactive_logon(o: &mut Output, ts: i64, sam: &str, ws: &str, ip: &str, logon_type: &str) {
    let ev = security(
        &format!("{ws}.ec.local"),
        4624,
        &[
            ("SubjectUserSid", "S-1-5-18"),
            ("SubjectUserName", &format!("{ws}$")),
            ("SubjectDomainName", NETBIOS),
            ("TargetUserName", sam),
            ("TargetDomainName", NETBIOS),
            ("LogonType", logon_type),
            ("LogonProcessName", "User32"),
            ("AuthenticationPackageName", "Negotiate"),
            ("WorkstationName", ws),
            ("IpAddress", if logon_type == "10" { ip } else { "127.0.0.1" }),
            ("IpPort", "0"),
        ],
    );
    o.win(&evt_path("Workstations", "Security", ts), ts, ev, None);
}

/// `PasswordLastSet` as the Security log writes it: `8/24/2021 2:13:05 AM`.
fn us_time(ts: i64) -> String {
    let (y, m, d, h, mi, s) = Timestamp(ts).civil();
    let (h12, ampm) = match h {
        0 => (12, "AM"),
        1..=11 => (h, "AM"),
        12 => (12, "PM"),
        _ => (h - 12, "PM"),
    };
    format!("{m}/{d}/{y} {h12}:{mi:02}:{s:02} {ampm}")
}

#[allow(clippy::too_many_arguments)]
fn sign_in(rng: &mut Rng, ts: i64, upn: &str, ip: &str, app: &str, client: &str, requirement: &str, error: u32) -> String {
    json!({
        "time": Timestamp(ts).to_string(),
        "resourceId": "/tenants/5f1c7e2a-0000-4000-8000-ec0000000001/providers/Microsoft.aadiam",
        "operationName": "Sign-in activity",
        "category": "SignInLogs",
        "resultType": error.to_string(),
        "properties": {
            "id": format!("{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}", rng.next() as u32, rng.below(65536), rng.below(4096), rng.below(4096), rng.next() & 0xffff_ffff_ffff),
            "createdDateTime": Timestamp(ts).to_string(),
            "userPrincipalName": upn,
            "appDisplayName": app,
            "ipAddress": ip,
            "clientAppUsed": client,
            "authenticationRequirement": requirement,
            "conditionalAccessStatus": "notApplied",
            "status": {"errorCode": error},
        }
    })
    .to_string()
}

fn signin_path(ts: i64) -> String {
    let (y, m, ..) = Timestamp(ts).civil();
    format!("Entra/SignInLogs-{y}-{m:02}.json")
}

/// Plants the weaknesses; returns the `posture` part of `truth.json`.
pub fn plant(o: &mut Output, org: &Org, cfg: &Config) -> serde_json::Value {
    let mut rng = Rng::new(cfg.seed ^ 0x7057_u64.rotate_left(40));
    let start = at(START);
    let end = at(END);
    // Ten accounts reset by the service desk, none of them an admin, register staff or the
    // account the intrusion's MFA burst targets.
    let mut chosen: Vec<usize> = Vec::new();
    while chosen.len() < 10 {
        let i = 20 + rng.below(100) as usize;
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    let day_in = |rng: &mut Rng, from: i64, to: i64| from + (rng.below(((to - from) / DAY).max(1) as u64) as i64) * DAY;
    let mut never_changed = Vec::new();
    let mut changed = Vec::new();
    for (k, &i) in chosen.iter().enumerate() {
        let u = &org.users[i];
        let d = day_in(&mut rng, at("2021-09-01 00:00:00"), at("2022-08-31 00:00:00"));
        let t = working_time(&mut rng, d);
        reset(o, t, &u.sam);
        match k {
            // Never changed; the first two then log on with it at their desks (one over RDP).
            0..=3 => {
                let mut reset_at = t;
                if k == 3 {
                    // Reset, changed, then reset again and never changed.
                    let c = t + 2 * DAY + 3 * HOUR;
                    change(o, c, &u.sam, false);
                    reset_at = c + 20 * DAY;
                    reset(o, reset_at, &u.sam);
                }
                let used = k < 2;
                if used {
                    let l = reset_at + 40 * MINUTE;
                    interactive_logon(o, l, &u.sam, &u.ws, &u.ip, if k == 0 { "2" } else { "10" });
                }
                never_changed.push(json!({
                    "account": u.sam,
                    "reset_by": format!("{NETBIOS}\\{HELPDESK}"),
                    "reset_at": Timestamp(reset_at).to_string(),
                    "resets": if k == 3 { 2 } else { 1 },
                    "logged_on_after": used,
                }));
            }
            // Changed by the account itself: 4723, or (one) a 4738 of its own.
            _ => {
                let c = t + (1 + rng.below(10) as i64) * DAY + rng.below(3600) as i64 * 1_000_000;
                change(o, c, &u.sam, k == 4);
                changed.push(json!({"account": u.sam, "reset_at": Timestamp(t).to_string(), "changed_at": Timestamp(c).to_string()}));
            }
        }
    }

    // Entra ID sign-ins: background with MFA (and failed passwords, which are single-factor
    // but not sign-ins), three accounts signing in with one factor, two legacy clients.
    const APPS: [&str; 4] = ["Office 365 Exchange Online", "Microsoft Teams", "Office 365 SharePoint Online", "Microsoft Office"];
    let single: Vec<(String, &str, &str)> = vec![
        (org.users[chosen[5]].email.clone(), "Office 365 Exchange Online", "Browser"),
        (org.users[chosen[6]].email.clone(), "Microsoft Teams", "Mobile Apps and Desktop clients"),
        (format!("svc.reports@{DOMAIN}"), "Office 365 SharePoint Online", "Mobile Apps and Desktop clients"),
    ];
    let legacy: Vec<(String, &str)> =
        vec![(org.users[chosen[7]].email.clone(), "IMAP4"), (format!("scan.copier@{DOMAIN}"), "Authenticated SMTP")];
    let mut day = start;
    while day < end {
        let weekend = matches!((day / DAY + 4).rem_euclid(7), 5 | 6);
        let n = count(&mut rng, if weekend { 4.0 } else { 30.0 }, cfg.scale);
        for _ in 0..n {
            let u = rng.pick(&org.users);
            let ts = working_time(&mut rng, day);
            let app = *rng.pick(&APPS);
            let client = if rng.chance(0.5) { "Browser" } else { "Mobile Apps and Desktop clients" };
            let (req, err) = if rng.chance(0.05) { ("singleFactorAuthentication", 50126) } else { ("multiFactorAuthentication", 0) };
            let line = sign_in(&mut rng, ts, &u.email, &u.ip, app, client, req, err);
            o.text(&signin_path(ts), &[], ts, line, None);
        }
        day += DAY;
    }
    let mut single_truth = Vec::new();
    for (upn, app, client) in &single {
        let mut first = None;
        for m in 0..6 {
            let d = at("2022-03-01 00:00:00") + m * 30 * DAY + rng.below(20) as i64 * DAY;
            let ts = working_time(&mut rng, d);
            first.get_or_insert(ts);
            let line = sign_in(&mut rng, ts, upn, "10.20.0.200", app, client, "singleFactorAuthentication", 0);
            o.text(&signin_path(ts), &[], ts, line, None);
        }
        single_truth.push(json!({"account": upn, "app": app, "sign_ins": 6}));
    }
    let mut legacy_truth = Vec::new();
    for (upn, client) in &legacy {
        for m in 0..4 {
            let d = at("2022-05-02 00:00:00") + m * 30 * DAY + rng.below(20) as i64 * DAY;
            let ts = working_time(&mut rng, d);
            let line = sign_in(&mut rng, ts, upn, "10.20.0.201", "Office 365 Exchange Online", client, "singleFactorAuthentication", 0);
            o.text(&signin_path(ts), &[], ts, line, None);
        }
        legacy_truth.push(json!({"account": upn, "client_app": client, "sign_ins": 4}));
    }
    // A password spray over IMAP that never succeeded: no legacy sign-in.
    for k in 0..5 {
        let ts = at("2022-07-12 03:10:00") + k * 7 * 1_000_000;
        let u = &org.users[30 + k as usize];
        let line =
            sign_in(&mut rng, ts, &u.email, "45.155.205.233", "Office 365 Exchange Online", "IMAP4", "singleFactorAuthentication", 50126);
        o.text(&signin_path(ts), &[], ts, line, None);
    }

    // IIS logging on EXCH01 stopped for six days.
    let (gap_from, gap_to) = (at(GAP_FROM), at(GAP_TO));
    let file = iis_path(gap_from);
    let (before, after) = o.drop_range(&file, gap_from, gap_to);
    // IIS writes whole seconds.
    let second = |t: i64| Timestamp(t - t.rem_euclid(1_000_000)).to_string();

    json!({
        "passwords_as_set": never_changed,
        "passwords_changed": changed,
        "single_factor": single_truth,
        "legacy_protocols": legacy_truth,
        "logging_gaps": [{
            "host": EXCH,
            "source": "IIS/W3C",
            "from": before.map(second),
            "to": after.map(second),
        }],
        "patching": [{
            "server": EXCH,
            "build": EXCH_BUILD,
            "open_after_fix": ["ProxyLogon", "ProxyShell"],
        }],
        "could_not_see": [{"missing": "powershell_script_block", "host": EXCH}, {"missing": "okta_factors", "host": null}],
    })
}
