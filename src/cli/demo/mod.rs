//! `build-swarm demo`: starts the local swarm (see [`crate::cli::demo::swarm`]), shows `watch`'s live
//! progress until the set is done, prints the summary and stops every process (with
//! `--keep`: once Ctrl-C comes).

pub mod portage;
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
    // With real Portage: a clean client installs the whole set from the binhost.
    let installed = match (&demo.portage, &result) {
        (Some((p, atoms)), Ok(())) => {
            // The client trusts the key the binhost serves and verifies every package.
            let key = public_key(&demo).await;
            let client = key.and_then(|key| {
                p.env(
                    &demo.dir.join("portage/client"),
                    Some(&format!("{}/binhost/", demo.orchestrator_url)),
                    Some(&key),
                )
            });
            match client {
                Ok(env) => Some(p.install(&env, atoms).await.map(|n| (n, atoms.len()))),
                Err(e) => Some(Err(e)),
            }
        }
        _ => None,
    };
    let summary = demo.summary().await;
    let orchestrator_url = demo.orchestrator_url.clone();
    if opts.keep && result.is_ok() {
        if let Ok(s) = &summary {
            if json {
                println!("{}", summary_json(s));
            } else {
                println!("{s}");
            }
        }
        println!("{}", kept_notice(&demo));
        crate::sys::process::stop_signal().await;
        eprintln!("build-swarm demo: stopping the swarm");
        demo.stop().await;
        return Ok(());
    }
    demo.stop().await;
    result?;
    match summary {
        Ok(s) if json => println!("{}", summary_json(&s)),
        Ok(s) => println!("{s}"),
        Err(e) => return Err(CliError::Failed(format!("demo summary: {e}"))),
    }
    match installed {
        None => Ok(()),
        Some(Ok((n, total))) if n == total => {
            if !json {
                println!(
                    "a clean Portage client installed all {total} packages from {}/binhost/, \
                     verifying every package's signature (verify-signature = true, the key from /binhost/key.asc)",
                    orchestrator_url
                );
            }
            Ok(())
        }
        Some(Ok((n, total))) => Err(CliError::Failed(format!(
            "a clean Portage client installed only {n} of {total} packages from the binhost"
        ))),
        Some(Err(e)) => Err(CliError::Failed(format!("demo: {e}"))),
    }
}

/// `/binhost/key.asc` of the demo's orchestrator, saved beside the client's configuration.
async fn public_key(demo: &Demo) -> Result<std::path::PathBuf, swarm::DemoError> {
    let url = format!("{}/binhost/key.asc", demo.orchestrator_url);
    let fail = |e: String| swarm::DemoError::Start(format!("fetching {url}: {e}"));
    let mut resp = awc::Client::default()
        .get(&url)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    let body = resp.body().await.map_err(|e| fail(e.to_string()))?;
    let path = demo.dir.join("portage/binhost-key.asc");
    std::fs::create_dir_all(demo.dir.join("portage")).map_err(|e| fail(e.to_string()))?;
    std::fs::write(&path, &body).map_err(|e| fail(e.to_string()))?;
    Ok(path)
}

fn summary_json(s: &swarm::Summary) -> serde_json::Value {
    serde_json::json!({
        "total": s.total, "built": s.built, "blocked": s.blocked,
        "failed": s.failed.iter().map(|(a, r)| serde_json::json!({"atom": a, "reason": r})).collect::<Vec<_>>(),
        "wall_s": s.wall.as_secs_f64(), "uploaded_bytes": s.uploaded_bytes, "uploads": s.uploads,
        "package_bytes": s.package_bytes, "published": s.published,
        "binhost": s.binhost, "dir": s.dir,
    })
}

/// What `--keep` prints once the set is done: where to look and what to try.
fn kept_notice(demo: &Demo) -> String {
    format!(
        "\nThe swarm keeps running (--keep); Ctrl-C stops every process.\n\
         Dashboard:  {orch}/\n\
         Binhost:    {orch}/binhost/\n\
         Try, in another shell:\n  \
         export BUILD_SWARM_GATEWAY={gw} BUILD_SWARM_TOKEN={token}\n  \
         build-swarm status\n  \
         build-swarm drones\n  \
         build-swarm drone-1 logs\n  \
         build-swarm timeline\n  \
         build-swarm log -f ATOM   (a package's output while it builds)\n  \
         build-swarm packages --state failed\n  \
         build-swarm binhost snapshot && build-swarm binhost list",
        orch = demo.orchestrator_url,
        gw = demo.gateway_url,
        token = demo.admin_token,
    )
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
