//! Tests of the parent module.

use super::*;

/// `app-misc/foo-1.0.gpkg.tar` holding "package bytes" uploaded into `lease`, and the
/// job that publishes it into `binhost` with its true size and checksum.
fn staged_job(lease: &Path, binhost: &Path) -> PublishJob {
    let staged = lease.join("app-misc/foo-1.0.gpkg.tar");
    fs::create_dir_all(staged.parent().unwrap()).unwrap();
    fs::write(&staged, b"package bytes").unwrap();
    let (sha256, size) = sha256_file(&staged).unwrap();
    PublishJob {
        staged,
        dest: binhost.join("app-misc/foo-1.0.gpkg.tar"),
        size,
        sha256,
        lease_dir: lease.to_path_buf(),
        index: None,
        signing: None,
    }
}

#[test]
fn publishes_verified_file_and_refuses_mismatches() {
    let dir = tempfile::tempdir().unwrap();
    let lease = dir.path().join("staging/lease-1");
    let mut job = staged_job(&lease, &dir.path().join("binhost"));
    let (staged, dest) = (job.staged.clone(), job.dest.clone());
    let (sum, size) = (
        std::mem::replace(&mut job.sha256, "00".repeat(32)),
        job.size,
    );
    assert!(matches!(
        verify_and_publish(&job),
        Err(PublishError::Checksum { .. })
    ));
    job.size += 1;
    assert!(matches!(
        verify_and_publish(&job),
        Err(PublishError::Size { .. })
    ));
    job.size = size;
    job.sha256 = sum.to_uppercase();
    assert_eq!(verify_and_publish(&job).unwrap().how, Published::Now);
    assert_eq!(fs::read(&dest).unwrap(), b"package bytes");
    assert!(!staged.exists(), "the file was moved out of staging");
    fs::remove_dir_all(&lease).unwrap();
    // Retried after a crash between rename and commit: recognised, not an error.
    assert_eq!(
        verify_and_publish(&job).unwrap().how,
        Published::AlreadyThere
    );
    job.staged = lease.join("app-misc/nope.gpkg.tar");
    job.dest = dir.path().join("binhost/nope");
    assert!(matches!(
        verify_and_publish(&job),
        Err(PublishError::Missing(_))
    ));
}

/// Several lanes publishing the first packages of a category at once: each may find
/// the destination directory missing and another make it in between.
#[test]
fn lanes_racing_to_make_a_category_directory_all_publish() {
    let dir = tempfile::tempdir().unwrap();
    let lanes = 4;
    let jobs: Vec<Vec<PublishJob>> = (0..lanes)
        .map(|lane| {
            (0..200)
                .map(|c| {
                    let lease = dir.path().join(format!("staging/lease-{lane}-{c}"));
                    let staged = lease.join(format!("cat-{c}/p{lane}.gpkg.tar"));
                    fs::create_dir_all(staged.parent().unwrap()).unwrap();
                    fs::write(&staged, b"x").unwrap();
                    let (sha256, size) = sha256_file(&staged).unwrap();
                    PublishJob {
                        staged,
                        dest: dir.path().join(format!("binhost/cat-{c}/p{lane}.gpkg.tar")),
                        size,
                        sha256,
                        lease_dir: lease,
                        index: None,
                        signing: None,
                    }
                })
                .collect()
        })
        .collect();
    let start = std::sync::Barrier::new(lanes);
    std::thread::scope(|s| {
        for lane in &jobs {
            let start = &start;
            s.spawn(move || {
                start.wait();
                for job in lane {
                    assert_eq!(verify_and_publish(job).unwrap().how, Published::Now);
                }
            });
        }
    });
}

/// Staging and binhost on different filesystems (`/tmp` and `/dev/shm` here): the
/// verified file is copied under a hidden name, synced and renamed.
#[test]
fn across_filesystems_the_file_is_copied_then_renamed() {
    use std::os::unix::fs::MetadataExt;
    let staging = tempfile::tempdir().unwrap();
    // In CI a skip is a failure.
    let skip = |why: &str| assert!(std::env::var_os("CI").is_none(), "{why}");
    let Ok(binhost) = tempfile::tempdir_in("/dev/shm") else {
        skip("no /dev/shm for a second filesystem");
        eprintln!("SKIP: no /dev/shm for a second filesystem");
        return;
    };
    let dev = |p: &Path| fs::metadata(p).unwrap().dev();
    if dev(staging.path()) == dev(binhost.path()) {
        skip("the temporary directory and /dev/shm are one filesystem");
        eprintln!("SKIP: /tmp and /dev/shm are one filesystem here");
        return;
    }
    let job = staged_job(&staging.path().join("lease-1"), binhost.path());
    let (staged, dest) = (job.staged.clone(), job.dest.clone());
    assert_eq!(verify_and_publish(&job).unwrap().how, Published::Now);
    assert_eq!(fs::read(&dest).unwrap(), b"package bytes");
    assert!(!staged.exists());
    let names: Vec<_> = fs::read_dir(dest.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["foo-1.0.gpkg.tar"], "no temporary left");
}

#[test]
fn symbolic_links_are_never_published() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    fs::write(&secret, b"not yours").unwrap();
    let (sum, size) = sha256_file(&secret).unwrap();
    let lease = dir.path().join("staging/lease-1");
    fs::create_dir_all(lease.join("app-misc")).unwrap();
    // The file itself a link...
    std::os::unix::fs::symlink(&secret, lease.join("app-misc/foo-1.0.gpkg.tar")).unwrap();
    let job = PublishJob {
        staged: lease.join("app-misc/foo-1.0.gpkg.tar"),
        dest: dir.path().join("binhost/app-misc/foo-1.0.gpkg.tar"),
        size,
        sha256: sum.clone(),
        lease_dir: lease.clone(),
        index: None,
        signing: None,
    };
    assert!(matches!(
        verify_and_publish(&job),
        Err(PublishError::NotRegular(_))
    ));
    // ...or a directory on the way.
    let lease2 = dir.path().join("staging/lease-2");
    fs::create_dir_all(&lease2).unwrap();
    std::os::unix::fs::symlink(dir.path(), lease2.join("app-misc")).unwrap();
    let job2 = PublishJob {
        staged: lease2.join("app-misc/secret"),
        lease_dir: lease2,
        index: None,
        signing: None,
        ..job
    };
    assert!(matches!(
        verify_and_publish(&job2),
        Err(PublishError::NotRegular(_))
    ));
    assert_eq!(
        fs::read(&secret).unwrap(),
        b"not yours",
        "nothing was moved"
    );
    assert!(!dir.path().join("binhost").exists());
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let lease = dir.path().join("staging/lease-1");
    fs::create_dir_all(lease.join("app-misc")).unwrap();
    let staged = lease.join("app-misc/foo-1.0.gpkg.tar");
    let c = std::ffi::CString::new(staged.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let job = PublishJob {
        staged,
        dest: dir.path().join("binhost/app-misc/foo-1.0.gpkg.tar"),
        size: 0,
        sha256: "00".repeat(32),
        lease_dir: lease,
        index: None,
        signing: None,
    };
    // Opened without O_NONBLOCK this would wait for a writer forever.
    assert!(matches!(
        verify_and_publish(&job),
        Err(PublishError::NotRegular(_))
    ));
}

#[test]
fn a_file_with_another_link_is_published_as_a_copy_the_link_cannot_change() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let lease = dir.path().join("staging/lease-1");
    let job = staged_job(&lease, &dir.path().join("binhost"));
    let kept = dir.path().join("staging/kept");
    fs::hard_link(&job.staged, &kept).unwrap();
    assert_eq!(verify_and_publish(&job).unwrap().how, Published::Now);
    fs::write(&kept, b"evil bytes!!!").unwrap();
    assert_eq!(fs::read(&job.dest).unwrap(), b"package bytes");
    let meta = fs::metadata(&job.dest).unwrap();
    assert_eq!(meta.nlink(), 1);
    assert_eq!(meta.permissions().mode() & 0o777, 0o444);
    assert!(!job.staged.exists());
}

#[test]
fn a_published_file_is_read_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let job = staged_job(
        &dir.path().join("staging/lease-1"),
        &dir.path().join("binhost"),
    );
    verify_and_publish(&job).unwrap();
    let mode = fs::metadata(&job.dest).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o444);
}

#[test]
fn a_file_renamed_over_the_verified_one_is_refused_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let lease = dir.path().join("staging/lease-1");
    let job = staged_job(&lease, &dir.path().join("binhost"));
    let cat = Dir::open(&lease.join("app-misc")).unwrap();
    let name = OsStr::new("foo-1.0.gpkg.tar");
    let mut verified = cat.open_file(name).unwrap();
    let meta = verified.metadata().unwrap();
    // Swapped after it was opened and hashed.
    let other = lease.join("app-misc/other");
    fs::write(&other, b"other bytes!!").unwrap();
    fs::rename(&other, &job.staged).unwrap();
    let e = install(&cat, name, &mut verified, &meta, &job.dest).unwrap_err();
    assert!(matches!(e, PublishError::Replaced(_)), "{e}");
    assert!(
        e.to_string()
            .contains("replaced while it was being verified"),
        "{e}"
    );
    assert!(!job.dest.exists(), "nothing under the final name");
    // A directory renamed over it does not stay under the final name either.
    let job = staged_job(&lease, &dir.path().join("binhost"));
    let mut verified = cat.open_file(name).unwrap();
    let meta = verified.metadata().unwrap();
    fs::remove_file(&job.staged).unwrap();
    fs::create_dir_all(job.staged.join("inside")).unwrap();
    let e = install(&cat, name, &mut verified, &meta, &job.dest).unwrap_err();
    assert!(matches!(e, PublishError::Replaced(_)), "{e}");
    assert!(!job.dest.exists(), "no directory under the final name");
}

#[test]
fn an_upload_owned_by_another_user_is_published_as_the_orchestrators_copy() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI runs as root: this test must not skip there"
        );
        eprintln!("skipped: needs root to give a staged file another owner");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let job = staged_job(
        &dir.path().join("staging/lease-1"),
        &dir.path().join("binhost"),
    );
    std::os::unix::fs::chown(&job.staged, Some(65534), Some(65534)).unwrap();
    verify_and_publish(&job).unwrap();
    let meta = fs::metadata(&job.dest).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "owned by the orchestrator"
    );
    assert_eq!(meta.permissions().mode() & 0o777, 0o444);
    assert_eq!(fs::read(&job.dest).unwrap(), b"package bytes");
    assert!(!job.staged.exists());
}

#[test]
fn join_inside_refuses_escapes() {
    let base = Path::new("/s");
    assert_eq!(
        join_inside(base, "cat/foo-1.tbz2").unwrap(),
        Path::new("/s/cat/foo-1.tbz2")
    );
    for bad in [
        "",
        "/etc/passwd",
        "../x",
        "cat/../../x",
        "cat//x",
        "./cat/x",
        "cat/x/",
        "a\\b",
    ] {
        assert!(join_inside(base, bad).is_none(), "{bad}");
    }
}

fn test_signing(required: bool) -> Signing {
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/signing/test-key.asc");
    Signing {
        signer: std::sync::Arc::new(
            Signer::load(&key, "BUILD_SWARM_TEST_UNSET_PASSPHRASE").unwrap(),
        ),
        required,
    }
}

/// A real gpkg of `app-misc/foo-1.0` staged in `lease`, published into `binhost` signed
/// with an index entry.
fn signed_job(lease: &Path, binhost: &Path, required: bool) -> PublishJob {
    let staged = lease.join("app-misc/foo-1.0.gpkg.tar");
    fs::create_dir_all(staged.parent().unwrap()).unwrap();
    let pkg =
        crate::domain::binpkg::stand_in_gpkg("app-misc", "foo-1.0", None, b"payload").unwrap();
    fs::write(&staged, &pkg).unwrap();
    let (sha256, size) = sha256_file(&staged).unwrap();
    PublishJob {
        staged,
        dest: binhost.join("app-misc/foo-1.0.gpkg.tar"),
        size,
        sha256,
        lease_dir: lease.to_path_buf(),
        index: Some(IndexWanted {
            category: "app-misc".into(),
            pf: "foo-1.0".into(),
            rel_path: "app-misc/foo-1.0.gpkg.tar".into(),
        }),
        signing: Some(test_signing(required)),
    }
}

#[test]
fn a_signed_publish_indexes_the_signed_file_and_a_retry_finds_it() {
    let dir = tempfile::tempdir().unwrap();
    let lease = dir.path().join("staging/lease-1");
    let job = signed_job(&lease, &dir.path().join("binhost"), true);
    let p = verify_and_publish(&job).unwrap();
    assert_eq!(p.how, Published::Now);
    assert!(!job.staged.exists());
    let published = fs::read(&job.dest).unwrap();
    let signing = job.signing.as_ref().unwrap();
    signing.signer.check_gpkg(&published[..]).unwrap();
    let entry = p.entry.unwrap();
    assert_eq!(entry.size(), Some(published.len() as u64));
    let (sha1, md5) = {
        let mut f = File::open(&job.dest).unwrap();
        let s = sums_sized(&mut f, published.len() as u64, true).unwrap();
        (s.sha1.unwrap(), s.md5.unwrap())
    };
    assert_eq!(entry.get("SHA1"), Some(sha1.as_str()));
    assert_eq!(entry.get("MD5"), Some(md5.as_str()));
    // No partial file is left beside it.
    let left: Vec<_> = fs::read_dir(job.dest.parent().unwrap()).unwrap().collect();
    assert_eq!(left.len(), 1);
    // The completion retried after a crash: the upload is gone, the signed file is it.
    let again = verify_and_publish(&job).unwrap();
    assert_eq!(again.how, Published::AlreadyThere);
    // Another upload's checksum is not it.
    let mut other = job.clone();
    other.sha256 = "11".repeat(32);
    assert!(matches!(
        verify_and_publish(&other),
        Err(PublishError::Missing(_))
    ));
}

#[test]
fn a_signed_publish_refuses_a_wrong_upload_and_what_cannot_be_signed() {
    let dir = tempfile::tempdir().unwrap();
    let binhost = dir.path().join("binhost");
    let lease = dir.path().join("staging/lease-1");
    let mut job = signed_job(&lease, &binhost, true);
    job.sha256 = "00".repeat(32);
    assert!(matches!(
        verify_and_publish(&job),
        Err(PublishError::Checksum { .. })
    ));
    assert!(!job.dest.exists());
    // Not a tar, under a gpkg name.
    let lease2 = dir.path().join("staging/lease-2");
    let mut job = staged_job(&lease2, &binhost);
    job.signing = Some(test_signing(true));
    let e = verify_and_publish(&job).unwrap_err();
    assert!(matches!(e, PublishError::Signing { .. }), "{e}");
    assert!(!job.dest.exists());
    // An xpak package: refused when signing is required, published unsigned when not.
    let lease3 = dir.path().join("staging/lease-3");
    let staged = lease3.join("app-misc/bar-1.tbz2");
    fs::create_dir_all(staged.parent().unwrap()).unwrap();
    fs::write(&staged, b"xpak bytes").unwrap();
    let (sha256, size) = sha256_file(&staged).unwrap();
    let mut job = PublishJob {
        staged,
        dest: binhost.join("app-misc/bar-1.tbz2"),
        size,
        sha256,
        lease_dir: lease3,
        index: None,
        signing: Some(test_signing(true)),
    };
    let e = verify_and_publish(&job).unwrap_err();
    assert!(matches!(e, PublishError::Unsignable { .. }), "{e}");
    assert!(e.to_string().contains("required = true"));
    assert!(!job.dest.exists());
    job.signing = Some(test_signing(false));
    verify_and_publish(&job).unwrap();
    assert_eq!(fs::read(&job.dest).unwrap(), b"xpak bytes");
    // Its completion retried: found by its checksum, as without signing.
    assert_eq!(
        verify_and_publish(&job).unwrap().how,
        Published::AlreadyThere
    );
}
