//! Delivery of decrypted inner packets into the TUN device, in batches. With offload on (the
//! device takes a virtio-net header) the packets of a batch are coalesced first
//! ([`crate::gro`]), so one write and one pass through the kernel's TCP receive path carry many
//! segments.

use std::os::fd::AsRawFd;

use tun_rs::SyncDevice;

use crate::gro::Coalescer;

/// Collects decrypted inner packets and writes them into the TUN device.
pub struct TunWriter {
    coalescer: Coalescer,
    offload: bool,
}

impl TunWriter {
    /// A writer for batches of up to `batch` written packets; `offload`: the device has a
    /// virtio-net header (then packets are coalesced).
    pub fn new(batch: usize, offload: bool) -> Self {
        TunWriter {
            coalescer: Coalescer::new(batch),
            offload,
        }
    }

    /// Queues one inner packet (written at once without offload).
    pub fn push(&mut self, tun: &SyncDevice, packet: &[u8]) {
        if !self.offload {
            if let Err(error) = tun.send(packet) {
                tracing::debug!("TUN write: {error}");
            }
            return;
        }
        if self.coalescer.is_full() {
            self.flush(tun);
        }
        self.coalescer.push(packet);
    }

    /// Writes everything queued.
    pub fn flush(&mut self, tun: &SyncDevice) {
        if self.coalescer.is_empty() {
            return;
        }
        let fd = tun.as_raw_fd();
        for packet in self.coalescer.packets() {
            // SAFETY: the buffer is valid for its length; the device takes the virtio-net
            // header and the packet in one write.
            let written = unsafe { libc::write(fd, packet.as_ptr().cast(), packet.len()) };
            if written < 0 {
                tracing::debug!("TUN write: {}", std::io::Error::last_os_error());
            }
        }
        self.coalescer.clear();
    }
}
