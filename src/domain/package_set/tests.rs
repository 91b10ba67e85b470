//! Tests of the parent module.

use super::*;

fn atom(s: &str) -> Atom {
    Atom::parse(s).unwrap()
}

fn atoms(set: &PackageSet) -> Vec<String> {
    set.packages.iter().map(|p| p.atom.to_string()).collect()
}

fn ok(text: &str) -> PackageSet {
    match parse_package_set(text) {
        Ok(set) => set,
        Err(e) => panic!("should parse, got: {e}\n---\n{text}"),
    }
}

fn err(text: &str) -> SetError {
    match parse_package_set(text) {
        Ok(set) => panic!("should be refused, got {set:?}\n---\n{text}"),
        Err(e) => e,
    }
}

fn msg(text: &str) -> String {
    err(text).to_string()
}

// ---- plain -----------------------------------------------------------

#[test]
fn plain_list_with_comments_equals_and_blank_lines() {
    let set = ok("# my world\n\
                  app-misc/foo-1.0\n\
                  \n\
                  =dev-libs/libxml2-2.12.6   # pinned\n\
                  \t  kde-plasma/plasma-workspace-5.27.10-r1  \n\
                  # trailing comment\n\
                  x11-libs/gtk+-3.24.41#not-a-comment-but-fine?\n"
        .replace("#not-a-comment-but-fine?", " #comment")
        .as_str());
    assert_eq!(set.format, SetFormat::Plain);
    assert_eq!(set.skipped, 0);
    assert_eq!(
        atoms(&set),
        [
            "app-misc/foo-1.0",
            "dev-libs/libxml2-2.12.6",
            "kde-plasma/plasma-workspace-5.27.10-r1",
            "x11-libs/gtk+-3.24.41"
        ]
    );
    assert!(set
        .packages
        .iter()
        .all(|p| p.deps.is_empty() && p.estimate_s.is_none()));
}

#[test]
fn plain_crlf_and_no_final_newline() {
    let set = ok("# list\r\napp-misc/a-1\r\n\r\n=app-misc/b-2 # c\r\napp-misc/c-3");
    assert_eq!(
        atoms(&set),
        ["app-misc/a-1", "app-misc/b-2", "app-misc/c-3"]
    );
    let e = err("app-misc/a-1\r\napp-misc/a-1\r\n");
    assert_eq!(
        e.to_string(),
        "line 2: `app-misc/a-1` is listed twice (first on line 1)"
    );
}

#[test]
fn plain_single_atom_and_bom() {
    let set = ok("\u{feff}app-misc/foo-1.0");
    assert_eq!(atoms(&set), ["app-misc/foo-1.0"]);
}

#[test]
fn plain_invalid_atom_names_line_and_atom() {
    assert_eq!(
        msg("app-misc/a-1\n# c\ncat/na me-1\n"),
        "line 3: `cat/na me-1` is not a valid atom: whitespace is not allowed"
    );
    assert_eq!(
        msg("app-misc/a-1\ncat/foo-1;rm -rf /\n"),
        "line 2: `cat/foo-1;rm -rf /` is not a valid atom: character `;` is not allowed"
    );
    assert_eq!(
        msg("cat/foo-1;rm\n"),
        "line 1: `cat/foo-1;rm` is not a valid atom: character `;` is not allowed"
    );
    assert_eq!(
        msg("../../etc/passwd-1"),
        "line 1: `../../etc/passwd-1` is not a valid atom: `..` is not allowed"
    );
    assert_eq!(
        msg("a/b-1\nb/c-1\ncat/foo\n"),
        "line 3: `cat/foo` is not a valid atom: it has no version (expected `category/name-version`, e.g. `app-misc/foo-1.0`)"
    );
    assert!(matches!(
        err("a/b-1\n\ncat/foo-1#x\n"),
        SetError::InvalidAtom {
            at: Location::Line(3),
            error: AtomError::ForbiddenChar { ch: '#', .. }
        }
    ));
}

#[test]
fn plain_only_one_leading_equals() {
    assert!(matches!(
        err("==app-misc/a-1"),
        SetError::InvalidAtom {
            at: Location::Line(1),
            error: AtomError::ForbiddenChar { ch: '=', .. }
        }
    ));
    assert!(matches!(
        err(">=app-misc/a-1"),
        SetError::InvalidAtom {
            error: AtomError::ForbiddenChar { ch: '>', .. },
            ..
        }
    ));
    assert!(matches!(
        err("= app-misc/a-1"),
        SetError::InvalidAtom {
            error: AtomError::Whitespace { .. },
            ..
        }
    ));
    // Repository and slot suffixes are Portage-output things only.
    assert!(matches!(
        err("app-misc/a-1::gentoo"),
        SetError::InvalidAtom {
            error: AtomError::ForbiddenChar { ch: ':', .. },
            ..
        }
    ));
}

#[test]
fn plain_two_atoms_on_a_line() {
    assert_eq!(
        msg("app-misc/a-1\napp-misc/b-1 =app-misc/c-1\n"),
        "line 2: `app-misc/b-1 =app-misc/c-1` holds more than one atom; list one atom per line"
    );
    assert_eq!(
        err("app-misc/b-1\tapp-misc/c-1 # both"),
        SetError::MultipleAtoms {
            line: 1,
            text: "app-misc/b-1\tapp-misc/c-1".to_string()
        }
    );
}

#[test]
fn plain_empty_sets() {
    for text in [
        "",
        "\n\n",
        "# nothing\n   # at all\r\n\t\n",
        "\u{feff}",
        "   ",
    ] {
        assert_eq!(err(text), SetError::Empty, "{text:?}");
    }
    assert_eq!(SetError::Empty.to_string(), "the package set is empty");
}

#[test]
fn plain_non_ascii_and_control_characters() {
    assert_eq!(
        msg("app-misc/a-1\napp-misc/café-1\n"),
        "line 2: `app-misc/caf\\u{e9}-1` is not a valid atom: non-ASCII character U+00E9 is not allowed"
    );
    assert!(matches!(
        err("app-misc/a-1\u{1b}[0m"),
        SetError::InvalidAtom {
            error: AtomError::ForbiddenChar { ch: '\u{1b}', .. },
            ..
        }
    ));
    // A bare CR inside a line is not a line ending.
    assert!(matches!(
        err("app-misc/a-1\rapp-misc/b-1\n"),
        SetError::InvalidAtom { .. } | SetError::MultipleAtoms { .. }
    ));
    // Lines full of multibyte characters must not trip byte slicing.
    for text in [
        "日本語 # コメント",
        "#日本語\n💥",
        "é#",
        "é #x",
        "=é",
        "=",
        "#",
        " = ",
        "\u{2028}app-misc/a-1",
    ] {
        let _ = parse_package_set(text).map_err(|e| e.to_string());
    }
}

#[test]
fn plain_lines_starting_with_a_bracket_are_atoms_not_portage() {
    assert!(matches!(
        err("[foo] app-misc/a-1"),
        SetError::InvalidAtom {
            error: AtomError::ForbiddenChar { ch: '[', .. },
            ..
        }
    ));
}

// ---- portage ---------------------------------------------------------

const EMERGE: &str = "\
These are the packages that would be merged, in order:

Calculating dependencies... done!
[ebuild  N     ] dev-libs/libxml2-2.12.6::gentoo  USE=\"ftp -icu\" 0 KiB
[binary   R    ] sys-libs/zlib-1.3.1-r1::gentoo  0 KiB
[ebuild     U  ] kde-plasma/plasma-workspace-5.27.10-r1::gentoo [5.27.9::gentoo] 0 KiB
[ebuild   R    ] x11-libs/gtk+-3.24.41:3::gentoo
[blocks B      ] sys-apps/old-thing (\"sys-apps/old-thing\" is soft blocking sys-apps/new-1)
[ebuild  NS    ] dev-lang/python-3.12.1_rc2:3.12/3.12::gentoo
[uninstall     ] app-misc/gone-1::gentoo
[nomerge       ] app-misc/parent-1::gentoo
[ebuild  N    ~] virtual/perl-Scalar-List-Utils-1.630.0
[ebuild  rR    ] dev-perl/Locale-gettext-1.70.0-r1::gentoo

Total: 7 packages (1 upgrade, 3 new, 1 in new slot, 1 reinstall, 1 binary), Size of downloads: 0 KiB
Conflict: 1 block
";

#[test]
fn portage_output_keeps_ebuild_lines_in_order() {
    let set = ok(EMERGE);
    assert_eq!(set.format, SetFormat::Portage);
    assert_eq!(
        atoms(&set),
        [
            "dev-libs/libxml2-2.12.6",
            "kde-plasma/plasma-workspace-5.27.10-r1",
            "x11-libs/gtk+-3.24.41",
            "dev-lang/python-3.12.1_rc2",
            "virtual/perl-Scalar-List-Utils-1.630.0",
            "dev-perl/Locale-gettext-1.70.0-r1",
        ]
    );
    assert_eq!(set.skipped, 4);
    let crlf = EMERGE.replace('\n', "\r\n");
    assert_eq!(ok(&crlf), set);
}

#[test]
fn portage_detected_by_binary_lines_too() {
    assert_eq!(
        err("[binary   R    ] sys-libs/zlib-1.3.1::gentoo\n"),
        SetError::NothingToBuild { skipped: 1 }
    );
    assert_eq!(
        msg("Calculating dependencies... done!\n[binary  N ] a/b-1\n[binary  N ] a/c-1\nTotal: 2 packages\n"),
        "the package set is empty: nothing to build (2 `[binary]`, `[uninstall]`, `[blocks]` or `[nomerge]` lines skipped)"
    );
}

#[test]
fn portage_with_colours() {
    let text = "\u{1b}[32;01m*\u{1b}[0m notice\n\
                [\u{1b}[32;01mebuild\u{1b}[0m  \u{1b}[32;01mN\u{1b}[0m     ] \u{1b}[32;01mapp-misc/foo-1.0\u{1b}[0m::\u{1b}[0;32mgentoo\u{1b}[0m\n\
                \u{1b}[1m[binary   R    ]\u{1b}[0m app-misc/bar-2\n";
    let set = ok(text);
    assert_eq!(atoms(&set), ["app-misc/foo-1.0"]);
    assert_eq!(set.skipped, 1);
}

#[test]
fn portage_invalid_atom_names_the_line() {
    let text = "Calculating dependencies... done!\n\
                [ebuild  N     ] app-misc/a-1::gentoo\n\
                [ebuild  N     ] app-misc/b;rm-1::gentoo\n";
    assert_eq!(
        msg(text),
        "line 3: `app-misc/b;rm-1` is not a valid atom: character `;` is not allowed"
    );
    assert!(matches!(
        err("[ebuild  N ] ../../etc/passwd-1::x"),
        SetError::InvalidAtom {
            at: Location::Line(1),
            error: AtomError::DotDot { .. }
        }
    ));
    assert!(matches!(
        err("[ebuild  N ] ::gentoo"),
        SetError::InvalidAtom {
            error: AtomError::Empty,
            ..
        }
    ));
}

#[test]
fn portage_malformed_bracket_lines() {
    assert_eq!(
        msg("[ebuild  N     ] a/b-1\n[ebuild  N  app-misc/c-1\n"),
        "line 2: `[ebuild  N  app-misc/c-1` is not a valid emerge line: it has no closing `]`"
    );
    assert_eq!(
        msg("[ebuild  N     ] a/b-1\n\n[ebuild  N     ]   \n"),
        "line 3: `[ebuild  N     ]` is not a valid emerge line: no package after `]`"
    );
    assert_eq!(
        err("[ebuild  N ] a/b-1\n[weird] a/c-1\n"),
        SetError::BadPortageLine {
            line: 2,
            text: "[weird] a/c-1".to_string(),
            reason: "expected `[ebuild ...]`, `[binary ...]`, `[uninstall ...]`, `[blocks ...]` or `[nomerge ...]`"
        }
    );
    assert!(matches!(
        err("[ebuild  N ] a/b-1\n[] a/c-1\n"),
        SetError::BadPortageLine { line: 2, .. }
    ));
    // `[ebuilds` is not `[ebuild`.
    assert!(matches!(
        err("[ebuild  N ] a/b-1\n[ebuilds N ] a/c-1\n"),
        SetError::BadPortageLine { line: 2, .. }
    ));
}

#[test]
fn portage_duplicates_and_non_ascii() {
    assert_eq!(
        msg("x\n[ebuild  N ] a/b-1::gentoo\n[ebuild   R ] a/b-1::other\n"),
        "line 3: `a/b-1` is listed twice (first on line 2)"
    );
    for text in [
        "[ebuild é] a/b-1",
        "[ebuild  N ] a/é-1",
        "[ebuild  N ] é",
        "[ebuild  N ]é",
        "[binary é",
        "[ebuild\u{1b}",
        "[ebuild\u{1b}[",
        "\u{1b}",
        "[ebuild 💥] 💥:💥",
    ] {
        let _ = parse_package_set(text).map_err(|e| e.to_string());
    }
}

// ---- json ------------------------------------------------------------

#[test]
fn json_with_deps_and_estimates() {
    let text = r#"
    {
      "packages": [
        {"atom": "dev-libs/libxml2-2.12.6", "estimate_s": 120},
        {"atom": "dev-lang/python-3.12.1_rc2", "deps": ["dev-libs/libxml2-2.12.6"], "estimate_s": 900.5, "note": "ignored"},
        {"atom": "app-misc/foo-1.0", "deps": ["dev-lang/python-3.12.1_rc2", "dev-libs/libxml2-2.12.6"]},
        {"atom": "app-misc/bar-1", "deps": null, "estimate_s": null}
      ],
      "comment": "extra fields are fine"
    }"#;
    let set = ok(text);
    assert_eq!(set.format, SetFormat::Json);
    assert_eq!(set.skipped, 0);
    assert_eq!(
        set.packages,
        [
            PackageSpec {
                atom: atom("dev-libs/libxml2-2.12.6"),
                deps: vec![],
                estimate_s: Some(120.0),
                requirements: Default::default(),
            },
            PackageSpec {
                atom: atom("dev-lang/python-3.12.1_rc2"),
                deps: vec![atom("dev-libs/libxml2-2.12.6")],
                estimate_s: Some(900.5),
                requirements: Default::default(),
            },
            PackageSpec {
                atom: atom("app-misc/foo-1.0"),
                deps: vec![
                    atom("dev-lang/python-3.12.1_rc2"),
                    atom("dev-libs/libxml2-2.12.6")
                ],
                estimate_s: None,
                requirements: Default::default(),
            },
            PackageSpec {
                atom: atom("app-misc/bar-1"),
                deps: vec![],
                estimate_s: None,
                requirements: Default::default(),
            },
        ]
    );
    // Dependencies may point forward in the array.
    let set = ok(r#"{"packages":[{"atom":"a/a-1","deps":["b/b-1"]},{"atom":"b/b-1"}]}"#);
    assert_eq!(set.packages[0].deps, [atom("b/b-1")]);
    // CRLF and a BOM are fine.
    let set = ok("\u{feff}{\r\n\"packages\": [\r\n{\"atom\": \"a/a-1\"}\r\n]\r\n}\r\n");
    assert_eq!(atoms(&set), ["a/a-1"]);
}

#[test]
fn json_duplicate_deps_are_deduplicated_in_order() {
    let set = ok(r#"{"packages":[{"atom":"a/a-1"},{"atom":"b/b-1"},
        {"atom":"c/c-1","deps":["b/b-1","a/a-1","b/b-1","a/a-1","b/b-1"]}]}"#);
    assert_eq!(set.packages[2].deps, [atom("b/b-1"), atom("a/a-1")]);
}

#[test]
fn json_unknown_dependency() {
    assert_eq!(
        msg(r#"{"packages":[{"atom":"app-misc/a-1","deps":["app-misc/zz-1"]}]}"#),
        "`app-misc/a-1` depends on `app-misc/zz-1`, which is not in the set"
    );
}

#[test]
fn json_self_dependency() {
    assert_eq!(
        msg(r#"{"packages":[{"atom":"a/b-1"},{"atom":"a/a-1","deps":["a/b-1","a/a-1"]}]}"#),
        "`a/a-1` depends on itself"
    );
}

#[test]
fn json_cycles() {
    assert_eq!(
        msg(
            r#"{"packages":[{"atom":"a/a-1","deps":["b/b-1"]},{"atom":"b/b-1","deps":["a/a-1"]}]}"#
        ),
        "dependency cycle: `a/a-1` -> `b/b-1` -> `a/a-1`"
    );
    // A cycle reached through a non-cyclic prefix reports only the cycle.
    let e = err(r#"{"packages":[
        {"atom":"x/root-1","deps":["x/c-1","x/ok-1"]},
        {"atom":"x/ok-1"},
        {"atom":"x/c-1","deps":["x/ok-1","x/d-1"]},
        {"atom":"x/d-1","deps":["x/e-1"]},
        {"atom":"x/e-1","deps":["x/c-1"]}
    ]}"#);
    assert_eq!(
        e.to_string(),
        "dependency cycle: `x/c-1` -> `x/d-1` -> `x/e-1` -> `x/c-1`"
    );
    let SetError::Cycle { path } = e else {
        panic!("{e:?}")
    };
    assert_eq!(path.first(), path.last());
}

#[test]
fn json_diamond_is_not_a_cycle() {
    let set = ok(r#"{"packages":[
        {"atom":"d/top-1","deps":["d/l-1","d/r-1"]},
        {"atom":"d/l-1","deps":["d/base-1"]},
        {"atom":"d/r-1","deps":["d/base-1"]},
        {"atom":"d/base-1"}
    ]}"#);
    assert_eq!(set.packages.len(), 4);
}

#[test]
fn json_invalid_atoms_name_the_index() {
    assert_eq!(
        msg(r#"{"packages":[{"atom":"a/a-1"},{"atom":"cat/na me-1"}]}"#),
        "packages[1]: `cat/na me-1` is not a valid atom: whitespace is not allowed"
    );
    assert_eq!(
        msg(r#"{"packages":[{"atom":"a/a-1"},{"atom":"b/b-1"},{"deps":[]}]}"#),
        "packages[2]: the \"atom\" field is missing"
    );
    assert_eq!(
        msg(r#"{"packages":[{"atom":null}]}"#),
        "packages[0]: the \"atom\" field is missing"
    );
    assert_eq!(
        msg(r#"{"packages":[{"atom":"=a/a-1"}]}"#),
        "packages[0]: `=a/a-1` is not a valid atom: character `=` is not allowed"
    );
    assert_eq!(
        msg(r#"{"packages":[{"atom":"a/a-1","deps":["../x-1"]}]}"#),
        "`a/a-1`: invalid dependency: `../x-1` is not a valid atom: `..` is not allowed"
    );
    assert_eq!(
        msg(r#"{"packages":[{"atom":"a/a-1\u0000"}]}"#),
        "packages[0]: `a/a-1\\u{0}` is not a valid atom: control character U+0000 is not allowed"
    );
}

#[test]
fn json_duplicates_name_both_indices() {
    assert_eq!(
        msg(r#"{"packages":[{"atom":"a/a-1"},{"atom":"b/b-1"},{"atom":"a/a-1"}]}"#),
        "packages[2]: `a/a-1` is listed twice (first at packages[0])"
    );
}

#[test]
fn json_estimates() {
    assert_eq!(
        msg(r#"{"packages":[{"atom":"x/y-1","estimate_s":-1}]}"#),
        "`x/y-1`: estimate_s must be a finite number >= 0"
    );
    let set =
        ok(r#"{"packages":[{"atom":"x/y-1","estimate_s":0},{"atom":"x/z-1","estimate_s":1e300}]}"#);
    assert_eq!(set.packages[0].estimate_s, Some(0.0));
    // JSON has no NaN or infinity; out-of-range numbers are JSON errors.
    assert!(matches!(
        err(r#"{"packages":[{"atom":"x/y-1","estimate_s":1e400}]}"#),
        SetError::InvalidJson { .. }
    ));
    assert!(matches!(
        err(r#"{"packages":[{"atom":"x/y-1","estimate_s":"120"}]}"#),
        SetError::InvalidJson { .. }
    ));
}

#[test]
fn json_syntax_and_shape_errors() {
    for text in [
        "{",
        "{}",
        r#"{"packages":{}}"#,
        r#"{"packages":[1]}"#,
        r#"{"packages":[{"atom":1}]}"#,
        r#"{"packages":[{"atom":"a/a-1","deps":"b/b-1"}]}"#,
        r#"{"packages":[{"atom":"a/a-1","deps":[1]}]}"#,
        r#"{"packages":[{"atom":"a/a-1","atom":"a/b-1"}]}"#,
        r#"{"packages":[]} trailing"#,
        r#"{"packages":null}"#,
    ] {
        let e = err(text);
        assert!(matches!(e, SetError::InvalidJson { .. }), "{text}: {e:?}");
        assert!(e.to_string().starts_with("invalid JSON: "), "{e}");
    }
    assert_eq!(
        msg("{}"),
        "invalid JSON: missing field `packages` at line 1 column 2"
    );
    assert_eq!(err(r#"{"packages":[]}"#), SetError::Empty);
}

#[test]
fn json_deep_nesting_does_not_overflow() {
    let text = format!(
        "{{\"packages\":{}{}}}",
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    assert!(matches!(err(&text), SetError::InvalidJson { .. }));
    let text = format!(
        "{{\"packages\":[{{\"atom\":\"a/a-1\",\"x\":{}}}]}}",
        "[".repeat(100_000)
    );
    assert!(matches!(err(&text), SetError::InvalidJson { .. }));
}

#[test]
fn json_non_ascii_does_not_panic() {
    for text in [
        r#"{"packages":[{"atom":"日本/語-1"}]}"#,
        r#"{"packages":[{"atom":"a/a-1","deps":["💥"]}]}"#,
        "{\"packages\":[{\"atom\":\"a/a-1\u{202e}\"}]}",
        "{ 💥",
    ] {
        let e = err(text).to_string();
        assert!(!e.contains('\u{202e}'), "{e}");
    }
}

// ---- bytes -----------------------------------------------------------

#[test]
fn bytes_must_be_utf8() {
    let body = b"app-misc/a-1\napp-misc/b-1\napp-misc/\xff-1\n";
    assert_eq!(
        parse_package_set_bytes(body),
        Err(SetError::InvalidUtf8 {
            line: 3,
            offset: 35
        })
    );
    assert_eq!(
        parse_package_set_bytes(body).unwrap_err().to_string(),
        "line 3: the package set is not valid UTF-8 (invalid byte at offset 35)"
    );
    assert_eq!(
        parse_package_set_bytes(b"\xc3"),
        Err(SetError::InvalidUtf8 { line: 1, offset: 0 })
    );
    let set = parse_package_set_bytes(b"app-misc/a-1\r\n").unwrap();
    assert_eq!(atoms(&set), ["app-misc/a-1"]);
    assert_eq!(parse_package_set_bytes(b""), Err(SetError::Empty));
}

// ---- scale -----------------------------------------------------------

fn chain_json(n: usize, close_cycle: bool) -> String {
    let mut text = String::from("{\"packages\":[\n");
    for i in 0..n {
        if i > 0 {
            text.push_str(",\n");
        }
        text.push_str(&format!("{{\"atom\":\"chain/p{i}-1\""));
        if i > 0 {
            text.push_str(&format!(",\"deps\":[\"chain/p{}-1\"]", i - 1));
        } else if close_cycle {
            text.push_str(&format!(",\"deps\":[\"chain/p{}-1\"]", n - 1));
        }
        text.push_str(",\"estimate_s\":1}");
    }
    text.push_str("\n]}\n");
    text
}

#[test]
fn long_chain_of_100000_packages() {
    let n = 100_000;
    let set = ok(&chain_json(n, false));
    assert_eq!(set.packages.len(), n);
    assert_eq!(
        set.packages[n - 1].deps,
        [atom(&format!("chain/p{}-1", n - 2))]
    );
    // Reversed order: every dependency points forward.
    let mut text = String::from("{\"packages\":[");
    for i in 0..n {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!(
            "{{\"atom\":\"chain/p{i}-1\",\"deps\":[\"chain/p{}-1\"]}}",
            i + 1
        ));
    }
    text.push_str(&format!(",{{\"atom\":\"chain/p{n}-1\"}}]}}"));
    assert_eq!(ok(&text).packages.len(), n + 1);
}

#[test]
fn cycle_of_100000_packages_is_found_and_shortened() {
    let n = 100_000;
    let e = err(&chain_json(n, true));
    let SetError::Cycle { path } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(path.len(), n + 1);
    assert_eq!(path.first(), path.last());
    let shown = e.to_string();
    assert!(shown.len() < 600, "{shown}");
    assert!(
        shown.starts_with("dependency cycle: `chain/p0-1` -> `chain/p99999-1` -> "),
        "{shown}"
    );
    assert!(shown.contains(" -> ... (99989 more) ... -> "), "{shown}");
    assert!(shown.ends_with(" -> `chain/p0-1`"), "{shown}");
}

#[test]
fn large_plain_and_portage_sets() {
    let n = 100_000;
    let plain: String = (0..n).map(|i| format!("=big/p{i}-1.0\n")).collect();
    assert_eq!(ok(&plain).packages.len(), n);
    let portage: String = (0..n)
        .map(|i| format!("[ebuild  N    ] big/p{i}-1.0::gentoo USE=\"\"\r\n"))
        .collect();
    assert_eq!(ok(&portage).packages.len(), n);
}

// ---- misc ------------------------------------------------------------

#[test]
fn error_types_stay_small() {
    // Callers return `Result<_, SetError>`; keep clippy's
    // `result_large_err` (128 bytes) quiet for them too.
    assert!(std::mem::size_of::<SetError>() <= 128);
    assert!(std::mem::size_of::<AtomError>() <= 128);
}

#[test]
fn set_format_serializes_lowercase() {
    assert_eq!(
        serde_json::to_string(&SetFormat::Plain).unwrap(),
        "\"plain\""
    );
    assert_eq!(
        serde_json::to_string(&SetFormat::Portage).unwrap(),
        "\"portage\""
    );
    assert_eq!(serde_json::to_string(&SetFormat::Json).unwrap(), "\"json\"");
    assert_eq!(SetFormat::Portage.to_string(), "portage");
}

#[test]
fn short_cycle_paths_are_shown_whole() {
    let path: Vec<Atom> = (0..13).map(|i| atom(&format!("c/p{i}-1"))).collect();
    let shown = SetError::Cycle { path }.to_string();
    assert!(!shown.contains("..."), "{shown}");
    assert_eq!(shown.matches(" -> ").count(), 12);
    let path: Vec<Atom> = (0..14).map(|i| atom(&format!("c/p{i}-1"))).collect();
    let shown = SetError::Cycle { path }.to_string();
    assert!(
        shown.contains("`c/p7-1` -> ... (2 more) ... -> `c/p10-1`"),
        "{shown}"
    );
}

#[test]
fn helpers() {
    assert_eq!(strip_comment("a # b"), "a ");
    assert_eq!(strip_comment("# b"), "");
    assert_eq!(strip_comment("a#b"), "a#b");
    assert_eq!(strip_comment("é #b"), "é ");
    assert_eq!(strip_comment("é#b"), "é#b");
    assert_eq!(strip_ansi("\u{1b}[1;32mok\u{1b}[0m"), "ok");
    assert_eq!(strip_ansi("a\u{1b}(Bb"), "ab");
    assert_eq!(strip_ansi("a\u{1b}7b\u{1b}"), "ab");
    assert_eq!(strip_ansi("trailing\u{1b}"), "trailing");
    assert_eq!(strip_ansi("é\u{1b}[é"), "é");
}

#[test]
fn json_packages_may_state_requirements_and_the_set_a_priority() {
    let set = ok(r#"{"priority": 5, "packages": [
        {"atom": "www-client/chromium-120", "requires": ["big-mem", "x86-64-v3", "big-mem"],
         "min_memory_mb": 16000, "min_disk_mb": 30000},
        {"atom": "app-misc/foo-1"}]}"#);
    assert_eq!(set.priority, Some(5));
    let r = &set.packages[0].requirements;
    assert_eq!(r.requires, ["big-mem", "x86-64-v3"]);
    assert_eq!((r.min_memory_mb, r.min_disk_mb), (Some(16000), Some(30000)));
    assert!(set.packages[1].requirements.is_empty());
    assert_eq!(ok("app-misc/foo-1\n").priority, None);
    assert_eq!(
        err(r#"{"packages": [{"atom": "a/b-1", "requires": ["big mem"]}]}"#).to_string(),
        "`a/b-1`: capability `big mem` may hold only letters, digits and `_.+-` (1-64)"
    );
    assert_eq!(
        err(r#"{"priority": 5000, "packages": [{"atom": "a/b-1"}]}"#).to_string(),
        "priority 5000 is out of range (-1000 to 1000)"
    );
    assert!(
        err(r#"{"packages": [{"atom": "a/b-1", "min_memory_mb": -5}]}"#)
            .to_string()
            .starts_with("invalid JSON")
    );
}
