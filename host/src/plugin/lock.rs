//! `plugins.lock`: the plugins a folder is meant to hold, pinned by sha256, so a crawl run with
//! `--locked` uses exactly the builds that were reviewed. It owns the file's format and the
//! comparison; it must not load or run plugins.

use super::PluginInfo;
use anyhow::{Context as _, Result, anyhow};
use std::path::{Path, PathBuf};

/// The lock file's name, in the plugins' folder.
pub const LOCK_FILE: &str = "plugins.lock";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockEntry {
    pub name: String,
    pub version: String,
    pub wit_version: String,
    pub sha256: String,
    /// The file name, for people reading the lock.
    pub file: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginLock {
    #[serde(rename = "plugin", default)]
    pub plugins: Vec<LockEntry>,
}

impl PluginLock {
    pub fn of<'a>(infos: impl IntoIterator<Item = &'a PluginInfo>) -> Self {
        let mut plugins: Vec<LockEntry> = infos
            .into_iter()
            .map(|i| LockEntry {
                name: i.name.clone(),
                version: i.version.clone(),
                wit_version: i.wit_version.clone(),
                sha256: i.sha256.clone(),
                file: i
                    .path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            })
            .collect();
        plugins.sort_by(|a, b| a.name.cmp(&b.name));
        PluginLock { plugins }
    }

    /// The lock file that governs a plugin file: the one in its folder.
    pub fn path_for(plugin_file: &Path) -> PathBuf {
        plugin_file
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(LOCK_FILE)
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "--locked needs {}; write it with `sandcrawl plugins lock {}`",
                path.display(),
                path.parent().unwrap_or_else(|| Path::new(".")).display()
            )
        })?;
        toml::from_str(&text).map_err(|e| {
            anyhow!(
                "{} is not a plugins.lock: {}",
                path.display(),
                e.to_string().replace('\n', " ")
            )
        })
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let text = format!(
            "# Written by `sandcrawl plugins lock`; `sandcrawl run --locked` loads only these builds.\n{}",
            toml::to_string_pretty(self)?
        );
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Whether `info` is the build this lock names; the reason, naming both digests, if not.
    pub fn check(&self, info: &PluginInfo) -> Result<(), String> {
        let Some(e) = self.plugins.iter().find(|e| e.name == info.name) else {
            return Err(format!(
                "{}: plugin {} is not in {LOCK_FILE}; run `sandcrawl plugins lock` again if it belongs there",
                info.path.display(),
                info.name
            ));
        };
        if e.sha256 != info.sha256 {
            return Err(format!(
                "{}: plugin {} has sha256 {}, but {LOCK_FILE} pins {} (version {}); restore the locked build or lock again",
                info.path.display(),
                info.name,
                info.sha256,
                e.sha256,
                e.version
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, sha: &str) -> PluginInfo {
        PluginInfo {
            name: name.into(),
            version: "1.0.0".into(),
            description: String::new(),
            patterns: Vec::new(),
            seeds: Vec::new(),
            rendering: crate::plugin::Rendering::Http,
            wit_version: "0.1.0".into(),
            sha256: sha.into(),
            path: PathBuf::from("/p/x.wasm"),
        }
    }

    #[test]
    fn round_trip_and_digest_check() {
        let lock = PluginLock::of([&info("b", "22"), &info("a", "11")]);
        assert_eq!(lock.plugins[0].name, "a", "sorted by name");
        let dir = std::env::temp_dir().join(format!("sandcrawl-lock-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let path = dir.join(LOCK_FILE);
        lock.write(&path).unwrap_or_default();
        let back = PluginLock::read(&path).unwrap_or_default();
        assert_eq!(back, lock);
        assert!(back.check(&info("a", "11")).is_ok());
        let e = back.check(&info("a", "99")).unwrap_err();
        assert!(e.contains("sha256 99") && e.contains("pins 11"), "{e}");
        assert!(back.check(&info("c", "11")).unwrap_err().contains("not in"));
        assert_eq!(
            PluginLock::path_for(Path::new("/p/x.wasm")),
            Path::new("/p").join(LOCK_FILE)
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
