//! The `[renew]` table of client.toml: when and where a home renews its certificate, so that
//! none reaches its certificate's expiry unattended (`hometun renew`, and the client daemon).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// The enrollment listener's port when `renew.server` is not set (`hometun pki init`'s).
pub const DEFAULT_ENROLL_PORT: u16 = 8443;
/// Days before expiry by which a renewal is due at the latest.
pub const DEFAULT_BEFORE_DAYS: u32 = 7;
const SECONDS_PER_DAY: i64 = 86_400;

/// `[renew]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewSection {
    /// The enrollment listener to renew with (TLS); unset: `client.server` on port 8443.
    /// `hometun enroll` writes the address it enrolled with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<SocketAddr>,
    /// Renew once this share of the certificate's validity has passed, in percent (1..=99);
    /// unset: two thirds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_percent: Option<u8>,
    /// Renew at least this many days before the certificate expires, whatever `after_percent`
    /// says.
    #[serde(default = "default_before_days")]
    pub before_days: u32,
    /// Make a new key for the new certificate (the current key stays in use until the new
    /// certificate has arrived; a failed renewal keeps it).
    #[serde(default = "default_new_key")]
    pub new_key: bool,
}

impl Default for RenewSection {
    fn default() -> Self {
        RenewSection {
            server: None,
            after_percent: None,
            before_days: DEFAULT_BEFORE_DAYS,
            new_key: true,
        }
    }
}

impl RenewSection {
    /// The enrollment listener to renew with, for a home whose server is `server`.
    pub fn server_or_default(&self, server: Ipv4Addr) -> SocketAddr {
        self.server
            .unwrap_or_else(|| SocketAddr::new(server.into(), DEFAULT_ENROLL_PORT))
    }

    /// When a certificate valid from `not_before` to `not_after` (Unix seconds) is due for
    /// renewal: once `after_percent` (two thirds) of its validity has passed, and at the latest
    /// `before_days` before it expires.
    pub fn due(&self, not_before: i64, not_after: i64) -> i64 {
        let validity = not_after.saturating_sub(not_before).max(0);
        let share = match self.after_percent {
            Some(percent) => validity / 100 * i64::from(percent),
            None => validity / 3 * 2,
        };
        let latest = not_after.saturating_sub(i64::from(self.before_days) * SECONDS_PER_DAY);
        not_before.saturating_add(share).min(latest)
    }

    pub(crate) fn check(&self, file: &Path) -> Result<(), ConfigError> {
        if let Some(percent) = self.after_percent
            && !(1..=99).contains(&percent)
        {
            return Err(ConfigError::new(
                file,
                "renew.after_percent",
                format!("{percent} is outside 1..=99"),
            ));
        }
        if let Some(server) = self.server
            && (server.ip().is_unspecified() || server.port() == 0)
        {
            return Err(ConfigError::new(
                file,
                "renew.server",
                format!("{server} is not an address to connect to"),
            ));
        }
        Ok(())
    }
}

fn default_before_days() -> u32 {
    DEFAULT_BEFORE_DAYS
}

fn default_new_key() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = SECONDS_PER_DAY;

    #[test]
    fn due_at_two_thirds_and_at_least_a_week_before_expiry() {
        let renew = RenewSection::default();
        // 730 days: two thirds is day 486 (and a bit), well before the last week.
        assert_eq!(renew.due(0, 730 * DAY), 730 * DAY / 3 * 2);
        // 15 days: two thirds (day 10) would leave 5 days; a week before expiry wins.
        assert_eq!(renew.due(0, 15 * DAY), 8 * DAY);
        let percent = RenewSection {
            after_percent: Some(50),
            before_days: 1,
            ..RenewSection::default()
        };
        assert_eq!(percent.due(100, 100 + 10 * DAY), 100 + 5 * DAY);
        // Already inside the last week: due at once (a time in the past).
        assert!(renew.due(0, 3 * DAY) < 0);
    }

    #[test]
    fn bad_values_are_named() {
        let bad = RenewSection {
            after_percent: Some(100),
            ..RenewSection::default()
        };
        assert_eq!(
            bad.check(Path::new("client.toml")).unwrap_err().to_string(),
            "client.toml: renew.after_percent: 100 is outside 1..=99"
        );
        let server = "192.0.2.1".parse().unwrap();
        assert_eq!(
            RenewSection::default().server_or_default(server),
            "192.0.2.1:8443".parse().unwrap()
        );
    }
}
