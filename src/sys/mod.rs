//! Operating-system helpers every program uses: child processes in their own process
//! groups ([`process`]), file checksums ([`digest`]), directory-relative file calls ([`dirfd`]), the slog set-up
//! ([`logging`]) and clocks that tests can drive ([`clock`]).

pub mod clock;
pub mod digest;
pub mod dirfd;
pub mod logging;
pub mod process;
