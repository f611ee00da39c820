#!/usr/bin/python3
"""Seeds for the fuzz targets that have no generator of their own.

- From the strongSwan 5.9.8 trace in testdata/ (IKE_SA_INIT, IKE_AUTH, MOBIKE, rekeys, DELETEs,
  ESP): the IKE messages (ike_message), their decrypted inner payloads (ike_sk_chain, with
  Sk_ei/Sk_er from the charon logs), the IKE_SA_INIT request as a datagram record (ike_responder),
  the IKE_SA_INIT answer as an unauthenticated answer to the home (ike_initiator), the ESP packets
  and their decrypted inner packets (esp_decap, forwarder_receive).
- Built with Scapy (Debian's /usr/bin/python3 has it): override NAs, probes and pings as inner
  packets (forwarder_receive, override_na, esp_decap), and ESP packets from scapy.layers.ipsec.
- Scenarios for the deep IKE targets in their input formats (fuzz/src/established.rs,
  fuzz/src/initiator.rs, fuzz/src/receive.rs): rekeys both ways, IKE SA rekeys, liveness,
  MOBIKE, re-authentication, refused installs, replays, hostile edits of selectors, proposals,
  notifies and headers.
- The example configurations (config_toml) and the enrollment frames (pki_enroll_protocol).
- Neighbor Discovery as the LAN and the provider's link send it (ndp_message: Router and
  Neighbor Solicitations and Advertisements, with options, and whole packets as the NDP proxy's
  packet socket reads them) and TCP packets for MSS clamping (tcp_mss_clamp: SYNs with and
  without an MSS option, among other options, a SYN-ACK, a plain segment, IPv4).

Usage: /usr/bin/python3 fuzz/seeds/make_seeds.py OUTDIR   (writes OUTDIR/<target>/<name>)
Then minimize into fuzz/corpus with `cargo fuzz cmin` (fuzz/README.md).
"""

import os
import re
import struct
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from scapy.all import (IP, TCP, IPv6, UDP, ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6ND_NA,
                       ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6ND_RS, ICMPv6NDOptMTU, ICMPv6NDOptPrefixInfo,
                       ICMPv6NDOptRDNSS, ICMPv6NDOptSrcLLAddr, ICMPv6NDOptDstLLAddr, Raw, rdpcap)
from scapy.layers.ipsec import SecurityAssociation, ESP

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRACE = os.path.join(ROOT, "testdata", "strongswan-5.9.8-x25519-aesgcm128-ed25519")
OUT = sys.argv[1] if len(sys.argv) > 1 else "seeds"


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes(data))


def log_key(log, label, nth=0):
    """The nth hex dump after `label =>` in a charon log."""
    text = open(os.path.join(TRACE, log)).read()
    found = [m.end() for m in re.finditer(re.escape(label) + r" => \d+ bytes", text)]
    start = found[nth]
    out = b""
    for line in text[start:].splitlines()[1:]:
        m = re.match(r"\d+\[\w+\]\s+\d+: ((?:[0-9A-F]{2} )+)", line)
        if not m:
            break
        out += bytes.fromhex(m.group(1).replace(" ", ""))
    return out


# ------------------------------------------------------------------------------------------
# The strongSwan trace

packets = rdpcap(os.path.join(TRACE, "trace.pcap"))
ike, esp = [], []
for p in packets:
    u = p[UDP]
    payload = bytes(u.payload)
    if u.dport == 500:
        ike.append((p[IP].src, u.dport, payload))
    elif payload[:4] == b"\0\0\0\0":
        ike.append((p[IP].src, u.dport, payload[4:]))
    elif len(payload) > 1:
        esp.append((p[IP].src, payload))

sk_ei = log_key("initiator-charon.log", "Sk_ei secret")
sk_er = log_key("initiator-charon.log", "Sk_er secret")
for i, (src, port, m) in enumerate(ike):
    write("ike_message", f"strongswan-{i}", m)
    # Decrypt SK (type 46) messages: IV 8, ICV 16, AAD = header through the SK generic header.
    if m[16] == 46:
        initiator = m[19] & 0x08
        key = sk_ei if initiator else sk_er
        body_len = struct.unpack(">H", m[30:32])[0]
        iv = m[32:40]
        ct = m[40:28 + body_len]
        plain = AESGCM(key[:16]).decrypt(key[16:] + iv, ct, m[:32])
        first = m[28]
        write("ike_sk_chain", f"strongswan-{i}", bytes([first]) + plain)

# ike_responder records: tag (datagram, source 0, port 500), length, bytes; then time.
init_request = ike[0][2]
write("ike_responder", "strongswan-sa-init",
      b"\x01" + struct.pack(">H", len(init_request)) + init_request + b"\x00\x0a")

# ike_initiator: strongSwan's IKE_SA_INIT answer behind the home's own SPI (event 1), after the
# honest start; and the same after a run.
answer = ike[1][2]
seed = struct.pack(">Q", 7)
write("ike_initiator", "strongswan-answer",
      seed + b"\x00" + b"\x01" + struct.pack(">H", len(answer) - 8) + answer[8:] + b"\x01")

# ESP from the trace: wire packets (mode 0) and their inner packets (mode 4).
child_i = log_key("initiator-charon.log", "encryption initiator key")
for i, (src, e) in enumerate(esp[:6]):
    write("esp_decap", f"strongswan-wire-{i}", b"\x00" + e)
    if src == "192.0.2.2":
        seq = e[4:8]
        iv = e[8:16]
        try:
            plain = AESGCM(child_i[:16]).decrypt(child_i[16:] + iv, e[16:], e[:8])
        except Exception:
            continue
        pad_len = plain[-2]
        inner = plain[:-2 - pad_len]
        write("esp_decap", f"strongswan-inner-{i}", b"\x04" + inner)
        write("forwarder_receive", f"strongswan-inner-{i}",
              b"\x00" + b"\x00\x00\x00\x01" + b"\x09" + bytes([len(inner)]) + inner + b"\x29\x00")

# ------------------------------------------------------------------------------------------
# Scapy: override NAs, probes, answers, ESP

def na(target="2001:db8:1::1", lladdr=bytes([198, 51, 100, 7]), hlim=255, flags=(0, 0, 1)):
    r, s, o = flags
    pkt = IPv6(src="fe80::2", dst="ff02::1", hlim=hlim) / ICMPv6ND_NA(R=r, S=s, O=o, tgt=target) / Raw(
        b"\x02\x01\x00\x00" + lladdr)
    return bytes(pkt)


def probe(nonce, reply=False, src="fe80::1", dst="ff02::1"):
    data = b"htprobe1" + nonce
    layer = ICMPv6EchoReply if reply else ICMPv6EchoRequest
    return bytes(IPv6(src=src, dst=dst, hlim=255) / layer(id=0x6874, seq=0, data=data))


ping = bytes(IPv6(src="2001:db8:1::5", dst="2001:db8:100::1") / ICMPv6EchoRequest(data=b"ping"))
scapy_inner = {
    "na": na(),
    "na-foreign-target": na(target="2001:db8:7::1"),
    "na-hop-limit": na(hlim=64),
    "na-solicited": na(flags=(0, 1, 1)),
    "probe": probe(b"\x11" * 16),
    "answer": probe(b"\x22" * 16, reply=True, src="fe80::2", dst="fe80::1"),
    "ping": ping,
}
for name, inner in scapy_inner.items():
    write("esp_decap", f"scapy-{name}", b"\x04" + inner)
    # forwarder_receive: config 0, an authentic packet of pair 0 (next seq, raw trailer no),
    # inner = these bytes with next header 41, from the peer's endpoint.
    write("forwarder_receive", f"scapy-{name}",
          b"\x00" + b"\x00\x00\x00\x01" + b"\x09" + bytes([len(inner)]) + inner + b"\x29\x00")
    # The same from a new address, then time.
    write("forwarder_receive", f"scapy-{name}-moved",
          b"\x00" + b"\x00\x00\x00\x01" + b"\x09" + bytes([len(inner)]) + inner + b"\x29\x04"
          + b"\x07\x10")
    if name.startswith("na"):
        # override_na: an NA record (op 0, SA 0, seq next, raw bytes kind 0) from a new address.
        write("override_na", f"scapy-{name}",
              b"\x00\x00\x00\x01" + b"\x00" + bytes([len(inner)]) + inner + b"\x02\x00"
              + b"\x04\x30" + b"\x03\x00\x00\x01")

# ESP built by Scapy's own AES-GCM (not our keys: parse and drop paths).
sa = SecurityAssociation(ESP, spi=0x1000, crypt_algo="AES-GCM", crypt_key=b"\x10" * 20)
for i, inner in enumerate([ping, na()]):
    e = bytes(sa.encrypt(IPv6(inner), seq_num=i + 1)[ESP])
    write("esp_decap", f"scapy-esp-{i}", b"\x00" + e)
    write("forwarder_receive", f"scapy-esp-{i}", b"\x00\x05" + bytes([len(e)]) + e + b"\x00\x00")

# ------------------------------------------------------------------------------------------
# The deep IKE targets: established (seed, config, split, events, script)

def est(config, events, script=b"", seed=9):
    events = bytes(events)
    return struct.pack(">QBH", seed, config, len(events)) + events + bytes(script)


HOME, SERVER = 0, 1
SOFT, IKE_REKEY, RUN_S, RUN_100MS, QUIET = 8, 10, 7, 6, 5
scenarios = {
    "quiet": (0, [], b""),
    "child-rekey-both": (0x40, [SOFT, HOME, 0, 0, RUN_S, 15, SOFT, SERVER, 0, 0, RUN_S, 15], b""),
    "child-rekey-pfs": (0x02, [SOFT, HOME, 0, 0, RUN_S, 3, SOFT, SERVER, 1, 0, RUN_S, 3], b""),
    "child-rekey-invalid-ke": (0x06, [SOFT, HOME, 0, 0, RUN_S, 5, SOFT, SERVER, 0, 0, RUN_S, 5], b""),
    "esn-no-pfs": (0x04, [SOFT, SERVER, 0, 0, RUN_S, 5, SOFT, HOME, 0, 0, RUN_S, 5], b""),
    "ike-rekey": (0x10, [IKE_REKEY, HOME, RUN_S, 2, IKE_REKEY, SERVER, RUN_S, 2], b""),
    "ike-rekey-time": (0x00, [RUN_S, 255, RUN_S, 255, RUN_S, 255], b""),
    "collision": (0x10, [SOFT, HOME, 0, 0, SOFT, SERVER, 0, 0, 1, 1, RUN_S, 5,
                         IKE_REKEY, HOME, IKE_REKEY, SERVER, 1, 1, RUN_S, 5], b""),
    "liveness-loss": (0x20, [RUN_S, 31, 2, 0, RUN_S, 40, 2, 0, 2, 0, RUN_S, 60], b""),
    "hard-limit": (0x00, [9, SERVER, 0, 2, RUN_S, 3, 9, HOME, 0, 3, RUN_S, 3], b""),
    "refused-install": (0x00, [13, SERVER, SOFT, HOME, 0, 0, RUN_S, 5, 13, HOME, SOFT, SERVER, 0, 0,
                               RUN_S, 5], b""),
    "home-moves": (0x00, [11, 1, RUN_S, 2, 14, RUN_S, 31, 11, 2, 14, RUN_S, 5], b""),
    "nat-rebinding": (0x01, [19, RUN_S, 31, 14, 15, HOME, 15, SERVER, 12, SERVER, 255, RUN_S, 5], b""),
    "traffic": (0x40, [SOFT, HOME, 0, 0, RUN_S, 2, 15, HOME, 15, SERVER, 12, HOME, 3, 12, SERVER, 3,
                       RUN_S, 12], b""),
    "replays": (0x00, [RUN_S, 31, 4, 3, 0, 4, 4, 1, 4, 5, 2, 4, 6, 4, 4, 7, 8, 0, 40, 0x5a,
                       RUN_S, 2], b""),
    "reorder": (0x00, [SOFT, HOME, 0, 0, SOFT, SERVER, 0, 0, 3, 0, 0, 1, 0, 0, 2, 0, 1, 0, 0,
                       QUIET, 50, 1, 0, RUN_S, 5], b""),
    "reauthenticate": (0x00, [16, 0, RUN_S, 3, 16, 0, RUN_S, 3, 16, 0, RUN_S, 3, 16, 1, RUN_S, 3], b""),
    "close-and-restart": (0x00, [18, RUN_S, 2, 16, 1, RUN_S, 3], b""),
    "forged": (0x00, [17, 20] + list(range(20)) + [RUN_S, 1], b""),
}
# Hostile edits (the script: one group per protected message the hostile side sends; the first
# is its IKE_AUTH).
edits = {
    # Its rekey request asks for another home's prefix and ::/0.
    "ts-widened": (0, [SOFT, HOME, 0, 0, RUN_S, 3], [0, 1, 6, 1, 0, 2, 1, 0, 4]),
    # It answers the peer's rekey with those.
    "ts-answer": (0, [SOFT, SERVER, 0, 0, RUN_S, 3], [0, 1, 6, 1, 0, 2, 1, 0, 4]),
    # IKE_AUTH with another home's certificate, then with MOBIKE and without INITIAL_CONTACT.
    "auth-cert": (0, [RUN_S, 3], [1, 4, 1, 2]),
    # An IKE SA rekey whose old SA is never deleted (its DELETEs emptied), again and again.
    "ike-rekey-no-delete": (0, [IKE_REKEY, HOME, RUN_S, 1] * 6, [0] + [0, 1, 10] * 6),
    # CHILD rekeys that never delete the old pair.
    "child-rekey-no-delete": (0, [SOFT, HOME, 0, 0, RUN_S, 1] * 6, [0] + [0, 1, 10] * 6),
    # A liveness request with a message ID moved, then with the response flag flipped.
    "header": (0, [RUN_S, 31, RUN_S, 31], [0, 1, 11, 1, 4, 1, 11, 3]),
    # MOBIKE: the home claims it, moves, its liveness request carries UPDATE_SA_ADDRESSES, and
    # its answer to the return-routability check echoes COOKIE2.
    "mobike": (0x80, [11, 1, RUN_S, 31, RUN_S, 3], [0, 1, 7, 2, 1, 1, 1, 12]),
    "mobike-no-echo": (0x80, [11, 1, RUN_S, 31, RUN_S, 3], [0, 1, 7, 2, 1, 1, 0]),
    # A rekey request whose SA names the IKE protocol with a 4-byte SPI, and a KE of all zeros.
    "proposal-ike-spi": (0, [SOFT, HOME, 0, 0, RUN_S, 2], [0, 2, 9, 0, 1, 2, 0, 2, 0, 9, 1, 0, 1]),
    "ke-zero": (0x02, [SOFT, HOME, 0, 0, RUN_S, 2], [0, 1, 9, 1, 0, 1]),
    # An INFORMATIONAL with a DELETE of the peer's pair and a REKEY_SA notify for it.
    "delete-and-rekey-notify": (0, [RUN_S, 31, SOFT, HOME, 0, 0, RUN_S, 2],
                                [0, 2, 8, 1, 1, 0, 7, 0, 1, 1, 0, 0]),
    # Error notifies in answers to the peer's rekey.
    "answer-errors": (0, [SOFT, SERVER, 0, 0, RUN_S, 3, SOFT, SERVER, 0, 0, RUN_S, 9],
                      [0, 2, 10, 7, 10, 0, 0, 2, 10, 7, 13, 1, 0]),
}
for name, (config, events, script) in list(scenarios.items()) + list(edits.items()):
    write("ike_established_responder", name, est(config, events, script))
    write("ike_established_initiator", name, est(config, events, script))

# ike_initiator: (seed, config, events)
def init(config, events, seed=9):
    return struct.pack(">QB", seed, config) + bytes(events)


write("ike_initiator", "honest", init(0, [5, 20]))
write("ike_initiator", "real-server-edited", init(0, [2, 0, 8, 0, 1, 4, 0, 2, 5, 20]))
write("ike_initiator", "cookie", init(0, [0, 0, 1, 5, 16] + [0x42] * 16 + [1, 1] + [5, 20]))
write("ike_initiator", "invalid-ke", init(0, [0, 0, 1, 6, 0, 1, 1, 5, 20]))
write("ike_initiator", "crafted", init(0, [0, 1] + [0x55] * 8 + [4, 0, 1] + [0x33] * 32 + [2, 7, 3, 0, 0, 1, 0,
                                                                                  5, 20]))
write("ike_initiator", "auth-garbage", init(0, [2, 0, 2, 0, 9, 40] + [0x41] * 40 + [1, 4, 50, 5, 40]))
write("ike_initiator", "nat", init(1, [5, 20, 7, 1, 5, 200]))
write("ike_initiator", "reflect-and-move", init(0, [6, 0, 0, 0, 7, 1, 4, 40, 5, 20]))

# forwarder_receive: (config, events)
write("forwarder_receive", "traffic", bytes([0x00] + [0, 0, 0, 1, 0, 10] + list(b"0123456789") + [0] * 2
                                            + [0, 0, 3, 1, 0, 4] + list(b"abcd") + [0, 0]))
write("forwarder_receive", "rebinding", bytes([0x05] + [0, 0, 0, 1, 0, 4] + list(b"abcd") + [4, 0]
                                              + [0, 0, 0, 1, 5, 1] + [5, 0] + [7, 100]))
write("forwarder_receive", "limits", bytes([0x1c] + [0, 0, 0, 1, 0, 4] + list(b"abcd") + [0, 0]) * 1
      + bytes([0, 1, 0, 1, 0, 4] + list(b"abcd") + [0, 0]) * 8)
write("forwarder_receive", "esn-far", bytes([0x8c] + [0, 0, 6, 1, 8, 0, 0] + [0, 0, 0, 1, 8, 0, 0]))

# config_toml: the example configs as files (mode 0).
for name in ("server.toml", "client.toml"):
    path = os.path.join(ROOT, "examples", "config", name)
    if os.path.exists(path):
        write("config_toml", name.replace(".toml", ""), b"\x00" + open(path, "rb").read())

# pki_enroll_protocol: the enrollment frames of enroll_request's seeds, without its flag byte.
enroll = os.path.join(ROOT, "fuzz", "corpus", "enroll_request")
for name in sorted(os.listdir(enroll)):
    write("pki_enroll_protocol", name, open(os.path.join(enroll, name), "rb").read()[1:])

# ndp_message: the first byte picks the source (0: unspecified, 1: link-local), then the
# ICMPv6 message, or a whole IPv6 packet for the proxy's packet socket.
LL = "fe80::9"
LAN_MAC = "02:00:00:00:00:09"
ndp = {
    "rs": ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=LAN_MAC),
    "rs-bare": ICMPv6ND_RS(),
    "ns": ICMPv6ND_NS(tgt="2001:db8:100:1::1") / ICMPv6NDOptSrcLLAddr(lladdr=LAN_MAC),
    "ns-dad": ICMPv6ND_NS(tgt="2001:db8:100:1::5"),
    "ra": ICMPv6ND_RA(routerlifetime=1800) / ICMPv6NDOptSrcLLAddr(lladdr=LAN_MAC)
          / ICMPv6NDOptMTU(mtu=1400)
          / ICMPv6NDOptPrefixInfo(prefix="2001:db8:100:1::", prefixlen=64, L=1, A=1)
          / ICMPv6NDOptRDNSS(dns=["2001:db8:53::53"], lifetime=600),
    "ra-final": ICMPv6ND_RA(routerlifetime=0)
                / ICMPv6NDOptPrefixInfo(prefix="2001:db8:100:1::", prefixlen=64,
                                        validlifetime=7200, preferredlifetime=0),
    "na": ICMPv6ND_NA(R=1, S=1, O=1, tgt="2001:db8:100:1::1")
          / ICMPv6NDOptDstLLAddr(lladdr=LAN_MAC),
}
for name, message in ndp.items():
    pick = 0 if name in ("ns-dad",) else 1
    write("ndp_message", name, bytes([pick]) + bytes(message))
for name, dst in (("packet-ns", "ff02::1:ff00:1"), ("packet-ns-unicast", "2001:db8:100:1::1")):
    packet = IPv6(src=LL, dst=dst, hlim=255) / ICMPv6ND_NS(tgt="2001:db8:100:1::1") \
        / ICMPv6NDOptSrcLLAddr(lladdr=LAN_MAC)
    write("ndp_message", name, b"\x01" + bytes(packet))

# tcp_mss_clamp: two bytes of limit (1340: MTU 1400), then the packet.
limit = struct.pack("!H", 1340)
tcp = {
    "syn-mss": TCP(sport=40000, dport=443, flags="S", options=[("MSS", 1460)]),
    "syn-many-options": TCP(sport=40000, dport=443, flags="S",
                            options=[("MSS", 8940), ("SAckOK", b""), ("Timestamp", (1, 0)),
                                     ("NOP", None), ("WScale", 7)]),
    "syn-mss-late": TCP(sport=40000, dport=443, flags="S",
                        options=[("NOP", None), ("WScale", 7), ("MSS", 1460)]),
    "syn-small-mss": TCP(sport=40000, dport=443, flags="S", options=[("MSS", 536)]),
    "syn-no-mss": TCP(sport=40000, dport=443, flags="S", options=[("SAckOK", b"")]),
    "synack": TCP(sport=443, dport=40000, flags="SA", options=[("MSS", 1460)]),
    "ack": TCP(sport=40000, dport=443, flags="A") / Raw(b"data"),
}
for name, segment in tcp.items():
    write("tcp_mss_clamp", name,
          limit + bytes(IPv6(src="2001:db8:100:1::9", dst="2001:db8:ff::1") / segment))
write("tcp_mss_clamp", "ipv4-syn",
      limit + bytes(IP(src="192.0.2.9", dst="198.51.100.1") / tcp["syn-mss"]))

print("seeds written to", OUT)
