//! Shared fixtures: a server root next to a sentinel directory whose every byte, mode and
//! mtime is snapshotted before an attack and compared after it.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::fmt::Debug;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nexus_files::{FilesConfig, FilesError, ServerFiles};

pub const SECRET: &[u8] = b"TOP SECRET: the sentinel's content";
pub const MAX: u64 = 1 << 20;

/// One file's observable state.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    kind: &'static str,
    size: u64,
    mode: u32,
    mtime_ns: i128,
    nlink: u64,
    hash: u64,
    link: Option<PathBuf>,
}

pub type Snapshot = BTreeMap<PathBuf, Seen>;

pub struct Env {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub outside: PathBuf,
    pub files: ServerFiles,
}

impl Env {
    pub async fn new() -> Self {
        Self::with(FilesConfig::default()).await
    }

    pub async fn with(config: FilesConfig) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(outside.join("dir/sub")).unwrap();
        std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
        std::fs::write(outside.join("passwd"), b"root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(outside.join("dir/inner.txt"), b"inner").unwrap();
        std::fs::set_permissions(outside.join("secret.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let files = ServerFiles::open(&root, config).await.unwrap();
        Self { tmp, root, outside, files }
    }

    pub fn at(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn put(&self, rel: &str, content: &[u8]) {
        let path = self.at(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, content).unwrap();
    }

    pub fn link(&self, target: impl AsRef<Path>, rel: &str) {
        let path = self.at(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::os::unix::fs::symlink(target, path).unwrap();
    }

    /// Everything in the temporary directory but the root, plus the host's `/etc/passwd`.
    pub fn snapshot(&self) -> Snapshot {
        let mut seen = Snapshot::new();
        record_tree(self.tmp.path(), &self.root, &mut seen);
        record(Path::new("/etc/passwd"), &mut seen);
        seen
    }

    /// Runs an attack: snapshot, await, check the refusal, check nothing outside changed.
    pub async fn refuses<T: Debug>(
        &self,
        attack: impl Future<Output = Result<T, FilesError>>,
        expected: impl Fn(&FilesError) -> bool,
    ) -> FilesError {
        let before = self.snapshot();
        let result = attack.await;
        let err = match result {
            Err(e) if expected(&e) => e,
            other => panic!("unexpected outcome: {other:?}"),
        };
        self.assert_unchanged(&before);
        err
    }

    pub fn assert_unchanged(&self, before: &Snapshot) {
        let after = self.snapshot();
        for (path, was) in before {
            assert_eq!(after.get(path), Some(was), "{} changed", path.display());
        }
        for path in after.keys() {
            assert!(before.contains_key(path), "{} appeared outside the root", path.display());
        }
    }

    /// Names directly in the root (to check that nothing partial was left).
    pub fn root_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Every path below `rel` in the root, recursively (relative, sorted).
    pub fn tree(&self, rel: &str) -> Vec<String> {
        let base = self.at(rel);
        let mut out = Vec::new();
        collect(&base, &base, &mut out);
        out.sort();
        out
    }
}

fn collect(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.unwrap().path();
        out.push(path.strip_prefix(base).unwrap().to_string_lossy().into_owned());
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            collect(base, &path, out);
        }
    }
}

fn record_tree(dir: &Path, skip: &Path, seen: &mut Snapshot) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path == skip {
            continue;
        }
        record(&path, seen);
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            record_tree(&path, skip, seen);
        }
    }
}

fn record(path: &Path, seen: &mut Snapshot) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    let mut hasher = DefaultHasher::new();
    let kind = if meta.is_symlink() {
        "symlink"
    } else if meta.is_dir() {
        "dir"
    } else if meta.is_file() {
        std::fs::read(path).unwrap().hash(&mut hasher);
        "file"
    } else {
        "special"
    };
    seen.insert(
        path.to_path_buf(),
        Seen {
            kind,
            size: if meta.is_dir() { 0 } else { meta.len() },
            mode: meta.mode(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            nlink: meta.nlink(),
            hash: hasher.finish(),
            link: std::fs::read_link(path).ok(),
        },
    );
}

// ---- archive builders -------------------------------------------------------------------

/// Entry types of a hand-built tar.
pub const REGULAR: u8 = b'0';
pub const HARDLINK: u8 = b'1';
pub const SYMLINK: u8 = b'2';
pub const CHARDEV: u8 = b'3';
pub const DIRECTORY: u8 = b'5';
pub const FIFO: u8 = b'6';

/// A tar header with raw, unchecked name and link name (the tar crate's setters refuse
/// `..` and absolute names, which is exactly what the attacks need).
pub fn raw_header(name: &[u8], kind: u8, size: u64, link: &[u8]) -> [u8; 512] {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(if kind == DIRECTORY { 0o755 } else { 0o644 });
    header.set_entry_type(tar::EntryType::new(kind));
    header.set_mtime(1_700_000_000);
    {
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
    }
    header.set_cksum();
    *header.as_bytes()
}

/// One hand-built tar entry: `(name, type, link name, data)`.
pub type TarEntry<'a> = (&'a [u8], u8, &'a [u8], &'a [u8]);

/// A tar stream of entries.
pub fn tar_of(entries: &[TarEntry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        out.extend_from_slice(&raw_header(name, *kind, data.len() as u64, link));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

pub fn gz(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub fn zst(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

/// A zip of `(name, data)` files written with the zip crate (names as given).
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        writer.start_file(*name, options).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// A zip whose only entry is a stored file with a raw name and a *declared* uncompressed
/// size that has nothing to do with its data (CRC and sizes are lies).
pub fn lying_zip(name: &[u8], data: &[u8], declared_size: u32, unix_mode: Option<u32>) -> Vec<u8> {
    let mut out = Vec::new();
    let u16le = |v: u16| v.to_le_bytes();
    let u32le = |v: u32| v.to_le_bytes();
    // Local file header.
    out.extend_from_slice(&u32le(0x0403_4b50));
    out.extend_from_slice(&u16le(20)); // version needed
    out.extend_from_slice(&u16le(0)); // flags
    out.extend_from_slice(&u16le(0)); // stored
    out.extend_from_slice(&u32le(0)); // time/date
    out.extend_from_slice(&u32le(0)); // crc
    out.extend_from_slice(&u32le(data.len() as u32));
    out.extend_from_slice(&u32le(declared_size));
    out.extend_from_slice(&u16le(name.len() as u16));
    out.extend_from_slice(&u16le(0));
    out.extend_from_slice(name);
    out.extend_from_slice(data);
    let cd_start = out.len() as u32;
    // Central directory.
    out.extend_from_slice(&u32le(0x0201_4b50));
    out.extend_from_slice(&u16le(if unix_mode.is_some() { 0x0314 } else { 20 })); // made by (3 = unix)
    out.extend_from_slice(&u16le(20));
    out.extend_from_slice(&u16le(0));
    out.extend_from_slice(&u16le(0));
    out.extend_from_slice(&u32le(0));
    out.extend_from_slice(&u32le(0));
    out.extend_from_slice(&u32le(data.len() as u32));
    out.extend_from_slice(&u32le(declared_size));
    out.extend_from_slice(&u16le(name.len() as u16));
    out.extend_from_slice(&u16le(0)); // extra
    out.extend_from_slice(&u16le(0)); // comment
    out.extend_from_slice(&u16le(0)); // disk
    out.extend_from_slice(&u16le(0)); // internal attrs
    out.extend_from_slice(&u32le(unix_mode.map(|m| m << 16).unwrap_or(0)));
    out.extend_from_slice(&u32le(0)); // local header offset
    out.extend_from_slice(name);
    let cd_len = out.len() as u32 - cd_start;
    // End of central directory.
    out.extend_from_slice(&u32le(0x0605_4b50));
    out.extend_from_slice(&u16le(0));
    out.extend_from_slice(&u16le(0));
    out.extend_from_slice(&u16le(1));
    out.extend_from_slice(&u16le(1));
    out.extend_from_slice(&u32le(cd_len));
    out.extend_from_slice(&u32le(cd_start));
    out.extend_from_slice(&u16le(0));
    out
}
