//! Creating the files the product writes, and telling whether two paths are one file.
//!
//! Reports, checkpoints, lock files, summaries and runs logs hold personal data and decide what a
//! resume sends, so every one of them is created here: readable by the owner only, and never
//! through a symbolic link (SPEC section 6). A link planted at a report's path would otherwise
//! make a run truncate, and chmod, whatever file it points to. The link is refused twice: by
//! looking at the path first (for a clear message), and by opening with `O_NOFOLLOW`, so a link
//! swapped in between the look and the open is refused by the kernel instead of followed.
//!
//! `O_NOFOLLOW` comes from the `libc` crate (already in the dependency tree through tokio):
//! its value differs between architectures (`0o400000` on x86_64, `0o100000` on aarch64), so a
//! hand-written constant would silently mean something else on some hosts.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Component, Path, PathBuf};

/// `path` is a symbolic link: an error naming it, of kind `InvalidInput`.
fn symlink_refused(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is a symbolic link: refused (unlinker never writes through a link; point the \
             job at the real file)",
            path.display()
        ),
    )
}

/// Fail when `path` is a symbolic link (a missing path is fine).
pub fn refuse_symlink(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(symlink_refused(path)),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Open a file for writing, creating it readable and writable by the owner only; refuse a
/// symbolic link, and anything that is not a regular file, at `path`. `append` keeps what the
/// file holds; otherwise it is truncated. An existing file's mode is tightened to 0600.
pub fn create_private(path: &Path, append: bool) -> io::Result<File> {
    open_private(path, append, false)
}

/// Open a log the product appends to and reads back (the runs log): owner-only and no-follow
/// as [`create_private`], readable, every write at its end.
pub fn open_private_log(path: &Path) -> io::Result<File> {
    open_private(path, true, true)
}

fn open_private(path: &Path, append: bool, read: bool) -> io::Result<File> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => return Err(symlink_refused(path)),
        Ok(meta) if !meta.is_file() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file: refused", path.display()),
            ));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut options = OpenOptions::new();
    options.write(true).create(true).read(read);
    if append {
        options.append(true);
    } else {
        // Truncating at open would empty a file before we know it is the one we meant.
        options.truncate(false);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let file = options.open(path).map_err(|e| {
        // ELOOP: the last component became a link after the look above.
        if e.raw_os_error() == Some(libc::ELOOP) {
            symlink_refused(path)
        } else {
            e
        }
    })?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file: refused", path.display()),
        ));
    }
    #[cfg(unix)]
    {
        // An existing file keeps its old mode with `mode()`: tighten it (fchmod on the open file,
        // never the path).
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    if !append {
        file.set_len(0)?;
    }
    Ok(file)
}

/// What a path names, for telling whether two paths are the same file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// An existing file: its device and inode (hard links and symbolic links included).
    Inode { dev: u64, ino: u64 },
    /// A file not created yet: the canonical form of the path it will have.
    Planned(PathBuf),
}

/// The [`Identity`] of `path`. For a path that does not exist yet, the nearest existing folder
/// is canonicalized and the rest appended with `.` and `..` resolved by name (folders that do not
/// exist yet cannot be links).
pub fn identity(path: &Path) -> io::Result<Identity> {
    match fs::metadata(path) {
        Ok(meta) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                Ok(Identity::Inode {
                    dev: meta.dev(),
                    ino: meta.ino(),
                })
            }
            #[cfg(not(unix))]
            {
                let _ = meta;
                Ok(Identity::Planned(fs::canonicalize(path)?))
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // `sub/../in.csv` with no `sub` yet: once the folder is created (as a run creates
            // its output folders), it names `in.csv`.
            let planned = planned(path)?;
            match fs::metadata(&planned) {
                Ok(_) => identity(&planned),
                Err(_) => Ok(Identity::Planned(planned)),
            }
        }
        Err(e) => Err(e),
    }
}

fn planned(path: &Path) -> io::Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    // Walk up to the nearest folder that exists, remembering the names below it.
    let mut base = absolute.as_path();
    let mut rest = Vec::new();
    let canonical = loop {
        match fs::canonicalize(base) {
            Ok(c) => break c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                rest.push(base.file_name().map(|n| n.to_os_string()));
                match base.parent() {
                    Some(parent) => base = parent,
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    };
    let mut out = canonical;
    for name in rest.into_iter().rev() {
        match name {
            Some(name) => out.push(name),
            // `file_name` is `None` for a trailing `..`: go up.
            None => {
                out.pop();
            }
        }
    }
    // A `.` or `..` left inside the missing part (`out/../x`) is resolved by name.
    let mut clean = PathBuf::new();
    for c in out.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other),
        }
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_owner_only_and_tightens_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        create_private(&path, false)
            .unwrap()
            .write_all(b"a")
            .unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        create_private(&path, true)
            .unwrap()
            .write_all(b"b")
            .unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"ab");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        create_private(&path, false).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"");
    }

    #[test]
    fn symbolic_links_are_refused_and_their_target_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        fs::write(&target, "keep me").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("r.csv");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for append in [false, true] {
            let err = create_private(&link, append).unwrap_err();
            assert!(err.to_string().contains("symbolic link"), "{err}");
        }
        assert!(refuse_symlink(&link).is_err());
        assert!(refuse_symlink(&target).is_ok());
        assert!(refuse_symlink(&dir.path().join("missing")).is_ok());
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep me");
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // A dangling link is refused too (O_CREAT would create its target).
        let dangling = dir.path().join("d.csv");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(create_private(&dangling, false).is_err());
        assert!(!dir.path().join("nowhere").exists());
    }

    #[test]
    fn o_nofollow_refuses_a_link_the_look_did_not_see() {
        // The kernel half of the refusal, on its own.
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        fs::write(&target, "x").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&link)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn identity_sees_through_spellings_links_and_missing_folders() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.csv");
        fs::write(&file, "x").unwrap();
        let hard = dir.path().join("hard.csv");
        fs::hard_link(&file, &hard).unwrap();
        let soft = dir.path().join("soft.csv");
        std::os::unix::fs::symlink(&file, &soft).unwrap();
        let same = identity(&file).unwrap();
        assert_eq!(identity(&hard).unwrap(), same);
        assert_eq!(identity(&dir.path().join("no/../in.csv")).unwrap(), same);
        assert_eq!(identity(&soft).unwrap(), same);
        let a = identity(&dir.path().join("out/x/../r.csv")).unwrap();
        let b = identity(&dir.path().join("out/./r.csv")).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, identity(&dir.path().join("out/s.csv")).unwrap());
    }
}
