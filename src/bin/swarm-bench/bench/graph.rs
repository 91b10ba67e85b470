//! Package graphs for the scheduling benchmark: a generator of Gentoo-like sets
//! (`swarm-bench graph --packages 1500`), reading a set from a file, and the lower bound of
//! any schedule of it.
//!
//! The generated set looks like `emerge --emptytree @world` of a desktop: ten layers
//! (toolchain, base libraries, languages, … applications) in dependency order, each
//! package depending on one to a dozen earlier ones with a preference for the popular
//! ones, build times heavy-tailed (log-normal, median 40 s, from 3 s to 20 min) plus the
//! famous giants with their real dependency chains (binutils → gcc → llvm → clang/rust →
//! chromium/firefox, qtbase → qtwebengine, boost → libreoffice, …). The file order is a
//! topological order, as emerge prints it; that is what FIFO hands out.

use super::BenchError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GraphPackage {
    pub atom: String,
    #[serde(default)]
    pub deps: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Graph {
    pub packages: Vec<GraphPackage>,
}

/// The lower bound of a schedule on `slots` slots: the longest dependency chain and the
/// total work divided by the slots, whichever is larger (seconds, as estimated).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    pub critical_path_s: f64,
    pub total_work_s: f64,
    pub lower_bound_s: f64,
}

/// A package's estimate as the orchestrator and the stub builder use it (1 s unknown).
pub fn estimate(p: &GraphPackage) -> f64 {
    p.estimate_s
        .filter(|e| e.is_finite() && *e >= 0.0)
        .unwrap_or(1.0)
}

impl Graph {
    pub fn parse(text: &str) -> Result<Graph, BenchError> {
        let g: Graph = serde_json::from_str(text).map_err(|e| {
            BenchError::Graph(format!(
                "expected the JSON package-set format {{\"packages\":[{{\"atom\",\"deps\",\"estimate_s\"}}]}}: {e}"
            ))
        })?;
        g.order()?;
        Ok(g)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The same graph with no estimates (the orchestrator must learn them).
    pub fn without_estimates(&self) -> Graph {
        let mut g = self.clone();
        for p in &mut g.packages {
            p.estimate_s = None;
        }
        g
    }

    /// The same package names at the next revision (`-r1`, or one more), dependencies
    /// alike, estimates kept: a later run of the same set.
    pub fn next_versions(&self) -> Graph {
        let bump = |atom: &str| -> String {
            match atom.rsplit_once("-r") {
                Some((head, rev)) if rev.parse::<u64>().is_ok() => {
                    format!("{head}-r{}", rev.parse::<u64>().unwrap_or(0) + 1)
                }
                _ => format!("{atom}-r1"),
            }
        };
        let mut g = self.clone();
        for p in &mut g.packages {
            p.atom = bump(&p.atom);
            p.deps = p.deps.iter().map(|d| bump(d)).collect();
        }
        g
    }

    /// Each package's position, by atom.
    fn index(&self) -> HashMap<&str, usize> {
        self.packages
            .iter()
            .enumerate()
            .map(|(i, p)| (p.atom.as_str(), i))
            .collect()
    }

    /// A topological order (indices), or an error naming a cycle or an unknown dependency.
    fn order(&self) -> Result<Vec<usize>, BenchError> {
        let index = self.index();
        let n = self.packages.len();
        let mut indeg = vec![0usize; n];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, p) in self.packages.iter().enumerate() {
            for d in &p.deps {
                let j = *index.get(d.trim_start_matches('=')).ok_or_else(|| {
                    BenchError::Graph(format!("{} depends on unknown {d}", p.atom))
                })?;
                indeg[i] += 1;
                dependents[j].push(i);
            }
        }
        let mut order: Vec<usize> = (0..n).filter(|i| indeg[*i] == 0).collect();
        let mut k = 0;
        while k < order.len() {
            let i = order[k];
            k += 1;
            for &d in &dependents[i] {
                indeg[d] -= 1;
                if indeg[d] == 0 {
                    order.push(d);
                }
            }
        }
        if order.len() != n {
            return Err(BenchError::Graph("the dependencies form a cycle".into()));
        }
        Ok(order)
    }

    pub fn bound(&self, slots: u32) -> Result<Bound, BenchError> {
        let order = self.order()?;
        let index = self.index();
        // finish[i] = longest chain ending with i, its own estimate included.
        let mut finish = vec![0f64; self.packages.len()];
        for &i in &order {
            let p = &self.packages[i];
            let start = p
                .deps
                .iter()
                .filter_map(|d| index.get(d.trim_start_matches('=')))
                .map(|&j| finish[j])
                .fold(0f64, f64::max);
            finish[i] = start + estimate(p);
        }
        let critical_path_s = finish.iter().copied().fold(0f64, f64::max);
        let total_work_s: f64 = self.packages.iter().map(estimate).sum();
        let lower_bound_s = critical_path_s.max(total_work_s / slots.max(1) as f64);
        Ok(Bound {
            critical_path_s,
            total_work_s,
            lower_bound_s,
        })
    }
}

/// xorshift64*: small, deterministic, good enough for shaping a graph.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }
    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// The giants: atom, layer, estimate, dependencies among the giants.
const GIANTS: &[(&str, usize, f64, &[&str])] = &[
    ("sys-devel/binutils-2.42", 0, 300.0, &[]),
    (
        "sys-devel/gcc-13.2.1",
        0,
        2400.0,
        &["sys-devel/binutils-2.42"],
    ),
    ("sys-libs/glibc-2.39", 0, 600.0, &["sys-devel/gcc-13.2.1"]),
    ("dev-lang/perl-5.40.0", 1, 300.0, &["sys-libs/glibc-2.39"]),
    ("dev-lang/python-3.12.4", 1, 400.0, &["sys-libs/glibc-2.39"]),
    ("dev-util/cmake-3.29.6", 1, 300.0, &["sys-libs/glibc-2.39"]),
    (
        "dev-libs/boost-1.85.0",
        2,
        900.0,
        &["dev-lang/python-3.12.4"],
    ),
    (
        "sys-devel/llvm-18.1.8",
        2,
        3000.0,
        &["dev-util/cmake-3.29.6", "dev-lang/python-3.12.4"],
    ),
    (
        "sys-devel/clang-18.1.8",
        3,
        2400.0,
        &["sys-devel/llvm-18.1.8"],
    ),
    (
        "dev-lang/rust-1.79.0",
        3,
        3600.0,
        &["sys-devel/llvm-18.1.8"],
    ),
    ("dev-lang/ghc-9.4.8", 3, 3000.0, &["sys-libs/glibc-2.39"]),
    (
        "media-video/ffmpeg-6.1.1",
        4,
        400.0,
        &["sys-libs/glibc-2.39"],
    ),
    ("dev-qt/qtbase-6.7.2", 5, 1200.0, &["dev-util/cmake-3.29.6"]),
    (
        "net-libs/webkit-gtk-2.44.2",
        6,
        3600.0,
        &["dev-util/cmake-3.29.6", "dev-lang/python-3.12.4"],
    ),
    (
        "dev-qt/qtwebengine-6.7.2",
        6,
        5400.0,
        &["dev-qt/qtbase-6.7.2", "dev-lang/python-3.12.4"],
    ),
    (
        "kde-plasma/plasma-workspace-6.1.2",
        8,
        600.0,
        &["dev-qt/qtwebengine-6.7.2"],
    ),
    (
        "www-client/firefox-128.0",
        8,
        3000.0,
        &["dev-lang/rust-1.79.0", "sys-devel/clang-18.1.8"],
    ),
    (
        "www-client/chromium-126.0.6478.126",
        8,
        7200.0,
        &[
            "dev-lang/rust-1.79.0",
            "sys-devel/clang-18.1.8",
            "media-video/ffmpeg-6.1.1",
        ],
    ),
    (
        "app-office/libreoffice-24.2.4.2",
        9,
        4800.0,
        &["dev-libs/boost-1.85.0", "dev-lang/perl-5.40.0"],
    ),
];

const LAYER_CATEGORIES: [&[&str]; 10] = [
    &["sys-libs", "sys-devel"],
    &["dev-libs", "sys-apps"],
    &["dev-lang", "dev-util", "dev-libs"],
    &["dev-libs", "net-libs", "media-libs"],
    &["x11-libs", "dev-python", "dev-perl"],
    &["dev-qt", "gnome-base", "media-libs"],
    &["kde-frameworks", "net-misc", "gui-libs"],
    &["app-misc", "media-video", "app-text"],
    &["www-client", "kde-apps", "media-sound"],
    &["app-office", "games-action", "x11-misc", "app-editors"],
];

/// Share of the regular packages in each layer.
const LAYER_SHARE: [f64; 10] = [0.03, 0.06, 0.08, 0.12, 0.14, 0.14, 0.13, 0.12, 0.10, 0.08];

/// A Gentoo-like set of `n` packages (at least the giants), deterministic for a seed.
pub fn generate(n: usize, seed: u64) -> Graph {
    let mut rng = Rng(seed.max(1) ^ 0x9e37_79b9_7f4a_7c15);
    let regular = n.saturating_sub(GIANTS.len());
    // Regular packages per layer.
    let mut per_layer: Vec<usize> = LAYER_SHARE
        .iter()
        .map(|s| (s * regular as f64).floor() as usize)
        .collect();
    let assigned: usize = per_layer.iter().sum();
    per_layer[5] += regular - assigned;
    let mut packages: Vec<GraphPackage> = Vec::with_capacity(n);
    let mut layer_members: Vec<Vec<usize>> = vec![Vec::new(); 10];
    let mut giant_index: HashMap<&str, usize> = HashMap::new();
    let mut counter = 0usize;
    for layer in 0..10 {
        // The giants of this layer first (they are what the layer is built around), then
        // the regular packages; emerge would print them interleaved, so shuffle a little.
        let mut members: Vec<Option<usize>> = GIANTS
            .iter()
            .enumerate()
            .filter(|(_, g)| g.1 == layer)
            .map(|(i, _)| Some(i))
            .collect();
        members.extend(std::iter::repeat_n(None, per_layer[layer]));
        for i in (1..members.len()).rev() {
            let j = rng.below(i + 1);
            members.swap(i, j);
        }
        for m in members {
            let id = packages.len();
            let pkg = match m {
                Some(g) => {
                    let (atom, _, est, deps) = GIANTS[g];
                    giant_index.insert(atom, id);
                    GraphPackage {
                        atom: atom.to_string(),
                        deps: deps.iter().map(|d| d.to_string()).collect(),
                        estimate_s: Some(est),
                    }
                }
                None => {
                    counter += 1;
                    let cats = LAYER_CATEGORIES[layer];
                    let cat = cats[rng.below(cats.len())];
                    let version =
                        format!("{}.{}.{}", 1 + rng.below(9), rng.below(20), rng.below(10));
                    let est = (40.0 * (1.1 * rng.normal()).exp()).clamp(3.0, 1200.0);
                    let mut deps: Vec<String> = Vec::new();
                    if layer > 0 {
                        // 1 + geometric, at most 12.
                        let mut k = 1;
                        while k < 12 && rng.unit() < 0.62 {
                            k += 1;
                        }
                        for _ in 0..k {
                            let from = if rng.unit() < 0.5 {
                                layer - 1
                            } else {
                                rng.below(layer)
                            };
                            let pool = &layer_members[from];
                            if pool.is_empty() {
                                continue;
                            }
                            // Popular packages (early in their layer) are depended on more.
                            let u = rng.unit();
                            let pick = pool[((u * u) * pool.len() as f64) as usize % pool.len()];
                            let a: &String = &packages[pick].atom;
                            if !deps.contains(a) {
                                deps.push(a.clone());
                            }
                        }
                        // Some packages need a giant of an earlier layer (a Qt app, a
                        // Python module, a Rust program).
                        if rng.unit() < 0.15 {
                            let earlier: Vec<&str> =
                                GIANTS.iter().filter(|g| g.1 < layer).map(|g| g.0).collect();
                            if !earlier.is_empty() {
                                let g = earlier[rng.below(earlier.len())].to_string();
                                if !deps.contains(&g) {
                                    deps.push(g);
                                }
                            }
                        }
                    }
                    GraphPackage {
                        atom: format!("{cat}/pkg{counter}-{version}"),
                        deps,
                        estimate_s: Some((est * 10.0).round() / 10.0),
                    }
                }
            };
            packages.push(pkg);
            layer_members[layer].push(id);
        }
    }
    Graph { packages }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_sets_are_valid_and_deterministic() {
        let g = generate(1500, 7);
        assert_eq!(g.packages.len(), 1500);
        let again = generate(1500, 7);
        assert_eq!(g.to_json(), again.to_json());
        let b = g.bound(8).unwrap();
        assert!(b.critical_path_s > 10_000.0, "{b:?}");
        assert!(b.lower_bound_s >= b.total_work_s / 8.0);
        // Every atom parses and the set is accepted by the orchestrator's parser.
        let set = build_swarm::domain::package_set::parse_package_set(&g.to_json()).unwrap();
        assert_eq!(set.packages.len(), 1500);
    }

    #[test]
    fn bound_of_a_chain_and_a_fan() {
        let g = Graph::parse(
            r#"{"packages":[{"atom":"a/a-1","estimate_s":10},{"atom":"a/b-1","deps":["a/a-1"],"estimate_s":5},
               {"atom":"a/c-1","estimate_s":30},{"atom":"a/d-1"}]}"#,
        )
        .unwrap();
        let b = g.bound(1).unwrap();
        assert_eq!(b.critical_path_s, 30.0);
        assert_eq!(b.total_work_s, 46.0);
        assert_eq!(b.lower_bound_s, 46.0);
        assert_eq!(g.bound(4).unwrap().lower_bound_s, 30.0);
        assert!(Graph::parse(r#"{"packages":[{"atom":"a/a-1","deps":["a/x-1"]}]}"#).is_err());
    }
}
