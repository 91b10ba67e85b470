//! `build-swarm`: the operator CLI (docs/contract.md §6). Everything is in [`build_swarm::cli`].

#[actix_web::main]
async fn main() {
    // Like other Unix tools: `build-swarm packages | head` ends quietly, no panic.
    // SAFETY: restoring the default action of a signal before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // A bug must still read as one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("build-swarm: internal error ({info}); please report it");
        std::process::exit(1);
    }));
    let code = build_swarm::cli::run(std::env::args_os().collect()).await;
    std::process::exit(code);
}
