//! Signing binary packages as Portage does with `FEATURES=binpkg-signing`, and checking
//! them (docs/design.md, "Signed packages"). Blocking work: callers run it on a blocking
//! thread.
//!
//! A signed gpkg is the same outer tar with, after each member but `gpkg-1`, an
//! ASCII-armored detached signature `<member>.sig`, and at the end a clearsigned
//! `Manifest` listing every member but itself: `DATA <name> <size> BLAKE2B <hex> SHA512
//! <hex>`. The orchestrator signs centrally, with one key it holds in memory, after an
//! upload was verified; the drones hold no key. Signatures and Manifest a package already
//! carries are replaced.

use blake2::Blake2b512;
use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey,
    SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::types::{KeyDetails, Password, SigningKey, Timestamp};
use sha2::{Digest, Sha512};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The digest Portage signs with (`BINPKG_GPG_SIGNING_DIGEST`).
const DIGEST: HashAlgorithm = HashAlgorithm::Sha512;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing.key {path}: cannot read it: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("signing.key {path} is not an ASCII-armored OpenPGP secret key (export one with `gpg --armor --export-secret-keys`): {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<pgp::errors::Error>,
    },
    #[error(
        "signing.key {path} has no key that may sign (no signing-capable primary key or subkey)"
    )]
    CannotSign { path: PathBuf },
    #[error("signing.key {path} is protected by a passphrase: give it in the environment variable {env}")]
    Locked { path: PathBuf, env: String },
    #[error("signing.key {path}: the passphrase in {env} does not unlock it: {source}")]
    WrongPassphrase {
        path: PathBuf,
        env: String,
        #[source]
        source: Box<pgp::errors::Error>,
    },
    #[error("signing.key {path}: the key cannot make a signature: {source}")]
    Unusable {
        path: PathBuf,
        #[source]
        source: Box<pgp::errors::Error>,
    },
}

/// Why a package could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("not a gpkg that can be signed: {0}")]
    NotGpkg(String),
    #[error("reading the package: {0}")]
    Read(#[source] io::Error),
    #[error("writing the signed package: {0}")]
    Write(#[source] io::Error),
    #[error("making the signature: {0}")]
    Sign(#[source] pgp::errors::Error),
}

/// Why a package's signature does not check out (`binhost verify`).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("unsigned: no signed Manifest")]
    Unsigned,
    #[error("the Manifest is not UTF-8 text")]
    ManifestText,
    #[error("the Manifest's signature is not a good signature by the binhost's key: {0}")]
    BadManifest(#[source] Box<pgp::errors::Error>),
    #[error("{0}")]
    Mismatch(String),
    #[error("reading the package: {0}")]
    Read(#[source] io::Error),
}

/// Which of the key's parts signs.
enum Part {
    Primary,
    Subkey(usize),
}

/// The binhost's signing key, unlocked once at start.
pub struct Signer {
    key: SignedSecretKey,
    part: Part,
    public: SignedPublicKey,
    armored_public: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl Signer {
    /// Reads the key at `path`; a passphrase-protected key is unlocked with the value of
    /// the environment variable `passphrase_env`. Makes one signature to prove it works.
    pub fn load(path: &Path, passphrase_env: &str) -> Result<Signer, KeyError> {
        let text = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let parse = |source| KeyError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        };
        let (mut key, _) = SignedSecretKey::from_armor_single(&text[..]).map_err(parse)?;
        let part = signing_part(&key).ok_or_else(|| KeyError::CannotSign {
            path: path.to_path_buf(),
        })?;
        let encrypted = match part {
            Part::Primary => key.primary_key.secret_params().is_encrypted(),
            Part::Subkey(i) => key.secret_subkeys[i].key.secret_params().is_encrypted(),
        };
        if encrypted {
            let pass = std::env::var(passphrase_env)
                .ok()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| KeyError::Locked {
                    path: path.to_path_buf(),
                    env: passphrase_env.to_string(),
                })?;
            let pw = Password::from(pass.as_str());
            let unlocked = match part {
                Part::Primary => key.primary_key.remove_password(&pw),
                Part::Subkey(i) => key.secret_subkeys[i].key.remove_password(&pw),
            };
            unlocked.map_err(|source| KeyError::WrongPassphrase {
                path: path.to_path_buf(),
                env: passphrase_env.to_string(),
                source: Box::new(source),
            })?;
        }
        let public = key.to_public_key();
        let armored_public =
            public
                .to_armored_string(ArmorOptions::default())
                .map_err(|source| KeyError::Unusable {
                    path: path.to_path_buf(),
                    source: Box::new(source),
                })?;
        let signer = Signer {
            key,
            part,
            public,
            armored_public,
        };
        let sig = signer
            .detached(b"build-swarm")
            .and_then(|s| signer.verify_detached(&s, b"build-swarm"));
        sig.map_err(|source| KeyError::Unusable {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        Ok(signer)
    }

    /// The public key, ASCII-armored (served at `/binhost/key.asc`).
    pub fn public_key_armored(&self) -> &str {
        &self.armored_public
    }

    /// The fingerprint of the key that signs, upper-case hex.
    pub fn fingerprint(&self) -> String {
        let fp = match self.part {
            Part::Primary => self.key.primary_key.fingerprint(),
            Part::Subkey(i) => self.key.secret_subkeys[i].key.fingerprint(),
        };
        crate::sys::digest::hex(fp.as_bytes()).to_uppercase()
    }

    // rPGP implements `SigningKey` for `Box<&dyn SigningKey>`, not for `&dyn SigningKey`.
    #[allow(clippy::redundant_allocation)]
    fn signing_key(&self) -> Box<&dyn SigningKey> {
        match self.part {
            Part::Primary => Box::new(&self.key.primary_key),
            Part::Subkey(i) => Box::new(&self.key.secret_subkeys[i].key),
        }
    }

    /// Checks `sig` over `data` with the public half of the part that signs.
    fn verify_detached(
        &self,
        sig: &DetachedSignature,
        data: &[u8],
    ) -> Result<(), pgp::errors::Error> {
        match self.part {
            Part::Primary => sig.verify(&self.public.primary_key, data),
            Part::Subkey(i) => sig.verify(&self.public.public_subkeys[i].key, data),
        }
    }

    fn verify_cleartext(&self, msg: &CleartextSignedMessage) -> Result<(), pgp::errors::Error> {
        match self.part {
            Part::Primary => msg.verify(&self.public.primary_key).map(|_| ()),
            Part::Subkey(i) => msg.verify(&self.public.public_subkeys[i].key).map(|_| ()),
        }
    }

    fn config(&self, typ: SignatureType) -> Result<SignatureConfig, pgp::errors::Error> {
        let key = self.signing_key();
        let mut config = SignatureConfig::v4(typ, key.algorithm(), DIGEST);
        config.hashed_subpackets = vec![
            Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::now()))?,
            Subpacket::regular(SubpacketData::IssuerFingerprint(key.fingerprint()))?,
        ];
        config.unhashed_subpackets = vec![Subpacket::regular(SubpacketData::IssuerKeyId(
            key.legacy_key_id(),
        ))?];
        Ok(config)
    }

    fn detached(&self, data: &[u8]) -> Result<DetachedSignature, pgp::errors::Error> {
        let mut sha = Sha512::new();
        Digest::update(&mut sha, data);
        self.sign_hashed(sha).map(DetachedSignature::new)
    }

    /// A detached binary signature over data whose SHA-512 state (over the data alone) is
    /// `data`: the member's Manifest digest and its signature share one pass over its
    /// bytes. (What rPGP's `SignatureHasher::sign` does after hashing: the signature's
    /// hashed data and trailer, then the key signs the digest; `Signer::load` checks the
    /// result with rPGP's own verification.)
    fn sign_hashed(&self, data: Sha512) -> Result<pgp::packet::Signature, pgp::errors::Error> {
        let config = self.config(SignatureType::Binary)?;
        let mut hasher: Box<dyn sha2::digest::DynDigest + Send> = Box::new(data);
        let len = config.hash_signature_data(&mut hasher)?;
        hasher.update(&config.trailer(len)?);
        let digest = hasher.finalize();
        let sig = self
            .signing_key()
            .sign(&Password::empty(), DIGEST, &digest)?;
        pgp::packet::Signature::from_config(config, [digest[0], digest[1]], sig)
    }

    /// Writes `input` (a gpkg) to `output` signed. Reads the input once, front to back.
    pub fn sign_gpkg(&self, input: impl Read, output: impl Write) -> Result<(), SignError> {
        let mut archive = tar::Archive::new(input);
        let mut out = tar::Builder::new(output);
        out.mode(tar::HeaderMode::Deterministic);
        let mut prefix: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        let mut manifest = String::new();
        let mut version = false;
        for entry in archive.entries().map_err(SignError::Read)? {
            let mut entry = entry.map_err(SignError::Read)?;
            let name = entry
                .path()
                .map_err(SignError::Read)?
                .to_string_lossy()
                .into_owned();
            let (dir, base) = split_member(&name).map_err(SignError::NotGpkg)?;
            if *prefix.get_or_insert_with(|| dir.to_string()) != dir {
                return Err(SignError::NotGpkg(format!(
                    "members in two directories ({} and {dir})",
                    prefix.unwrap_or_default()
                )));
            }
            if !seen.insert(base.to_string()) {
                return Err(SignError::NotGpkg(format!("member {name} appears twice")));
            }
            if base == "Manifest" || base.ends_with(".sig") {
                continue;
            }
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err(SignError::NotGpkg(format!("{name} is not a regular file")));
            }
            version |= base == "gpkg-1";
            let mtime = entry.header().mtime().unwrap_or(0);
            let size = entry.size();
            let mut hashes = MemberHashes::new();
            let tap = Tap {
                inner: &mut entry,
                hashes: &mut hashes,
            };
            let mut header = member_header(size, mtime);
            out.append_data(&mut header, &name, tap)
                .map_err(SignError::Write)?;
            if hashes.len != size {
                return Err(SignError::NotGpkg(format!("{name} is cut short")));
            }
            manifest.push_str(&hashes.line(base));
            if base != "gpkg-1" {
                let sig = self
                    .sign_hashed(hashes.sha512.clone())
                    .map_err(SignError::Sign)?;
                let armored = DetachedSignature::new(sig)
                    .to_armored_bytes(ArmorOptions::default())
                    .map_err(SignError::Sign)?;
                let sig_name = format!("{base}.sig");
                let mut hashes = MemberHashes::new();
                hashes.update(&armored);
                manifest.push_str(&hashes.line(&sig_name));
                let mut header = member_header(armored.len() as u64, mtime);
                out.append_data(&mut header, format!("{dir}/{sig_name}"), &armored[..])
                    .map_err(SignError::Write)?;
            }
        }
        let Some(dir) = prefix else {
            return Err(SignError::NotGpkg("an empty tar".into()));
        };
        if !version {
            return Err(SignError::NotGpkg("no gpkg-1 member".into()));
        }
        let config = self.config(SignatureType::Text).map_err(SignError::Sign)?;
        let signed =
            CleartextSignedMessage::new(&manifest, config, &self.signing_key(), &Password::empty())
                .and_then(|m| m.to_armored_bytes(ArmorOptions::default()))
                .map_err(SignError::Sign)?;
        let mut header = member_header(signed.len() as u64, crate::sys::clock::unix_now());
        out.append_data(&mut header, format!("{dir}/Manifest"), &signed[..])
            .map_err(SignError::Write)?;
        out.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(SignError::Write)
    }

    /// Checks a signed gpkg: a Manifest clearsigned by this key that lists exactly the
    /// other members, each with its size and digests, and a `.sig` beside every member
    /// but `gpkg-1`. (The Manifest's digests cover the `.sig` members, so a changed
    /// signature or file fails here as it fails in Portage.)
    pub fn check_gpkg(&self, input: impl Read) -> Result<(), CheckError> {
        let mut archive = tar::Archive::new(input);
        let mut found: BTreeMap<String, ManifestLine> = BTreeMap::new();
        let mut manifest: Option<Vec<u8>> = None;
        for entry in archive.entries().map_err(CheckError::Read)? {
            let mut entry = entry.map_err(CheckError::Read)?;
            let name = entry
                .path()
                .map_err(CheckError::Read)?
                .to_string_lossy()
                .into_owned();
            let (_, base) = split_member(&name).map_err(CheckError::Mismatch)?;
            let base = base.to_string();
            if base == "Manifest" {
                let mut text = Vec::new();
                entry.read_to_end(&mut text).map_err(CheckError::Read)?;
                manifest = Some(text);
                continue;
            }
            let mut hashes = MemberHashes::new();
            io::copy(
                &mut entry,
                &mut HashWriter {
                    hashes: &mut hashes,
                },
            )
            .map_err(CheckError::Read)?;
            if found
                .insert(base.clone(), ManifestLine::parse(&hashes.line(&base)))
                .is_some()
            {
                return Err(CheckError::Mismatch(format!("member {base} appears twice")));
            }
        }
        let manifest = manifest.ok_or(CheckError::Unsigned)?;
        let text = String::from_utf8(manifest).map_err(|_| CheckError::ManifestText)?;
        if !text.contains("-----BEGIN PGP SIGNED MESSAGE-----") {
            return Err(CheckError::Unsigned);
        }
        let (msg, _) = CleartextSignedMessage::from_string(&text)
            .map_err(|e| CheckError::BadManifest(Box::new(e)))?;
        self.verify_cleartext(&msg)
            .map_err(|e| CheckError::BadManifest(Box::new(e)))?;
        let listed: BTreeMap<String, ManifestLine> = msg
            .signed_text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let line = ManifestLine::parse(l);
                (line.name.clone(), line)
            })
            .collect();
        for (name, ours) in &found {
            match listed.get(name) {
                None => {
                    return Err(CheckError::Mismatch(format!(
                        "{name} is not in the Manifest"
                    )))
                }
                Some(l) if !l.matches(ours) => {
                    return Err(CheckError::Mismatch(format!(
                        "{name} does not match its Manifest entry (changed since it was signed)"
                    )))
                }
                Some(_) => {}
            }
            if name != "gpkg-1"
                && !name.ends_with(".sig")
                && !found.contains_key(&format!("{name}.sig"))
            {
                return Err(CheckError::Mismatch(format!("{name} has no signature")));
            }
        }
        if let Some(name) = listed.keys().find(|n| !found.contains_key(*n)) {
            return Err(CheckError::Mismatch(format!(
                "{name} is in the Manifest but not in the package"
            )));
        }
        Ok(())
    }
}

/// The part of `key` that signs: a signing-capable subkey if there is one (as GnuPG
/// prefers), else the primary key when it may sign.
fn signing_part(key: &SignedSecretKey) -> Option<Part> {
    let subkey = key
        .secret_subkeys
        .iter()
        .position(|s| s.signatures.iter().any(|sig| sig.key_flags().sign()));
    if let Some(i) = subkey {
        return Some(Part::Subkey(i));
    }
    let flags: Vec<_> = key
        .details
        .users
        .iter()
        .flat_map(|u| u.signatures.iter())
        .map(|s| s.key_flags())
        .collect();
    // No key flags at all: an old key, whose primary signs.
    let primary_signs = flags.is_empty()
        || flags.iter().any(|f| f.sign())
        || flags
            .iter()
            .all(|f| !f.certify() && !f.sign() && !f.encrypt_comms());
    primary_signs.then_some(Part::Primary)
}

/// A gpkg member name is `<dir>/<file>`: exactly one directory level.
fn split_member(name: &str) -> Result<(&str, &str), String> {
    match name.split_once('/') {
        Some((dir, base)) if !dir.is_empty() && !base.is_empty() && !base.contains('/') => {
            Ok((dir, base))
        }
        _ => Err(format!(
            "member {name} is not one directory deep (gpkg members are <name>/<file>)"
        )),
    }
}

fn member_header(size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(mtime);
    h
}

/// One `DATA <name> <size> <DIGEST> <hex>…` line of a Manifest (digests in any order).
struct ManifestLine {
    name: String,
    size: String,
    digests: BTreeMap<String, String>,
}

impl ManifestLine {
    fn parse(line: &str) -> ManifestLine {
        let f: Vec<&str> = line.split_whitespace().collect();
        let get = |i: usize| f.get(i).copied().unwrap_or_default().to_string();
        ManifestLine {
            name: get(1),
            size: get(2),
            digests: f
                .get(3..)
                .unwrap_or_default()
                .chunks(2)
                .filter(|c| c.len() == 2)
                .map(|c| (c[0].to_string(), c[1].to_ascii_lowercase()))
                .collect(),
        }
    }

    /// Same size, and every digest both list equal — at least one (as Portage checks).
    fn matches(&self, computed: &ManifestLine) -> bool {
        let mut common = 0;
        for (k, v) in &computed.digests {
            match self.digests.get(k) {
                Some(w) if w == v => common += 1,
                Some(_) => return false,
                None => {}
            }
        }
        self.size == computed.size && common > 0
    }
}

/// BLAKE2B and SHA512 of a member, as the Manifest lists them.
struct MemberHashes {
    blake2b: Blake2b512,
    sha512: Sha512,
    len: u64,
}

impl MemberHashes {
    fn new() -> Self {
        MemberHashes {
            blake2b: Blake2b512::new(),
            sha512: Sha512::new(),
            len: 0,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.blake2b.update(bytes);
        self.sha512.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// The member's Manifest line.
    fn line(&self, name: &str) -> String {
        use crate::sys::digest::hex;
        format!(
            "DATA {name} {} BLAKE2B {} SHA512 {}\n",
            self.len,
            hex(&self.blake2b.clone().finalize()),
            hex(&self.sha512.clone().finalize())
        )
    }
}

/// Reads through `inner`, feeding what it reads to the member's digests.
struct Tap<'a, R> {
    inner: R,
    hashes: &'a mut MemberHashes,
}

impl<R: Read> Read for Tap<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hashes.update(&buf[..n]);
        Ok(n)
    }
}

struct HashWriter<'a> {
    hashes: &'a mut MemberHashes,
}

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hashes.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
