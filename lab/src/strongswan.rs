//! strongSwan 5.9 (charon with kernel-libipsec: userspace ESP, always in UDP 4500) as the other
//! side of the IKE tests: the one charon launcher of the workspace, used by the integration
//! tests (against the hometun daemons), the state machine's interop tests and the PKI's
//! strongSwan pair.
//!
//! Each charon gets its own directory with strongswan.conf, swanctl.conf and the credentials,
//! runs in a namespace with a private `/run` (a tmpfs mounted in the mount namespace that
//! `ip netns exec` makes), and logs to `charon.log` (IKE detail at level 2, or
//! `$HOMETUN_CHARON_IKE_LOG`, e.g. 4 to see the derived keys).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::{Guarded, Netns, wait_for};

/// The charon binary of Debian's strongswan-charon.
pub const CHARON: &str = "/usr/lib/ipsec/charon";

/// The charon plugins every strongswan.conf of the tests loads (testdata/strongswan-plugins;
/// scripts/install-deps.sh names the package of each, `packaging_install_deps` checks it).
pub fn plugins() -> &'static str {
    include_str!("../../testdata/strongswan-plugins").trim()
}

/// Whether charon and swanctl are installed.
pub fn available() -> bool {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
    };
    Path::new(CHARON).exists() && on_path("swanctl")
}

/// Whether a strongSwan lab can run here (root, charon and swanctl); when not, prints why the
/// test skips, or panics under `CI=true`.
pub fn lab_can_run(test: &str) -> bool {
    if !crate::require_root(test) {
        return false;
    }
    if !available() {
        crate::skip_or_fail(
            test,
            "strongSwan (charon, swanctl) is not installed; scripts/install-deps.sh installs it",
        );
        return false;
    }
    true
}

/// A failed test's evidence: the hometun daemon's log, charon's log and charon's SAs.
#[cfg(feature = "daemons")]
pub fn logs(daemon: &crate::ike_lab::Daemon, charon: &Charon) -> String {
    format!(
        "--- {}:\n{}\n--- charon.log:\n{}\n--- swanctl --list-sas:\n{}",
        daemon.log.display(),
        daemon.log_text(),
        charon.log(),
        charon.list_sas()
    )
}

/// What one charon gets: its credentials, its connections and any extra settings.
#[derive(Debug, Clone, Default)]
pub struct CharonConfig {
    /// Files under its `swanctl/` directory (`x509ca/ca.pem`, `x509/own.pem`,
    /// `private/own.key`, `x509crl/crl.pem`), with their contents.
    pub files: Vec<(String, Vec<u8>)>,
    /// The `connections { ... }` section of swanctl.conf, whole.
    pub connections: String,
    /// Extra lines inside `charon { }` (tuning, e.g. `retransmit_timeout = 1`).
    pub charon_extra: String,
}

impl CharonConfig {
    /// Adds the file at `path` as `swanctl/<at>`.
    pub fn with_file(mut self, at: &str, path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        self.files.push((at.to_string(), bytes));
        Ok(self)
    }
}

/// One charon with one connection `home` and its child `v6`, as the tests against the hometun
/// daemons use it.
#[derive(Debug, Clone)]
pub struct CharonSpec {
    /// Our outer address.
    pub local_addr: String,
    /// The peer's outer address (`%any` for a responder).
    pub remote_addr: String,
    /// Our identity.
    pub local_id: String,
    /// The peer's identity.
    pub remote_id: String,
    /// Our certificate (PEM).
    pub cert: PathBuf,
    /// Our private key.
    pub key: PathBuf,
    /// The CA that issued the peer's certificate.
    pub ca: PathBuf,
    /// CHILD SA traffic selectors.
    pub local_ts: String,
    /// The peer's side.
    pub remote_ts: String,
    /// IKE proposals (strongSwan syntax).
    pub proposals: String,
    /// ESP proposals.
    pub esp_proposals: String,
    /// Extra lines inside the `charon { }` section (tuning, e.g. for the benchmark).
    pub charon_extra: String,
    /// Extra lines inside the connection (e.g. `unique = never`).
    pub connection_extra: String,
    /// Extra lines inside the child `v6` (e.g. `rekey_bytes = 20000000`).
    pub child_extra: String,
}

#[cfg(feature = "daemons")]
impl CharonSpec {
    /// charon as the lab's first home (home.example with the certificate `pki` gave it),
    /// connecting to the VPS with the PFS proposals hometun defaults to.
    pub fn home(setup: &crate::ike_lab::Setup) -> Self {
        let lab = &setup.lab;
        let home_dir = setup.client_tomls[0].parent().unwrap_or(Path::new("."));
        CharonSpec {
            local_addr: lab.home().addr.to_string(),
            remote_addr: lab.vps.addr.to_string(),
            local_id: "home.example".into(),
            remote_id: crate::ike_lab::VPS_NAME.into(),
            cert: home_dir.join("client.pem"),
            key: home_dir.join("client.key"),
            ca: home_dir.join("ca.pem"),
            local_ts: crate::ike_lab::HOME_PREFIX.into(),
            remote_ts: "::/0".into(),
            proposals: "aes128gcm16-prfsha256-x25519".into(),
            esp_proposals: "aes128gcm16-x25519".into(),
            charon_extra: String::new(),
            connection_extra: String::new(),
            child_extra: String::new(),
        }
    }
}

impl CharonSpec {
    /// The files and swanctl.conf it stands for.
    pub fn config(&self) -> anyhow::Result<CharonConfig> {
        let connections = format!(
            r#"connections {{
  home {{
    version = 2
    local_addrs = {local_addr}
    remote_addrs = {remote_addr}
    proposals = {proposals}
    encap = yes
    mobike = yes
{connection_extra}
    local {{
      auth = pubkey
      certs = own.pem
      id = {local_id}
    }}
    remote {{
      auth = pubkey
      id = {remote_id}
    }}
    children {{
      v6 {{
        local_ts = {local_ts}
        remote_ts = {remote_ts}
        esp_proposals = {esp_proposals}
        mode = tunnel
        life_time = 0
        rekey_time = 0
        start_action = none
{child_extra}
      }}
    }}
  }}
}}
"#,
            local_addr = self.local_addr,
            remote_addr = self.remote_addr,
            proposals = self.proposals,
            connection_extra = self.connection_extra,
            child_extra = self.child_extra,
            local_id = self.local_id,
            remote_id = self.remote_id,
            local_ts = self.local_ts,
            remote_ts = self.remote_ts,
            esp_proposals = self.esp_proposals,
        );
        CharonConfig {
            files: Vec::new(),
            connections,
            charon_extra: self.charon_extra.clone(),
        }
        .with_file("x509ca/ca.pem", &self.ca)?
        .with_file("x509/own.pem", &self.cert)?
        .with_file("private/own.key", &self.key)
    }
}

/// A running charon. Killed when dropped.
pub struct Charon {
    child: Option<Guarded>,
    /// Its directory.
    pub dir: PathBuf,
    ns_name: String,
}

impl Charon {
    /// Starts charon in `ns` as `spec` says (see [`Charon::launch`]).
    pub fn start(ns: &Netns, dir: &Path, spec: &CharonSpec) -> anyhow::Result<Self> {
        Self::launch(ns, dir, &spec.config()?)
    }

    /// Writes the configuration into `dir`, starts charon in `ns` and loads its credentials
    /// and connections.
    pub fn launch(ns: &Netns, dir: &Path, config: &CharonConfig) -> anyhow::Result<Self> {
        let swanctl = dir.join("swanctl");
        for sub in ["x509ca", "x509", "private", "x509crl", "conf.d"] {
            std::fs::create_dir_all(swanctl.join(sub))?;
        }
        for (at, bytes) in &config.files {
            std::fs::write(swanctl.join(at), bytes)?;
        }
        let d = dir.display();
        let ike_level = std::env::var("HOMETUN_CHARON_IKE_LOG").unwrap_or_else(|_| "2".into());
        let conf = format!(
            r#"charon {{
  load = {plugins}
  install_routes = yes
  retransmit_tries = 3
  filelog {{
    log {{
      path = {d}/charon.log
      flush_line = yes
      time_format = %H:%M:%S
      default = 1
      ike = {ike_level}
      cfg = 2
      knl = 1
    }}
  }}
  plugins {{
    vici {{ socket = unix://{d}/charon.vici }}
    kernel-libipsec {{ allow_peer_ts = yes }}
    revocation {{ enable_ocsp = no }}
  }}
{extra}
}}
swanctl {{ socket = unix://{d}/charon.vici }}
"#,
            extra = config.charon_extra,
            plugins = plugins(),
        );
        std::fs::write(dir.join("strongswan.conf"), conf)?;
        std::fs::write(swanctl.join("swanctl.conf"), &config.connections)?;
        let script = format!(
            "mount -t tmpfs none /run && cd {d} && STRONGSWAN_CONF={d}/strongswan.conf exec {CHARON}"
        );
        let mut command = ns.command("sh");
        command.args(["-c", &script]);
        let child = Guarded::spawn(command, "charon", &dir.join("charon.stdout"))?;
        let charon = Charon {
            child: Some(child),
            dir: dir.to_path_buf(),
            ns_name: ns.name().to_string(),
        };
        let vici = dir.join("charon.vici");
        if !wait_for(Duration::from_secs(15), || vici.exists()) {
            bail!("charon did not open its vici socket:\n{}", charon.log());
        }
        charon.swanctl(&["--load-all", "--file", &format!("{d}/swanctl/swanctl.conf")])?;
        Ok(charon)
    }

    /// Runs `swanctl ARGS --uri ...` inside the namespace; its output, or an error with the
    /// output and charon's log.
    pub fn swanctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let d = self.dir.display().to_string();
        let output = std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns_name, "swanctl"])
            .args(args)
            .args(["--uri", &format!("unix://{d}/charon.vici")])
            .env("STRONGSWAN_CONF", format!("{d}/strongswan.conf"))
            .output()
            .context("running swanctl")?;
        let text = crate::printed(&output);
        if !output.status.success() {
            bail!(
                "swanctl {}: {text}\ncharon log:\n{}",
                args.join(" "),
                self.log()
            );
        }
        Ok(text)
    }

    /// Starts the tunnel (initiator side).
    pub fn initiate(&self) -> anyhow::Result<String> {
        self.swanctl(&["--initiate", "--child", "v6", "--timeout", "20"])
    }

    /// `swanctl --list-sas`.
    pub fn list_sas(&self) -> String {
        self.swanctl(&["--list-sas"])
            .unwrap_or_else(|e| e.to_string())
    }

    /// charon's log file.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("charon.log")).unwrap_or_default()
    }

    /// The process id (the `ip netns exec` that became charon).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Guarded::id)
    }

    /// Stops charon (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(mut self) {
        if let Some(child) = self.child.take() {
            child.signal(libc::SIGTERM);
            let _ = child.wait(Duration::from_secs(10));
        }
    }
}
