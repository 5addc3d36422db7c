//! Facts about the host that fastpath checks before touching anything, so a missing
//! privilege or interface is reported as cause and fix rather than as a failed syscall.

use std::{ffi::CString, path::Path};

use anyhow::bail;

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// The effective capability set of this process (from /proc/self/status).
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// Fails unless the process may load XDP programs and open AF_XDP sockets.
pub fn check_privileges() -> anyhow::Result<()> {
    let caps = effective_caps().unwrap_or(0);
    let has = |cap: u32| caps & (1 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(CAP_NET_RAW) {
        missing.push("CAP_NET_RAW");
    }
    if !missing.is_empty() {
        bail!(
            "needs root to load XDP and open AF_XDP sockets (missing {}); run it with sudo",
            missing.join(", ")
        );
    }
    Ok(())
}

/// The index of `iface`, or an error that says how to find the right name.
pub fn ifindex(iface: &str) -> anyhow::Result<u32> {
    let name = CString::new(iface)
        .map_err(|_| anyhow::anyhow!("interface name {iface:?} contains a NUL byte"))?;
    // Safety: `name` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        bail!(
            "interface {iface:?} does not exist in this network namespace; list interfaces with `ip link`, and for one inside a namespace run `ip netns exec NS fastpath ...`"
        );
    }
    Ok(index)
}

/// The MTU of `iface` (1500 if it cannot be read).
pub fn mtu(iface: &str) -> u32 {
    std::fs::read_to_string(Path::new("/sys/class/net").join(iface).join("mtu"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1500)
}

/// The number of active RX queues of `iface` (its rx-N entries in sysfs).
pub fn rx_queue_count(iface: &str) -> u32 {
    let dir = Path::new("/sys/class/net").join(iface).join("queues");
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
        .max(1)
}

/// The MAC address of `iface`.
pub fn mac_address(iface: &str) -> anyhow::Result<[u8; 6]> {
    let path = Path::new("/sys/class/net").join(iface).join("address");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() != 6 {
        bail!("{iface} has no Ethernet address ({:?})", text.trim());
    }
    for (byte, part) in mac.iter_mut().zip(parts) {
        *byte = u8::from_str_radix(part, 16)?;
    }
    Ok(mac)
}

/// The first IPv4 address of `iface` (SIOCGIFADDR), if it has one.
pub fn ipv4_address(iface: &str) -> Option<std::net::Ipv4Addr> {
    // Safety: a plain socket(2) call; closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // Safety: ifreq is plain data; zero is a valid start.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(iface.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    // Safety: SIOCGIFADDR fills the ifreq we pass.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFADDR, &mut req) };
    // Safety: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return None;
    }
    // Safety: for AF_INET the kernel stored a sockaddr_in in the union.
    let sin: libc::sockaddr_in =
        unsafe { std::ptr::read_unaligned(&req.ifr_ifru as *const _ as *const libc::sockaddr_in) };
    Some(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
}
