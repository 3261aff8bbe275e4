//! HAProxy for the balancer tests: Debian's package, started by each test
//! with `config/haproxy.cfg`; where it is missing the tests print one line
//! and pass, unless `ECHO_TEST_HAPROXY=require`.

use std::{path::PathBuf, sync::Once};

/// HAProxy's binary, or why not.
pub fn haproxy() -> Option<PathBuf> {
    let found = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
        .into_iter()
        .map(PathBuf::from)
        .chain(std::env::var_os("PATH").into_iter().flat_map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("haproxy"))
                .collect::<Vec<_>>()
        }))
        .find(|path| path.exists());
    if found.is_none() {
        let why = "HAProxy is not installed (apt-get install haproxy)";
        if std::env::var("ECHO_TEST_HAPROXY").as_deref() == Ok("require") {
            panic!("ECHO_TEST_HAPROXY=require, but {why}");
        }
        static SAID: Once = Once::new();
        SAID.call_once(|| eprintln!("skipped: the HAProxy tests: {why}"));
    }
    found
}

/// Each of `s1`, `s2`, `s3` as HAProxy's health checks see it (`UP`,
/// `DOWN`, ...), read from its status page on `stats_port` (`/stats;csv`);
/// empty when the page does not answer.
pub fn statuses(stats_port: u16) -> Vec<String> {
    let Some((_, csv)) = crate::cluster_script::http_get(stats_port, "/stats;csv") else {
        return Vec::new();
    };
    ["s1", "s2", "s3"]
        .iter()
        .filter_map(|name| {
            let line = csv
                .lines()
                .find(|l| l.starts_with(&format!("echo_servers,{name},")))?;
            Some(line.split(',').nth(17)?.split(' ').next()?.to_owned())
        })
        .collect()
}
