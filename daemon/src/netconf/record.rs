//! What a daemon changed in the host's network set-up (sysctls with their old values, routes
//! and addresses it added), kept in a file of its state directory as it changes it. A daemon
//! killed with SIGKILL cannot set anything back; the next run finds the file and sets back
//! what it lists before making its own changes, so that a later clean stop leaves the host as
//! it was before the first run. Without it the next run would find forwarding on, the route or
//! the address already there, take them for someone else's and leave them for good.

use std::io;
use std::path::{Path, PathBuf};

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use super::{Route, Sysctl, interface_index, remove_address};

/// At most this many changes are read back (a larger file is not ours).
const MAX_CHANGES: usize = 10_000;

/// One change to set back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Change {
    /// `net.ipv6.conf.INTERFACE.KEY` was `was`.
    Sysctl {
        /// `all`, `default` or an interface.
        interface: String,
        /// `forwarding` or `accept_ra`.
        key: String,
        /// Its value before.
        was: i64,
    },
    /// A route we added.
    Route {
        /// The route.
        route: Route,
    },
    /// An address we added to an interface.
    Address {
        /// The interface's name.
        interface: String,
        /// The address and its prefix length.
        address: Ipv6Net,
    },
}

impl Change {
    /// `sysctl` was `was`.
    pub fn sysctl(sysctl: &Sysctl, was: i64) -> Self {
        Change::Sysctl {
            interface: sysctl.interface.clone(),
            key: sysctl.key.to_string(),
            was,
        }
    }

    /// Whether it is a change we could have made: a record is read back as untrusted input,
    /// and a path under /proc/sys is built from it, so only the keys we write and names that
    /// are interface names.
    pub fn check(&self) -> Result<(), ChangeError> {
        match self {
            Change::Sysctl { interface, key, .. } => {
                sysctl_key(key)?;
                interface_name(interface)
            }
            Change::Route { .. } => Ok(()),
            Change::Address { interface, .. } => interface_name(interface),
        }
    }

    /// Sets it back.
    fn undo(&self) -> io::Result<()> {
        self.check().map_err(io::Error::other)?;
        match self {
            Change::Sysctl {
                interface,
                key,
                was,
            } => {
                let key = sysctl_key(key).map_err(io::Error::other)?;
                match Sysctl::new(interface, key).write(*was) {
                    // The interface is gone, and its setting with it.
                    Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
                    other => other,
                }
            }
            Change::Route { route } => route.remove(),
            Change::Address { interface, address } => match interface_index(interface) {
                Ok(index) => remove_address(*address, index),
                // The interface is gone, and its addresses with it.
                Err(_) => Ok(()),
            },
        }
    }
}

/// A recorded change that is none of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// A sysctl key we never set.
    #[error("unknown sysctl key {0:?}")]
    UnknownSysctlKey(String),
    /// Not a name an interface can have.
    #[error("not an interface name: {0:?}")]
    NotAnInterfaceName(String),
}

/// The sysctl keys we set.
fn sysctl_key(key: &str) -> Result<&'static str, ChangeError> {
    match key {
        "forwarding" => Ok("forwarding"),
        "accept_ra" => Ok("accept_ra"),
        other => Err(ChangeError::UnknownSysctlKey(other.to_string())),
    }
}

/// A Linux interface name (`all` and `default` are sysctl directories too): shorter than
/// IFNAMSIZ, no slash, NUL or white space, not `.` or `..`.
fn interface_name(name: &str) -> Result<(), ChangeError> {
    let bad = name.is_empty()
        || name.len() >= libc::IFNAMSIZ
        || name.starts_with('.')
        || name
            .chars()
            .any(|c| c == '/' || c == '\0' || c.is_whitespace());
    if bad {
        return Err(ChangeError::NotAnInterfaceName(name.to_string()));
    }
    Ok(())
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Sysctl {
                interface,
                key,
                was,
            } => write!(f, "net.ipv6.conf.{interface}.{key} back to {was}"),
            Change::Route { route } => write!(f, "the route {route} removed"),
            Change::Address { interface, address } => {
                write!(f, "{address} removed from {interface}")
            }
        }
    }
}

/// The changes of this run, and the file that holds them.
#[derive(Debug, Default)]
pub struct ChangeRecord {
    /// `None`: kept in memory only (tools, tests).
    path: Option<PathBuf>,
    changes: Vec<Change>,
}

impl ChangeRecord {
    /// A record in `state_dir/FILE_NAME`. What a previous run left there (it did not stop
    /// cleanly) is set back now, last change first, one log line each; then the record is
    /// empty.
    pub fn take_over(state_dir: &Path, file_name: &str) -> Self {
        let path = state_dir.join(file_name);
        let left = read(&path);
        if !left.is_empty() {
            tracing::warn!(
                "{}: the previous run did not stop cleanly; setting back the {} changes it made to the network set-up",
                path.display(),
                left.len()
            );
        }
        for change in left.iter().rev() {
            match change.undo() {
                Ok(()) => tracing::info!("left by the previous run: {change}"),
                Err(error) => tracing::warn!("left by the previous run: {change}: {error}"),
            }
        }
        let record = ChangeRecord {
            path: Some(path),
            changes: Vec::new(),
        };
        record.save();
        record
    }

    /// Adds `change` (before a sysctl is written, after a route or address was added).
    pub fn push(&mut self, change: Change) {
        self.changes.push(change);
        self.save();
    }

    /// Takes out the last change equal to `change` (it was set back).
    pub fn forget(&mut self, change: &Change) {
        if let Some(at) = self.changes.iter().rposition(|c| c == change) {
            self.changes.remove(at);
            self.save();
        }
    }

    /// Adds `route`; recorded if it was not there before (then it is ours). `Ok(false)`: it
    /// was there already.
    pub fn add_route(&mut self, route: Route) -> io::Result<bool> {
        let added = route.add()?;
        if added {
            self.push(Change::Route { route });
        }
        Ok(added)
    }

    /// Removes a route that [`ChangeRecord::add_route`] added.
    pub fn remove_route(&mut self, route: Route) -> io::Result<()> {
        route.remove()?;
        self.forget(&Change::Route { route });
        Ok(())
    }

    /// Adds `address` to `interface`; recorded if it was not there before. `Ok(false)`: it was
    /// there already.
    pub fn add_address(&mut self, address: Ipv6Net, interface: &str) -> io::Result<bool> {
        let added = super::add_address(address, interface_index(interface)?)?;
        if added {
            self.push(Change::Address {
                interface: interface.to_string(),
                address,
            });
        }
        Ok(added)
    }

    /// Removes an address that [`ChangeRecord::add_address`] added.
    pub fn remove_address(&mut self, address: Ipv6Net, interface: &str) -> io::Result<()> {
        let change = Change::Address {
            interface: interface.to_string(),
            address,
        };
        change.undo()?;
        self.forget(&change);
        Ok(())
    }

    /// What is recorded, oldest first.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// The file holds what is recorded; an empty record is no file (a clean stop).
    fn save(&self) {
        let Some(path) = &self.path else {
            return;
        };
        let result = if self.changes.is_empty() {
            match std::fs::remove_file(path) {
                Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        } else {
            crate::state_file::write_list(path, &self.changes)
        };
        if let Err(error) = result {
            // The set-up works without it; only a crash would then leave changes behind.
            tracing::warn!("{}: cannot write: {error}", path.display());
        }
    }
}

fn read(path: &Path) -> Vec<Change> {
    crate::state_file::read_list(path, MAX_CHANGES, WHAT)
}

/// What the record lists, for its errors.
const WHAT: &str = "network changes";

/// The changes in a record's `bytes` (what the next run reads back).
pub fn parse(bytes: &[u8]) -> Result<Vec<Change>, crate::state_file::ListError> {
    crate::state_file::parse_list(bytes, MAX_CHANGES, WHAT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_one_run_records_the_next_reads_and_a_clean_stop_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut record = ChangeRecord::take_over(dir.path(), "netconf-test.json");
        // Changes whose undo is harmless here: an interface that does not exist.
        let sysctl = Change::Sysctl {
            interface: "htnone0".into(),
            key: "accept_ra".into(),
            was: 1,
        };
        let address = Change::Address {
            interface: "htnone0".into(),
            address: "2001:db8:100:100::1/64".parse().unwrap(),
        };
        record.push(sysctl.clone());
        record.push(address.clone());
        let file = dir.path().join("netconf-test.json");
        assert_eq!(read(&file), vec![sysctl.clone(), address.clone()]);
        let mode = std::fs::metadata(&file).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        // The next run (after a crash) sets back and starts empty.
        let next = ChangeRecord::take_over(dir.path(), "netconf-test.json");
        assert!(next.changes().is_empty());
        assert!(!file.exists());
        // A clean stop: everything forgotten, no file.
        record.forget(&address);
        assert_eq!(read(&file), vec![sysctl.clone()]);
        record.forget(&sysctl);
        assert!(!file.exists());
    }

    #[test]
    fn a_record_that_names_another_sysctl_or_path_is_refused() {
        let sysctl = |interface: &str, key: &str| Change::Sysctl {
            interface: interface.into(),
            key: key.into(),
            was: 1,
        };
        for name in ["all", "default", "hometun0", "eth1.100", "enp0s31f6"] {
            assert_eq!(sysctl(name, "forwarding").check(), Ok(()), "{name}");
        }
        for name in [
            "",
            ".",
            "..",
            "../../kernel",
            "a/b",
            "eth0\0",
            "eth 0",
            "sixteen-bytes-xx",
        ] {
            assert_eq!(
                sysctl(name, "accept_ra").check(),
                Err(ChangeError::NotAnInterfaceName(name.into())),
                "{name:?}"
            );
            // Nothing is set back from a change that fails its check.
            assert!(sysctl(name, "accept_ra").undo().is_err(), "{name:?}");
            let address = Change::Address {
                interface: name.into(),
                address: "2001:db8::1/64".parse().unwrap(),
            };
            assert!(address.check().is_err(), "{name:?}");
        }
        for key in ["disable_ipv6", "../../kernel/core_pattern"] {
            assert_eq!(
                sysctl("eth0", key).check(),
                Err(ChangeError::UnknownSysctlKey(key.into()))
            );
            assert!(sysctl("eth0", key).undo().is_err(), "{key}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("netconf-test.json");
        std::fs::write(&file, b"{not json").unwrap();
        assert!(read(&file).is_empty());
        assert!(matches!(
            parse(b"{not json"),
            Err(crate::state_file::ListError::Malformed { .. })
        ));
    }
}
