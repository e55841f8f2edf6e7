//! Test data the suites and benchmarks share: incompressible bytes and files written with
//! their parent folders.

use std::path::Path;

/// `len` bytes that do not compress (xorshift from `seed`), the same for the same seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `content` to `root/rel`, creating the folders on the way.
#[allow(clippy::panic, reason = "test support: a fixture that cannot be written fails the test")]
pub fn put(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    if let Some(parent) = path.parent()
        && let Err(e) = std::fs::create_dir_all(parent)
    {
        panic!("creating {}: {e}", parent.display());
    }
    if let Err(e) = std::fs::write(&path, content) {
        panic!("writing {}: {e}", path.display());
    }
}
