use super::*;
use crate::domain::binpkg::stand_in_gpkg;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/signing")
        .join(name)
}

fn signer() -> Signer {
    match Signer::load(
        &fixture("test-key.asc"),
        "BUILD_SWARM_TEST_UNSET_PASSPHRASE",
    ) {
        Ok(s) => s,
        Err(e) => panic!("the test key loads: {e}"),
    }
}

fn signed(signer: &Signer, pkg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match signer.sign_gpkg(pkg, &mut out) {
        Ok(()) => out,
        Err(e) => panic!("signs: {e}"),
    }
}

fn members(pkg: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(pkg);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

/// Rebuilds `pkg` with `change` applied to the member named `name`.
fn tampered(pkg: &[u8], name: &str, change: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    for (n, mut data) in members(pkg) {
        if n.ends_with(name) {
            change(&mut data);
        }
        let mut h = member_header(data.len() as u64, 0);
        out.append_data(&mut h, &n, &data[..]).unwrap();
    }
    out.into_inner().unwrap()
}

#[test]
fn a_signed_gpkg_has_portages_layout_and_checks_out() {
    let s = signer();
    let pkg = stand_in_gpkg("app-misc", "hello-1.0", Some(3), b"payload").unwrap();
    let out = signed(&s, &pkg);
    let names: Vec<String> = members(&out).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "hello-1.0-3/gpkg-1",
            "hello-1.0-3/metadata.tar",
            "hello-1.0-3/metadata.tar.sig",
            "hello-1.0-3/image.tar",
            "hello-1.0-3/image.tar.sig",
            "hello-1.0-3/Manifest",
        ]
    );
    let all = members(&out);
    let manifest = String::from_utf8(all[5].1.clone()).unwrap();
    assert!(manifest.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n"));
    assert!(manifest.contains("DATA gpkg-1 0 BLAKE2B "));
    assert!(manifest.contains("DATA image.tar.sig "));
    let sig = String::from_utf8(all[2].1.clone()).unwrap();
    assert!(sig.starts_with("-----BEGIN PGP SIGNATURE-----"));
    // The members' bytes are the original ones.
    let orig = members(&pkg);
    assert_eq!(all[1].1, orig[1].1);
    assert_eq!(all[3].1, orig[2].1);
    s.check_gpkg(&out[..]).unwrap();
}

#[test]
fn signing_again_replaces_the_signatures() {
    let s = signer();
    let pkg = stand_in_gpkg("app-misc", "hello-1.0", None, b"payload").unwrap();
    let twice = signed(&s, &signed(&s, &pkg));
    assert_eq!(members(&twice).len(), 6);
    s.check_gpkg(&twice[..]).unwrap();
}

#[test]
fn tampering_is_found() {
    let s = signer();
    let pkg = signed(
        &s,
        &stand_in_gpkg("app-misc", "hello-1.0", None, b"payload").unwrap(),
    );
    // A changed detached signature, a changed image, a changed Manifest line.
    let sig = tampered(&pkg, "image.tar.sig", |d| {
        let i = d.len() / 2;
        d[i] = if d[i] == b'A' { b'B' } else { b'A' };
    });
    assert!(matches!(
        s.check_gpkg(&sig[..]),
        Err(CheckError::Mismatch(_))
    ));
    let image = tampered(&pkg, "/image.tar", |d| d[600] ^= 1);
    assert!(matches!(
        s.check_gpkg(&image[..]),
        Err(CheckError::Mismatch(_))
    ));
    let manifest = tampered(&pkg, "Manifest", |d| {
        let text = String::from_utf8(d.clone())
            .unwrap()
            .replace("DATA gpkg-1 0", "DATA gpkg-1 1");
        *d = text.into_bytes();
    });
    assert!(matches!(
        s.check_gpkg(&manifest[..]),
        Err(CheckError::BadManifest(_))
    ));
    // Unsigned, and signed by another key.
    let unsigned = stand_in_gpkg("app-misc", "hello-1.0", None, b"payload").unwrap();
    assert!(matches!(
        s.check_gpkg(&unsigned[..]),
        Err(CheckError::Unsigned)
    ));
    let other = Signer::load(
        &fixture("other-key.asc"),
        "BUILD_SWARM_TEST_UNSET_PASSPHRASE",
    )
    .unwrap();
    let by_other = signed(&other, &unsigned);
    assert!(matches!(
        s.check_gpkg(&by_other[..]),
        Err(CheckError::BadManifest(_))
    ));
}

#[test]
fn what_is_not_a_gpkg_is_refused_with_the_reason() {
    let s = signer();
    let mut out = Vec::new();
    let e = s
        .sign_gpkg(&b"not a tar at all, just some bytes"[..], &mut out)
        .unwrap_err();
    assert!(
        matches!(e, SignError::NotGpkg(_) | SignError::Read(_)),
        "{e}"
    );
    // A tar without gpkg-1.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = member_header(3, 0);
    b.append_data(&mut h, "x-1/image.tar", &b"abc"[..]).unwrap();
    let no_version = b.into_inner().unwrap();
    let e = s.sign_gpkg(&no_version[..], Vec::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "not a gpkg that can be signed: no gpkg-1 member"
    );
    // Members two levels deep.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = member_header(3, 0);
    b.append_data(&mut h, "x-1/a/image.tar", &b"abc"[..])
        .unwrap();
    let deep = b.into_inner().unwrap();
    assert!(s
        .sign_gpkg(&deep[..], Vec::new())
        .unwrap_err()
        .to_string()
        .contains("one directory deep"));
}

#[test]
fn keys_that_cannot_be_used_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.asc");
    let e = Signer::load(&missing, "X").unwrap_err();
    assert!(e.to_string().starts_with(&format!(
        "signing.key {}: cannot read it",
        missing.display()
    )));
    let junk = dir.path().join("junk.asc");
    std::fs::write(&junk, "hello").unwrap();
    assert!(matches!(
        Signer::load(&junk, "X").unwrap_err(),
        KeyError::Parse { .. }
    ));
    // Public key only.
    let public = dir.path().join("public.asc");
    std::fs::write(&public, signer().public_key_armored()).unwrap();
    assert!(matches!(
        Signer::load(&public, "X").unwrap_err(),
        KeyError::Parse { .. }
    ));
    // Protected: no passphrase, a wrong one, the right one.
    let protected = fixture("protected-key.asc");
    let env = "BUILD_SWARM_TEST_SIGNING_PASSPHRASE_UNIT";
    let e = Signer::load(&protected, env).unwrap_err();
    assert!(matches!(e, KeyError::Locked { .. }), "{e}");
    std::env::set_var(env, "wrong");
    assert!(matches!(
        Signer::load(&protected, env).unwrap_err(),
        KeyError::WrongPassphrase { .. }
    ));
    std::env::set_var(env, "swarm-test");
    let s = Signer::load(&protected, env).unwrap();
    let pkg = signed(&s, &stand_in_gpkg("a-b", "c-1", None, b"x").unwrap());
    s.check_gpkg(&pkg[..]).unwrap();
    assert_eq!(s.fingerprint().len(), 40);
}
