//! Files the server creates, created private and without following links:
//! the data directory 0700 and store files 0600 from the start (never
//! `chmod`-ed afterwards, so there is no moment they are readable), and
//! temporary files created exclusively, so a link planted where one will
//! be written is removed, never written through. Log files get 0640 from
//! the process umask the binary sets (`main.rs`).

use std::{
    fs::{DirBuilder, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::Path,
};

/// Mode of the data directory.
pub const PRIVATE_DIR: u32 = 0o700;
/// Mode of store files (password hashes, names, addresses).
pub const PRIVATE_FILE: u32 = 0o600;

/// Creates `dir` and its missing parents with mode 0700 (an existing
/// directory is left as it is).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)
}

/// Opens (creating it 0600 if missing) a file for reading and appending,
/// refusing a symbolic link in its place.
pub fn open_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(PRIVATE_FILE)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// Creates `path` anew with `mode`: whatever is there (a file left by a
/// crash, a planted link) is removed first, and the file is then created
/// exclusively, so no link is ever followed.
pub fn create_exclusive(path: &Path, mode: u32) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// Replaces `path` by a file holding `bytes`, atomically: an exclusive
/// temporary file next to it, synced, then renamed over it.
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    let mut file = create_exclusive(tmp, mode)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn private_files_and_directories_are_created_so() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/data");
        create_private_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        let file = data.join("store");
        open_private(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn a_planted_link_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let target = dir.path().join("echo.pid");
        std::os::unix::fs::symlink(&victim, dir.path().join("echo.pid.tmp")).unwrap();
        replace_file(&target, b"42\n", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "42\n");
        assert!(std::fs::symlink_metadata(&target).unwrap().is_file());
        // A link in the place of a store file is refused, not followed.
        let link = dir.path().join("journal");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(open_private(&link).is_err());
    }
}
