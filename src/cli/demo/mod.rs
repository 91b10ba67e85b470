//! `build-swarm demo`: starts the local swarm (see [`crate::cli::demo::swarm`]), shows `watch`'s live
//! progress until the set is done, prints the summary and stops every process.

pub mod swarm;

use crate::cli::config::{self, Flags, Places};
use crate::cli::demo::swarm::{Demo, DemoOptions};
use crate::cli::error::CliError;
use crate::cli::swarm::Swarm;
use crate::cli::{watch, Verbose};

pub async fn run(opts: &DemoOptions, json: bool) -> Result<(), CliError> {
    let demo = Demo::start(opts)
        .await
        .map_err(|e| CliError::Failed(format!("demo: {e}")))?;
    eprintln!(
        "build-swarm demo: orchestrator {}, gateway {}, {} drones; everything in {}",
        demo.orchestrator_url,
        demo.gateway_url,
        opts.drones,
        demo.dir.display()
    );
    // Ctrl-C or SIGTERM stops the demo's processes too, not just this one.
    let result = tokio::select! {
        r = watch_demo(&demo, json) => r,
        _ = crate::sys::process::stop_signal() => {
            eprintln!("build-swarm demo: interrupted, stopping the swarm");
            demo.stop().await;
            return Err(CliError::Failed("demo interrupted".into()));
        }
    };
    if result.is_ok() {
        demo.wait_indexed().await;
    }
    let summary = demo.summary().await;
    demo.stop().await;
    result?;
    match summary {
        Ok(s) if json => println!(
            "{}",
            serde_json::json!({
                "total": s.total, "built": s.built, "blocked": s.blocked,
                "failed": s.failed.iter().map(|(a, r)| serde_json::json!({"atom": a, "reason": r})).collect::<Vec<_>>(),
                "wall_s": s.wall.as_secs_f64(), "uploaded_bytes": s.uploaded_bytes, "uploads": s.uploads,
                "package_bytes": s.package_bytes, "published": s.published,
                "binhost": s.binhost, "dir": s.dir,
            })
        ),
        Ok(s) => println!("{s}"),
        Err(e) => return Err(CliError::Failed(format!("demo summary: {e}"))),
    }
    Ok(())
}

async fn watch_demo(demo: &Demo, json: bool) -> Result<(), CliError> {
    let flags = Flags {
        gateway: Some(demo.gateway_url.clone()),
        orchestrator: None,
        token: Some(demo.admin_token.clone()),
        config: None,
    };
    let settings = config::resolve(&flags, &Places::default())?;
    let swarm = Swarm::connect(&settings, Verbose(false)).await?;
    match watch::run(&swarm, 1, json).await {
        // The demo fails a few packages on purpose: that is the point, not an error.
        Ok(()) | Err(CliError::Failed(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
