//! Windows events as other tools export them, recognised by content and renamed onto
//! the names the EVTX reader gives the same record (`EventID`, `Channel`,
//! `Provider_Name`, `Computer`, `EventRecordID`, EventData fields by `Name`), so every
//! Sigma rule and every part of Portcullis sees one shape whatever the export.
//!
//! Layouts: Winlogbeat 6/7/8 and Elastic Agent (with the ECS fields its ingest pipelines
//! move EventData into, and the Elasticsearch `_source` wrapper); OTRF/Mordor flat JSON
//! (NXLog and Export-WinEvents); Microsoft Sentinel / Log Analytics `SecurityEvent`,
//! `WindowsEvent` and `Event` (API rows or `az` CLI strings); Velociraptor
//! `Windows.EventLogs.*`; Splunk's JSON export of `XmlWinEventLog` and, lossily,
//! `WinEventLog`. `docs/formats.md` has a section and a sample per layout.
//!
//! The event time is the event's own where the layout has it (`SystemTime`, Sysmon
//! `UtcTime`, Sentinel `TimeGenerated`, Winlogbeat `@timestamp`); a collector's time
//! (`@timestamp` of a forwarder, NXLog `EventTime`, OTRF `TimeCreated`) is marked as such
//! so the reader can check it against the events' own times (see `json::Clock`).

use portcullis_event::{Event, Field, SourceKind, TimeSource, Timestamp, ValueKind};

pub mod xml;

/// The export a Windows event came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    Winlogbeat,
    OtrfFlat,
    SentinelSecurityEvent,
    SentinelWindowsEvent,
    SentinelEvent,
    Velociraptor,
    SplunkXml,
    SplunkClassic,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Winlogbeat => "winlogbeat/ecs",
            Layout::OtrfFlat => "otrf/nxlog flat",
            Layout::SentinelSecurityEvent => "sentinel SecurityEvent",
            Layout::SentinelWindowsEvent => "sentinel WindowsEvent",
            Layout::SentinelEvent => "sentinel Event",
            Layout::Velociraptor => "velociraptor",
            Layout::SplunkXml => "splunk XmlWinEventLog",
            Layout::SplunkClassic => "splunk WinEventLog",
        }
    }
}

/// What normalising one event found about its time, for the file's clock check.
#[derive(Clone, Copy, Debug, Default)]
pub struct Times {
    /// The event's own UTC time (Sysmon `UtcTime`) when the event also had a collector time.
    pub own: Option<Timestamp>,
    /// The collector's time for the same event.
    pub collector: Option<Timestamp>,
}

/// Rewrites recognised events in place; reused across events (no allocation per event
/// once its buffers have grown).
#[derive(Default)]
pub struct Normaliser {
    out: Event,
}

/// Metadata of OTRF/NXLog/Logstash records that is not EventData.
const NXLOG_META: &[&str] = &[
    "tags",
    "@version",
    "@timestamp",
    "host",
    "port",
    "EventTime",
    "EventReceivedTime",
    "Hostname",
    "Keywords",
    "SeverityValue",
    "Severity",
    "SourceName",
    "ProviderGuid",
    "Version",
    "Task",
    "TaskValue",
    "OpcodeValue",
    "Opcode",
    "Category",
    "RecordNumber",
    "ProcessID",
    "ThreadID",
    "ExecutionProcessID",
    "ExecutionThreadID",
    "Channel",
    "Domain",
    "AccountName",
    "UserID",
    "AccountType",
    "SourceModuleName",
    "SourceModuleType",
    "EventID",
    "ActivityID",
    "RelatedActivityID",
    "ERROR_EVT_UNRESOLVED",
    "TimeCreated",
    "Level",
    "EventSourceName",
    "Provider",
    "TimeGenerated",
    "EventRecordID",
    "EventData",
    "Computer",
];

/// NXLog's own `EventType` values (an EventData `EventType`, Sysmon 12–14, is kept).
const NXLOG_EVENT_TYPES: &[&str] = &["INFO", "AUDIT_SUCCESS", "AUDIT_FAILURE", "WARNING", "ERROR", "CRITICAL", "VERBOSE"];

/// Log Analytics columns that are not EventData (standard and derived columns).
const SENTINEL_META: &[&str] = &[
    "TenantId",
    "TimeGenerated",
    "SourceSystem",
    "Account",
    "AccountType",
    "Computer",
    "EventSourceName",
    "Channel",
    "Task",
    "Level",
    "EventID",
    "Activity",
    "EventData",
    "TimeCollected",
    "EventOriginId",
    "SourceComputerId",
    "MG",
    "ManagementGroupName",
    "Type",
    "_ResourceId",
    "_SubscriptionId",
    "_IsBillable",
    "_BilledSize",
    "TableName",
    "SubjectAccount",
    "TargetAccount",
    "Process",
    "LogonTypeName",
    "PartitionKey",
    "AzureDeploymentID",
    "Role",
    "Provider",
    "EventRecordId",
    "EventLevel",
    "EventLevelName",
    "RawEventData",
    "Keywords",
    "Opcode",
    "Version",
    "SystemProcessId",
    "SystemThreadId",
    "SystemUserId",
    "Correlation",
    "EventLog",
    "Source",
    "EventCategory",
    "ParameterXml",
    "RenderedDescription",
    "UserName",
    "Message",
];

/// EventData fields whose EVTX type is a hex integer: tools that decode values to numbers
/// (Velociraptor, Elastic) print them in decimal, rules compare `0x…` text.
const HEX_FIELDS: &[&str] = &[
    "SubjectLogonId",
    "TargetLogonId",
    "TargetLinkedLogonId",
    "LogonId",
    "NewProcessId",
    "Status",
    "SubStatus",
    "AccessMask",
    "HandleId",
    "TicketOptions",
    "TicketEncryptionType",
    "FailureCode",
    "Result",
    "OldUacValue",
    "NewUacValue",
    "UserAccountControl",
    "ProcessId",
    "ParentProcessId",
    "CallerProcessId",
    "ClientProcessId",
    "KeyLength",
    "ErrorCode",
    "PreAuthType",
];

/// Hex fields that are decimal in Sysmon (its `ProcessId` is a decimal number).
fn is_hex_field(channel: &str, name: &str) -> bool {
    if channel.contains("Sysmon") {
        return name.ends_with("LogonId") || name == "GrantedAccess";
    }
    if matches!(name, "KeyLength" | "PreAuthType" | "ErrorCode") {
        return false;
    }
    HEX_FIELDS.contains(&name)
}

/// Classic `WinEventLog` display names of providers, for `Provider_Name`.
const PROVIDER_ALIASES: &[(&str, &str)] = &[
    ("Microsoft Windows security auditing.", "Microsoft-Windows-Security-Auditing"),
    ("Microsoft-Windows-Sysmon", "Microsoft-Windows-Sysmon"),
    ("Service Control Manager", "Service Control Manager"),
];

/// ECS fields the Elastic ingest pipelines move Sysmon EventData into (deleting the
/// original), for every event id: (ECS field, EventData name). Where the name depends on
/// the event id, [`ecs_name`] decides.
const ECS_SYSMON: &[(&str, &str)] = &[
    ("process.command_line", "CommandLine"),
    ("process.working_directory", "CurrentDirectory"),
    ("process.parent.command_line", "ParentCommandLine"),
    ("process.parent.executable", "ParentImage"),
    ("process.parent.pid", "ParentProcessId"),
    ("process.parent.entity_id", "ParentProcessGuid"),
    ("file.name", "PipeName"),
    ("source.ip", "SourceIp"),
    ("source.port", "SourcePort"),
    ("source.domain", "SourceHostname"),
    ("destination.ip", "DestinationIp"),
    ("destination.port", "DestinationPort"),
    ("destination.domain", "DestinationHostname"),
    ("network.transport", "Protocol"),
    ("dns.question.name", "QueryName"),
    ("sysmon.dns.status", "QueryStatus"),
    ("registry.path", "TargetObject"),
    ("registry.data.strings", "Details"),
    ("rule.name", "RuleName"),
];

/// The Sysmon EventData name of an ECS field whose name depends on the event id.
fn ecs_name(ecs: &str, id: u32) -> Option<&'static str> {
    let source = matches!(id, 8 | 10);
    Some(match ecs {
        "process.executable" if source => "SourceImage",
        "process.executable" => "Image",
        "process.pid" if source => "SourceProcessId",
        "process.pid" => "ProcessId",
        "process.entity_id" if id == 8 => "SourceProcessGuid",
        "process.entity_id" if id == 10 => "SourceProcessGUID",
        "process.entity_id" => "ProcessGuid",
        "file.path" if matches!(id, 6 | 7) => "ImageLoaded",
        "file.path" if id == 9 => "Device",
        "file.path" => "TargetFilename",
        "file.pe.original_file_name" if id == 7 => "OriginalFileName",
        "process.pe.original_file_name" if id != 7 => "OriginalFileName",
        _ => return None,
    })
}

/// Puts back what the Elastic ingest pipelines moved out of EventData into ECS fields.
fn unmove_ecs(out: &mut Event, src: &Event, prefix: &str, channel: &str, id: u32) {
    let get = |name: &str| get_exact(src, prefix, name);
    let put = |out: &mut Event, name: &str, value: &str, kind: ValueKind| {
        if out.get(name).is_none() {
            out.push(name, value, kind);
        }
    };
    if channel.contains("Sysmon") {
        for (ecs, name) in ECS_SYSMON {
            if let Some(f) = get(ecs) {
                put(out, name, f.value, if f.kind == ValueKind::Int { ValueKind::Int } else { ValueKind::Str });
            }
        }
        for ecs in [
            "process.executable",
            "process.pid",
            "process.entity_id",
            "file.path",
            "file.pe.original_file_name",
            "process.pe.original_file_name",
        ] {
            if let (Some(f), Some(name)) = (get(ecs), ecs_name(ecs, id)) {
                put(out, name, f.value, f.kind);
            }
        }
        if let Some(d) = get("network.direction") {
            put(out, "Initiated", if d.value == "egress" || d.value == "outbound" { "true" } else { "false" }, ValueKind::Str);
        }
        if let Some(n) = get("user.name")
            && out.get("User").is_none()
        {
            let user = match get("user.domain") {
                Some(d) => format!("{}\\{}", d.value, n.value),
                None => n.value.to_string(),
            };
            put(out, "User", &user, ValueKind::Str);
        }
        // Hashes, split into `process.hash.*` / `file.hash.*` and lower-cased: rebuilt in
        // Sysmon's form (the original order is lost).
        let mut hashes = String::new();
        for f in src.fields() {
            let Some(name) = f.name.strip_prefix(prefix) else { continue };
            let value = f.value;
            let algo = name.strip_prefix("process.hash.").or_else(|| name.strip_prefix("file.hash."));
            if let Some(algo) = algo {
                if !hashes.is_empty() {
                    hashes.push(',');
                }
                hashes.push_str(&algo.to_ascii_uppercase());
                hashes.push('=');
                hashes.push_str(&value.to_ascii_uppercase());
            }
        }
        if !hashes.is_empty() {
            put(out, "Hashes", &hashes, ValueKind::Str);
        }
        if id == 10
            && out.get("TargetProcessGUID").is_none()
            && let Some(v) = out.get("TargetProcessGuid").map(str::to_string)
        {
            out.push("TargetProcessGUID", &v, ValueKind::Str);
        }
    } else if channel == "Security" && id == 4688 {
        if let Some(f) = get("process.executable") {
            put(out, "NewProcessName", f.value, ValueKind::Str);
        }
        if let Some(f) = get("process.parent.executable") {
            put(out, "ParentProcessName", f.value, ValueKind::Str);
        }
        if let Some(n) = get("process.pid").and_then(|f| f.value.parse::<u64>().ok()) {
            put(out, "NewProcessId", &format!("{n:#x}"), ValueKind::Str);
        }
        if let Some(f) = get("process.command_line") {
            put(out, "CommandLine", f.value, ValueKind::Str);
        }
    }
}

impl Normaliser {
    /// Recognises `ev` (as flattened from JSON, names by dotted path) and, if it is a
    /// Windows event in a known layout, rewrites it under EVTX names with its source,
    /// time, time source and record. Returns the layout and the times seen, or `None`
    /// for anything else (left untouched).
    pub fn normalise(&mut self, ev: &mut Event, line: u64) -> Option<(Layout, Times)> {
        let prefix = wrapper_prefix(ev);
        let layout = recognise(ev, prefix)?;
        let out = &mut self.out;
        out.clear(SourceKind::Windows);
        out.raw.clear();
        let get = |name: &str| get_exact(ev, prefix, name);
        let mut times = Times::default();
        let time: Option<(Timestamp, TimeSource)>;
        match layout {
            Layout::Winlogbeat => {
                let legacy = get("winlog.channel").is_none() && get("log_name").is_some();
                let channel = if legacy { get("log_name") } else { get("winlog.channel") };
                let event_id = if legacy { get("event_id") } else { get("winlog.event_id").or_else(|| get("event.code")) };
                push_system(out, "EventID", event_id);
                push_system(out, "Channel", channel);
                let provider = if legacy { get("source_name") } else { get("winlog.provider_name").or_else(|| get("event.provider")) };
                push_system(out, "Provider_Name", provider);
                push_system(out, "Provider_Guid", get("winlog.provider_guid").or_else(|| get("provider_guid")));
                let computer = if legacy { get("computer_name") } else { get("winlog.computer_name") };
                push_system(out, "Computer", computer.or_else(|| get("host.hostname")).or_else(|| get("host.name")));
                push_system(out, "EventRecordID", if legacy { get("record_number") } else { get("winlog.record_id") });
                push_system(out, "Security_UserID", get("winlog.user.identifier"));
                push_system(out, "Execution_ProcessID", get("winlog.process.pid"));
                push_system(out, "Execution_ThreadID", get("winlog.process.thread.id"));
                time = get("winlog.time_created")
                    .or_else(|| get("@timestamp"))
                    .and_then(|f| parse_time(f))
                    .map(|(t, _)| (t, TimeSource::Event));
                let data_prefixes: &[&str] =
                    if legacy { &["event_data.", "user_data."] } else { &["winlog.event_data.", "winlog.user_data."] };
                for f in ev.fields() {
                    let Some(name) = f.name.strip_prefix(prefix) else { continue };
                    if let Some(n) = data_prefixes.iter().find_map(|p| name.strip_prefix(p))
                        && n != "xml_name"
                    {
                        out.push(n, f.value, f.kind);
                    }
                }
                let channel = channel.map(|c| c.value).unwrap_or("");
                let id: u32 = event_id.and_then(|f| f.value.trim().parse().ok()).unwrap_or(0);
                unmove_ecs(out, ev, prefix, channel, id);
                if let Some(m) = get("message") {
                    out.push("Message", m.value, m.kind);
                }
            }
            Layout::OtrfFlat => {
                push_system(out, "EventID", get("EventID"));
                push_system(out, "Channel", get("Channel"));
                push_system(out, "Provider_Name", get("SourceName").or_else(|| get("Provider")).or_else(|| get("EventSourceName")));
                push_system(out, "Provider_Guid", get("ProviderGuid"));
                push_system(out, "Computer", get("Hostname").or_else(|| get("Computer")));
                push_system(out, "EventRecordID", get("RecordNumber").or_else(|| get("EventRecordID")));
                push_system(out, "Security_UserID", get("UserID"));
                push_system(out, "Execution_ProcessID", get("ExecutionProcessID"));
                let xml_data = get("EventData").filter(|f| f.value.trim_start().starts_with('<'));
                if let Some(x) = xml_data {
                    xml::push_event_xml(x.value, out);
                }
                for f in ev.fields() {
                    let Some(name) = f.name.strip_prefix(prefix) else { continue };
                    if name == "Message" {
                        out.push(name, f.value, f.kind);
                        continue;
                    }
                    if name == "EventType" && NXLOG_EVENT_TYPES.contains(&f.value) {
                        continue;
                    }
                    if NXLOG_META.contains(&name) || (xml_data.is_some() && out.get(name).is_some()) {
                        continue;
                    }
                    out.push(name, f.value, f.kind);
                }
                // The collector's time is checked against Sysmon's own UtcTime by the reader:
                // Logstash's `@timestamp` (UTC, seconds late; in the 2021 recordings local
                // time marked Z, like their `TimeCreated`), else `TimeCreated`, else NXLog's
                // `EventTime` (local, no zone).
                let collector = get("@timestamp").or_else(|| get("TimeCreated")).or_else(|| get("EventTime")).and_then(parse_time);
                let own = get("UtcTime").and_then(parse_time);
                times = Times { own: own.map(|(t, _)| t), collector: collector.map(|(t, _)| t) };
                time = match (own, collector) {
                    (Some((t, _)), _) => Some((t, TimeSource::Event)),
                    (None, Some((t, _))) => Some((t, TimeSource::Collector)),
                    _ => None,
                };
            }
            Layout::SentinelSecurityEvent | Layout::SentinelWindowsEvent | Layout::SentinelEvent => {
                push_system(out, "EventID", get("EventID"));
                push_system(out, "Channel", get("Channel").or_else(|| get("EventLog")));
                push_system(out, "Provider_Name", get("EventSourceName").or_else(|| get("Provider")).or_else(|| get("Source")));
                push_system(out, "Computer", get("Computer"));
                push_system(out, "EventRecordID", get("EventRecordId"));
                time = get("TimeGenerated")
                    .and_then(parse_time)
                    .map(|(t, zoned)| (t, if zoned { TimeSource::Event } else { TimeSource::Unzoned }));
                // EventData: an object (WindowsEvent), JSON text of one, or XML text.
                let mut from_object = false;
                for f in ev.fields() {
                    let Some(name) = f.name.strip_prefix(prefix) else { continue };
                    if let Some(n) = name.strip_prefix("EventData.") {
                        // Inside EventData an empty string is a value, as in the EVTX.
                        out.push(n, f.value, f.kind);
                        from_object = true;
                    }
                }
                if !from_object && let Some(d) = get("EventData").filter(|f| present(*f)) {
                    let t = d.value.trim_start();
                    if t.starts_with('<') {
                        xml::push_event_xml(t, out);
                    } else if t.starts_with('{') {
                        push_json_object(t, out);
                    }
                }
                if !from_object
                    && out.len() <= 5
                    && let Some(raw) = get("RawEventData").filter(|f| present(*f))
                {
                    xml::push_event_xml(raw.value, out);
                }
                if layout == Layout::SentinelSecurityEvent {
                    for f in ev.fields() {
                        let Some(name) = f.name.strip_prefix(prefix) else { continue };
                        if !SENTINEL_META.contains(&name) && present(f) && out.get(name).is_none() {
                            out.push(name, f.value, f.kind);
                        }
                    }
                }
                if let Some(m) = get("RenderedDescription").filter(|f| present(*f)) {
                    out.push("Message", m.value, m.kind);
                }
            }
            Layout::Velociraptor => {
                let sys = |n: &str| get(&format!("System.{n}"));
                let channel = sys("Channel").or_else(|| get("Channel"));
                push_system(out, "EventID", sys("EventID.Value").or_else(|| sys("EventID")).or_else(|| get("EventID")));
                push_system(out, "Channel", channel);
                push_system(out, "Provider_Name", sys("Provider.Name").or_else(|| get("Provider")));
                push_system(out, "Computer", sys("Computer").or_else(|| get("Computer")));
                push_system(out, "EventRecordID", sys("EventRecordID").or_else(|| get("EventRecordID")));
                push_system(out, "Security_UserID", sys("Security.UserID").or_else(|| get("UserSID")));
                push_system(out, "Execution_ProcessID", sys("Execution.ProcessID"));
                let channel = channel.map(|c| c.value.to_string()).unwrap_or_default();
                for f in ev.fields() {
                    let Some(name) = f.name.strip_prefix(prefix) else { continue };
                    let data = name
                        .strip_prefix("EventData.")
                        .or_else(|| name.strip_prefix("UserData.").map(|n| n.rsplit('.').next().unwrap_or(n)));
                    if let Some(n) = data {
                        if !n.starts_with("xmlns") {
                            push_decoded(out, &channel, n, f);
                        }
                    } else if name == "Message" {
                        out.push(name, f.value, f.kind);
                    }
                }
                time = match sys("TimeCreated.SystemTime") {
                    Some(f) if matches!(f.kind, ValueKind::Int | ValueKind::Float) => {
                        f.value.parse::<f64>().ok().map(|s| (Timestamp((s * 1e6).round() as i64), TimeSource::Event))
                    }
                    Some(f) => parse_time(f).map(|(t, _)| (t, TimeSource::Event)),
                    None => get("EventTime")
                        .or_else(|| get("TimeCreated"))
                        .and_then(parse_time)
                        .map(|(t, z)| (t, if z { TimeSource::Event } else { TimeSource::Unzoned })),
                };
            }
            Layout::SplunkXml => {
                if let Some(raw) = get("_raw") {
                    xml::push_event_xml(raw.value, out);
                }
                time = out
                    .get("TimeCreated_SystemTime")
                    .and_then(Timestamp::parse)
                    .map(|t| (t, TimeSource::Event))
                    .or_else(|| get("_time").and_then(parse_time).map(|(t, _)| (t, TimeSource::Event)));
            }
            Layout::SplunkClassic => {
                let raw = get("_raw").map(|f| f.value).unwrap_or("");
                let header = |key: &str| raw.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('='))).map(str::trim);
                if let Some(v) = header("EventCode") {
                    out.push("EventID", v, if is_int(v) { ValueKind::Int } else { ValueKind::Str });
                }
                if let Some(v) = header("LogName") {
                    out.push("Channel", v, ValueKind::Str);
                }
                if let Some(v) = header("SourceName") {
                    let provider = PROVIDER_ALIASES.iter().find(|(a, _)| *a == v).map(|(_, p)| *p).unwrap_or(v);
                    out.push("Provider_Name", provider, ValueKind::Str);
                }
                if let Some(v) = header("ComputerName") {
                    out.push("Computer", v, ValueKind::Str);
                }
                if let Some(v) = header("RecordNumber") {
                    out.push("EventRecordID", v, ValueKind::Int);
                }
                if let Some(i) = raw.find("\nMessage=") {
                    out.push("Message", &raw[i + 9..], ValueKind::Str);
                }
                time = get("_time").and_then(parse_time).map(|(t, _)| (t, TimeSource::Event));
            }
        }
        out.source = SourceKind::Windows;
        if let Some((t, source)) = time {
            out.timestamp = Some(t);
            out.time_source = source;
        }
        out.record = out.get("EventRecordID").and_then(|r| r.trim().parse().ok()).unwrap_or(line);
        crate::json::add_integrity_level(out);
        std::mem::swap(ev, out);
        Some((layout, times))
    }
}

/// `_source.` (an Elasticsearch hit) or `result.` (a Splunk export line): the part of the
/// record that is the event; `""` when the record is the event.
fn wrapper_prefix(ev: &Event) -> &'static str {
    let mut source = false;
    let mut result = false;
    let mut preview = false;
    for f in ev.fields() {
        source |= f.name.starts_with("_source.");
        result |= f.name.starts_with("result.");
        preview |= f.name == "preview" || f.name == "lastrow";
    }
    if source {
        "_source."
    } else if result && preview {
        "result."
    } else {
        ""
    }
}

fn get_exact<'e>(ev: &'e Event, prefix: &str, name: &str) -> Option<Field<'e>> {
    ev.fields().find(|f| f.name.len() == prefix.len() + name.len() && f.name.starts_with(prefix) && f.name.ends_with(name))
}

fn recognise(ev: &Event, p: &str) -> Option<Layout> {
    let has = |n: &str| get_exact(ev, p, n).is_some();
    let value = |n: &str| get_exact(ev, p, n).map(|f| f.value);
    if has("winlog.channel") || has("winlog.event_id") || has("winlog.provider_name") {
        return Some(Layout::Winlogbeat);
    }
    if has("event_id") && has("log_name") && (has("computer_name") || has("source_name")) {
        return Some(Layout::Winlogbeat);
    }
    if has("System.EventID.Value") || (has("System.Channel") && has("System.EventID")) {
        return Some(Layout::Velociraptor);
    }
    if let Some(raw) = value("_raw") {
        let raw = raw.trim_start();
        if raw.starts_with("<Event") {
            return Some(Layout::SplunkXml);
        }
        if raw.contains("\nEventCode=") && raw.contains("\nLogName=") {
            return Some(Layout::SplunkClassic);
        }
    }
    match value("Type") {
        Some("SecurityEvent") => return Some(Layout::SentinelSecurityEvent),
        Some("WindowsEvent") => return Some(Layout::SentinelWindowsEvent),
        Some("Event") if has("EventLog") => return Some(Layout::SentinelEvent),
        _ => {}
    }
    if has("TimeGenerated") && has("EventID") {
        if has("Activity") && has("EventSourceName") {
            return Some(Layout::SentinelSecurityEvent);
        }
        if has("Provider") && has("EventRecordId") {
            return Some(Layout::SentinelWindowsEvent);
        }
        if has("EventLog") && has("Source") {
            return Some(Layout::SentinelEvent);
        }
    }
    if has("EventID") && has("Channel") && (has("Hostname") || (has("EventSourceName") && has("Provider"))) {
        return Some(Layout::OtrfFlat);
    }
    if has("EventTime") && has("Computer") && has("Channel") && has("Provider") && has("EventRecordID") {
        return Some(Layout::Velociraptor);
    }
    None
}

/// A value that means "absent": `null`, empty, or the `az` CLI's `None`.
fn present(f: Field<'_>) -> bool {
    f.kind != ValueKind::Null && !f.value.is_empty() && f.value != "None"
}

fn is_int(v: &str) -> bool {
    !v.is_empty() && v.len() < 20 && v.bytes().all(|b| b.is_ascii_digit())
}

/// A System field, as an integer when it is one (`"EventID":"4688"` becomes 4688).
fn push_system(out: &mut Event, name: &str, f: Option<Field<'_>>) {
    let Some(f) = f.filter(|f| present(*f)) else { return };
    let v = f.value.trim();
    let kind = if is_int(v) || f.kind == ValueKind::Int { ValueKind::Int } else { ValueKind::Str };
    out.push(name, v, kind);
}

/// An EventData value decoded to a number by the exporting tool, written back the way
/// the EVTX reader gives it (hex-typed fields as `0x…`).
fn push_decoded(out: &mut Event, channel: &str, name: &str, f: Field<'_>) {
    if f.kind == ValueKind::Int
        && is_hex_field(channel, name)
        && let Ok(n) = f.value.parse::<i64>()
    {
        let hex = format!("{:#x}", n as u64);
        out.push(name, &hex, ValueKind::Str);
        return;
    }
    out.push(name, f.value, f.kind);
}

fn parse_time(f: Field<'_>) -> Option<(Timestamp, bool)> {
    match f.kind {
        ValueKind::Int | ValueKind::Float => {
            let n: f64 = f.value.parse().ok()?;
            let secs = if n > 1e11 { n / 1000.0 } else { n };
            Some((Timestamp((secs * 1e6).round() as i64), true))
        }
        _ => Timestamp::parse_zoned(f.value),
    }
}

/// A JSON object given as text (an `EventData` column exported as a string), flattened
/// one level: each member becomes a field, an array's items repeat the name.
fn push_json_object(text: &str, out: &mut Event) {
    let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(text) else { return };
    for (k, v) in m {
        match v {
            serde_json::Value::Array(items) => items.iter().for_each(|i| push_json_value(&k, i, out)),
            v => push_json_value(&k, &v, out),
        }
    }
}

fn push_json_value(name: &str, v: &serde_json::Value, out: &mut Event) {
    match v {
        serde_json::Value::String(s) => out.push(name, s, ValueKind::Str),
        serde_json::Value::Number(n) => {
            let kind = if n.is_f64() { ValueKind::Float } else { ValueKind::Int };
            out.push(name, &n.to_string(), kind)
        }
        serde_json::Value::Bool(b) => out.push(name, if *b { "true" } else { "false" }, ValueKind::Bool),
        serde_json::Value::Null => out.push(name, "", ValueKind::Null),
        other => out.push(name, &other.to_string(), ValueKind::Str),
    };
}
