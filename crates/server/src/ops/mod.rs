//! What an operator sees and uses: the metrics and the HTTP port that
//! serves them, the log files, and running as a service.

pub mod daemon;
pub(crate) mod http;
pub mod logging;
pub mod metrics;
pub mod upgrade;
