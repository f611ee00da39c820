//! The TUN device and what the forwarder puts on it (its addresses, the link up, the routes into
//! it), and bringing it back when someone deletes it under the running forwarder (`ip link del`,
//! a network manager). The kernel then detaches our descriptor: every read fails with EBADFD and
//! poll reports POLLERR at once, for ever. The device is made again under the same descriptor
//! number (dup3, as [`crate::sockets::replace_socket`] does for the outer sockets), so every data
//! thread keeps its `SyncDevice` and sees the new device from its next call.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};

use hometun_control::{PlatformError, PlatformOp};
use ipnet::Ipv6Net;
use tun_rs::{DeviceBuilder, SyncDevice};

use crate::{netlink, takeover};

/// How the device is made: everything needed to make it again.
#[derive(Debug, Clone)]
pub struct TunSpec {
    /// The interface name.
    pub name: String,
    /// Its MTU.
    pub mtu: u16,
    /// TSO/GRO offload with the virtio-net header.
    pub offload: bool,
    /// The IPv6 addresses put on it.
    pub addresses: Vec<Ipv6Net>,
    /// The metric of the routes into it.
    pub metric: u32,
    /// The routing protocol number of those routes (`rtm_protocol`).
    pub protocol: u8,
}

impl TunSpec {
    /// How its routes are made.
    fn route(&self) -> netlink::RouteAttributes {
        netlink::RouteAttributes {
            metric: self.metric,
            protocol: self.protocol,
        }
    }
}

/// What changes while the device lives: its index (a new device gets a new one) and the routes
/// into it, which the kernel deletes with the device.
#[derive(Debug)]
struct State {
    ifindex: u32,
    routes: BTreeSet<Ipv6Net>,
}

/// The forwarder's TUN device: its description and its routes. The `SyncDevice` itself lives
/// beside it in the data threads' shared state.
#[derive(Debug)]
pub struct TunDevice {
    spec: TunSpec,
    state: Mutex<State>,
}

/// What [`TunDevice::recreate`] put back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// Addresses put on the new device.
    pub addresses: usize,
    /// Routes into it.
    pub routes: usize,
}

impl TunDevice {
    /// Makes the device (waiting briefly for a forwarder that still holds it), puts the
    /// addresses on it and brings it up.
    pub fn create(spec: TunSpec) -> Result<(Self, SyncDevice), PlatformError> {
        let (tun, ifindex) = build(&spec)?;
        let device = TunDevice {
            spec,
            state: Mutex::new(State {
                ifindex,
                routes: BTreeSet::new(),
            }),
        };
        Ok((device, tun))
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Routes `net` into the device, and remembers it to put it back with a new device.
    pub fn add_route(&self, net: Ipv6Net) -> io::Result<()> {
        let mut state = self.lock();
        netlink::add_route(net, state.ifindex, self.spec.route())?;
        state.routes.insert(net);
        Ok(())
    }

    /// Removes the route for `net`. A route that is not there (the device went, and the kernel
    /// took its routes along) is what was asked for: no error.
    pub fn remove_route(&self, net: Ipv6Net) -> io::Result<()> {
        let mut state = self.lock();
        state.routes.remove(&net);
        match netlink::remove_route(net, state.ifindex, self.spec.route()) {
            Err(error) if route_already_gone(&error) => Ok(()),
            other => other,
        }
    }

    /// Makes the device again after it was deleted, puts its addresses and routes back, and
    /// swaps it in under `tun`'s descriptor number. Route changes wait meanwhile.
    pub fn recreate(&self, tun: &SyncDevice) -> Result<Restored, PlatformError> {
        let mut state = self.lock();
        let (fresh, ifindex) = build(&self.spec)?;
        // SAFETY: both descriptors are open and ours; dup3 replaces the detached one atomically
        // (closing it), and the new device stays open through it when `fresh` is dropped.
        if unsafe { libc::dup3(fresh.as_raw_fd(), tun.as_raw_fd(), libc::O_CLOEXEC) } < 0 {
            let error = io::Error::last_os_error();
            return Err(PlatformError::io(
                PlatformOp::CreateTun(self.spec.name.clone()),
                &error,
            ));
        }
        drop(fresh);
        state.ifindex = ifindex;
        for net in &state.routes {
            netlink::add_route(*net, ifindex, self.spec.route())
                .map_err(|e| PlatformError::io(PlatformOp::AddRoute(*net), &e))?;
        }
        Ok(Restored {
            addresses: self.spec.addresses.len(),
            routes: state.routes.len(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Creates the device, puts the addresses on it and brings it up; returns it and its index.
fn build(spec: &TunSpec) -> Result<(SyncDevice, u32), PlatformError> {
    let name = &spec.name;
    let os_error = |operation: PlatformOp| move |e: io::Error| PlatformError::io(operation, &e);
    // A forwarder killed a moment ago may still hold the device: wait for it, briefly.
    let tun = takeover::when_free(
        PlatformOp::CreateTun(name.clone()),
        libc::EBUSY,
        || {
            DeviceBuilder::new()
                .name(name)
                .mtu(spec.mtu)
                .offload(spec.offload)
                .build_sync()
        },
        || takeover::tun_holders(name),
    )?;
    let ifindex =
        netlink::interface_index(name).map_err(os_error(PlatformOp::TunIndex(name.clone())))?;
    refuse_router_messages(name);
    for address in &spec.addresses {
        netlink::add_address(*address, ifindex).map_err(os_error(PlatformOp::AddAddress {
            address: *address,
            device: name.clone(),
        }))?;
    }
    tun.enabled(true)
        .map_err(os_error(PlatformOp::BringUp(name.clone())))?;
    Ok((tun, ifindex))
}

/// Tells the kernel to take no Router Advertisement or Redirect from the tunnel: its far end is
/// never our router, and a host with forwarding on may have inherited `accept_ra` 2 from
/// `default`. The receive path drops such messages from the peer anyway
/// (`sad::link_scoped_permitted`); this is the second lock, so a failure is only a warning.
fn refuse_router_messages(name: &str) {
    for setting in ["accept_ra", "accept_redirects"] {
        let path = format!("/proc/sys/net/ipv6/conf/{name}/{setting}");
        if let Err(error) = std::fs::write(&path, "0") {
            tracing::warn!("{path}: cannot set it to 0: {error}");
        }
    }
}

/// Whether a read or write error on the TUN descriptor means the device is gone: the kernel
/// answers EBADFD on a descriptor whose device was deleted (ENODEV and ENXIO where the device
/// is half torn down).
pub fn is_gone(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EBADFD | libc::ENODEV | libc::ENXIO)
    )
}

/// Whether removing a route failed only because it is not there any more (ESRCH: no such
/// route; ENODEV: no such device).
fn route_already_gone(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ESRCH | libc::ENODEV))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_device_is_told_from_other_errors() {
        for errno in [libc::EBADFD, libc::ENODEV, libc::ENXIO] {
            assert!(is_gone(&io::Error::from_raw_os_error(errno)), "{errno}");
        }
        for errno in [libc::EAGAIN, libc::EINTR, libc::EINVAL, libc::EMSGSIZE] {
            assert!(!is_gone(&io::Error::from_raw_os_error(errno)), "{errno}");
        }
        assert!(!is_gone(&io::Error::other("not an errno")));
    }

    #[test]
    fn a_route_that_went_with_its_device_is_not_an_error_to_remove() {
        assert!(route_already_gone(&io::Error::from_raw_os_error(
            libc::ESRCH
        )));
        assert!(route_already_gone(&io::Error::from_raw_os_error(
            libc::ENODEV
        )));
        assert!(!route_already_gone(&io::Error::from_raw_os_error(
            libc::EPERM
        )));
    }
}
