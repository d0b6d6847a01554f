//! `portcullis serve`: the web UI over a case, on loopback with a session token.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::{EXIT_OK, Fatal};

#[derive(Args)]
pub struct ServeArgs {
    /// The case file to work in.
    #[arg(value_name = "CASE")]
    pub case: PathBuf,
    /// Address and port to listen on (port 0 picks a free one).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8088")]
    pub bind: SocketAddr,
    /// Allow listening on an address other than loopback. Anyone who can reach it and has the
    /// printed URL can read every finding and event in the case and add triage notes.
    #[arg(long)]
    pub allow_remote: bool,
    /// Name recorded with triage annotations (default: $USER).
    #[arg(long, value_name = "NAME")]
    pub author: Option<String>,
}

pub fn run(a: ServeArgs) -> Result<u8, Fatal> {
    if !a.bind.ip().is_loopback() && !a.allow_remote {
        return Err(Fatal(format!(
            "{} is not a loopback address: the UI shows every finding and event of the case to whoever can reach it. \
Add --allow-remote to do this on purpose (the access token is still required), or bind 127.0.0.1.",
            a.bind
        )));
    }
    let author =
        a.author.clone().or_else(|| std::env::var("USER").ok()).filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "analyst".into());
    let settings =
        portcullis_web::ServeSettings { case: a.case.clone(), bind: a.bind, author, token: std::env::var("PORTCULLIS_SERVE_TOKEN").ok() };
    let server = portcullis_web::bind(&settings).map_err(Fatal)?;
    if !a.bind.ip().is_loopback() {
        eprintln!("warning: listening on {} — reachable from other machines; anyone with the URL below can read this case.", server.addr);
    }
    println!("Serving {} — open:\n  {}\nStop with Ctrl-C.", a.case.display(), server.url);
    use std::io::Write;
    let _ = std::io::stdout().flush();
    server.run().map_err(Fatal)?;
    Ok(EXIT_OK)
}
