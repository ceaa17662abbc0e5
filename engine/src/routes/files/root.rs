//! A file route's root directory, and opening files strictly beneath it.
//!
//! The request path is already checked by `ringstream_protocol::http::file_path` (no `..`,
//! no encoded separators); this is the second line: the kernel resolves the path with
//! `openat2(RESOLVE_BENEATH)`, so neither `..` nor a symlink, absolute or relative, can lead
//! out of the root, while symlinks that stay inside it work. On a kernel without `openat2`
//! (before 5.6, or a seccomp filter that refuses it) the path is walked one component at a
//! time with `O_NOFOLLOW`, which refuses every symlink.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

/// `struct open_how` of `linux/openat2.h` (libc's is `non_exhaustive`).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Flags for every file opened for reading. `O_NONBLOCK`: opening a FIFO must not wait for a
/// writer (the caller refuses anything but regular files and directories after `fstat`); on
/// a regular file it changes nothing.
const READ_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;

/// An open root directory.
#[derive(Debug)]
pub struct FileRoot {
    dir: OwnedFd,
}

impl FileRoot {
    /// Opens `path` as a root; it must be a directory.
    pub fn open(path: &Path) -> io::Result<Self> {
        let dir = File::open(path)?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", path.display()),
            ));
        }
        Ok(Self { dir: dir.into() })
    }

    /// Opens `relative` (segments joined by `/`; empty for the root itself) for reading,
    /// beneath the root. Fails with `EXDEV` or `ELOOP` when it would leave the root.
    pub fn open_file(&self, relative: &[u8]) -> io::Result<File> {
        let path = c_path(relative)?;
        match self.openat2(&path) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                self.walk(relative)
            }
            result => result,
        }
    }

    fn openat2(&self, path: &CString) -> io::Result<File> {
        let how = OpenHow {
            flags: READ_FLAGS as u64,
            mode: 0,
            resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: the directory descriptor is open for as long as `self` lives; `path` is a
        // NUL-terminated string and `how` a valid `open_how` of the size passed, both alive
        // for the call. The kernel writes nothing into them.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.dir.as_raw_fd(),
                path.as_ptr(),
                &raw const how,
                size_of::<OpenHow>(),
            )
        };
        file_from(fd)
    }

    /// The fallback: each component opened with `O_NOFOLLOW` from the one before.
    pub(crate) fn walk(&self, relative: &[u8]) -> io::Result<File> {
        let segments: Vec<&[u8]> = relative
            .split(|&b| b == b'/')
            .filter(|s| !s.is_empty())
            .collect();
        if segments.iter().any(|&s| s == b".." || s == b".") {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        let Some((last, dirs)) = segments.split_last() else {
            return openat(self.dir.as_fd(), b".", READ_FLAGS | libc::O_DIRECTORY);
        };
        let mut held: Option<File> = None;
        for dir in dirs {
            let parent = held.as_ref().map_or(self.dir.as_fd(), AsFd::as_fd);
            let next = openat(
                parent,
                dir,
                libc::O_RDONLY | libc::O_CLOEXEC | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            )?;
            held = Some(next);
        }
        let parent = held.as_ref().map_or(self.dir.as_fd(), AsFd::as_fd);
        openat(parent, last, READ_FLAGS | libc::O_NOFOLLOW)
    }
}

/// `openat(2)` of one name in `dir`.
fn openat(dir: BorrowedFd<'_>, name: &[u8], flags: libc::c_int) -> io::Result<File> {
    let name = c_path(name)?;
    // SAFETY: `dir` is an open descriptor borrowed for the call; `name` is NUL-terminated and
    // alive for the call.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
    file_from(libc::c_long::from(fd))
}

/// The path as a C string; `.` for the root itself. A NUL byte is refused.
fn c_path(relative: &[u8]) -> io::Result<CString> {
    let path = if relative.is_empty() { b"." } else { relative };
    CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn file_from(fd: libc::c_long) -> io::Result<File> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: a non-negative return of open(2)-like calls is a new descriptor nobody else
    // owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    /// A fresh directory tree: root/{a.txt, sub/b.txt, links}, and a secret beside the root.
    fn tree(name: &str) -> (PathBuf, FileRoot) {
        let base =
            std::env::temp_dir().join(format!("ringstream-root-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.txt"), b"a").unwrap();
        std::fs::write(root.join("sub/b.txt"), b"b").unwrap();
        std::fs::write(base.join("secret"), b"secret").unwrap();
        symlink("sub/b.txt", root.join("inside")).unwrap();
        symlink("../secret", root.join("outside")).unwrap();
        symlink(base.join("secret"), root.join("absolute")).unwrap();
        symlink("..", root.join("up")).unwrap();
        let opened = FileRoot::open(&root).unwrap();
        (base, opened)
    }

    fn read(file: io::Result<File>) -> io::Result<String> {
        let mut text = String::new();
        file?.read_to_string(&mut text)?;
        Ok(text)
    }

    /// Paths of [`tree`] that lead out of the root.
    const ESCAPES: [&[u8]; 4] = [b"outside", b"absolute", b"up/secret", b"../secret"];

    #[test]
    fn files_and_inner_symlinks_open_and_nothing_leads_out() {
        let (base, root) = tree("beneath");
        assert_eq!(read(root.open_file(b"a.txt")).unwrap(), "a");
        assert_eq!(read(root.open_file(b"sub/b.txt")).unwrap(), "b");
        assert_eq!(read(root.open_file(b"inside")).unwrap(), "b");
        assert!(root.open_file(b"").unwrap().metadata().unwrap().is_dir());
        for escape in ESCAPES.into_iter().chain([&b"/etc/hostname"[..]]) {
            let err = root.open_file(escape).unwrap_err();
            assert!(
                matches!(err.raw_os_error(), Some(libc::EXDEV | libc::ELOOP)),
                "{}: {err}",
                String::from_utf8_lossy(escape)
            );
        }
        assert_eq!(
            root.open_file(b"missing").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(root.open_file(b"a\0b").is_err());
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn the_fallback_walk_refuses_every_symlink() {
        let (base, root) = tree("walk");
        assert_eq!(read(root.walk(b"a.txt")).unwrap(), "a");
        assert_eq!(read(root.walk(b"sub/b.txt")).unwrap(), "b");
        for refused in ESCAPES.into_iter().chain([&b"inside"[..]]) {
            assert!(
                root.walk(refused).is_err(),
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn a_root_must_be_a_directory() {
        let (base, _) = tree("notdir");
        assert!(FileRoot::open(&base.join("secret")).is_err());
        std::fs::remove_dir_all(base).unwrap();
    }
}
