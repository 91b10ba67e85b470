//! `watch`: live progress until the set is done (every package built, failed or
//! blocked). A progress bar on a terminal, a line per change otherwise, a JSON status
//! per change with `--json`. Exits non-zero when anything failed or is blocked.

use super::error::CliError;
use super::output::{self, Style};
use super::swarm::Swarm;
use super::view::StatusView;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How long the swarm may stay unreachable before `watch` gives up.
const PATIENCE: Duration = Duration::from_secs(120);

/// Packages per minute and the time left at that pace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    pub per_min: f64,
    pub eta_s: Option<u64>,
}

pub fn pace(done_since_start: u64, elapsed: Duration, remaining: u64) -> Pace {
    let secs = elapsed.as_secs_f64();
    if done_since_start == 0 || secs < 1.0 {
        return Pace {
            per_min: 0.0,
            eta_s: None,
        };
    }
    let per_s = done_since_start as f64 / secs;
    Pace {
        per_min: per_s * 60.0,
        eta_s: Some((remaining as f64 / per_s).round() as u64),
    }
}

/// `72% · 188/261 built · 8 building · 0 failed · 3.1/min · ETA 23m`. The ETA is the
/// orchestrator's (declared and learned build times, the slots that may build) when it
/// gives one, else the pace so far.
pub fn line(st: &StatusView, p: Pace) -> String {
    let mut s = format!(
        "{} · {}/{} built · {} building · {} failed",
        output::percent(st.progress_pct),
        st.built,
        st.total,
        st.building + st.uploading,
        st.failed
    );
    if st.blocked > 0 {
        s.push_str(&format!(" · {} blocked", st.blocked));
    }
    if p.per_min > 0.0 {
        s.push_str(&format!(" · {:.1}/min", p.per_min));
    }
    match st.eta_s.or(p.eta_s) {
        Some(eta) if !st.is_done() => s.push_str(&format!(" · ETA {}", output::duration(eta))),
        _ if !st.is_done() => s.push_str(" · ETA ?"),
        _ => {}
    }
    s
}

fn bar(total: u64) -> ProgressBar {
    let template = if Style::stderr().color {
        "{spinner:.cyan} [{bar:30.cyan/blue}] {msg}"
    } else {
        "{spinner} [{bar:30}] {msg}"
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = ProgressBar::new(total).with_style(style);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub async fn run(swarm: &Swarm, interval: u64, json: bool) -> Result<(), CliError> {
    let started = Instant::now();
    let (mut raw, mut st) = swarm.status().await?;
    let first_done = st.done();
    let progress = (!json && std::io::stderr().is_terminal()).then(|| bar(st.total));
    let mut last: Option<String> = None;
    let mut last_raw: Option<Value> = None;
    let mut unreachable_since: Option<Instant> = None;
    loop {
        let p = pace(
            st.done().saturating_sub(first_done),
            started.elapsed(),
            st.total.saturating_sub(st.done()),
        );
        let text = line(&st, p);
        if json {
            if last_raw.as_ref() != Some(&raw) {
                println!("{raw}");
                last_raw = Some(raw.clone());
            }
        } else if let Some(bar) = &progress {
            bar.set_length(st.total);
            bar.set_position(st.done());
            bar.set_message(text.clone());
        } else if last.as_deref() != Some(text.as_str()) {
            println!("{text}");
        }
        last = Some(text);
        if st.is_done() {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_secs(interval)).await;
        match swarm.status().await {
            Ok((r, s)) => {
                (raw, st) = (r, s);
                unreachable_since = None;
            }
            Err(e @ CliError::Lost { .. }) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() > PATIENCE {
                    return Err(e);
                }
                if let Some(bar) = &progress {
                    bar.set_message(format!("{e}; retrying"));
                }
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if !json {
        println!(
            "done: {} built, {} failed, {} blocked of {} in {}",
            st.built,
            st.failed,
            st.blocked,
            st.total,
            output::duration(started.elapsed().as_secs())
        );
    }
    if st.failed + st.blocked > 0 {
        return Err(CliError::Failed(format!(
            "the set finished with {} failed and {} blocked package(s); see `build-swarm failures`",
            st.failed, st.blocked
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_has_percent_counts_rate_and_eta() {
        let st = StatusView {
            total: 261,
            built: 188,
            building: 8,
            progress_pct: 72.0,
            ..StatusView::default()
        };
        let p = pace(30, Duration::from_secs(600), 73);
        assert_eq!(p.per_min, 3.0);
        assert_eq!(p.eta_s, Some(1460));
        assert_eq!(
            line(&st, p),
            "72% · 188/261 built · 8 building · 0 failed · 3.0/min · ETA 24m"
        );
        let none = pace(0, Duration::from_secs(60), 73);
        assert!(line(&st, none).ends_with("ETA ?"));
        // The orchestrator's estimate (learned build times) wins over the pace.
        let with_eta = StatusView {
            eta_s: Some(100),
            ..st.clone()
        };
        assert!(
            line(&with_eta, p).ends_with("ETA 1m40s"),
            "{}",
            line(&with_eta, p)
        );
    }
}
