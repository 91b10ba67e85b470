use super::*;

fn env(pairs: &[(&str, &str)]) -> DroneEnvironment {
    let text: String = pairs.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    let (fingerprint, repos) = parse_output(&text).expect("parse");
    DroneEnvironment {
        fingerprint,
        repos,
        ..DroneEnvironment::default()
    }
}

fn expected(pairs: &[(&str, &str)]) -> Expected {
    let e = env(pairs);
    Expected {
        keys: e.fingerprint,
        repos: e.repos,
    }
}

#[test]
fn portageq_output_is_read_with_its_quoting() {
    let text = "CHOST=x86_64-pc-linux-gnu\nCFLAGS='-O2 -pipe'\nUSE=\"a b\"\n\n# note\nLDFLAGS=''\nX='it'\\''s'\nY='it'\"'\"'s'\nREPO_REVISION/gentoo=abc\nREPO_TIMESTAMP/gentoo=1700000000\n";
    let (keys, repos) = parse_output(text).expect("parse");
    assert_eq!(keys["CFLAGS"], "-O2 -pipe");
    assert_eq!(keys["USE"], "a b");
    assert_eq!(keys["LDFLAGS"], "");
    assert_eq!(keys["X"], "it's");
    assert_eq!(keys["Y"], "it's");
    assert_eq!(repos["gentoo"].revision, "abc");
    assert_eq!(repos["gentoo"].timestamp, Some(1_700_000_000));
}

#[test]
fn bad_output_is_named() {
    let e = parse_output("CHOST=x\nno equals sign\n").unwrap_err();
    assert_eq!(e.to_string(), "line 2: `no equals sign` is not KEY=VALUE");
    let e = parse_output("BAD KEY=1").unwrap_err();
    assert!(e.to_string().contains("key `BAD KEY`"), "{e}");
    let huge = format!("USE={}", "x ".repeat(MAX_VALUE_BYTES));
    let e = parse_output(&huge).unwrap_err();
    assert!(e.to_string().starts_with("`USE` is "), "{e}");
    let e = parse_output("REPO_REVISION/=abc").unwrap_err();
    assert!(e.to_string().contains("key `REPO_REVISION/`"), "{e}");
    let e = parse_output("REPO_TIMESTAMP/gentoo=yesterday").unwrap_err();
    assert!(e.to_string().contains("not a unix time"), "{e}");
    let many: String = (0..=MAX_KEYS).map(|i| format!("K{i}=v\n")).collect();
    assert_eq!(
        parse_output(&many).unwrap_err(),
        EnvironmentError::TooManyKeys
    );
}

#[test]
fn a_differing_key_is_named_and_equal_meanings_match() {
    let want = expected(&[
        ("CHOST", "x86_64-pc-linux-gnu"),
        ("CFLAGS", "-O2 -pipe"),
        ("USE", "a b c"),
        ("FEATURES", "binpkg-docompress parallel-fetch"),
    ]);
    let same = env(&[
        ("CHOST", "x86_64-pc-linux-gnu"),
        ("CFLAGS", "-O2   -pipe"),
        ("USE", "c b a"),
        ("FEATURES", "binpkg-docompress sandbox"),
        ("OTHER", "ignored"),
    ]);
    assert_eq!(fit(&want, Some(&same)), Fit::Matched);
    let odd = env(&[
        ("CHOST", "x86_64-pc-linux-gnu"),
        ("CFLAGS", "-O2 -pipe -march=native"),
        ("USE", "a b c"),
        ("FEATURES", "binpkg-docompress nostrip"),
    ]);
    assert_eq!(
        fit(&want, Some(&odd)),
        Fit::Mismatched {
            keys: vec!["CFLAGS".into(), "FEATURES".into()]
        }
    );
    let missing = env(&[("CHOST", "x86_64-pc-linux-gnu")]);
    match fit(&want, Some(&missing)) {
        Fit::Mismatched { keys } => assert_eq!(keys, ["CFLAGS", "FEATURES", "USE"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_older_repository_lags_a_newer_one_differs() {
    let want = expected(&[
        ("CHOST", "x"),
        ("REPO_REVISION/gentoo", "new"),
        ("REPO_TIMESTAMP/gentoo", "200"),
    ]);
    let old = env(&[
        ("CHOST", "x"),
        ("REPO_REVISION/gentoo", "old"),
        ("REPO_TIMESTAMP/gentoo", "100"),
    ]);
    assert_eq!(
        fit(&want, Some(&old)),
        Fit::Lagging {
            repos: vec!["gentoo".into()]
        }
    );
    assert!(!fit(&want, Some(&old)).may_build());
    // Of unknown age: told to sync too.
    let unknown = env(&[("CHOST", "x"), ("REPO_REVISION/gentoo", "other")]);
    assert!(matches!(fit(&want, Some(&unknown)), Fit::Lagging { .. }));
    let newer = env(&[
        ("CHOST", "x"),
        ("REPO_REVISION/gentoo", "newer"),
        ("REPO_TIMESTAMP/gentoo", "300"),
    ]);
    assert_eq!(
        fit(&want, Some(&newer)),
        Fit::Ahead {
            repos: vec!["gentoo".into()]
        }
    );
    assert!(!fit(&want, Some(&newer)).may_build());
    // A key that differs as well: mismatched, the lagging repository named with it.
    let both = env(&[
        ("CHOST", "y"),
        ("REPO_REVISION/gentoo", "old"),
        ("REPO_TIMESTAMP/gentoo", "100"),
    ]);
    assert_eq!(
        fit(&want, Some(&both)),
        Fit::Mismatched {
            keys: vec!["CHOST".into(), "REPO_REVISION/gentoo".into()]
        }
    );
    let synced = env(&[
        ("CHOST", "x"),
        ("REPO_REVISION/gentoo", "new"),
        ("REPO_TIMESTAMP/gentoo", "200"),
    ]);
    assert_eq!(fit(&want, Some(&synced)), Fit::Matched);
}

#[test]
fn old_drones_and_empty_expectations_are_unspecified_a_failed_command_is_not() {
    let want = expected(&[("CHOST", "x")]);
    assert_eq!(fit(&want, None), Fit::Unspecified);
    assert!(fit(&want, None).may_build());
    assert_eq!(
        fit(&want, Some(&DroneEnvironment::default())),
        Fit::Unspecified
    );
    assert_eq!(
        fit(&Expected::default(), Some(&env(&[("CHOST", "y")]))),
        Fit::Unspecified
    );
    let broken = DroneEnvironment {
        error: Some("timed out".into()),
        ..DroneEnvironment::default()
    };
    assert!(!fit(&want, Some(&broken)).may_build());
    assert_eq!(
        fit(&want, Some(&broken)).describe().as_deref(),
        Some("environment command failed: timed out")
    );
}

#[test]
fn requirements_name_what_a_drone_lacks() {
    let req = Requirements {
        requires: vec!["big-mem".into(), "x86-64-v3".into()],
        min_memory_mb: Some(16_000),
        min_disk_mb: Some(1000),
    };
    let mut have = DroneEnvironment {
        capabilities: vec!["big-mem".into()],
        resources: Resources {
            cores: 4,
            memory_mb: 8000,
            pkgdir_free_mb: 5000,
            tmpdir_free_mb: 500,
        },
        ..DroneEnvironment::default()
    };
    assert_eq!(
        req.unmet(Some(&have)).as_deref(),
        Some("x86-64-v3, 16000 MB memory, 1000 MB free disk")
    );
    have.capabilities.push("x86-64-v3".into());
    have.resources.memory_mb = 32_000;
    have.resources.tmpdir_free_mb = 2000;
    assert_eq!(req.unmet(Some(&have)), None);
    assert!(req.unmet(None).is_some());
    assert_eq!(Requirements::default().unmet(None), None);
}

#[test]
fn small_changes_of_free_space_are_not_news() {
    let old = DroneEnvironment {
        resources: Resources {
            cores: 4,
            memory_mb: 8000,
            pkgdir_free_mb: 50_000,
            tmpdir_free_mb: 50_000,
        },
        ..DroneEnvironment::default()
    };
    let mut new = old.clone();
    new.resources.pkgdir_free_mb = 49_500;
    assert!(!new.differs_from(&old));
    new.resources.pkgdir_free_mb = 40_000;
    assert!(new.differs_from(&old));
    let mut new = old.clone();
    new.fingerprint.insert("CFLAGS".into(), "-O2".into());
    assert!(new.differs_from(&old));
}

#[test]
fn capabilities_are_checked() {
    assert!(check_capability("x86-64-v3").is_ok());
    assert!(check_capability("big_mem.2+").is_ok());
    for bad in ["", "a b", "ü", &"x".repeat(65)] {
        assert!(check_capability(bad).is_err(), "{bad:?}");
    }
}
