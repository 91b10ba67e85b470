//! Starting the orchestrator: open the state, start the actors, bind the HTTP server.
//! `Orchestrator::start` is what the binary and the in-process tests both call (tests bind
//! port 0 and read the port back).

use crate::actors::orchestrator::binhost_index::{BinhostIndex, BuiltPackage, IndexSettings};
use crate::actors::orchestrator::build_logs::BuildLogs;
use crate::actors::orchestrator::circuit_breaker::{BreakerSettings, CircuitBreaker};
use crate::actors::orchestrator::drone_healer::DroneHealer;
use crate::actors::orchestrator::drone_registry::{DroneRegistry, RegistrySettings, Restore};
use crate::actors::orchestrator::gateway_registration::{
    self, GatewayRegistration, RegistrationSettings,
};
use crate::actors::orchestrator::lease_deadlines::LeaseDeadlines;
use crate::actors::orchestrator::notifier::Notifier;
use crate::actors::orchestrator::publish_hook::PublishHook;
use crate::actors::orchestrator::queue::policy::FailurePolicy;
use crate::actors::orchestrator::queue::{PackageQueue, Peers, QueueSettings};
use crate::actors::orchestrator::releases::ReleaseManager;
use crate::actors::orchestrator::store::{Store, StoreError};
use crate::config::{ConfigError, OrchestratorConfig};
use crate::http::auth::Auth;
use crate::http::orchestrator::{self as api_routes, AppState};
use crate::orchestrator::binhost::releases::{Policy, Releases};
use crate::orchestrator::binhost::signing::Signer;
use crate::orchestrator::credentials::DroneCredentials;
use crate::orchestrator::metrics::Metrics;
use crate::orchestrator::publish::Signing;
use crate::sys::clock::SharedClock;
use crate::sys::stall::StallWatch;
use actix::prelude::*;
use actix_web::web;
use parking_lot::Mutex;
use slog::warn;
use slog::{crit, info, Logger};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("start-up was interrupted: {0}")]
    Interrupted(String),
    #[error("cannot read the kernel's random generator: {0}")]
    Random(#[source] std::io::Error),
    #[error(transparent)]
    SigningKey(#[from] crate::orchestrator::binhost::signing::KeyError),
    #[error(transparent)]
    Tls(#[from] crate::sys::tls::KeyTlsError),
}

pub struct Orchestrator {
    pub server: actix_web::dev::Server,
    pub handle: actix_web::dev::ServerHandle,
    pub port: u16,
    pub queue: Addr<PackageQueue>,
    pub registry: Addr<DroneRegistry>,
    pub breaker: Addr<CircuitBreaker>,
    pub hook: Addr<PublishHook>,
    /// The binhost's `Packages` index (with `[binhost] index`).
    pub binhost_index: Option<Addr<BinhostIndex>>,
    /// Registers this orchestrator with its gateway (when `gateway` is set).
    pub gateway_registration: Option<Addr<GatewayRegistration>>,
    /// Delivers `[[notify]]` events (when there are entries).
    pub notifier: Option<Addr<Notifier>>,
    pub metrics: Arc<Metrics>,
}

impl Orchestrator {
    /// Starts everything on the current actix system. `handle_signals`: whether SIGTERM and
    /// SIGINT stop the server (the binary), or not (tests).
    pub async fn start(
        cfg: OrchestratorConfig,
        log: Logger,
        handle_signals: bool,
    ) -> Result<Orchestrator, StartError> {
        Self::start_with_clock(cfg, log, handle_signals, crate::sys::clock::real()).await
    }

    /// As [`Orchestrator::start`], with the clock the breaker and the retry backoff use
    /// (tests move a manual one forward instead of waiting).
    pub async fn start_with_clock(
        cfg: OrchestratorConfig,
        log: Logger,
        handle_signals: bool,
        clock: SharedClock,
    ) -> Result<Orchestrator, StartError> {
        let tokens = cfg.tokens()?;
        let addr = cfg.listen_addr()?;
        let signing = match &cfg.signing.key {
            Some(path) => {
                let (path, env) = (path.clone(), cfg.signing.passphrase_env.clone());
                let signer = actix_web::rt::task::spawn_blocking(move || Signer::load(&path, &env))
                    .await
                    .map_err(|e| StartError::Interrupted(e.to_string()))??;
                info!(log, "signing published packages"; "key" => signer.fingerprint(),
                      "required" => cfg.signing.is_required());
                Some(Signing {
                    signer: Arc::new(signer),
                    required: cfg.signing.is_required(),
                })
            }
            None => None,
        };
        // Whom https calls trust: read now, off the event loop (a program that could trust
        // nothing stops here, naming the key).
        let notify_tls = {
            let sinks = cfg.notify.clone();
            let gateway = cfg.gateway.clone();
            actix_web::rt::task::spawn_blocking(move || {
                let urls = gateway.as_deref().map(|u| ("gateway".to_string(), u));
                crate::sys::tls::preload(urls)?;
                crate::orchestrator::notify::tls::for_entries(&sinks)
            })
            .await
            .map_err(|e| StartError::Interrupted(e.to_string()))??
        };
        for dir in [&cfg.state_dir, &cfg.staging_dir, &cfg.binhost_dir] {
            std::fs::create_dir_all(dir).map_err(|source| StartError::Dir {
                path: dir.clone(),
                source,
            })?;
        }
        let started = std::time::Instant::now();
        let state_dir = cfg.state_dir.clone();
        let (store, mut snapshot) = actix_web::rt::task::spawn_blocking(move || {
            let store = Store::open(&state_dir)?;
            let snap = store.load()?;
            Ok::<_, StoreError>((store, snap))
        })
        .await
        .map_err(|e| StartError::Interrupted(e.to_string()))??;
        info!(log, "state loaded"; "path" => store.path().display().to_string(),
              "packages" => snapshot.packages.len(), "ms" => started.elapsed().as_millis() as u64);

        let slot = Arc::new(Mutex::new(Some(store)));
        let state_dir = cfg.state_dir.clone();
        let store_log = log.clone();
        let store = SyncArbiter::start(1, move || match slot.lock().take() {
            Some(s) => s,
            // Only reached if the store thread had to be restarted.
            None => match Store::open(&state_dir) {
                Ok(s) => s,
                Err(e) => {
                    crit!(store_log, "cannot reopen the state database"; "error" => e.to_string());
                    std::process::exit(1)
                }
            },
        });

        let metrics = Arc::new(Metrics::default());
        let hook = PublishHook::new(
            cfg.publish_command.clone(),
            Duration::from_secs(cfg.publish_timeout_s),
            log.clone(),
        )
        .start();
        let with_leases: HashSet<String> = snapshot
            .leases
            .iter()
            .filter(|l| l.phase != crate::domain::LeasePhase::Ended)
            .map(|l| l.drone.clone())
            .collect();
        let drones = snapshot.drones.clone();
        let mut lease_id_key = [0u8; 32];
        crate::sys::random::fill(&mut lease_id_key).map_err(StartError::Random)?;
        let (credentials, unusable) = DroneCredentials::new(
            std::mem::take(&mut snapshot.credentials),
            Some(store.clone()),
        );
        for name in unusable {
            crit!(log, "the state database holds a drone credential it cannot read; enroll the drone again"; "drone" => name);
        }
        let credentials = Arc::new(credentials);
        if tokens.drone.is_none() {
            info!(log, "the shared drone token is off: only enrolled drones' own tokens work";
                  "enrolled" => credentials.list().len());
        }
        let settings = QueueSettings {
            staging_dir: cfg.staging_dir.clone(),
            binhost_dir: cfg.binhost_dir.clone(),
            build_timeout: Duration::from_secs(cfg.leases.build_timeout_s),
            upload_timeout: Duration::from_secs(cfg.leases.upload_timeout_s),
            heartbeat_ttl: Duration::from_secs(cfg.leases.heartbeat_ttl_s),
            policy: FailurePolicy {
                build_failure_drones: cfg.policy.build_failure_drones,
                max_infra_retries: cfg.policy.max_infra_retries,
                infra_backoff: Duration::from_secs(cfg.policy.infra_backoff_s),
            },
            order: cfg.policy.order,
            clock: clock.clone(),
            lease_id_key,
            index: cfg.binhost.index,
            signing: signing.clone(),
        };
        let built: Vec<BuiltPackage> = snapshot
            .packages
            .iter()
            .filter(|p| p.state == crate::domain::PackageState::Built)
            .filter_map(|p| {
                let (category, pf) = p.atom.split_once('/')?;
                Some((p.id, category.into(), pf.into(), p.path.clone()?))
            })
            .collect();
        let breaker_settings = BreakerSettings::from(&cfg.breaker);
        let stall = StallWatch::start();
        let registry_settings = RegistrySettings {
            heartbeat_ttl: Duration::from_secs(cfg.leases.heartbeat_ttl_s),
            credentials: credentials.clone(),
            upload_target: cfg.effective_upload_target(),
            stall: stall.clone(),
            environment: cfg.environment.clone(),
        };
        let notifier = (!cfg.notify.is_empty()).then(|| {
            Notifier::new(
                &cfg.notify,
                notify_tls,
                &cfg.name,
                std::mem::take(&mut snapshot.outbox),
                std::mem::take(&mut snapshot.alerts),
                store.clone(),
                clock.clone(),
                metrics.clone(),
                log.clone(),
            )
            .start()
        });
        let notify = notifier.clone().map(Addr::recipient);
        let build_logs = BuildLogs::default().start();
        let healer = cfg
            .heal
            .enabled()
            .then(|| DroneHealer::new(cfg.heal.clone(), notify.clone(), log.clone()).start());
        // The queue's context first: the actors it tells things to need its address.
        let queue_ctx = Context::<PackageQueue>::new();
        let deadlines = LeaseDeadlines::new(queue_ctx.address().recipient(), stall).start();
        let breaker = CircuitBreaker::new(
            breaker_settings,
            clock.clone(),
            Some(queue_ctx.address().recipient()),
            log.clone(),
        )
        .with_metrics(metrics.clone())
        .with_notify(notify.clone())
        .start();
        let registry = DroneRegistry::new(
            registry_settings,
            queue_ctx.address(),
            breaker.clone(),
            log.clone(),
        )
        .with_watchers(notify.clone(), healer)
        .start();
        if !cfg.binhost.index && cfg.binhost_dir.join("Packages").exists() {
            warn!(log, "binhost_dir has a Packages index this orchestrator no longer writes ([binhost] index = false): clients see it stale";
                  "path" => cfg.binhost_dir.join("Packages").display().to_string());
        }
        let binhost_index = cfg.binhost.index.then(|| {
            let settings = IndexSettings {
                dir: cfg.binhost_dir.clone(),
                header: cfg.binhost.header.clone(),
                gzip: cfg.binhost.compress_index,
                interval: Duration::from_millis(cfg.binhost.write_interval_ms),
                signing: signing.clone(),
            };
            BinhostIndex::new(
                settings,
                built,
                queue_ctx.address().recipient(),
                log.clone(),
            )
            .start()
        });
        let releases = Arc::new(Releases {
            root: cfg.releases_dir(),
            binhost: cfg.binhost_dir.clone(),
            gzip: cfg.binhost.compress_index,
            policy: Policy {
                keep_last: cfg.releases.keep_last,
                keep_days: cfg.releases.keep_days,
                grace_s: cfg.releases.grace_s,
            },
        });
        let release_manager = ReleaseManager::new(
            releases.clone(),
            binhost_index.clone().map(Addr::recipient),
            Duration::from_secs(cfg.releases.gc_interval_s),
            log.clone(),
        )
        .start();
        let peers = Peers {
            store,
            deadlines: deadlines.clone().recipient(),
            disarm: deadlines.recipient(),
            breaker: breaker.clone().recipient(),
            drones: registry.clone().recipient(),
            hook: hook.clone().recipient(),
            index: binhost_index.clone().map(Addr::recipient),
            relist: binhost_index.clone().map(Addr::recipient),
            notify,
            logs: Some(build_logs.clone().recipient()),
        };
        let queue = queue_ctx.run(
            PackageQueue::restore(settings, snapshot, peers, log.clone())
                .with_metrics(metrics.clone()),
        );
        registry.do_send(Restore {
            drones,
            with_leases,
        });

        let admin_token = tokens.admin.clone();
        let state = web::Data::new(AppState {
            name: cfg.name.clone(),
            queue: queue.clone(),
            registry: registry.clone(),
            breaker: breaker.clone(),
            auth: Auth {
                tokens,
                credentials,
            },
            max_submit_bytes: cfg.max_submit_bytes,
            metrics: metrics.clone(),
            log: log.new(slog::o!("component" => "http")),
            binhost_index: binhost_index.clone(),
            binhost_dir: cfg.binhost.serve.then(|| cfg.binhost_dir.clone()),
            signer: signing.as_ref().map(|s| s.signer.clone()),
            releases: release_manager,
            build_logs,
            release_files: cfg.binhost.serve.then_some(releases),
        });
        let (server, port) = crate::http::serve(addr, state, api_routes::routes, handle_signals)
            .map_err(|source| StartError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        info!(log, "orchestrator listening"; "name" => &cfg.name, "addr" => format!("{}:{port}", addr.ip()),
              "upload_target" => cfg.effective_upload_target(), "binhost_dir" => cfg.binhost_dir.display().to_string());
        let gateway_registration = cfg.gateway.as_ref().map(|gateway| {
            let (url, guess) =
                gateway_registration::advertised_url(cfg.public_url.as_deref(), addr, port);
            if let Some(guess) = guess {
                warn!(log, "public_url is not set"; "detail" => guess);
            }
            let settings = RegistrationSettings {
                gateway: gateway.clone(),
                url,
                name: cfg.name.clone(),
                token: Some(admin_token),
                every: gateway_registration::REREGISTER_EVERY,
                retry: gateway_registration::RETRY_AFTER,
            };
            GatewayRegistration::new(settings, log.clone()).start()
        });
        Ok(Orchestrator {
            handle: server.handle(),
            server,
            port,
            queue,
            registry,
            breaker,
            hook,
            binhost_index,
            gateway_registration,
            notifier,
            metrics,
        })
    }
}
