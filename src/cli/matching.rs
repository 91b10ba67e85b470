//! Which drone does the operator mean? Pure functions over the drone list (docs/contract.md §6).
//!
//! Tiers, first one with any match decides (one match wins, several are ambiguous):
//! 1. the exact name;
//! 2. an exact alias or host name (case-insensitive; `masai` also matches host
//!    `masai.tailnet.example`);
//! 3. the same name, alias or host once both sides are normalized: lower case, a leading
//!    `drone-` and a trailing `-host` dropped (`Titawin-Host` → `drone-Titawin`);
//! 4. a prefix of a normalized name, alias or host;
//! 5. a substring of one.

use std::fmt;

/// What matching looks at in one drone.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub aliases: &'a [String],
    pub host: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchError {
    NoMatch {
        query: String,
        /// Every drone's name.
        known: Vec<String>,
        /// The closest name (a drone's, or a command's, `name (a command)`).
        suggestion: Option<String>,
    },
    Ambiguous {
        query: String,
        /// The names of the drones that matched.
        matches: Vec<String>,
    },
}

impl fmt::Display for MatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchError::NoMatch {
                query,
                known,
                suggestion,
            } => {
                write!(f, "no drone matches `{query}`")?;
                if let Some(s) = suggestion {
                    write!(f, "; did you mean {s}?")?;
                }
                if known.is_empty() {
                    write!(f, " (no drones are registered)")
                } else {
                    write!(f, " (drones: {})", known.join(", "))
                }
            }
            MatchError::Ambiguous { query, matches } => write!(
                f,
                "`{query}` matches several drones: {}; give more of the name",
                matches.join(", ")
            ),
        }
    }
}

impl std::error::Error for MatchError {}

/// Lower case, without a leading `drone-` and a trailing `-host` (or `_`/`.` forms).
pub fn normalize(s: &str) -> String {
    let mut s = s.trim().to_lowercase();
    for prefix in ["drone-", "drone_", "drone."] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest.to_string();
            break;
        }
    }
    for suffix in ["-host", "_host", ".host"] {
        if let Some(rest) = s.strip_suffix(suffix) {
            s = rest.to_string();
            break;
        }
    }
    s
}

/// The first label of a host name (`masai` of `masai.lan`); `None` for IP addresses.
fn short_host(host: &str) -> Option<&str> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    host.split_once('.').map(|(first, _)| first)
}

/// Every string a drone can be called by: name, aliases, host and short host.
fn keys<'a>(c: &Candidate<'a>) -> Vec<&'a str> {
    let mut k = vec![c.name];
    k.extend(c.aliases.iter().map(String::as_str));
    if !c.host.is_empty() {
        k.push(c.host);
        k.extend(short_host(c.host));
    }
    k
}

/// Index of the one drone `query` means.
pub fn match_drone(query: &str, candidates: &[Candidate<'_>]) -> Result<usize, MatchError> {
    let q = query.trim();
    let nq = normalize(q);
    let tiers: [&dyn Fn(&Candidate<'_>) -> bool; 5] = [
        &|c| c.name == q,
        &|c| keys(c)[1..].iter().any(|k| k.eq_ignore_ascii_case(q)),
        &|c| !nq.is_empty() && keys(c).iter().any(|k| normalize(k) == nq),
        &|c| !nq.is_empty() && keys(c).iter().any(|k| normalize(k).starts_with(&nq)),
        &|c| !nq.is_empty() && keys(c).iter().any(|k| normalize(k).contains(&nq)),
    ];
    for tier in tiers {
        let hits: Vec<usize> = (0..candidates.len())
            .filter(|&i| tier(&candidates[i]))
            .collect();
        match hits.as_slice() {
            [] => continue,
            [one] => return Ok(*one),
            many => {
                return Err(MatchError::Ambiguous {
                    query: q.to_string(),
                    matches: many
                        .iter()
                        .map(|&i| candidates[i].name.to_string())
                        .collect(),
                })
            }
        }
    }
    let suggestion = candidates
        .iter()
        .flat_map(|c| keys(c).into_iter().map(move |k| (c.name, k)))
        .map(|(name, k)| (edit_distance(&nq, &normalize(k)), name))
        .filter(|(d, _)| *d <= close_enough(&nq))
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| format!("`{name}`"));
    Err(MatchError::NoMatch {
        query: q.to_string(),
        known: candidates.iter().map(|c| c.name.to_string()).collect(),
        suggestion,
    })
}

/// Largest edit distance still worth a "did you mean".
fn close_enough(word: &str) -> usize {
    (word.chars().count() / 3).max(2)
}

/// The closest of `words` to `query`, if it is close enough.
pub fn closest<'a>(query: &str, words: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let q = query.to_lowercase();
    words
        .into_iter()
        .map(|w| (edit_distance(&q, &w.to_lowercase()), w))
        .filter(|(d, _)| *d <= close_enough(&q))
        .min_by_key(|(d, _)| *d)
        .map(|(_, w)| w)
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    struct D(&'static str, Vec<String>, &'static str);

    fn fleet() -> Vec<D> {
        vec![
            D("drone-Mirach", vec!["masai".into()], "100.64.0.18"),
            D("drone-Icarus", vec![], "icarus.lan"),
            D("drone-Tau-Ceti", vec![], "10.0.0.7"),
            D("drone-Titawin", vec![], "titawin.tailnet.example"),
        ]
    }

    fn find(query: &str, fleet: &[D]) -> Result<&'static str, MatchError> {
        let cands: Vec<Candidate<'_>> = fleet
            .iter()
            .map(|d| Candidate {
                name: d.0,
                aliases: &d.1,
                host: d.2,
            })
            .collect();
        match_drone(query, &cands).map(|i| fleet[i].0)
    }

    #[test]
    fn the_seeds_examples() {
        let f = fleet();
        assert_eq!(find("drone-Titawin", &f).unwrap(), "drone-Titawin");
        assert_eq!(find("Titawin-Host", &f).unwrap(), "drone-Titawin");
        assert_eq!(find("masai", &f).unwrap(), "drone-Mirach");
        assert_eq!(find("drone-Tau-Ceti", &f).unwrap(), "drone-Tau-Ceti");
    }

    #[test]
    fn names_aliases_hosts_prefixes_and_substrings() {
        let f = fleet();
        assert_eq!(find("titawin", &f).unwrap(), "drone-Titawin");
        assert_eq!(find("TITAWIN", &f).unwrap(), "drone-Titawin");
        assert_eq!(find("100.64.0.18", &f).unwrap(), "drone-Mirach");
        assert_eq!(find("icarus.lan", &f).unwrap(), "drone-Icarus");
        assert_eq!(find("icarus", &f).unwrap(), "drone-Icarus");
        assert_eq!(find("tau", &f).unwrap(), "drone-Tau-Ceti");
        assert_eq!(find("ceti", &f).unwrap(), "drone-Tau-Ceti");
        assert_eq!(find("mir", &f).unwrap(), "drone-Mirach");
        assert_eq!(find("titawin.tailnet", &f).unwrap(), "drone-Titawin");
    }

    #[test]
    fn exact_beats_partial() {
        let f = vec![
            D("a", vec![], ""),
            D("ab", vec![], ""),
            D("build1", vec!["a".into()], ""),
        ];
        assert_eq!(find("a", &f).unwrap(), "a", "exact name before alias");
        assert_eq!(find("A", &f).unwrap(), "build1", "then exact alias");
        assert_eq!(find("ab", &f).unwrap(), "ab");
    }

    #[test]
    fn ambiguity_lists_the_matches() {
        let f = fleet();
        let err = find("t", &f).unwrap_err();
        match &err {
            MatchError::Ambiguous { matches, .. } => {
                assert_eq!(matches, &["drone-Tau-Ceti", "drone-Titawin"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("several drones"), "{err}");
        // A substring shared by several is just as ambiguous.
        assert!(matches!(
            find("a", &f).unwrap_err(),
            MatchError::Ambiguous { .. }
        ));
    }

    #[test]
    fn no_match_lists_every_drone_and_suggests_the_closest() {
        let f = fleet();
        let err = find("titawni", &f).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("did you mean `drone-Titawin`"), "{text}");
        for d in &f {
            assert!(text.contains(d.0), "{text}");
        }
        let err = find("zzzzzzzz", &f).unwrap_err();
        assert!(!err.to_string().contains("did you mean"), "{err}");
        let err = find("x", &[]).unwrap_err();
        assert!(
            err.to_string().contains("no drones are registered"),
            "{err}"
        );
        assert!(find("drone-", &f).is_err());
    }

    #[test]
    fn normalizing_and_distances() {
        assert_eq!(normalize("Titawin-Host"), "titawin");
        assert_eq!(normalize("drone-Tau-Ceti"), "tau-ceti");
        assert_eq!(edit_distance("status", "stauts"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(closest("stauts", ["status", "drones"]), Some("status"));
        assert_eq!(closest("qqqqqq", ["status", "drones"]), None);
    }
}
