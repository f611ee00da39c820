//! Acting on one peer without revoking it, over the daemon's status socket (as swanctl's
//! `--terminate` and `--initiate`): `hometun terminate NAME` drops a peer's SAs now (its DELETE
//! sent; a home comes back by its own reconnection) and `hometun initiate` makes a client
//! connect now, its backoff back at the start.
//!
//! Protocol, beside `status` (see [`crate::status`]): the line `terminate NAME` or `initiate`;
//! the answer is one JSON object, `{"done": "what happened"}` or `{"error": "why not"}`. The
//! socket is the status socket, mode 0600: only its owner (root) may act.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::sync::oneshot;

/// What an operator asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Drop every IKE SA of the peer with this identity, with a DELETE.
    Terminate(String),
    /// Client: connect now.
    Initiate,
}

/// The request line of `terminate`.
pub const TERMINATE: &str = "terminate";
/// The request line of `initiate`.
pub const INITIATE: &str = "initiate";

impl Command {
    /// Reads a request line; `None` if it is not one of these commands.
    pub fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        let command = match (words.next()?, words.next()) {
            (TERMINATE, Some(name)) => Command::Terminate(name.to_string()),
            (INITIATE, None) => Command::Initiate,
            _ => return None,
        };
        words.next().is_none().then_some(command)
    }

    /// The request line.
    pub fn line(&self) -> String {
        match self {
            Command::Terminate(name) => format!("{TERMINATE} {name}"),
            Command::Initiate => INITIATE.to_string(),
        }
    }
}

/// The driver's answer: what was done, or why nothing was.
pub type Answer = Result<String, Refusal>;

/// Why the driver did nothing for a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `terminate NAME` for a home with no IKE SA here.
    #[error("no IKE SA of {0} (see hometun status)")]
    NoIkeSa(String),
    /// `initiate` on a server.
    #[error("this is a server: its homes connect to it (initiate is for a client)")]
    NotAClient,
    /// The daemon is stopping.
    #[error("the daemon is stopping")]
    Stopping,
}

/// A command from a socket client to the driver, with where its answer goes.
#[derive(Debug)]
pub struct CommandRequest {
    /// The command.
    pub command: Command,
    /// The answer.
    pub reply: oneshot::Sender<Answer>,
}

/// The answer as the socket writes it: one JSON object and a newline.
pub fn answer_json(answer: &Answer) -> String {
    let value = match answer {
        Ok(done) => serde_json::json!({ "done": done }),
        Err(refusal) => serde_json::json!({ "error": refusal.to_string() }),
    };
    format!("{value}\n")
}

/// Runs `hometun terminate NAME` or `hometun initiate`: finds the daemon's status socket through
/// `config` (default: /etc/hometun/server.toml, else client.toml), sends the command and prints
/// what the daemon did. A refusal is the error (exit status 1).
pub fn run(config: Option<&Path>, command: &Command) -> anyhow::Result<()> {
    let socket = socket_of(config)?;
    println!("{}", send(&socket, command)?);
    Ok(())
}

/// The status socket named by `config`, or by the first default config that exists.
fn socket_of(config: Option<&Path>) -> anyhow::Result<PathBuf> {
    let config = match config {
        Some(path) => path.to_path_buf(),
        None => crate::setup::DEFAULT_CONFIGS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .with_context(|| {
                format!(
                    "no --config given and none of {} exists",
                    crate::setup::DEFAULT_CONFIGS.join(", ")
                )
            })?,
    };
    crate::setup::status_socket_of(&config)
}

/// Sends `command` to the daemon at `socket`; returns what it did, or its refusal as the error.
pub fn send(socket: &Path, command: &Command) -> anyhow::Result<String> {
    let text = crate::status_client::ask(socket, &command.line())?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: the daemon's answer is not JSON", socket.display()))?;
    if let Some(done) = value.get("done").and_then(|d| d.as_str()) {
        return Ok(done.to_string());
    }
    match value.get("error").and_then(|e| e.as_str()) {
        Some(error) => anyhow::bail!("{error}"),
        None => anyhow::bail!("{}: unexpected answer {}", socket.display(), text.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_read_back() {
        for command in [Command::Terminate("home.example".into()), Command::Initiate] {
            assert_eq!(Command::parse(&command.line()), Some(command));
        }
        assert_eq!(Command::parse("terminate"), None, "a name is needed");
        assert_eq!(Command::parse("terminate a b"), None);
        assert_eq!(Command::parse("initiate now"), None);
        assert_eq!(Command::parse("status"), None);
    }

    #[test]
    fn answers_are_one_json_line() {
        assert_eq!(
            answer_json(&Ok("terminated home.example".into())),
            "{\"done\":\"terminated home.example\"}\n"
        );
        assert_eq!(
            answer_json(&Err(Refusal::NoIkeSa("x".into()))),
            "{\"error\":\"no IKE SA of x (see hometun status)\"}\n"
        );
    }
}
