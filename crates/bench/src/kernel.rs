//! What the kernel spends on sockets, read before and after the idle
//! scenario opens its connections: TCP buffer memory (`/proc/net/sockstat`,
//! in pages) and the slab caches a TCP socket's objects live in
//! (`/proc/slabinfo`, readable by root only; `None` otherwise). Both are
//! machine-wide: client and server ends on one box are both counted.

/// Slab caches that hold a TCP socket's parts: the socket, its inode and
/// file, its dentry, its epoll entries.
const SOCKET_CACHES: [&str; 7] = [
    "TCP",
    "TCPv6",
    "sock_inode_cache",
    "filp",
    "dentry",
    "eventpoll_epi",
    "eventpoll_pwq",
];

/// The kernel's socket memory at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelMemory {
    /// TCP buffer memory, bytes.
    pub tcp_buffers: u64,
    /// Bytes in the socket slab caches; `None` when not readable.
    pub socket_slabs: Option<u64>,
}

impl KernelMemory {
    /// Reads both now (zero TCP memory if `/proc/net/sockstat` is missing).
    pub fn read() -> Self {
        let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
        let slabinfo = std::fs::read_to_string("/proc/slabinfo").ok();
        Self {
            tcp_buffers: tcp_mem_pages(&sockstat).unwrap_or(0) * page_size(),
            socket_slabs: slabinfo.as_deref().map(socket_slab_bytes),
        }
    }
}

/// The `mem` field of sockstat's `TCP:` line (pages).
fn tcp_mem_pages(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find(|line| line.starts_with("TCP:"))?;
    let mut fields = line.split_whitespace();
    fields.find(|field| *field == "mem")?;
    fields.next()?.parse().ok()
}

/// Bytes of all objects (`num_objs` x `objsize`) in [`SOCKET_CACHES`].
fn socket_slab_bytes(slabinfo: &str) -> u64 {
    slabinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (name, objects, size) = (fields.first()?, fields.get(2)?, fields.get(3)?);
            SOCKET_CACHES.contains(name).then_some(())?;
            Some(objects.parse::<u64>().ok()? * size.parse::<u64>().ok()?)
        })
        .sum()
}

/// The page size sockstat counts in: 4 KiB on the x86-64 and the usual
/// arm64 kernels this runs on.
fn page_size() -> u64 {
    4096
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tcp_memory_and_socket_slabs() {
        let sockstat =
            "sockets: used 47\nTCP: inuse 2 orphan 0 tw 24 alloc 2 mem 161\nUDP: inuse 0 mem 0\n";
        assert_eq!(tcp_mem_pages(sockstat), Some(161));
        let slabinfo = "slabinfo - version: 2.1\n\
            # name <active_objs> <num_objs> <objsize> ...\n\
            TCP 10 12 2432 13 8 : tunables 0 0 0\n\
            filp 100 128 256 16 1 : tunables 0 0 0\n\
            kmalloc-64 5000 5000 64 64 1 : tunables 0 0 0\n";
        assert_eq!(socket_slab_bytes(slabinfo), 12 * 2432 + 128 * 256);
    }
}
