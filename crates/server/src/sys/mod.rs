//! Small helpers over the operating system and the standard library, below
//! every other part: binding, private files, the mutex helper, the clock.

pub mod clock;
pub mod files;
pub mod inherit;
pub mod names;
pub mod net;
pub mod peer;
pub(crate) mod sync;
