//! How the CLI prints: aligned tables, colour only on a terminal and never with
//! `NO_COLOR`, ages ("3m ago"), durations and sizes in human units, JSON for `--json`.

use serde::Serialize;
use std::io::IsTerminal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    Red,
    Green,
    Yellow,
    Cyan,
    Dim,
    Bold,
}

impl Color {
    fn code(self) -> &'static str {
        match self {
            Color::Red => "31",
            Color::Green => "32",
            Color::Yellow => "33",
            Color::Cyan => "36",
            Color::Dim => "2",
            Color::Bold => "1",
        }
    }
}

/// Whether to colour, decided once per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

/// Colour is wanted unless `NO_COLOR` is set (to anything non-empty) or `TERM=dumb`.
pub fn color_wanted() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
    !no_color && !dumb
}

impl Style {
    pub fn stdout() -> Style {
        Style {
            color: color_wanted() && std::io::stdout().is_terminal(),
        }
    }
    pub fn stderr() -> Style {
        Style {
            color: color_wanted() && std::io::stderr().is_terminal(),
        }
    }
    pub fn plain() -> Style {
        Style { color: false }
    }
    pub fn paint(&self, text: &str, color: Option<Color>) -> String {
        match color {
            Some(c) if self.color => format!("\x1b[{}m{text}\x1b[0m", c.code()),
            _ => text.to_string(),
        }
    }
}

/// The colour a drone or package state is shown in.
pub fn state_color(state: &str) -> Option<Color> {
    match state {
        "built" | "idle" => Some(Color::Green),
        "building" | "uploading" => Some(Color::Cyan),
        "failed" | "offline" => Some(Color::Red),
        "blocked" | "grounded" | "paused" | "mismatched" => Some(Color::Yellow),
        "waiting" | "queued" => None,
        _ => None,
    }
}

#[derive(Debug, Clone)]
pub struct Cell {
    pub text: String,
    pub color: Option<Color>,
}

impl<S: Into<String>> From<S> for Cell {
    fn from(s: S) -> Cell {
        Cell {
            text: s.into(),
            color: None,
        }
    }
}

pub fn colored(text: impl Into<String>, color: Option<Color>) -> Cell {
    Cell {
        text: text.into(),
        color,
    }
}

/// Columns padded to their widest cell; the last column is not padded.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }
    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    pub fn render(&self, style: Style) -> String {
        let cols = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(width(&cell.text));
            }
        }
        let mut out = String::new();
        let header: Vec<Cell> = self
            .headers
            .iter()
            .map(|h| colored(h.clone(), Some(Color::Bold)))
            .collect();
        for row in std::iter::once(&header).chain(self.rows.iter()) {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = row.get(i).cloned().unwrap_or_else(|| "".into());
                let text = cell.text.replace(['\n', '\r', '\t'], " ");
                line.push_str(&style.paint(&text, cell.color));
                if i + 1 < cols {
                    line.push_str(&" ".repeat(w.saturating_sub(width(&text)) + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// `key  value` lines with the keys aligned.
pub fn fields(pairs: &[(&str, String)], style: Style) -> String {
    let w = pairs.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}{}  {v}\n",
                style.paint(k, Some(Color::Bold)),
                " ".repeat(w - width(k))
            )
        })
        .collect()
}

pub use crate::sys::clock::unix_now as now_unix;

/// `45s`, `3m`, `3m05s`, `2h10m`, `3d4h`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 && s > 0 && m < 10 {
        format!("{m}m{s:02}s")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{s}s")
    }
}

/// How long ago a unix time was: `just now`, `3m ago`; `in 2m` for the future.
pub fn age(then: u64, now: u64) -> String {
    if then > now {
        return format!("in {}", duration(then - now));
    }
    match now - then {
        0..=1 => "just now".to_string(),
        d => format!("{} ago", duration(d)),
    }
}

/// `512 B`, `12.3 KiB`, `4.0 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A percentage as the API gives it: `72%`, `72.5%`.
pub fn percent(p: f64) -> String {
    if (p - p.round()).abs() < 0.05 {
        format!("{:.0}%", p)
    } else {
        format!("{p:.1}%")
    }
}

/// Pretty JSON on standard output.
pub fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        // Only maps with non-string keys fail; the CLI prints none.
        Err(e) => eprintln!("build-swarm: cannot print JSON: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_colour_only_when_asked() {
        let mut t = Table::new(&["NAME", "STATE", "HOST"]);
        t.row(vec![
            "drone-a".into(),
            colored("idle", Some(Color::Green)),
            "a.lan".into(),
        ]);
        t.row(vec![
            "b".into(),
            colored("offline", Some(Color::Red)),
            "".into(),
        ]);
        let text = t.render(Style::plain());
        assert_eq!(
            text,
            "NAME     STATE    HOST\ndrone-a  idle     a.lan\nb        offline\n"
        );
        let coloured = t.render(Style { color: true });
        assert!(
            coloured.contains("\x1b[32midle\x1b[0m     a.lan"),
            "{coloured:?}"
        );
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn human_units() {
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(180), "3m");
        assert_eq!(duration(185), "3m05s");
        assert_eq!(duration(3600 * 2 + 600), "2h10m");
        assert_eq!(duration(86400 * 3 + 3600 * 4 + 5), "3d4h");
        assert_eq!(age(1000, 1180), "3m ago");
        assert_eq!(age(1000, 1000), "just now");
        assert_eq!(age(1120, 1000), "in 2m");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(12_595), "12.3 KiB");
        assert_eq!(size(4 * 1024 * 1024), "4.0 MiB");
        assert_eq!(percent(72.0), "72%");
        assert_eq!(percent(72.5), "72.5%");
    }

    #[test]
    fn fields_align_keys() {
        let text = fields(
            &[("name", "a".into()), ("last seen", "3m ago".into())],
            Style::plain(),
        );
        assert_eq!(text, "name       a\nlast seen  3m ago\n");
    }
}
