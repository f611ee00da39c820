#!/usr/bin/python3
"""Where a forwarder's CPU time goes, from `perf script` output of a `perf record -g -e cpu-clock`
taken during a transfer (bench/profile.sh makes one).

Usage: perf script -F comm,pid,tid,period,ip,sym -i FILE | bench/perf_breakdown.py PACKETS [PID=NAME ...]

Every sample is put in one row by what it was doing: the system call it is in (for kernel
samples) and the kind of work of its innermost function (copying, checksums, locks, memory
allocation, scheduling, the TUN driver, the network stack), or, in user space, crypto (ring's
AES-GCM), tun-rs's segmentation/GRO, copies, and the rest. Prints, per process, the share of
samples and the nanoseconds per packet (sample period summed, divided by PACKETS).
"""

import collections
import re
import sys

SYSCALLS = [
    ("__x64_sys_sendmmsg", "sendmmsg"),
    ("__x64_sys_sendmsg", "sendmsg"),
    ("__x64_sys_sendto", "sendto"),
    ("__x64_sys_recvmmsg", "recvmmsg"),
    ("__x64_sys_recvmsg", "recvmsg"),
    ("__x64_sys_recvfrom", "recvfrom"),
    ("tun_chr_write_iter", "TUN write"),
    ("tun_chr_read_iter", "TUN read"),
    ("ksys_write", "write"),
    ("ksys_read", "read"),
    ("__x64_sys_poll", "poll"),
    ("__x64_sys_ppoll", "poll"),
    ("__x64_sys_epoll_wait", "poll"),
    ("__x64_sys_futex", "futex"),
    ("__x64_sys_io_uring_enter", "io_uring"),
    ("__x64_sys_nanosleep", "sleep"),
    ("__x64_sys_clock_nanosleep", "sleep"),
]

KERNEL_KINDS = [
    (re.compile(r"copy|memcpy|memmove|memset|rep_movs|csum_partial_copy|csum_and_copy"), "copy"),
    (re.compile(r"csum|checksum"), "checksum"),
    (re.compile(r"spin_lock|spin_unlock|queued_spin|_raw_|mutex|rwsem"), "lock/irq"),
    (re.compile(r"slab|kmalloc|kmem_cache|kfree|page_frag|alloc_pages|free_pages|__alloc|skb_release|skb_free|consume_skb|kfree_skb|build_skb|napi_alloc|skb_clone|__copy_skb"), "alloc/free"),
    (re.compile(r"schedule|switch|wake|enqueue|dequeue|pick_next|update_curr|select_task|ttwu|idle"), "sched"),
    (re.compile(r"^tun_|tun_get_user|tun_put_user|virtio_net"), "TUN driver"),
    (re.compile(r"syscall|entry_|do_syscall|__x64|fdget|fput|sockfd|import_iovec|copy_msghdr|__sys_|___sys_|sys_"), "syscall entry"),
]

USER_KINDS = [
    (re.compile(r"ring_core|ring::aead|aes_gcm|gcm_|ghash|aes_hw|aesni|RingAead|RustCryptoAead|aes_gcm::"), "crypto (AES-GCM)"),
    (re.compile(r"tun_rs::.*(offload|gro|gso|checksum)|GROTable|tcp_gro|udp_gro|gso_split|checksum"), "tun-rs GSO/GRO"),
    (re.compile(r"memmove|memcpy|memset|copy_from_slice"), "copy"),
    (re.compile(r"malloc|free|realloc|cfree"), "alloc/free"),
]


def kind_of(symbol, kinds, default):
    for pattern, name in kinds:
        if pattern.search(symbol):
            return name
    return default


def main():
    packets = float(sys.argv[1])
    names = dict(arg.split("=", 1) for arg in sys.argv[2:])
    rows = collections.defaultdict(lambda: collections.Counter())
    totals = collections.Counter()
    threads = collections.defaultdict(collections.Counter)
    header = re.compile(r"^(\S.*?)\s+(\d+)/(\d+)\s+(\d+)\s*:?\s*$")
    sample = None

    def finish(s):
        if not s:
            return
        comm, pid, period, frames = s
        who = names.get(pid, pid)
        if not frames:
            row = "unknown"
        elif frames[0].startswith("k:"):
            call = next((label for sym, label in SYSCALLS if any(f == "k:" + sym for f in frames)), None)
            if call is None:
                call = "softirq/irq" if any("irq" in f for f in frames) else "kernel other"
            row = f"kernel {call}: {kind_of(frames[0][2:], KERNEL_KINDS, 'network stack/other')}"
        else:
            row = "user " + kind_of(frames[0][2:], USER_KINDS, "forwarder/libc other")
        rows[who][row] += period
        totals[who] += period
        threads[who][comm] += period

    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line.strip():
            finish(sample)
            sample = None
            continue
        m = header.match(line)
        if m and not line.startswith((" ", "\t")):
            finish(sample)
            sample = (m.group(1).strip(), m.group(2), int(m.group(4)), [])
            continue
        if sample is not None:
            parts = line.strip().split(None, 1)
            if len(parts) < 2:
                continue
            address, rest = parts
            symbol = rest.split(" (")[0].split("+0x")[0]
            kernel = address.startswith("ffffffff")
            sample[3].append(("k:" if kernel else "u:") + symbol)
    finish(sample)

    for who in sorted(rows, key=lambda w: -totals[w]):
        total = totals[who]
        comms = ", ".join(f"{c} {100 * t / total:.0f}%" for c, t in threads[who].most_common())
        print(f"{who}: {total / 1e9:.2f} CPU s sampled, {total / packets:.0f} ns per packet ({comms})")
        print(f"  {'what':58} {'share':>6} {'ns/packet':>10}")
        for row, t in rows[who].most_common():
            if t / total < 0.005:
                continue
            print(f"  {row:58} {100 * t / total:5.1f}% {t / packets:10.0f}")
        groups = collections.Counter()
        for row, t in rows[who].items():
            if row.startswith("user crypto"):
                groups["crypto (AES-GCM, user)"] += t
            elif row.startswith("user tun-rs"):
                groups["TUN offload work (tun-rs GSO/GRO, user)"] += t
            elif row.startswith("user copy") or row.endswith(": copy"):
                groups["copies (user and kernel)"] += t
            elif row.endswith("lock/irq"):
                groups["locks, irq enable (kernel)"] += t
            elif row.startswith("kernel TUN"):
                groups["TUN system calls (rest)"] += t
            elif row.startswith("kernel send") or row.startswith("kernel recv"):
                groups["socket system calls (rest)"] += t
            elif row.startswith("kernel"):
                groups["kernel other (poll, futex, irq)"] += t
            else:
                groups["user other (forwarder, libc)"] += t
        print("  summary:")
        for group, t in groups.most_common():
            print(f"    {group:56} {100 * t / total:5.1f}% {t / packets:10.0f}")
        print()


if __name__ == "__main__":
    main()
