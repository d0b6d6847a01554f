//! Windows event XML (`<Event><System>…</System><EventData><Data Name=…>`), as Splunk's
//! `XmlWinEventLog`, Sentinel's `RawEventData` and `Event.EventData` (`<DataItem>`) carry it,
//! pushed into an [`Event`] under the names the EVTX reader gives the same record:
//! `System` children by element name with attributes joined by `_` (`Provider_Name`,
//! `TimeCreated_SystemTime`), `Data` by its `Name`, `UserData` leaves by element name.

use portcullis_event::{Event, ValueKind};
use quick_xml::events::{BytesStart, Event as Xml};

/// Elements deeper than this are not followed (hostile nesting).
const MAX_DEPTH: usize = 32;

/// Pushes the fields of the event XML in `text` into `out`. Returns false when the text is
/// not well-formed XML (fields read up to the error are kept).
pub fn push_event_xml(text: &str, out: &mut Event) -> bool {
    let mut r = quick_xml::Reader::from_str(text);
    let mut stack: Vec<String> = Vec::new();
    // The pending leaf: its name and text so far.
    let mut leaf: Option<(String, String)> = None;
    let mut in_system = false;
    loop {
        match r.read_event() {
            Ok(Xml::Start(e)) => {
                let name = local(&e);
                if stack.len() >= MAX_DEPTH {
                    return false;
                }
                in_system |= name == "System";
                let section = stack.iter().rev().find(|s| matches!(s.as_str(), "System" | "EventData" | "UserData"));
                match section.map(String::as_str) {
                    Some("System") => {
                        push_attributes(&e, &name, out);
                        leaf = Some((name.clone(), String::new()));
                    }
                    Some("EventData") => {
                        let data_name = attribute(&e, "Name").unwrap_or_else(|| name.clone());
                        leaf = Some((data_name, String::new()));
                    }
                    Some("UserData") => leaf = Some((name.clone(), String::new())),
                    _ => {}
                }
                stack.push(name);
            }
            Ok(Xml::Empty(e)) => {
                let name = local(&e);
                let section = stack.iter().rev().find(|s| matches!(s.as_str(), "System" | "EventData" | "UserData"));
                match section.map(String::as_str) {
                    Some("System") => push_attributes(&e, &name, out),
                    Some("EventData") => {
                        let data_name = attribute(&e, "Name").unwrap_or(name);
                        out.push(&data_name, "", ValueKind::Str);
                    }
                    Some("UserData") => {
                        out.push(&name, "", ValueKind::Str);
                    }
                    _ => {}
                }
            }
            Ok(Xml::Text(t)) => {
                if let Some((_, v)) = leaf.as_mut() {
                    v.push_str(&t.xml10_content());
                }
            }
            Ok(Xml::CData(t)) => {
                if let Some((_, v)) = leaf.as_mut() {
                    v.push_str(&t);
                }
            }
            Ok(Xml::GeneralRef(e)) => {
                if let Some((_, v)) = leaf.as_mut() {
                    push_ref(&e, v);
                }
            }
            Ok(Xml::End(_)) => {
                let name = stack.pop().unwrap_or_default();
                if let Some((leaf_name, value)) = leaf.take() {
                    let closes_leaf = name == leaf_name || stack.iter().any(|s| s == "EventData");
                    if closes_leaf {
                        let kind = if in_system && is_integer(&value) { ValueKind::Int } else { ValueKind::Str };
                        out.push(&leaf_name, value.trim_matches(['\r', '\n']), kind);
                    }
                }
                if name == "System" {
                    in_system = false;
                }
            }
            Ok(Xml::Eof) => return stack.is_empty(),
            Err(_) => return false,
            _ => {}
        }
    }
}

fn is_integer(v: &str) -> bool {
    !v.is_empty() && v.len() < 20 && v.bytes().all(|b| b.is_ascii_digit())
}

fn local(e: &BytesStart<'_>) -> String {
    e.local_name().as_ref().to_string()
}

fn attribute(e: &BytesStart<'_>, key: &str) -> Option<String> {
    e.attributes().flatten().find(|a| a.key.local_name().as_ref() == key).map(|a| unescaped(&a))
}

fn unescaped(a: &quick_xml::events::attributes::Attribute<'_>) -> String {
    match a.normalized_value(quick_xml::XmlVersion::Implicit1_0) {
        Ok(v) => v.into_owned(),
        Err(_) => a.value.to_string(),
    }
}

/// `System` attributes as `Element_Attribute` (`Provider_Name`, `TimeCreated_SystemTime`).
fn push_attributes(e: &BytesStart<'_>, element: &str, out: &mut Event) {
    for a in e.attributes().flatten() {
        let key = a.key.local_name().as_ref().to_string();
        if key == "xmlns" {
            continue;
        }
        let value = unescaped(&a);
        let kind = if is_integer(&value) { ValueKind::Int } else { ValueKind::Str };
        out.push_parts(&[element, "_", &key], &value, kind);
    }
}

/// An XML entity or character reference (`&amp;`, `&#x41;`) appended as its text; an
/// unknown entity adds nothing.
pub fn push_ref(e: &quick_xml::events::BytesRef<'_>, out: &mut String) {
    if let Ok(Some(c)) = e.resolve_char_ref() {
        out.push(c);
        return;
    }
    out.push_str(match e.as_ref() {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        _ => "",
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_xml_gets_evtx_names() {
        let xml = "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System><Provider Name='Microsoft-Windows-Security-Auditing' Guid='{54849625}'/>\
<EventID>4688</EventID><TimeCreated SystemTime='2022-12-14T16:06:51.0643605Z'/><EventRecordID>114689</EventRecordID><Correlation/>\
<Execution ProcessID='4' ThreadID='196'/><Channel>Security</Channel><Computer>win10.windomain.local</Computer><Security/></System>\
<EventData><Data Name='SubjectUserName'>WIN10$</Data><Data Name='CommandLine'>cmd /c &quot;a &amp; b&quot; &lt;x&gt;</Data><Data Name='Empty'></Data><Data Name='E2'/></EventData></Event>";
        let mut ev = Event::default();
        assert!(push_event_xml(xml, &mut ev));
        let j = ev.to_json();
        assert_eq!(j["Provider_Name"], "Microsoft-Windows-Security-Auditing");
        assert_eq!(j["EventID"], 4688);
        assert_eq!(j["TimeCreated_SystemTime"], "2022-12-14T16:06:51.0643605Z");
        assert_eq!(j["EventRecordID"], 114689);
        assert_eq!(j["Execution_ProcessID"], 4);
        assert_eq!(j["Channel"], "Security");
        assert_eq!(j["Computer"], "win10.windomain.local");
        assert_eq!(j["CommandLine"], "cmd /c \"a & b\" <x>");
        assert_eq!(j["Empty"], "");
        assert_eq!(j["E2"], "");
        assert_eq!(j["SubjectUserName"], "WIN10$");
    }

    #[test]
    fn sentinel_data_item_and_user_data() {
        let xml = "<DataItem type=\"System.XmlData\" time=\"2019-08-08T14:20:58.0130787+00:00\"><EventData xmlns=\"http://schemas.microsoft.com/win/2004/08/events/event\">\
<Data Name=\"RuleName\">-</Data><Data Name=\"Image\">C:\\x.exe</Data></EventData></DataItem>";
        let mut ev = Event::default();
        assert!(push_event_xml(xml, &mut ev));
        assert_eq!(ev.get("Image"), Some("C:\\x.exe"));
        assert_eq!(ev.get("RuleName"), Some("-"));
        let mut ev = Event::default();
        assert!(push_event_xml(
            "<Event><UserData><LogFileCleared><SubjectUserName>bob</SubjectUserName></LogFileCleared></UserData></Event>",
            &mut ev
        ));
        assert_eq!(ev.get("SubjectUserName"), Some("bob"));
    }

    #[test]
    fn hostile_xml_is_refused_without_panic() {
        let mut ev = Event::default();
        assert!(!push_event_xml("<Event><System><EventID>1", &mut ev));
        let deep = "<a>".repeat(10_000);
        assert!(!push_event_xml(&deep, &mut ev));
        assert!(!push_event_xml("<Event><EventData><Data Name='x'>&bogus;</Data></EventData></Event><", &mut ev));
    }
}
