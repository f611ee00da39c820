//! The client side of the status socket: one request line, one answer read to end of file.
//! `hometun status` ([`crate::status::query`]) and the operator's commands
//! ([`crate::operator::send`]) both ask through it.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// Sends the request line `request` to the daemon at `socket`; returns its answer's text.
pub fn ask(socket: &Path, request: &str) -> anyhow::Result<String> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the daemon at {} (is it running?)",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("{request}\n").as_bytes())?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .with_context(|| format!("reading the answer from {}", socket.display()))?;
    if text.trim().is_empty() {
        anyhow::bail!("{}: the daemon closed without an answer", socket.display());
    }
    Ok(text)
}
