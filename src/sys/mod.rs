//! Operating-system helpers every program uses: child processes in their own process
//! groups ([`process`]), file checksums ([`digest`]), directory-relative file calls
//! ([`dirfd`]), the slog set-up ([`logging`]), clocks that tests can drive ([`clock`]),
//! noticing that this process itself stood still ([`stall`]), unpredictable tokens and
//! ids ([`random`]), ssh command lines for a drone's host ([`ssh`]) and whom an https
//! client trusts ([`tls`]).

pub mod clock;
pub mod digest;
pub mod dirfd;
pub mod logging;
pub mod process;
pub mod random;
pub mod ssh;
pub mod stall;
pub mod tls;
