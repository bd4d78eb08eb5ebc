//! Secrets (bearer tokens, private keys) and the files that hold them.
//!
//! A `Secret` never shows its content through `Debug` or `Display`, so a secret that ends up in a log line, an
//! error message or a `{:?}` of a config prints as `******`. Files with credentials are read with a size cap, so a
//! wrong path (a device, a huge log) cannot exhaust memory.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const MASK: &str = "******";

/// The largest token file read (service-account tokens are about 1 KiB).
pub(crate) const MAX_TOKEN_FILE_BYTES: u64 = 64 << 10;
/// The largest certificate, key or CA bundle file read (a full system CA bundle is about 200 KiB).
pub(crate) const MAX_PEM_FILE_BYTES: u64 = 4 << 20;
/// The largest kubeconfig file read.
pub(crate) const MAX_KUBECONFIG_BYTES: u64 = 4 << 20;

/// A string that must not be shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself: only for the request header that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// Bytes that must not be shown (an inline private key).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(b: Vec<u8>) -> SecretBytes {
        SecretBytes(b)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{MASK} ({} bytes)", self.0.len())
    }
}

/// Why a capped read failed. The text names the path and, for a file too large, the cap; never the content.
#[derive(Debug)]
pub enum ReadError {
    /// The file could not be opened or read (missing, unreadable, a directory...).
    Io {
        /// The file asked for.
        path: PathBuf,
        /// What the system said; its kind tells a missing file from the rest.
        source: std::io::Error,
    },
    /// The file holds more than the cap.
    TooLarge {
        /// The file asked for.
        path: PathBuf,
        /// The largest size read, in bytes.
        cap: u64,
    },
}

impl ReadError {
    /// The file the read was for.
    pub fn path(&self) -> &Path {
        match self {
            ReadError::Io { path, .. } | ReadError::TooLarge { path, .. } => path,
        }
    }

    /// What went wrong, without the path: callers that name the file themselves (a token file) use it.
    pub fn cause(&self) -> impl fmt::Display + '_ {
        struct Cause<'a>(&'a ReadError);
        impl fmt::Display for Cause<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0 {
                    ReadError::Io { source, .. } => write!(f, "{source}"),
                    ReadError::TooLarge { cap, .. } => write!(f, "larger than {cap} bytes"),
                }
            }
        }
        Cause(self)
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read {}: {}", self.path().display(), self.cause())
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Io { source, .. } => Some(source),
            ReadError::TooLarge { .. } => None,
        }
    }
}

/// Reads a whole file of at most `cap` bytes.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut out = Vec::new();
    file.take(cap + 1).read_to_end(&mut out).map_err(io)?;
    if out.len() as u64 > cap {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            cap,
        });
    }
    Ok(out)
}

/// What identifies a file's current content without reading it: a change of any field means it was replaced or
/// rewritten (the kubelet and cert-manager swap files through a symlink, which changes the inode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

/// The stamp of the file `path` points to now; `None` if it cannot be stat'ed.
pub fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("eyJhbGciOi.top.secret");
        assert_eq!(format!("{s:?} {s}"), "****** ******");
        assert_eq!(s.expose(), "eyJhbGciOi.top.secret");
        let b = SecretBytes::new(b"-----BEGIN PRIVATE KEY-----".to_vec());
        assert_eq!(format!("{b:?}"), "****** (27 bytes)");
    }

    #[test]
    fn reads_are_capped() {
        let dir = std::env::temp_dir().join(format!("k8s-disc-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        std::fs::write(&p, vec![b'a'; 100]).unwrap();
        assert_eq!(read_capped(&p, 100).unwrap().len(), 100);
        let e = read_capped(&p, 99).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { cap: 99, .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!("cannot read {}: larger than 99 bytes", p.display())
        );
        let e = read_capped(&dir.join("missing"), 10).unwrap_err();
        assert!(
            matches!(&e, ReadError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(
            e.starts_with("cannot read ") && e.contains("No such file"),
            "{e}"
        );
        let before = stamp(&p).unwrap();
        std::fs::write(dir.join("g"), b"b").unwrap();
        std::fs::rename(dir.join("g"), &p).unwrap();
        assert_ne!(
            stamp(&p).unwrap(),
            before,
            "a replaced file has a new stamp"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
