//! Tests of the parent module.

use super::*;

fn ok(s: &str) -> Atom {
    match Atom::parse(s) {
        Ok(a) => a,
        Err(e) => panic!("`{s}` should parse, got: {e}"),
    }
}

fn err(s: &str) -> AtomError {
    match Atom::parse(s) {
        Ok(a) => panic!("`{s}` should be refused, got {a:?}"),
        Err(e) => e,
    }
}

fn parts(s: &str) -> (String, String, String) {
    let a = ok(s);
    (a.category, a.name, a.version)
}

fn p(c: &str, n: &str, v: &str) -> (String, String, String) {
    (c.to_string(), n.to_string(), v.to_string())
}

#[test]
fn accepts_the_spec_examples() {
    assert_eq!(parts("app-misc/foo-1.0"), p("app-misc", "foo", "1.0"));
    assert_eq!(
        parts("kde-plasma/plasma-workspace-5.27.10-r1"),
        p("kde-plasma", "plasma-workspace", "5.27.10-r1")
    );
    assert_eq!(
        parts("dev-lang/python-3.12.1_rc2"),
        p("dev-lang", "python", "3.12.1_rc2")
    );
    assert_eq!(
        parts("sys-apps/foo-2.4a_p20240101"),
        p("sys-apps", "foo", "2.4a_p20240101")
    );
    assert_eq!(
        parts("dev-libs/libxml2-2.12.6"),
        p("dev-libs", "libxml2", "2.12.6")
    );
    assert_eq!(
        parts("x11-libs/gtk+-3.24.41"),
        p("x11-libs", "gtk+", "3.24.41")
    );
    assert_eq!(
        parts("virtual/perl-Scalar-List-Utils-1.630.0"),
        p("virtual", "perl-Scalar-List-Utils", "1.630.0")
    );
    assert_eq!(
        parts("dev-perl/Locale-gettext-1.70.0-r1"),
        p("dev-perl", "Locale-gettext", "1.70.0-r1")
    );
    assert_eq!(
        parts("app-misc/foo-1.0_alpha1_beta2_pre3_rc4_p5-r12"),
        p("app-misc", "foo", "1.0_alpha1_beta2_pre3_rc4_p5-r12")
    );
}

#[test]
fn splits_at_the_shortest_version_suffix() {
    assert_eq!(
        parts("app-misc/foo-bar-1.2.3-r1"),
        p("app-misc", "foo-bar", "1.2.3-r1")
    );
    assert_eq!(
        parts("dev-lang/perl-5.38.2"),
        p("dev-lang", "perl", "5.38.2")
    );
    assert_eq!(parts("cat/foo-1"), p("cat", "foo", "1"));
    assert_eq!(parts("cat/foo-r1-1"), p("cat", "foo-r1", "1"));
    assert_eq!(parts("cat/foo-1a-b-2"), p("cat", "foo-1a-b", "2"));
    assert_eq!(parts("cat/1-1"), p("cat", "1", "1"));
    assert_eq!(parts("cat/_foo-1"), p("cat", "_foo", "1"));
    assert_eq!(parts("cat/foo-2fa-1.0"), p("cat", "foo-2fa", "1.0"));
    assert_eq!(
        parts("media-fonts/font-adobe-100dpi-1.0.4"),
        p("media-fonts", "font-adobe-100dpi", "1.0.4")
    );
    // `x86-64` alone: the version is `64` and the name `x86`, as PMS says.
    assert_eq!(parts("cat/x86-64"), p("cat", "x86", "64"));
    // Categories may contain dots and pluses, just not start with them.
    assert_eq!(parts("dev-java.x/a-1"), p("dev-java.x", "a", "1"));
    assert_eq!(parts("_x+y/a-1"), p("_x+y", "a", "1"));
}

#[test]
fn name_ending_in_a_version_is_refused_not_resplit() {
    // The only split leaving a version is `x86-64` + `1.0`, and `x86-64`
    // ends in `-64`, which matches the version syntax.
    let e = err("cat/x86-64-1.0");
    assert_eq!(
        e.to_string(),
        "`cat/x86-64-1.0` is not a valid atom: package name `x86-64` must not end in a hyphen followed by something that looks like a version"
    );
    assert!(matches!(err("cat/foo-1-2"), AtomError::BadName { name, .. } if name == "foo-1"));
    assert!(matches!(err("cat/foo-1-r1-2"), AtomError::BadName { name, .. } if name == "foo-1-r1"));
    assert!(
        matches!(err("cat/foo-1_rc1-2.0"), AtomError::BadName { name, .. } if name == "foo-1_rc1")
    );
}

#[test]
fn refuses_the_spec_examples() {
    let cases: &[(&str, &str)] = &[
        (
            "../../etc/passwd-1",
            "`../../etc/passwd-1` is not a valid atom: `..` is not allowed",
        ),
        (
            "a/b/c-1",
            "`a/b/c-1` is not a valid atom: it has 2 `/` characters, exactly one (between category and package) is allowed",
        ),
        (
            "cat/na me-1",
            "`cat/na me-1` is not a valid atom: whitespace is not allowed",
        ),
        (
            "cat/foo-1;rm",
            "`cat/foo-1;rm` is not a valid atom: character `;` is not allowed",
        ),
        (
            "cat/foo",
            "`cat/foo` is not a valid atom: it has no version (expected `category/name-version`, e.g. `app-misc/foo-1.0`)",
        ),
        (
            "/foo-1",
            "`/foo-1` is not a valid atom: the category before `/` is empty",
        ),
        (
            "cat/-1",
            "`cat/-1` is not a valid atom: the package name before the version is empty",
        ),
        (
            "cat/foo-1.",
            "`cat/foo-1.` is not a valid atom: `1.` is not a valid version (expected e.g. `1.2.3`, `5.27.10-r1`, `1.0_rc2`, `2.4a_p20240101`)",
        ),
        (
            ".hidden/foo-1",
            "`.hidden/foo-1` is not a valid atom: category `.hidden` must not start with `-`, `.` or `+`",
        ),
        (
            "cat/foo-1$(x)",
            "`cat/foo-1$(x)` is not a valid atom: character `$` is not allowed",
        ),
        (
            "",
            "an empty string is not a valid atom: expected `category/name-version`",
        ),
        (
            "cat/café-1",
            "`cat/caf\\u{e9}-1` is not a valid atom: non-ASCII character U+00E9 is not allowed",
        ),
    ];
    for (input, message) in cases {
        assert_eq!(err(input).to_string(), *message, "for input {input:?}");
    }
}

#[test]
fn refuses_every_shell_metacharacter() {
    for c in [
        ';', '&', '|', '$', '`', '\'', '"', '<', '>', '(', ')', '{', '}', '[', ']', '*', '?', '!',
        '\\', '~', '#', '=', ':', '@', '%', '^', ',',
    ] {
        let input = format!("cat/foo{c}bar-1");
        let e = err(&input);
        assert_eq!(e, AtomError::ForbiddenChar { input, ch: c });
        let msg = e.to_string();
        if c == '`' {
            assert!(
                msg.ends_with("the backtick character is not allowed"),
                "{msg}"
            );
        } else {
            assert!(
                msg.ends_with(&format!("character `{c}` is not allowed")),
                "{msg}"
            );
        }
    }
    // A leading `=` is a package-list convenience, not part of an atom.
    assert!(matches!(
        err("=cat/foo-1"),
        AtomError::ForbiddenChar { ch: '=', .. }
    ));
}

#[test]
fn refuses_whitespace_and_control_characters() {
    for s in [
        " cat/foo-1",
        "cat/foo-1 ",
        "cat/foo-1\n",
        "cat/foo-1\r",
        "cat\t/foo-1",
        "cat/foo\u{a0}-1",
        "cat/foo\u{3000}-1",
    ] {
        assert!(matches!(err(s), AtomError::Whitespace { .. }), "{s:?}");
    }
    let e = err("cat/foo\u{7}-1");
    assert_eq!(
        e.to_string(),
        "`cat/foo\\u{7}-1` is not a valid atom: control character U+0007 is not allowed"
    );
    let e = err("cat/foo\u{1b}[31m-1");
    assert!(e.to_string().contains("control character U+001B"), "{e}");
    assert!(!e.to_string().contains('\u{1b}'));
    assert!(matches!(
        err("cat/foo\0-1"),
        AtomError::ForbiddenChar { ch: '\0', .. }
    ));
}

#[test]
fn refuses_non_ascii_without_panicking() {
    for s in [
        "é",
        "cat/é",
        "é/foo-1",
        "cat/foo-1é",
        "cat/foo-é1",
        "cat/日本語-1",
        "日本/語-1",
        "cat/foo-1\u{202e}",
        "💥",
        "cat/foo-1💥",
        "\u{feff}cat/foo-1",
    ] {
        let e = err(s);
        assert!(
            matches!(e, AtomError::ForbiddenChar { ch, .. } if !ch.is_ascii()),
            "{s:?}: {e:?}"
        );
        assert!(e.to_string().is_ascii(), "{e}");
    }
    assert_eq!(
        err("cat/foo-1\u{202e}").to_string(),
        "`cat/foo-1\\u{202e}` is not a valid atom: non-ASCII character U+202E is not allowed"
    );
}

#[test]
fn refuses_bad_slashes_and_empty_parts() {
    assert!(matches!(
        err("foo-1"),
        AtomError::SlashCount { count: 0, .. }
    ));
    assert_eq!(
        err("foo-1").to_string(),
        "`foo-1` is not a valid atom: it has no `/` between category and package"
    );
    assert!(matches!(
        err("a/b/c-1"),
        AtomError::SlashCount { count: 2, .. }
    ));
    assert!(matches!(
        err("cat//foo-1"),
        AtomError::SlashCount { count: 2, .. }
    ));
    assert!(matches!(err("/"), AtomError::EmptyCategory { .. }));
    assert!(matches!(err("/foo-1"), AtomError::EmptyCategory { .. }));
    assert!(matches!(err("cat/"), AtomError::EmptyPackage { .. }));
    assert_eq!(
        err("cat/").to_string(),
        "`cat/` is not a valid atom: the package part after `/` is empty"
    );
    assert!(matches!(err("cat/-1"), AtomError::EmptyName { .. }));
}

#[test]
fn refuses_dot_dot_anywhere() {
    for s in [
        "../foo-1",
        "cat/..",
        "cat/foo-1..2",
        "a..b/foo-1",
        "../../etc/passwd-1",
    ] {
        assert!(matches!(err(s), AtomError::DotDot { .. }), "{s}");
    }
}

#[test]
fn refuses_bad_categories() {
    for s in [".hidden/foo-1", "-cat/foo-1", "+cat/foo-1", "./foo-1"] {
        assert!(matches!(err(s), AtomError::BadCategory { .. }), "{s}");
    }
    assert!(matches!(err("./foo-1"), AtomError::BadCategory { category, .. } if category == "."));
}

#[test]
fn refuses_bad_names() {
    assert_eq!(
        err("cat/+foo-1").to_string(),
        "`cat/+foo-1` is not a valid atom: package name `+foo` must not start with `-` or `+`"
    );
    assert!(matches!(err("cat/--1"), AtomError::BadName { name, .. } if name == "-"));
    assert_eq!(
        err("cat/foo.bar-1").to_string(),
        "`cat/foo.bar-1` is not a valid atom: package name `foo.bar` may contain only letters, digits, `+`, `_` and `-`"
    );
}

#[test]
fn refuses_missing_and_invalid_versions() {
    for s in [
        "cat/foo",
        "cat/foo-",
        "cat/foo-bar",
        "cat/foo-r1",
        "cat/foo-_p1",
    ] {
        assert!(matches!(err(s), AtomError::MissingVersion { .. }), "{s}");
    }
    for (s, v) in [
        ("cat/foo-1.", "1."),
        ("cat/foo-1.0-r", "1.0-r"),
        ("cat/foo-1.0-rc1", "1.0-rc1"),
        ("cat/foo-1.0-r1-r2", "1.0-r1-r2"),
        ("cat/foo-1.0A", "1.0A"),
        ("cat/foo-1.0ab", "1.0ab"),
        ("cat/foo-1.0_x", "1.0_x"),
        ("cat/foo-1.0_pr", "1.0_pr"),
        ("cat/foo-1_", "1_"),
        ("cat/foo-1.0-2.x", "2.x"),
        ("cat/foo-1+", "1+"),
        ("cat/foo-1.0_rc1a", "1.0_rc1a"),
    ] {
        assert_eq!(
            err(s),
            AtomError::InvalidVersion {
                input: s.to_string(),
                version: v.to_string()
            },
            "{s}"
        );
    }
}

#[test]
fn refuses_too_long_input_and_keeps_the_message_short() {
    let name = "a".repeat(MAX_ATOM_LEN);
    let s = format!("cat/{name}-1");
    let e = err(&s);
    assert!(matches!(e, AtomError::TooLong { len, .. } if len == s.len()));
    let msg = e.to_string();
    assert!(msg.len() < 200, "{msg}");
    assert!(
        msg.contains(&format!("{} bytes long, at most 256", s.len())),
        "{msg}"
    );
    // Exactly at the limit is fine.
    let name = "a".repeat(MAX_ATOM_LEN - "cat/-1".len());
    let s = format!("cat/{name}-1");
    assert_eq!(s.len(), MAX_ATOM_LEN);
    ok(&s);
    // Multibyte input straddling the cut must not panic.
    let s = "é".repeat(200);
    assert!(matches!(err(&s), AtomError::TooLong { .. }));
    let s = format!("x{}", "💥".repeat(100));
    assert!(matches!(err(&s), AtomError::TooLong { .. }));
}

#[test]
fn version_syntax() {
    for v in [
        "0",
        "1",
        "1.2.3",
        "5.27.10-r1",
        "1.0_rc2",
        "2.4a_p20240101",
        "1.0_alpha1_beta2_pre3_rc4_p5-r12",
        "1_alpha",
        "1_p",
        "1_pre_p",
        "1a",
        "1-r0",
        "007.0010",
        "1.2.3z_beta_rc-r99",
        "20240101",
    ] {
        assert!(is_valid_version(v), "{v} should be valid");
    }
    for v in [
        "", "a", "r1", "-r1", ".1", "1.", "1..2", "1ab", "1A", "1_", "1_x", "1_pr", "1_p-", "1-r",
        "1-r1-r2", "1-rc1", "1-1", "1_rc1a", "1.a", "1 ", "1é", "1-r1a", "1a.2",
    ] {
        assert!(!is_valid_version(v), "{v:?} should be invalid");
    }
}

#[test]
fn display_pf_and_from_str() {
    let a: Atom = match "kde-plasma/plasma-workspace-5.27.10-r1".parse() {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(a.to_string(), "kde-plasma/plasma-workspace-5.27.10-r1");
    assert_eq!(a.pf(), "plasma-workspace-5.27.10-r1");
    assert!("cat/foo".parse::<Atom>().is_err());
}

#[test]
fn ordering_and_hashing_are_by_fields() {
    let mut v = [ok("b/a-1"), ok("a/b-2"), ok("a/b-10"), ok("a/a-1")];
    v.sort();
    let shown: Vec<String> = v.iter().map(Atom::to_string).collect();
    assert_eq!(shown, ["a/a-1", "a/b-10", "a/b-2", "b/a-1"]);
    let set: std::collections::HashSet<Atom> = [ok("a/a-1"), ok("a/a-1"), ok("a/a-2")]
        .into_iter()
        .collect();
    assert_eq!(set.len(), 2);
}

#[test]
fn serde_round_trip_as_string() {
    let a = ok("dev-lang/python-3.12.1_rc2");
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(json, "\"dev-lang/python-3.12.1_rc2\"");
    let back: Atom = serde_json::from_str(&json).unwrap();
    assert_eq!(back, a);
    let v: Vec<Atom> = serde_json::from_str(r#"["a/b-1","c/d-2-r3"]"#).unwrap();
    assert_eq!(v, [ok("a/b-1"), ok("c/d-2-r3")]);
    // Escaped strings (not borrowable) work too.
    let back: Atom = serde_json::from_str(r#""a\/b-1""#).unwrap();
    assert_eq!(back, ok("a/b-1"));
}

#[test]
fn serde_refuses_invalid_atoms_with_the_atom_message() {
    let e = serde_json::from_str::<Atom>(r#""cat/na me-1""#).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("`cat/na me-1` is not a valid atom: whitespace is not allowed"),
        "{e}"
    );
    let e = serde_json::from_str::<Atom>("12").unwrap_err();
    assert!(e.to_string().contains("expected an atom string"), "{e}");
}

#[test]
fn error_input_accessor() {
    assert_eq!(err("cat/na me-1").input(), "cat/na me-1");
    assert_eq!(err("").input(), "");
    let long = "a".repeat(1000);
    assert_eq!(err(&long).input().len(), 64);
}

#[test]
fn never_panics_on_odd_input() {
    let samples = [
        "-",
        "/",
        "//",
        "-/-",
        "a/-",
        "a/b-",
        "a/-b",
        "a/b--1",
        "a/b-1-",
        "a/b-1-r",
        "+/+",
        "a/+-1",
        "\u{0}",
        "a/\u{0}",
        "é/",
        "/é",
        "a/b-1é",
        "a/b-é",
        "ä/ö-1",
        "a/b-1_ü",
        "a/b-\u{10ffff}",
        "\u{200b}",
        "a/b-1\u{200b}",
        "--",
        "a/b-_",
        "a/b-1_p1_",
    ];
    for s in samples {
        let _ = Atom::parse(s).map_err(|e| e.to_string());
    }
    // Every byte position of a multibyte-heavy string, cut at char
    // boundaries, with and without an ASCII tail.
    let base = "cat/fé-1.2_ü-r3💥";
    for (i, _) in base.char_indices() {
        for s in [&base[..i], &base[i..]] {
            let _ = Atom::parse(s).map_err(|e| e.to_string());
        }
    }
}
