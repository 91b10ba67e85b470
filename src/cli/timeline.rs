//! `build-swarm timeline [--since DURATION]`: where the time went, per drone slot, on
//! every orchestrator (docs/contract.md §6): one line of `WIDTH` cells per slot (`#`
//! built, `x` failed, `!` infrastructure, `-` cancelled, `>` running, `.` idle), the
//! builds finished per bucket and the ETA. `--json` prints the API's answers.

use super::error::CliError;
use super::output;
use super::swarm::Swarm;
use crate::wire::orchestrator::{Timeline, TimelineBar};
use serde_json::Value;

/// Cells per row.
const WIDTH: usize = 60;

/// `2h`, `30m`, `90s`, `1d` or plain seconds.
pub fn parse_since(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 2h, 30m or 90s"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}` is not a duration like 2h, 30m or 90s")),
    };
    match n.checked_mul(factor) {
        Some(v) if v > 0 => Ok(v),
        _ => Err(format!("`{s}` must be above zero")),
    }
}

pub async fn run(swarm: &Swarm, since_s: u64, json: bool) -> Result<(), CliError> {
    for orch in swarm.all()? {
        let until = output::now_unix();
        let path = format!(
            "/api/v1/timeline?since={}&until={until}",
            until.saturating_sub(since_s)
        );
        let (raw, tl): (Value, Timeline) = swarm.get(&orch.client, &path).await?;
        if json {
            println!("{raw}");
            continue;
        }
        print!("{}", render(&orch.name, &tl));
    }
    Ok(())
}

fn cell(bar: &TimelineBar) -> char {
    match bar.outcome.as_str() {
        "built" => '#',
        "failed" => 'x',
        "infra" => '!',
        "cancelled" | "ended" => '-',
        _ => '>',
    }
}

/// The text view of one orchestrator's timeline.
pub fn render(name: &str, tl: &Timeline) -> String {
    let mut out = String::new();
    let span = tl.to.saturating_sub(tl.from).max(1);
    let attempts: usize = tl.rows.iter().map(|r| r.bars.len()).sum();
    out.push_str(&format!(
        "{name}: last {} — {attempts} attempts on {} slots{}\n",
        output::duration(span),
        tl.rows.len(),
        if tl.truncated {
            " (only the latest shown)"
        } else {
            ""
        }
    ));
    let at = |t: u64| ((t.saturating_sub(tl.from)) as u128 * WIDTH as u128 / span as u128) as usize;
    let label_w = tl
        .rows
        .iter()
        .map(|r| r.drone.len() + 1 + r.slot.to_string().len())
        .max()
        .unwrap_or(0);
    for row in &tl.rows {
        let mut cells = vec!['.'; WIDTH];
        for b in &row.bars {
            let from = at(b.start.max(tl.from)).min(WIDTH - 1);
            let to = at(b.end.unwrap_or(tl.now).min(tl.to)).clamp(from + 1, WIDTH);
            for c in &mut cells[from..to] {
                *c = cell(b);
            }
        }
        let label = format!("{}/{}", row.drone, row.slot);
        out.push_str(&format!(
            "  {label:<label_w$} |{}|\n",
            cells.iter().collect::<String>()
        ));
    }
    const BLOCKS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = tl.throughput.iter().map(|b| b.built).max().unwrap_or(0);
    if max > 0 {
        let spark: String = tl
            .throughput
            .iter()
            .map(|b| BLOCKS[(b.built as usize * 8).div_ceil(max as usize).min(8)])
            .collect();
        let total: u32 = tl.throughput.iter().map(|b| b.built).sum();
        out.push_str(&format!(
            "  built {total} |{spark}| (at most {max} per bucket)\n"
        ));
    }
    if let Some(p) = tl.progress.last() {
        let eta = p
            .eta_s
            .map(|e| format!(", about {} left", output::duration(e)))
            .unwrap_or_default();
        out.push_str(&format!("  done {}/{}{eta}\n", p.done, p.total));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::orchestrator::{ProgressSample, ThroughputBucket, TimelineRow};

    #[test]
    fn durations_are_read_with_their_unit() {
        assert_eq!(parse_since("2h"), Ok(7200));
        assert_eq!(parse_since("90"), Ok(90));
        assert_eq!(parse_since("1d"), Ok(86_400));
        assert!(
            parse_since("2w").is_err() && parse_since("0m").is_err() && parse_since("h").is_err()
        );
    }

    #[test]
    fn each_slot_is_a_row_of_cells_coloured_by_outcome() {
        let bar = |start, end: Option<u64>, outcome: &str| TimelineBar {
            atom: "a/b-1".into(),
            start,
            uploading: None,
            end,
            outcome: outcome.into(),
        };
        let tl = Timeline {
            from: 0,
            to: 600,
            now: 600,
            rows: vec![
                TimelineRow {
                    drone: "d1".into(),
                    slot: 0,
                    bars: vec![bar(0, Some(300), "built"), bar(300, None, "building")],
                },
                TimelineRow {
                    drone: "d1".into(),
                    slot: 1,
                    bars: vec![bar(0, Some(60), "failed")],
                },
            ],
            truncated: false,
            throughput: vec![ThroughputBucket {
                start: 0,
                built: 1,
                failed: 0,
            }],
            progress: vec![ProgressSample {
                t: 600,
                done: 1,
                total: 3,
                eta_s: Some(120),
            }],
        };
        let text = render("o1", &tl);
        assert!(
            text.contains(&format!("d1/0 |{}{}|", "#".repeat(30), ">".repeat(30))),
            "{text}"
        );
        assert!(
            text.contains(&format!("d1/1 |{}{}|", "x".repeat(6), ".".repeat(54))),
            "{text}"
        );
        assert!(text.contains("done 1/3, about 2m left"), "{text}");
    }
}
