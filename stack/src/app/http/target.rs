//! From a request-target (RFC 9112 §3.2) to the key of a file: origin-form or absolute-form,
//! query dropped, percent-decoded (RFC 3986 §2.1), dot segments removed (RFC 3986 §5.2.4)
//! after decoding, so `%2e%2e` is `..` too. A `..` that would climb above the root is
//! refused rather than clamped; the result only ever names a key in the loaded table.

/// Why a target names no file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TargetError {
    /// Not origin-form or absolute-form, a bad percent escape or a decoded NUL: 400.
    Malformed,
    /// Climbs above the root: 403.
    Escapes,
    /// Decodes to bytes that are no UTF-8 name: no file can have it, 404.
    NotFound,
}

/// The file key of `target` (no leading slash; `index.html` for directories), written into
/// `key`; `decoded` is scratch. Both are the connection's, reused: no allocation once warm.
pub(crate) fn file_key(
    target: &[u8],
    decoded: &mut Vec<u8>,
    key: &mut String,
) -> Result<(), TargetError> {
    let path = origin_path(target).ok_or(TargetError::Malformed)?;
    let path = match path.iter().position(|&b| b == b'?' || b == b'#') {
        Some(end) => &path[..end],
        None => path,
    };
    decoded.clear();
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            let hi = path.get(i + 1).and_then(|&h| hex(h));
            let lo = path.get(i + 2).and_then(|&l| hex(l));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(TargetError::Malformed);
            };
            decoded.push(hi << 4 | lo);
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    if decoded.contains(&0) {
        return Err(TargetError::Malformed);
    }
    let decoded = std::str::from_utf8(decoded).map_err(|_| TargetError::NotFound)?;
    key.clear();
    let mut directory = true;
    for segment in decoded.split('/') {
        directory = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                if key.is_empty() {
                    return Err(TargetError::Escapes);
                }
                let cut = key.rfind('/').unwrap_or(0);
                key.truncate(cut);
            }
            _ => {
                if !key.is_empty() {
                    key.push('/');
                }
                key.push_str(segment);
            }
        }
    }
    if directory {
        if !key.is_empty() {
            key.push('/');
        }
        key.push_str("index.html");
    }
    Ok(())
}

/// The path part of an origin-form (`/a/b?q`) or absolute-form (`http://host/a/b?q`)
/// target; `None` for the authority and asterisk forms and anything else.
fn origin_path(target: &[u8]) -> Option<&[u8]> {
    if target.first() == Some(&b'/') {
        return Some(target);
    }
    let lower_starts = |prefix: &[u8]| {
        target.len() >= prefix.len() && target[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    let rest = if lower_starts(b"http://") {
        &target[7..]
    } else if lower_starts(b"https://") {
        &target[8..]
    } else {
        return None;
    };
    match rest.iter().position(|&b| b == b'/' || b == b'?') {
        Some(at) if rest[at] == b'/' => Some(&rest[at..]),
        // `http://host` and `http://host?q` mean the root.
        _ => Some(b"/"),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn key(target: &str) -> Result<String, TargetError> {
        let mut decoded = Vec::new();
        let mut key = String::new();
        file_key(target.as_bytes(), &mut decoded, &mut key).map(|()| key)
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(key("/").unwrap(), "index.html");
        assert_eq!(key("/a/b.css?v=1").unwrap(), "a/b.css");
        assert_eq!(key("/a//b.css#x").unwrap(), "a/b.css");
        assert_eq!(key("/a/./b/../c.txt").unwrap(), "a/c.txt");
        assert_eq!(key("/docs/").unwrap(), "docs/index.html");
        assert_eq!(key("/docs/sub/..").unwrap(), "docs/index.html");
        assert_eq!(key("/hello%20world.txt").unwrap(), "hello world.txt");
        assert_eq!(key("http://example.com/a.txt?q").unwrap(), "a.txt");
        assert_eq!(key("HTTP://example.com").unwrap(), "index.html");
    }

    #[test]
    fn refuses_escapes_and_malformed() {
        for t in [
            "/../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/a/%2E%2E/%2e%2e/x",
            "/a/..%2f..%2fetc",
            "/..",
        ] {
            assert_eq!(key(t), Err(TargetError::Escapes), "{t}");
        }
        for t in ["*", "a.txt", "/%zz", "/%2", "/a%00b", "example.com:80"] {
            assert_eq!(key(t), Err(TargetError::Malformed), "{t}");
        }
        assert_eq!(key("/%ff"), Err(TargetError::NotFound));
    }
}
