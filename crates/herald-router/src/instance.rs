//! This router instance's stable name: its `transactional.id`, also its
//! static group membership id (`group.instance.id`). It must survive a
//! restart: a restarted router with the same name fences its killed
//! predecessor's open transaction at once (instead of readers waiting up to
//! `transaction.timeout.ms`) and gets its partitions back without waiting
//! for the session timeout.

/// The OS host name (`herald_core::host::hostname`: from the kernel, not
/// `$HOSTNAME`, which bash sets without exporting and systemd does not set).
pub fn os_hostname() -> Option<String> {
    herald_core::host::hostname().and_then(|h| usable(&h))
}

fn usable(raw: &str) -> Option<String> {
    let h = raw.trim();
    (!h.is_empty() && h != "(none)" && h.bytes().all(|b| b.is_ascii_graphic())).then(|| h.into())
}

/// `router.transactional_id` if set, else `<group>.<host name>`.
pub fn transactional_id(
    configured: Option<&str>,
    group: &str,
    hostname: Option<String>,
) -> anyhow::Result<String> {
    if let Some(id) = configured {
        return Ok(id.to_string());
    }
    match hostname.as_deref().and_then(usable) {
        Some(h) => Ok(format!("{group}.{h}")),
        None => anyhow::bail!(
            "no host name to build this router's transactional.id from (read /proc/sys/kernel/hostname \
             and /etc/hostname); set router.transactional_id (HERALD__ROUTER__TRANSACTIONAL_ID) to a \
             name unique to this instance and stable across its restarts"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_id_wins_then_the_host_name() {
        assert_eq!(
            transactional_id(Some("x"), "herald.router", Some("h".into())).unwrap(),
            "x"
        );
        assert_eq!(
            transactional_id(None, "herald.router", Some("node-1\n".into())).unwrap(),
            "herald.router.node-1"
        );
        for bad in [None, Some(""), Some("(none)"), Some(" \n")] {
            let err = transactional_id(None, "herald.router", bad.map(String::from)).unwrap_err();
            assert!(err.to_string().contains("router.transactional_id"), "{err}");
        }
    }

    #[test]
    fn the_os_host_name_is_found_without_the_environment() {
        // The test process may or may not have HOSTNAME; the answer must not
        // depend on it.
        let h = os_hostname().expect("this machine has a host name");
        assert!(!h.is_empty() && !h.contains('\n'));
    }
}
