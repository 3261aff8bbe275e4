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
