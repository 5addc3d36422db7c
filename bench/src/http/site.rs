//! The directory every system serves: a page, a 100-byte file and a 10 MiB file.

use std::path::PathBuf;

use super::{LARGE_BYTES, LARGE_FILE, PAGE_FILE, SMALL_FILE};

/// A directory of files to serve, removed on drop.
pub struct SiteDir {
    pub path: PathBuf,
}

impl SiteDir {
    /// A small page, a 100-byte file and a 10 MiB file of deterministic bytes.
    pub fn create() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("fastpath-site-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        // Make it readable by nginx's workers whatever user they run as.
        std::fs::write(
            path.join(PAGE_FILE),
            "<!doctype html>\n<html><head><title>fastpath</title></head>\n<body><h1>Served by the fast path</h1></body></html>\n",
        )?;
        let small: Vec<u8> = (0..100u32)
            .map(|i| {
                if i == 99 {
                    b'\n'
                } else {
                    b'a' + (i % 26) as u8
                }
            })
            .collect();
        std::fs::write(path.join(SMALL_FILE), small)?;
        std::fs::write(path.join(LARGE_FILE), large_bytes())?;
        Ok(Self { path })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for SiteDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The 10 MiB file's bytes: xorshift, so a truncation or reordering shows.
pub fn large_bytes() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(LARGE_BYTES);
    while out.len() < LARGE_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(LARGE_BYTES);
    out
}
