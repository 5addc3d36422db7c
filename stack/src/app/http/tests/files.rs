//! Sites loaded from a real directory tree in a temp dir: what loading takes and refuses,
//! and requests that try to leave the root.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use super::*;

/// A directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "fastpath-http-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const SECRET: &[u8] = b"root:x:0:0:SECRET-OUTSIDE-THE-ROOT";

/// `tmp/root` with a few files and links, and `tmp/outside/secret` next to it.
fn tree() -> (TempDir, PathBuf) {
    use std::{fs, os::unix::fs::symlink};
    let tmp = TempDir::new("tree");
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), SECRET).unwrap();
    fs::write(root.join("index.html"), b"<h1>root</h1>").unwrap();
    fs::write(root.join("a/b/deep.txt"), b"deep\n").unwrap();
    fs::write(root.join(".hidden"), b"hidden").unwrap();
    symlink(outside.join("secret"), root.join("link-out")).unwrap();
    symlink(&outside, root.join("dir-out")).unwrap();
    symlink(root.join("a/b/deep.txt"), root.join("link-in.txt")).unwrap();
    (tmp, root)
}

#[test]
fn loads_a_tree_and_never_leaves_the_root() {
    let (_tmp, root) = tree();
    let site = Arc::new(Site::load(&root, HttpConfig::default()).unwrap());
    let mut keys: Vec<&str> = site.files.iter().map(|f| &*f.path).collect();
    keys.sort();
    assert_eq!(keys, ["a/b/deep.txt", "index.html", "link-in.txt"]);
    assert_eq!(site.files.root(), std::fs::canonicalize(&root).unwrap());

    let (r, _) = ask(&site, &get("/a/b/deep.txt"));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"deep\n"[..]));
    let (r, _) = ask(&site, &get("/link-in.txt"));
    assert_eq!(r.body, b"deep\n");
    let (r, _) = ask(&site, &get("/a/b/../../index.html"));
    assert_eq!(r.body, b"<h1>root</h1>");

    for target in [
        "/../etc/passwd",
        "/%2e%2e/",
        "/%2e%2e/outside/secret",
        "/a/%2E%2E/%2e%2e/x",
        "/a/b/../../../outside/secret",
        "/a/..%2f..%2foutside%2fsecret",
        "/link-out",
        "/dir-out/secret",
        "/.hidden",
        "http://x/../outside/secret",
    ] {
        let mut conn = connect(&site);
        let out = exchange(&mut conn, T0, &get(target));
        let r = one(&out);
        assert!(r.status == 403 || r.status == 404, "{target}: {}", r.status);
        assert!(
            !out.windows(SECRET.len()).any(|w| w == SECRET),
            "{target} leaked the outside file"
        );
    }
}

#[test]
fn loading_errors_are_clear() {
    let tmp = TempDir::new("errors");
    let missing = tmp.path().join("missing");
    let err = Site::load(&missing, HttpConfig::default()).unwrap_err();
    assert!(matches!(err, SiteError::Root { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");

    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = Site::load(&file, HttpConfig::default()).unwrap_err();
    assert!(matches!(err, SiteError::RootNotDirectory { .. }), "{err}");

    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("one"), vec![0u8; 600]).unwrap();
    std::fs::write(root.join("two"), vec![0u8; 600]).unwrap();
    let small = HttpConfig {
        max_site_bytes: 1000,
        ..HttpConfig::default()
    };
    let err = Site::load(&root, small).unwrap_err();
    assert!(
        matches!(err, SiteError::TooLarge { limit: 1000, .. }),
        "{err}"
    );
    assert!(Site::load(&root, HttpConfig::default()).is_ok());
}
