//! The machine's host name, for names that must stay the same across a
//! process's restarts (transactional ids, static group membership). Read
//! from the kernel, not from `$HOSTNAME`, which bash and systemd do not
//! export to child processes.

/// The kernel's host name, if it can be read and is not empty.
pub fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_kernel_names_this_machine() {
        let name = super::hostname().expect("a Linux host has a name");
        assert!(!name.contains('\n'));
        assert_eq!(Some(name), super::hostname(), "stable across calls");
    }
}
