//! Helpers of the files-route tests: a directory tree with pattern files, and a server with a
//! files route on it.

use std::path::PathBuf;

use super::Server;

/// A directory tree for one test, removed when dropped.
pub struct Tree(pub PathBuf);

impl Tree {
    /// A fresh tree named after `name` with `public/sub` in it.
    pub fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("ringstream-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("public/sub")).unwrap();
        Self(path)
    }

    /// The route's root.
    pub fn root(&self) -> PathBuf {
        self.0.join("public")
    }

    /// Writes `len` bytes of a deterministic pattern to `name` below the root.
    pub fn file(&self, name: &str, len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ len as u64;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(self.root().join(name), &bytes).unwrap();
        bytes
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A files route on `driver`, with `extra` route keys.
pub fn server(tree: &Tree, extra: &str, driver: &str) -> Server {
    let config = format!(
        r#"
[limits]
exempt = []

[[routes]]
path = "/files/"
kind = "files"
root = "{}"
{extra}
"#,
        tree.root().display()
    );
    Server::with_config(&config, &["--workers", "2", "--io-driver", driver])
}

/// Writes `path`'s pages back and drops them from the page cache; false where the file
/// system keeps them whatever is asked (tmpfs: its pages are the file).
pub fn drop_from_page_cache(path: &std::path::Path) -> bool {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).unwrap();
    file.sync_all().unwrap();
    // SAFETY: `statfs` is a plain C struct for which all-zero is a valid value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `stat` is a valid, writable `statfs` for the call and the descriptor is open;
    // fstatfs writes only `stat`.
    assert_eq!(unsafe { libc::fstatfs(file.as_raw_fd(), &raw mut stat) }, 0);
    if stat.f_type == libc::TMPFS_MAGIC {
        return false;
    }
    // SAFETY: fadvise on an open descriptor touches no memory of this process.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    rc == 0
}
