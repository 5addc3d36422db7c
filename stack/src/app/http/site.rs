//! The files a server serves, read once at start from `--root DIR` and shared read-only by
//! every worker: bytes, content type, ETag and Last-Modified per file, found by the
//! normalized URL path. Nothing touches the file system after loading, so a request can
//! reach only what loading put in the table: every regular file under the canonical root.

use std::{
    collections::HashMap,
    fs, io,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use super::HttpConfig;

/// One file, ready to be sent.
#[derive(Clone, Debug)]
pub struct StaticFile {
    /// The URL path without its leading slash (`css/site.css`).
    pub path: Box<str>,
    pub bytes: Arc<[u8]>,
    pub content_type: &'static str,
    /// A strong validator from the content (`"<len>-<fnv64>"`), the same on every worker,
    /// host and restart that serves the same bytes.
    pub etag: Box<str>,
    /// The modification time in whole seconds since the Unix epoch (HTTP dates have no
    /// fractions), and the same as an IMF-fixdate.
    pub modified_unix: u64,
    pub last_modified: Box<str>,
}

/// Why a site could not be loaded or configured.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("document root {path}: {source}")]
    Root { path: PathBuf, source: io::Error },
    #[error("document root {path} is not a directory")]
    RootNotDirectory { path: PathBuf },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "the files under {root} exceed the site size limit of {limit} bytes (at {path}); raise the limit or serve less"
    )]
    TooLarge {
        root: PathBuf,
        limit: u64,
        path: PathBuf,
    },
    #[error("invalid HTTP configuration: {0}")]
    Config(&'static str),
}

/// Every regular file under a root, by URL path.
#[derive(Debug, Default)]
pub struct StaticFiles {
    root: PathBuf,
    files: Vec<StaticFile>,
    by_path: HashMap<Box<str>, usize, foldhash::fast::RandomState>,
    total_bytes: u64,
    skipped: u64,
}

impl StaticFiles {
    /// Reads every regular file under `root` (following symlinks to files only when their
    /// target is under the canonical root) into memory; at most `max_total_bytes` in all.
    /// Hidden names (starting with `.`) and names that are not UTF-8 are skipped.
    pub fn load(root: &Path, max_total_bytes: u64) -> Result<Self, SiteError> {
        let canonical = fs::canonicalize(root).map_err(|source| SiteError::Root {
            path: root.to_owned(),
            source,
        })?;
        if !canonical.is_dir() {
            return Err(SiteError::RootNotDirectory {
                path: root.to_owned(),
            });
        }
        let mut site = StaticFiles {
            root: canonical.clone(),
            ..Default::default()
        };
        site.walk(&canonical, "", max_total_bytes)?;
        log::info!(
            "http: {} files, {} bytes from {} ({} skipped)",
            site.files.len(),
            site.total_bytes,
            site.root.display(),
            site.skipped
        );
        Ok(site)
    }

    /// An empty site (only built-in routes answer).
    pub fn empty() -> Self {
        Self::default()
    }

    fn walk(&mut self, dir: &Path, prefix: &str, limit: u64) -> Result<(), SiteError> {
        let read_err = |path: &Path| {
            let path = path.to_owned();
            move |source| SiteError::Read { path, source }
        };
        let mut entries = fs::read_dir(dir)
            .map_err(read_err(dir))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(read_err(dir))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                log::warn!("http: skipping {} (name is not UTF-8)", path.display());
                self.skipped += 1;
                continue;
            };
            if name.starts_with('.') {
                self.skipped += 1;
                continue;
            }
            let url_path = format!("{prefix}{name}");
            let kind = entry.file_type().map_err(read_err(&path))?;
            if kind.is_dir() {
                self.walk(&path, &format!("{url_path}/"), limit)?;
                continue;
            }
            // A symlink (or anything else) counts only if it resolves to a regular file
            // under the canonical root; directory symlinks are not followed (no loops).
            let target = if kind.is_symlink() {
                match fs::canonicalize(&path) {
                    Ok(t) if t.starts_with(&self.root) && t.is_file() => t,
                    _ => {
                        log::warn!(
                            "http: skipping {} (a link out of the root, dangling or not to a file)",
                            path.display()
                        );
                        self.skipped += 1;
                        continue;
                    }
                }
            } else if kind.is_file() {
                path.clone()
            } else {
                self.skipped += 1;
                continue;
            };
            let meta = fs::metadata(&target).map_err(read_err(&path))?;
            if self.total_bytes + meta.len() > limit {
                return Err(SiteError::TooLarge {
                    root: self.root.clone(),
                    limit,
                    path,
                });
            }
            let bytes = fs::read(&target).map_err(read_err(&path))?;
            self.total_bytes += bytes.len() as u64;
            let modified = meta
                .modified()
                .ok()
                .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            self.insert(&url_path, bytes.into(), modified);
        }
        Ok(())
    }

    /// Adds a file at `url_path` (no leading slash), as loading does; for tests and for
    /// content made in memory.
    pub fn insert(&mut self, url_path: &str, bytes: Arc<[u8]>, modified_unix: u64) {
        let etag = format!("\"{:x}-{:016x}\"", bytes.len(), fnv1a64(&bytes));
        let last_modified = httpdate::fmt_http_date(
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(modified_unix),
        );
        let file = StaticFile {
            path: url_path.into(),
            bytes,
            content_type: content_type(url_path),
            etag: etag.into(),
            modified_unix,
            last_modified: last_modified.into(),
        };
        match self.by_path.get(url_path) {
            Some(&i) => self.files[i] = file,
            None => {
                self.by_path.insert(url_path.into(), self.files.len());
                self.files.push(file);
            }
        }
    }

    /// The file at a normalized URL path (no leading slash, no dot segments).
    pub fn index_of(&self, url_path: &str) -> Option<usize> {
        self.by_path.get(url_path).copied()
    }

    pub fn get(&self, index: usize) -> &StaticFile {
        &self.files[index]
    }

    /// The canonical root the files came from (empty for a site built in memory).
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    pub fn iter(&self) -> impl Iterator<Item = &StaticFile> {
        self.files.iter()
    }
}

/// What every connection of a server shares: the files and the configuration. Built once
/// at start, then `Arc`-shared by the workers; read-only.
#[derive(Debug)]
pub struct Site {
    pub files: StaticFiles,
    pub config: HttpConfig,
}

impl Site {
    /// Loads `root` under the limits in `config`.
    pub fn load(root: &Path, config: HttpConfig) -> Result<Self, SiteError> {
        config.validate()?;
        let files = StaticFiles::load(root, config.max_site_bytes)?;
        Ok(Site { files, config })
    }

    pub fn new(files: StaticFiles, config: HttpConfig) -> Result<Self, SiteError> {
        config.validate()?;
        Ok(Site { files, config })
    }
}

/// FNV-1a, 64 bits: a fast, stable content hash for ETags (not a security boundary: an
/// ETag only has to change when the bytes do).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The media type by extension. A small table rather than `mime_guess`: a static server
/// needs a few dozen types, the table is reviewable at a glance, and it keeps one more
/// build script off a 2-core build. Unknown extensions are `application/octet-stream`.
pub fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext,
        _ => return "application/octet-stream",
    };
    const TEXT: &[(&str, &str)] = &[
        ("html", "text/html; charset=utf-8"),
        ("htm", "text/html; charset=utf-8"),
        ("css", "text/css; charset=utf-8"),
        ("js", "text/javascript; charset=utf-8"),
        ("mjs", "text/javascript; charset=utf-8"),
        ("txt", "text/plain; charset=utf-8"),
        ("md", "text/markdown; charset=utf-8"),
        ("csv", "text/csv; charset=utf-8"),
        ("xml", "application/xml"),
        ("json", "application/json"),
        ("map", "application/json"),
        ("webmanifest", "application/manifest+json"),
        ("svg", "image/svg+xml"),
        ("png", "image/png"),
        ("jpg", "image/jpeg"),
        ("jpeg", "image/jpeg"),
        ("gif", "image/gif"),
        ("webp", "image/webp"),
        ("avif", "image/avif"),
        ("ico", "image/vnd.microsoft.icon"),
        ("woff", "font/woff"),
        ("woff2", "font/woff2"),
        ("ttf", "font/ttf"),
        ("otf", "font/otf"),
        ("wasm", "application/wasm"),
        ("pdf", "application/pdf"),
        ("zip", "application/zip"),
        ("gz", "application/gzip"),
        ("tar", "application/x-tar"),
        ("mp4", "video/mp4"),
        ("webm", "video/webm"),
        ("mp3", "audio/mpeg"),
        ("ogg", "audio/ogg"),
        ("wav", "audio/wav"),
    ];
    TEXT.iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        .map_or("application/octet-stream", |&(_, t)| t)
}
