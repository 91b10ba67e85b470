//! The HTTP servers: the orchestrator's API ([`orchestrator`]) and the gateway's
//! ([`gateway`]), both over one error type ([`error::ApiError`]) and one dashboard page
//! ([`dashboard`]), served by [`serve`]. Handlers are thin: check the token, parse, send
//! one message to an actor, map the answer. The routes are listed in docs/contract.md §5.

pub mod auth;
pub mod dashboard;
pub mod error;
pub mod gateway;
pub mod orchestrator;

use actix_web::web;

/// Binds `addr` and starts an HTTP server whose every worker serves `routes` with
/// `state`. `handle_signals`: SIGTERM/SIGINT stop it (the daemons) or not (tests).
/// Returns the running server and the port it got (port 0 asks for a free one).
pub fn serve<T: Send + Sync + 'static>(
    addr: std::net::SocketAddr,
    state: web::Data<T>,
    routes: fn(&mut web::ServiceConfig),
    handle_signals: bool,
) -> std::io::Result<(actix_web::dev::Server, u16)> {
    let listener = std::net::TcpListener::bind(addr)?;
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(addr.port());
    let mut server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(state.clone())
            .configure(routes)
    })
    .shutdown_timeout(5)
    .listen(listener)?;
    if !handle_signals {
        server = server.disable_signals();
    }
    Ok((server.run(), port))
}
