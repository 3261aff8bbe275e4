//! The scenarios of docs/BENCHMARKS.md: the plan they are given
//! (`plan.rs`), their results (`results.rs`), scenario 1 (`echo.rs`), the
//! scenarios that log in (`auth.rs`: login storm, resume), the idle
//! sessions (`idle.rs`), the login rate (`rate.rs`) and sessions across
//! server upgrades (`upgrade.rs`, one session in `upgrade_session.rs`).
//! This file only
//! names them.

mod auth;
mod echo;
mod idle;
mod plan;
mod rate;
mod results;
mod upgrade;
mod upgrade_session;

pub use auth::{login_storm, resume};
pub(crate) use auth::{login_workers, populate_store, resume_round, token_of};
pub use echo::echo;
pub use idle::{ACTIVE, idle};
pub(crate) use plan::PASSWORD;
pub use plan::Plan;
pub use rate::{RateResult, login_rate};
pub use results::{EchoRow, IdleResult, ResumeResult, StormResult, UpgradeResult};
pub use upgrade::{UpgradeRun, upgrade};
