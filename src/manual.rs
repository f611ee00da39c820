//! The manual: what `hometun COMMAND --help` shows beyond the one-line summaries. For each
//! command, a description (what it does, which files it reads and writes, its exit status) and
//! an EXAMPLES section. The names and flags stay where clap derives them (the crates' cli.rs);
//! this only adds text, so the command line contract cannot change here.

use clap::Command;

/// One page: the command's path below `hometun` ("" for `hometun` itself), its description and
/// its examples.
struct Page {
    path: &'static str,
    about: &'static str,
    examples: &'static str,
}

const PAGES: &[Page] = &[
    Page {
        path: "",
        about: "hometun gives a home with a dynamic IPv4 address a static, globally routable IPv6 \
address or prefix from a server with a static IPv4 address. IPv6 travels in an IPsec ESP tunnel \
over IPv4, keyed by IKEv2 with certificates; when the home's IPv4 address changes the client \
announces it with an authenticated override Neighbor Advertisement inside the tunnel and the \
server moves the tunnel's endpoint.

Each side runs an IKE daemon (`hometun server` on the VPS, `hometun client` at home) and a \
forwarder (`hometun forwarder`, the ESP data plane with the TUN device). `hometun pki` makes the \
certificates and hands out the prefixes; `hometun status` shows a running daemon.

Exit status: 0 on success; 1 with one line on stderr; 2 for a usage error.",
        examples: "  On the VPS:
  hometun pki init --dir /etc/hometun --server-ipv4 192.0.2.1 --pool 2001:db8:100::/48
  hometun server --config /etc/hometun/server.toml
  hometun pki token --name home.example          # prints a one-time token for the home
  hometun status
  At home:
  hometun enroll --dir /etc/hometun --token \"$TOKEN\"
  hometun client --config /etc/hometun/client.toml
  hometun status
  Anywhere:
  hometun demo                                   # the whole story in network namespaces
  hometun completions bash > /etc/bash_completion.d/hometun",
    },
    Page {
        path: "server",
        about: "Runs the server daemon on the VPS: the IKEv2 responder for many homes and, unless \
server.forwarder_socket names a running forwarder, a forwarder child process that holds the TUN \
device, the routes to the homes' prefixes and the ESP sockets.

Reads the config file and the files it names: server.certificate, server.private_key (mode 0600 \
or stricter), server.ca, server.crl, and with [enroll] the CA directory enroll.pki_dir (whose \
registry.json the enrollment listener updates). Creates server.state_dir and the status socket \
server.control_socket. Binds UDP server.ike_port (500: needs CAP_NET_BIND_SERVICE) on \
server.listen; the forwarder binds server.nat_port (4500) and a raw ESP socket. With \
[upstream] (defaults: forwarding on, mode routed) it turns IPv6 forwarding on, adds an \
unreachable route for server.pool and, in mode ndp-proxy, answers Neighbor Solicitations on \
upstream.interface for the homes that are up (needs CAP_NET_ADMIN and CAP_NET_RAW; without them \
one error line each, and the server runs on); all of it is set back when it stops.

SIGHUP reads the config again (a bad file is refused and the running one stays); SIGTERM or \
SIGINT deletes the IKE SAs, stops the forwarder (TUN and routes go) and exits 0. With --check \
nothing runs: the config and its files are read as at start-up and \"FILE: ok\" is printed.

Exit status: 0 after SIGTERM/SIGINT, or for a good --check; 1 with one line on stderr when the \
config is wrong, a file is missing, a socket cannot be bound, or the forwarder dies.",
        examples: "  hometun server --config /etc/hometun/server.toml
  hometun server --config /etc/hometun/server.toml --check
  hometun -v server --config /etc/hometun/server.toml      # protocol detail in the log
  systemctl reload hometun-server                            # SIGHUP: read the config again",
    },
    Page {
        path: "client",
        about: "Runs the client daemon at home: the IKEv2 initiator towards client.server and, \
unless client.forwarder_socket names a running forwarder, a forwarder child process that holds \
the TUN device with the home's tunnel address. Without client.local it follows the home's IPv4 \
address (netlink) and announces each change to the server.

Reads the config file and the files it names: client.certificate, client.private_key (mode 0600 \
or stricter) and client.ca. Creates client.state_dir and the status socket \
client.control_socket. Binds UDP 500 (needs CAP_NET_BIND_SERVICE); the forwarder binds \
client.nat_port (4500) and a raw ESP socket. Each [[lan]] table gets <its /64>::1/64 and Router \
Advertisements (SLAAC, the tunnel MTU, RDNSS/DNSSL) while the tunnel is up; a reconnection \
within the liveness timeout keeps them as they are, a longer outage ends them with a final \
Router Advertisement. IPv6 forwarding is on while the client runs; client.updown runs \"up\" \
as the tunnel comes up and \"down\" when the LANs are taken down.

SIGHUP reads the config again; SIGTERM or SIGINT sends a final Router Advertisement that \
deprecates the LANs' prefixes, deletes the IKE SA, removes the TUN device and routes and \
exits 0. With --check nothing runs: the config and its files are read as at start-up \
and \"FILE: ok\" is printed.

Exit status: 0 after SIGTERM/SIGINT, or for a good --check; 1 with one line on stderr when the \
config is wrong, a file is missing, a socket cannot be bound, or the forwarder dies.",
        examples: "  hometun client --config /etc/hometun/client.toml
  hometun client --config /etc/hometun/client.toml --check
  hometun -v client --config /etc/hometun/client.toml",
    },
    Page {
        path: "forwarder",
        about: "Runs the ESP data plane on its own: the TUN device, the raw ESP socket (IP protocol \
50) and ESP in UDP on the NAT-T port, the SAs, anti-replay, byte and packet limits, and the \
override Neighbor Advertisements of roaming. It takes its SAs from an IKE daemon over the SA \
channel (--control PATH, or --control-fd N from a parent daemon) or from a --static file \
(manual keying).

Needs CAP_NET_ADMIN (TUN device, addresses, routes) and CAP_NET_RAW (raw ESP socket) and \
nothing else while the NAT-T port is 1024 or above; reads no file but --static. Under \
`forwarder_socket` the daemon's forwarder is started with the roaming flags the daemon would \
pass its child: --accept-moves on the server, --follow-local-address on a client without \
client.local. It stops on SIGTERM, on a Shutdown request, or when the controller that configured \
the interface disconnects, and removes its TUN device, routes and socket file.

The control socket is mode 0600 whatever the umask, and only root and the forwarder's own user may use it; --allow-uid USER admits one more (the daemon's user when the two run as different users; the socket is then 0660, for a group that user is in). Any other connecting uid is closed unanswered with one log line naming its uid and pid.

Exit status: 0 when stopped; 1 with one line on stderr when it cannot start.",
        examples: "  hometun forwarder --control /run/hometun-server-forwarder/control.sock --accept-moves --allow-uid hometun
  hometun forwarder --control /run/hometun-client-forwarder/control.sock --follow-local-address
  hometun forwarder --control /run/ht.sock --static sas.toml     # manual keying
  hometun forwarder --control /run/ht.sock --counters            # ask a running one",
    },
    Page {
        path: "status",
        about: "Asks a running server or client for its state over its status socket (the \
control_socket of its config) and prints each peer with identity, prefix, outer endpoint and \
when it last moved, and each SA with SPIs, algorithms, bytes and packets each way, what is left \
before the rekey, and drop counters; then every home that is not connected (configured, enrolled \
in the registry, or seen since the start): when it was last seen, why it went down, and its \
certificate's state and expiry. With NAME, only that peer. Reads the config (default: \
/etc/hometun/server.toml, else /etc/hometun/client.toml) to find the socket; a config with errors \
is told on stderr and its socket asked anyway. Writes nothing.

Exit status: 0 when the daemon answered; 1 with one line on stderr when there is no config, no \
daemon, no answer, or no peer named NAME.",
        examples: "  hometun status
  hometun status home.example
  hometun status --config /etc/hometun/client.toml
  hometun status --json | jq '.peers[].prefixes'",
    },
    Page {
        path: "terminate",
        about: "Drops one peer's SAs now, without revoking it, like swanctl --terminate: the \
running server (or client) deletes every IKE SA of the peer NAME with its CHILD SAs and routes, \
and sends it a DELETE. The peer is not refused: a home reconnects by itself, at once when its \
daemon is running (use `hometun pki revoke` to keep it out). Talks to the daemon over its status \
socket (the control_socket of its config, mode 0600: root or the daemon's user only); reads the \
config (default: /etc/hometun/server.toml, else /etc/hometun/client.toml) to find it; writes \
nothing.

Exit status: 0 when the daemon dropped the peer's SAs; 1 with one line on stderr when it holds \
none of NAME, or there is no config, no daemon or no answer.",
        examples: "  hometun terminate home.example
  hometun terminate home.example --config /etc/hometun/server.toml
  hometun status | grep home.example   # back a moment later",
    },
    Page {
        path: "initiate",
        about: "Makes a running client connect to its server now, like swanctl --initiate: its \
reconnection backoff (which doubles up to ike.reconnect_max_seconds while the server is away) \
starts again, and an attempt waiting for a retransmission is replaced by a fresh one. Nothing \
to do when the tunnel is up. SIGHUP and a change of the home's network do the same. Talks to the \
daemon over its status socket (mode 0600: root or the daemon's user only); reads the config \
(default: /etc/hometun/server.toml, else /etc/hometun/client.toml) to find it; writes nothing.

Exit status: 0 when the client started connecting or was connected already; 1 with one line \
on stderr for a server, or when there is no config, no daemon or no answer.",
        examples: "  hometun initiate
  hometun initiate --config /etc/hometun/client.toml && sleep 2 && hometun status",
    },
    Page {
        path: "ike",
        about: "IKE debugging tools: decode captured IKE messages, probe a server.

Exit status: that of the tool run.",
        examples: "  hometun ike decode --pcap ike.pcap
  hometun ike probe 192.0.2.1",
    },
    Page {
        path: "ike decode",
        about: "Prints each IKE message's header and payloads, from one message in hex or from \
every IKE message on UDP 500/4500 in a pcap or pcapng file (tcpdump or tshark make one). With \
--sk-ei/--sk-er (as strongSwan logs them) the SK payloads are decrypted and their inner payloads \
printed too. Reads the pcap file; writes nothing.

Exit status: 0 when the input was read; 1 with one line on stderr when it was not (a message \
that does not parse is reported in the output and the rest goes on).",
        examples: "  tcpdump -i eth0 -w ike.pcap udp port 500 or udp port 4500
  hometun ike decode --pcap ike.pcap
  hometun ike decode --hex 0011223344556677...
  hometun ike decode --pcap ike.pcap --sk-ei 0123...abcd --sk-er 4567...ef01",
    },
    Page {
        path: "ike probe",
        about: "Sends one IKE_SA_INIT with our default proposals to a server and reports what it \
chose, whether a NAT lies between us (NAT_DETECTION) and whether it asked for a cookie. No IKE \
SA is set up, no certificate needed; reads and writes no file.

Exit status: 0 when the server answered; 1 with one line on stderr when it did not or refused \
every proposal.",
        examples: "  hometun ike probe 192.0.2.1
  hometun ike probe 192.0.2.1:4500",
    },
    Page {
        path: "pki",
        about: "The certificate authority on the server and the enrollment of homes: a CA that \
hands each home a prefix from the pool inside its certificate (RFC 3779 address blocks), \
offline (request, sign, import) or online (token, then `hometun enroll`), with revocation.

The CA directory (--dir on the server) holds ca.pem, ca.key, server.pem, server.key, server.toml, \
crl.pem and registry.json; a home's directory holds client.key, client.csr, client.pem, ca.pem \
and client.toml.

Exit status: that of the subcommand run.",
        examples: "  hometun pki init --dir /etc/hometun --server-ipv4 192.0.2.1 --pool 2001:db8:100::/48
  hometun pki token --dir /etc/hometun --name home.example
  hometun pki list --dir /etc/hometun",
    },
    Page {
        path: "pki init",
        about: "Creates a CA, the server's key and certificate (for --server-name and \
--server-ipv4), server.toml, an empty CRL and an empty registry in --dir. Keys are written with \
mode 0600. Refuses to overwrite an existing CA. The pool's first prefix stays with the server, \
except in a pool of one prefix (--pool 2001:db8:200::/64 --prefix-len 64: a VPS's one on-link \
/64), which its one home gets whole.

Writes DIR/ca.pem, ca.key, server.pem, server.key, server.toml, crl.pem, registry.json.

Exit status: 0 on success; 1 with one line on stderr.",
        examples: "  hometun pki init --dir /etc/hometun --server-ipv4 192.0.2.1 --pool 2001:db8:100::/48
  hometun pki init --dir ca --server-ipv4 192.0.2.1 --pool 2001:db8:100::/48 --prefix-len 56 --key p256 --server-name vpn.example",
    },
    Page {
        path: "pki request",
        about: "On the home: makes the private key (mode 0600; it never leaves this directory; an \
existing key is kept) and a certificate signing request for the home's name.

Writes DIR/client.key (if missing) and DIR/client.csr.

Exit status: 0 on success; 1 with one line on stderr.",
        examples: "  hometun pki request --dir /etc/hometun --name home.example
  scp /etc/hometun/client.csr vps.example:",
    },
    Page {
        path: "pki sign",
        about: "On the server: allocates the next free prefix from the pool, issues the home's \
certificate with that prefix, records it in the registry and writes a bundle (certificate, CA \
certificate, prefix, server address and name) for the home.

Reads DIR/ca.pem, ca.key, server.toml and the CSR; updates DIR/registry.json; writes --out.

Exit status: 0 on success; 1 with one line on stderr (the pool is full, the name is taken, the \
CSR's signature is wrong, ...).",
        examples: "  hometun pki sign --dir /etc/hometun --csr client.csr --out home.bundle
  hometun pki sign --dir /etc/hometun --csr client.csr --out home.bundle --valid-days 365",
    },
    Page {
        path: "pki import",
        about: "On the home: checks a bundle from `hometun pki sign` against the key in --dir and \
writes the certificate, the CA certificate and a client.toml ready for `hometun client`.

Reads DIR/client.key and the bundle; writes DIR/client.pem, ca.pem and client.toml (an \
existing one keeps its settings and its failover servers; the bundle's name, prefix, files and \
server replace theirs).

Exit status: 0 on success; 1 with one line on stderr (a bundle for another key, ...).",
        examples: "  hometun pki import --dir /etc/hometun home.bundle
  hometun client --config /etc/hometun/client.toml --check",
    },
    Page {
        path: "pki export",
        about: "On the server: writes a client's bundle again (its current certificate), e.g. when \
the first copy was lost.

Reads DIR/ca.pem, server.toml and registry.json; writes --out.

Exit status: 0 on success; 1 with one line on stderr.",
        examples: "  hometun pki export --dir /etc/hometun --name home.example --out home.bundle",
    },
    Page {
        path: "pki token",
        about: "On the server: makes a one-time enrollment token for a home and prints it on \
stdout. The token carries the enrollment address and the CA's fingerprint; `hometun enroll` on \
the home uses it once, before it expires.

Reads DIR/ca.pem and server.toml; records the token in DIR/registry.json.

Exit status: 0 on success; 1 with one line on stderr.",
        examples: "  hometun pki token --dir /etc/hometun --name home.example
  hometun pki token --dir /etc/hometun --name home.example --valid-hours 2 --server 192.0.2.1:8443
  hometun pki token --dir /etc/hometun --name home.example --valid-minutes 30",
    },
    Page {
        path: "pki serve",
        about: "On the server: runs the enrollment listener (TLS over TCP) on its own, for \
`hometun enroll`; `hometun server` runs the same listener when server.toml has [enroll]. Runs \
until SIGTERM/SIGINT.

Reads DIR/ca.pem, ca.key, server.pem, server.key and server.toml; updates DIR/registry.json on \
each enrollment.

Exit status: 0 when stopped; 1 with one line on stderr when it cannot start.",
        examples: "  hometun pki serve --dir /etc/hometun
  hometun pki serve --dir /etc/hometun --listen 192.0.2.1:8443",
    },
    Page {
        path: "pki revoke",
        about: "On the server: revokes a home's certificate and publishes a new CRL; a running \
server notices the new server.crl within 2 s by itself, deletes the home's SAs (DELETE sent, one \
log line) and refuses it from then on; no SIGHUP needed. With a shared registry ([registry] url, \
or --registry URL) every server connected to it does so at once. The home's prefix is freed \
after the grace period.

Updates DIR/registry.json; writes the CRL to server.crl (default DIR/crl.pem).

Exit status: 0 on success; 1 with one line on stderr.",
        examples: "  hometun pki revoke --dir /etc/hometun --name home.example
  hometun pki revoke --dir /etc/hometun --name home.example --key-compromise
  hometun pki revoke --name home.example && sleep 2 && hometun status",
    },
    Page {
        path: "pki server-cert",
        about: "On the CA's machine: makes the key and certificate of another server of this CA \
(serverAuth, like the one `pki init` made), for several servers sharing one PostgreSQL registry \
([registry] url). The new server runs with these, ca.pem, a CRL and the registry; it needs no CA \
key. A name a home holds is refused.

Reads DIR/ca.pem, ca.key and the registry; writes OUT/server.key (0600, never overwritten), \
OUT/server.pem and OUT/ca.pem.

Exit status: 0 on success; 1 with one line on stderr.",
        examples: "  hometun pki server-cert --dir /etc/hometun --name vps2.example --ipv4 198.51.100.2 --out vps2
  hometun pki server-cert --dir /etc/hometun --registry postgresql://hometun@localhost/hometun?host=/run/postgresql --name vps2.example --ipv4 198.51.100.2 --out vps2",
    },
    Page {
        path: "pki crl",
        about: "On the server: publishes a fresh CRL (a CRL expires; run this at least yearly, e.g. \
from cron), then SIGHUP the server.

Reads DIR/ca.pem, ca.key and server.toml; updates DIR/registry.json (the CRL number); writes the \
CRL to server.crl (default DIR/crl.pem).

Exit status: 0 on success; 1 with one line on stderr.",
        examples: "  hometun pki crl --dir /etc/hometun && systemctl reload hometun-server",
    },
    Page {
        path: "pki list",
        about: "On the server: lists the homes with their prefixes, expiry and revocations, as a \
table or JSON: one row per name (its latest certificate), or every certificate ever issued with \
--all. Reads DIR/registry.json; writes nothing.

Exit status: 0 on success; 1 with one line on stderr.",
        examples: "  hometun pki list --dir /etc/hometun
  hometun pki list --dir /etc/hometun --json",
    },
    Page {
        path: "pki tokens",
        about: "On the server: lists the enrollment tokens that can still be used (name, prefix, \
expiry), as a table or JSON. With --revoke NAME, makes every pending token of that home unusable \
at once (a token sent to the wrong person, or a home that will not enroll after all).

Reads DIR/registry.json; --revoke updates it.

Exit status: 0 on success; 1 with one line on stderr.",
        examples: "  hometun pki tokens --dir /etc/hometun
  hometun pki tokens --dir /etc/hometun --json
  hometun pki tokens --dir /etc/hometun --revoke home.example",
    },
    Page {
        path: "enroll",
        about: "On the home: enrolls online with a one-time token from `hometun pki token`. Makes \
a new key and a CSR, connects over TLS to the server's enrollment listener (the CA pinned by \
the fingerprint in the token), sends the CSR with the token and writes what comes back. The key \
never leaves the directory, and replaces an existing one only once its certificate has arrived \
(a failed attempt changes nothing).

Writes DIR/client.key (mode 0600), client.pem, ca.pem and client.toml (an existing one keeps \
its settings and its failover servers; the bundle's name, prefix, files and server replace \
theirs).

Exit status: 0 on success; 1 with one line on stderr (token used or expired, wrong CA, ...).",
        examples: "  TOKEN=$(ssh vps.example hometun pki token --dir /etc/hometun --name home.example)
  hometun enroll --dir /etc/hometun --token \"$TOKEN\"
  hometun enroll --dir /etc/hometun --server 192.0.2.1:8443 --token \"$TOKEN\"",
    },
    Page {
        path: "renew",
        about: "On the home: renews the certificate before it expires, for the same name and \
prefix. Due once two thirds of its validity have passed and at the latest 7 days before it \
expires (client.toml [renew] after_percent, before_days); not due, it says when and does \
nothing, unless --force. Connects over TLS to the enrollment listener (renew.server, default \
client.server port 8443) with the current certificate as TLS client certificate (its key signs \
the handshake), sends a CSR for a new key (renew.new_key, or the current key with --keep-key) and \
checks what comes back: the same CA, name and prefix, the requested key. The current \
certificate and key stay in use until then; a failed renewal changes nothing and a retry uses \
the same new key. A running client takes the new files on SIGHUP.

Reads client.toml and the files it names; writes client.key.next (mode 0600) while it renews, \
then client.pem and client.key.

Exit status: 0 when renewed or not due; 1 with one line on stderr (revoked, expired, server \
unreachable, ...).",
        examples: "  hometun renew --config /etc/hometun/client.toml && systemctl reload hometun-client
  hometun renew --config /etc/hometun/client.toml --force --keep-key",
    },
    Page {
        path: "demo",
        about: "Shows the whole story on this machine, as root, in network namespaces (LAN host, \
home, isp, vps, Internet host) with documentation addresses: `pki init`, online enrollment of a \
home, the tunnel coming up, the LAN host's address from the home's prefix by SLAAC, pings of the \
home's static IPv6 address from the VPS and of the LAN host's from the Internet host, a change \
of the home's IPv4 address with the outage measured, the status table, and the final Router \
Advertisement deprecating the LAN host's address when the client stops. Removes every namespace and process it made \
when it ends, also on Ctrl-C.

Writes a temporary directory (CA, configs, logs), removed at the end unless --keep-files.

Exit status: 0 when every step worked; 1 with the failing step on stderr.",
        examples: "  sudo hometun demo
  sudo hometun demo --keep-files --ping-interval-ms 10",
    },
    Page {
        path: "completions",
        about: "Prints a completion script for the shell to stdout, for every command and flag.

Exit status: 0.",
        examples: "  hometun completions bash > /etc/bash_completion.d/hometun
  hometun completions zsh > /usr/local/share/zsh/site-functions/_hometun
  hometun completions fish > ~/.config/fish/completions/hometun.fish",
    },
    Page {
        path: "manpages",
        about: "Writes the manual pages, section 1, one per command (hometun.1, hometun-server.1, \
hometun-pki-token.1, ...), from the same text as --help: what each command does, what it reads \
and writes, its exit status and examples. Creates DIR if needed; prints how many it wrote.

Exit status: 0 on success; 1 with one line on stderr when DIR cannot be written.",
        examples: "  hometun manpages --dir /usr/local/share/man/man1 && mandb -q
  man hometun-pki-token",
    },
];

/// `command` (the `hometun` command as derived) with the manual's text on each page.
///
/// # Panics
/// When a page names a command that does not exist (a test walks every page).
pub fn with_manual(command: Command) -> Command {
    PAGES.iter().fold(command, |command, page| {
        let path: Vec<&str> = page.path.split_whitespace().collect();
        apply(command, &path, page)
    })
}

fn apply(command: Command, path: &[&str], page: &Page) -> Command {
    match path.split_first() {
        None => command
            .long_about(page.about)
            .after_long_help(format!("EXAMPLES:\n{}", page.examples)),
        Some((first, rest)) => command.mut_subcommand(*first, |sub| apply(sub, rest, page)),
    }
}
