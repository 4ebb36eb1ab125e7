//! Writing the small files a node keeps secrets and identities in.

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new content, and
/// only this user can read it (0600): written to `<path>.tmp`, fsync'd, renamed over `path`,
/// then the directory fsync'd.
pub fn write_private_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut staging = path.as_os_str().to_owned();
    staging.push(".tmp");
    let staging = std::path::PathBuf::from(staging);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&staging)?;
    // A staging file left by an earlier release keeps its mode through `open`: narrow it.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&staging, path)?;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_replaced_whole_and_private() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("holdfast-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("secret.json");
        write_private_atomically(&path, b"one")?;
        write_private_atomically(&path, b"two")?;
        assert_eq!(std::fs::read(&path)?, b"two");
        assert!(!dir.join("secret.json.tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path)?.permissions().mode() & 0o777,
                0o600
            );
        }
        std::fs::remove_dir_all(&dir)
    }
}
