//! The binhost's `Packages` index as Portage writes it (`portage.getbinpkg.PackageIndex`,
//! `emaint binhost --fix`): a header block, then one `KEY: value` block per package file,
//! sorted by CPV, keys sorted, empty values and defaults left out. Plain text in, plain
//! text out; [`super::index_file`] puts it on disk.

use super::metadata::Metadata;
use std::collections::{BTreeMap, HashSet};

/// Index format version Portage reads (`VERSION: 0`).
pub const VERSION: &str = "0";

/// Metadata keys an entry takes from the package (Portage's `_aux_cache_keys`, less the
/// ones computed from the file). `repository` is written `REPO`.
const METADATA_KEYS: &[&str] = &[
    "BDEPEND",
    "BUILD_ID",
    "BUILD_TIME",
    "CHOST",
    "DEFINED_PHASES",
    "DEPEND",
    "EAPI",
    "IDEPEND",
    "IUSE",
    "KEYWORDS",
    "LICENSE",
    "PDEPEND",
    "PROPERTIES",
    "PROVIDES",
    "RDEPEND",
    "REQUIRES",
    "RESTRICT",
    "SLOT",
    "USE",
    "USER_PATCHES",
    "repository",
];

/// Keys whose USE conditionals are evaluated against the package's `USE`.
const USE_EVALUATED: &[&str] = &[
    "BDEPEND",
    "DEPEND",
    "IDEPEND",
    "LICENSE",
    "PDEPEND",
    "PROPERTIES",
    "RDEPEND",
    "RESTRICT",
];

/// Values an entry leaves out because a reader assumes them.
const DEFAULTS: &[(&str, &str)] = &[("EAPI", "0"), ("SLOT", "0")];

/// Keys an entry leaves out when the header has the same value.
pub const INHERITED: &[&str] = &["CHOST", "repository"];

/// How an internal key is written.
fn written(key: &str) -> &str {
    match key {
        "_mtime_" => "MTIME",
        "repository" => "REPO",
        "DESCRIPTION" => "DESC",
        k => k,
    }
}

/// How a written key is read back.
fn internal(key: &str) -> &str {
    match key {
        "MTIME" => "_mtime_",
        "REPO" => "repository",
        "DESC" => "DESCRIPTION",
        k => k,
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IndexError {
    #[error("the metadata has no {0}")]
    Missing(&'static str),
    #[error("{key}: {message}")]
    Dependency { key: String, message: String },
}

/// What the index says about the file itself.
#[derive(Debug, Clone, PartialEq)]
pub struct FileFacts {
    /// Relative to the binhost directory.
    pub path: String,
    pub size: u64,
    pub md5: String,
    pub sha1: String,
    /// Unix seconds of the published file.
    pub mtime: u64,
}

/// One package file's entry: internal key → value (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    keys: BTreeMap<String, String>,
}

impl Entry {
    /// The entry of a package file from its metadata, as `emaint binhost --fix` makes it.
    pub fn new(meta: &Metadata, file: &FileFacts) -> Result<Entry, IndexError> {
        let norm = |k: &str| {
            meta.get(k)
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        };
        let category = norm("CATEGORY")
            .filter(|v| !v.is_empty())
            .ok_or(IndexError::Missing("CATEGORY"))?;
        let pf = norm("PF")
            .filter(|v| !v.is_empty())
            .ok_or(IndexError::Missing("PF"))?;
        let mut keys = BTreeMap::new();
        for k in METADATA_KEYS {
            if let Some(v) = norm(k) {
                keys.insert(k.to_string(), v);
            }
        }
        let use_flags: HashSet<String> = keys
            .get("USE")
            .map(|u| u.split(' ').map(str::to_string).collect())
            .unwrap_or_default();
        for k in USE_EVALUATED {
            if let Some(v) = keys.get_mut(*k) {
                *v = use_reduce(v, &use_flags).map_err(|message| IndexError::Dependency {
                    key: k.to_string(),
                    message,
                })?;
            }
        }
        keys.insert("CPV".into(), format!("{category}/{pf}"));
        keys.insert("PATH".into(), file.path.clone());
        keys.insert("SIZE".into(), file.size.to_string());
        keys.insert("MD5".into(), file.md5.clone());
        keys.insert("SHA1".into(), file.sha1.clone());
        keys.insert("_mtime_".into(), file.mtime.to_string());
        keys.retain(|_, v| !v.is_empty());
        Ok(Entry { keys })
    }

    /// An entry read back from an index (written keys).
    pub fn from_written(block: BTreeMap<String, String>) -> Option<Entry> {
        let keys: BTreeMap<String, String> = block
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (internal(&k).to_string(), v))
            .collect();
        (keys.contains_key("CPV") && keys.contains_key("PATH")).then_some(Entry { keys })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.keys.get(internal(key)).map(String::as_str)
    }

    pub fn cpv(&self) -> &str {
        self.get("CPV").unwrap_or_default()
    }

    pub fn path(&self) -> &str {
        self.get("PATH").unwrap_or_default()
    }

    pub fn size(&self) -> Option<u64> {
        self.get("SIZE")?.parse().ok()
    }

    pub fn mtime(&self) -> Option<u64> {
        self.get("MTIME")?.parse().ok()
    }

    /// The block written for this entry under `header` (inherited keys equal to the
    /// header's and defaults are left out), ending with the blank line.
    pub fn render(&self, header: &Header) -> String {
        let mut out = String::with_capacity(512);
        for (k, v) in &self.keys {
            if INHERITED.contains(&k.as_str()) && header.keys.get(k) == Some(v) {
                continue;
            }
            if DEFAULTS.iter().any(|(dk, dv)| dk == k && dv == v) {
                continue;
            }
            // Keys sort by their internal names (`_mtime_`, `repository` last), as Portage's.
            push_line(&mut out, k, v);
        }
        out.push('\n');
        out
    }
}

/// One `KEY: value` line, the key as Portage writes it.
fn push_line(out: &mut String, key: &str, value: &str) {
    out.push_str(written(key));
    out.push_str(": ");
    out.push_str(value);
    out.push('\n');
}

/// The header's own keys (the profile and configuration), without `PACKAGES`,
/// `TIMESTAMP` and `VERSION`, which [`render`] adds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    pub keys: BTreeMap<String, String>,
}

/// The whole index: the header with `PACKAGES`, `TIMESTAMP` and `VERSION`, then the
/// entries' blocks (each from [`Entry::render`], already in CPV order).
pub fn render<'a>(
    header: &Header,
    timestamp: u64,
    count: usize,
    blocks: impl Iterator<Item = &'a str>,
    size_hint: usize,
) -> String {
    let mut keys = header.keys.clone();
    keys.insert("PACKAGES".into(), count.to_string());
    keys.insert("TIMESTAMP".into(), timestamp.to_string());
    keys.insert("VERSION".into(), VERSION.into());
    let mut out = String::with_capacity(size_hint + 1024);
    for (k, v) in &keys {
        if !v.is_empty() {
            push_line(&mut out, k, v);
        }
    }
    out.push('\n');
    for b in blocks {
        out.push_str(b);
    }
    out
}

/// An index read back: the header's keys and each entry's (written keys).
#[derive(Debug, Default)]
pub struct Parsed {
    pub header: BTreeMap<String, String>,
    pub entries: Vec<BTreeMap<String, String>>,
}

impl Parsed {
    pub fn timestamp(&self) -> Option<u64> {
        self.header.get("TIMESTAMP")?.parse().ok()
    }
}

/// Reads an index as Portage does: blocks of `KEY: value` lines separated by blank lines;
/// lines without `:` are skipped.
pub fn parse(text: &str) -> Parsed {
    let mut blocks = text.split("\n\n").map(|block| {
        block
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()))
            })
            .collect::<BTreeMap<String, String>>()
    });
    let header = blocks.next().unwrap_or_default();
    let entries = blocks.filter(|b| b.contains_key("CPV")).collect();
    Parsed { header, entries }
}

// ------------------------------------------------------------ USE conditionals

/// A dependency string as written.
enum Raw {
    Token(String),
    Group(Vec<Raw>),
    AnyOf(Vec<Raw>),
    Cond {
        flag: String,
        negated: bool,
        body: Vec<Raw>,
    },
}

/// What is left once the conditionals are evaluated.
enum Node {
    Token(String),
    AnyOf(Vec<Node>),
    All(Vec<Node>),
}

/// Evaluates `flag? ( … )` and `!flag? ( … )` against `use_flags` and writes the result
/// the way Portage's `use_reduce` + `paren_enclose` do: plain groups flattened (kept only
/// as a choice of an `|| ( … )`), `|| ( … )` kept, with one choice left just that choice.
/// Metadata Portage wrote is evaluated already; this is for packages other tools made.
pub fn use_reduce(deps: &str, use_flags: &HashSet<String>) -> Result<String, String> {
    let tokens: Vec<&str> = deps.split_whitespace().collect();
    let mut at = 0;
    let raw = parse_seq(&tokens, &mut at, 0)?;
    if at != tokens.len() {
        return Err("`)` without `(`".into());
    }
    let mut out = Vec::new();
    for n in &eval(&raw, use_flags, false) {
        write_node(n, &mut out);
    }
    Ok(out.join(" "))
}

/// Elements up to a `)` (not consumed) or the end.
fn parse_seq(tokens: &[&str], at: &mut usize, depth: usize) -> Result<Vec<Raw>, String> {
    if depth > 64 {
        return Err("parentheses nested too deep".into());
    }
    let mut out = Vec::new();
    while let Some(&t) = tokens.get(*at) {
        if t == ")" {
            break;
        }
        *at += 1;
        if t == "(" {
            out.push(Raw::Group(group(tokens, at, depth)?));
        } else if t == "||" {
            expect_open(tokens, at, t)?;
            out.push(Raw::AnyOf(group(tokens, at, depth)?));
        } else if let Some(flag) = t.strip_suffix('?') {
            let (negated, flag) = match flag.strip_prefix('!') {
                Some(f) => (true, f),
                None => (false, flag),
            };
            if flag.is_empty() {
                return Err(format!("`{t}` names no USE flag"));
            }
            expect_open(tokens, at, t)?;
            out.push(Raw::Cond {
                flag: flag.to_string(),
                negated,
                body: group(tokens, at, depth)?,
            });
        } else {
            out.push(Raw::Token(t.to_string()));
        }
    }
    Ok(out)
}

fn expect_open(tokens: &[&str], at: &mut usize, after: &str) -> Result<(), String> {
    if tokens.get(*at) != Some(&"(") {
        return Err(format!("`{after}` not followed by `(`"));
    }
    *at += 1;
    Ok(())
}

/// The body of a group whose `(` was consumed, and its `)`.
fn group(tokens: &[&str], at: &mut usize, depth: usize) -> Result<Vec<Raw>, String> {
    let body = parse_seq(tokens, at, depth + 1)?;
    if tokens.get(*at) != Some(&")") {
        return Err("`(` without `)`".into());
    }
    *at += 1;
    Ok(body)
}

fn eval(raw: &[Raw], use_flags: &HashSet<String>, choices: bool) -> Vec<Node> {
    let mut out = Vec::new();
    for r in raw {
        match r {
            Raw::Token(t) => out.push(Node::Token(t.clone())),
            Raw::Cond {
                flag,
                negated,
                body,
            } => {
                if use_flags.contains(flag) != *negated {
                    out.extend(eval(body, use_flags, choices));
                }
            }
            Raw::Group(body) => {
                let inner = eval(body, use_flags, false);
                if choices && inner.len() > 1 {
                    out.push(Node::All(inner));
                } else {
                    out.extend(inner);
                }
            }
            Raw::AnyOf(body) => {
                let mut inner = eval(body, use_flags, true);
                match inner.len() {
                    0 => {}
                    1 => out.append(&mut inner),
                    _ => out.push(Node::AnyOf(inner)),
                }
            }
        }
    }
    out
}

fn write_node(n: &Node, out: &mut Vec<String>) {
    let (open, children) = match n {
        Node::Token(t) => {
            out.push(t.clone());
            return;
        }
        Node::AnyOf(v) => (Some("||"), v),
        Node::All(v) => (None, v),
    };
    out.extend(open.map(str::to_string));
    out.push("(".into());
    for c in children {
        write_node(c, out);
    }
    out.push(")".into());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(f: &[&str]) -> HashSet<String> {
        f.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn use_conditionals_are_evaluated_and_groups_written_as_portage_does() {
        let u = flags(&["foo"]);
        let r = |s: &str| use_reduce(s, &u).unwrap();
        assert_eq!(r("a  b\n c"), "a b c");
        assert_eq!(r("foo? ( a ) bar? ( b ) !bar? ( c )"), "a c");
        assert_eq!(r("|| ( a b ) ( c d )"), "|| ( a b ) c d");
        assert_eq!(r("|| ( bar? ( a ) b )"), "b");
        assert_eq!(r("|| ( ( a b ) c )"), "|| ( ( a b ) c )");
        assert_eq!(r("foo? ( || ( x y ) )"), "|| ( x y )");
        assert_eq!(r("sw-libs/liba:0/1=[foo]"), "sw-libs/liba:0/1=[foo]");
        for bad in ["( a", "a )", "foo? a", "|| a", "? ( a )"] {
            assert!(use_reduce(bad, &u).is_err(), "{bad}");
        }
    }

    fn facts(path: &str) -> FileFacts {
        FileFacts {
            path: path.into(),
            size: 10240,
            md5: "m".into(),
            sha1: "s".into(),
            mtime: 7,
        }
    }

    #[test]
    fn an_entry_leaves_out_defaults_empties_and_what_the_header_says() {
        let meta: Metadata = [
            ("CATEGORY", "sw-apps\n"),
            ("PF", "appb-2.0\n"),
            ("SLOT", "0\n"),
            ("EAPI", "8\n"),
            ("IUSE", "\n"),
            ("CHOST", "x86_64-pc-linux-gnu\n"),
            ("repository", "swarm-demo\n"),
            ("USE", "amd64 foo\n"),
            ("RDEPEND", "foo? ( a )\n bar? ( b )"),
            ("DESCRIPTION", "not in the index"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let e = Entry::new(&meta, &facts("sw-apps/appb/appb-2.0-1.gpkg.tar")).unwrap();
        let mut h = Header::default();
        h.keys.insert("CHOST".into(), "x86_64-pc-linux-gnu".into());
        assert_eq!(
            e.render(&h),
            "CPV: sw-apps/appb-2.0\nEAPI: 8\nMD5: m\nPATH: sw-apps/appb/appb-2.0-1.gpkg.tar\n\
             RDEPEND: a\nSHA1: s\nSIZE: 10240\nUSE: amd64 foo\nMTIME: 7\nREPO: swarm-demo\n\n"
        );
        // Without CHOST in the header the entry keeps its own.
        assert!(e
            .render(&Header::default())
            .contains("CHOST: x86_64-pc-linux-gnu\n"));
        let text = render(&h, 99, 1, std::iter::once(e.render(&h).as_str()), 0);
        assert!(text.starts_with(
            "CHOST: x86_64-pc-linux-gnu\nPACKAGES: 1\nTIMESTAMP: 99\nVERSION: 0\n\nCPV:"
        ));
        let back = parse(&text);
        assert_eq!(back.timestamp(), Some(99));
        let again = Entry::from_written(back.entries[0].clone()).unwrap();
        assert_eq!(again.render(&h), e.render(&h));
        assert_eq!(again.path(), "sw-apps/appb/appb-2.0-1.gpkg.tar");
        assert_eq!((again.size(), again.mtime()), (Some(10240), Some(7)));
    }

    #[test]
    fn metadata_without_a_name_has_no_entry() {
        let meta: Metadata = [("PF".to_string(), "a-1".to_string())]
            .into_iter()
            .collect();
        assert_eq!(
            Entry::new(&meta, &facts("x")),
            Err(IndexError::Missing("CATEGORY"))
        );
    }
}
