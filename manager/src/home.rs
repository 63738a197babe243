//! The manager's home directory (default `~/.damocles-manager`): the config file `sector-manager.cfg`, the API
//! token `token` (mode 0600) and the default plugin directory.
//!
//! ```no_run
//! use manager::home::Home;
//!
//! let home = Home::resolve(None)?; // $HOME/.damocles-manager
//! home.ensure_initialized()?;      // like `daemon init`: creates what is missing, keeps the rest
//! let config = home.load_config()?;
//! let token = home.read_token()?;
//! # Ok::<(), manager::home::HomeError>(())
//! ```

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError, default_config_text};

/// Name of the config file inside the home directory.
pub const CONFIG_FILE: &str = "sector-manager.cfg";
/// Name of the API token file inside the home directory.
pub const TOKEN_FILE: &str = "token";
/// Name of the home directory under `$HOME` when none is given.
pub const DEFAULT_HOME_DIR: &str = ".damocles-manager";
/// The environment variables that name the home when `--home` is not given, the first one set (and not empty)
/// winning: ours, then the Go manager's in Go's order (`HomeFlag.EnvVars` in
/// `damocles-manager/cmd/damocles-manager/internal/global.go`).
pub const HOME_VARIABLES: [&str; 4] = ["DAMOCLES_HOME", "DAMOCLES_PATH", "VENUS_SECTOR_MANAGER_PATH", "VSM_PATH"];

/// What named the home directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeOrigin {
    /// `--home DIR`.
    Flag,
    /// One of [`HOME_VARIABLES`].
    Variable(&'static str),
    /// Nothing: `$HOME/.damocles-manager`.
    Default,
}

/// The shortest API token `daemon run` accepts (`init` writes 64 hex characters).
pub const MIN_TOKEN_LEN: usize = 32;

/// Why the home directory could not be used; every message names the path and, where it can, the fix.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// No `--home` was given and `$HOME` is unset or empty.
    #[error("cannot find the manager's home directory: $HOME is not set; pass --home DIR")]
    NoHomeDir,
    /// An explicitly given home directory does not exist (`daemon run` creates only the default home).
    #[error(
        "home directory {} does not exist; `daemon run --home DIR` never creates one (it may be a volume that is \
         not mounted): mount it, or create it with `damocles-manager --home DIR daemon init`",
        path.display()
    )]
    Missing {
        /// The directory.
        path: PathBuf,
    },
    /// The config file is missing.
    #[error("no config file at {}: run `damocles-manager daemon init` first", path.display())]
    NotInitialized {
        /// The expected config file.
        path: PathBuf,
    },
    /// The token file is missing or empty.
    #[error("no API token in {}: run `damocles-manager daemon init` (or pass --home DIR)", path.display())]
    NoToken {
        /// The expected token file.
        path: PathBuf,
    },
    /// The token is too short to be a secret.
    #[error(
        "the API token in {} is {len} characters long; `daemon run` needs at least {min}: remove the file and run \
         `damocles-manager daemon init` to write a new random one (then give it to every client)",
        path.display(),
        min = MIN_TOKEN_LEN
    )]
    WeakToken {
        /// The token file.
        path: PathBuf,
        /// Its length after trimming.
        len: usize,
    },
    /// The token file can be read by other users.
    #[error(
        "the API token file {} has mode {mode:04o}: users in its group or all users can read it; run \
         `chmod 600 {}` (and, if others may have read it, replace the token: remove the file and run \
         `damocles-manager daemon init`)",
        path.display(),
        path.display()
    )]
    TokenReadable {
        /// The token file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file or directory could not be created, written, read or inspected.
    #[error("cannot {action} {}: {error}", path.display())]
    Io {
        /// What was being done, e.g. `create directory`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error (in the message, not repeated as a source).
        error: std::io::Error,
    },
    /// The config file exists but is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The manager's home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    /// The directory itself.
    pub dir: PathBuf,
    /// `daemon run --adopt-db`: accept the database as found instead of refusing one whose identity does not
    /// match the home's (see [`crate::db_identity`]).
    adopt_db: bool,
}

impl Home {
    /// [`Home::locate`] without the origin.
    pub fn resolve(dir: Option<PathBuf>) -> Result<Home, HomeError> {
        Ok(Home::locate(dir)?.0)
    }

    /// The home at `dir` (`--home`), else at the first of [`HOME_VARIABLES`] set, else `$HOME/.damocles-manager`,
    /// with a leading `~/` expanded (as Go's `homedir.Expand` does) and made absolute (against the current
    /// directory) so the paths `init` writes into the config stay valid; and what named it. Nothing is touched
    /// on disk.
    pub fn locate(dir: Option<PathBuf>) -> Result<(Home, HomeOrigin), HomeError> {
        let (dir, origin) = locate_with(dir, |name| std::env::var_os(name))?;
        Ok((Home::at(absolute(&dir)?), origin))
    }

    /// The home at `dir`, as given (not made absolute).
    pub fn at(dir: PathBuf) -> Home {
        Home { dir, adopt_db: false }
    }

    /// This home, with `daemon run --adopt-db` set as given.
    pub fn adopting_db(self, adopt_db: bool) -> Home {
        Home { adopt_db, ..self }
    }

    /// Whether `daemon run --adopt-db` was given.
    pub fn adopt_db(&self) -> bool {
        self.adopt_db
    }

    /// Refuses an explicitly given home (`--home DIR`, or one of [`HOME_VARIABLES`]) that has no config: `daemon
    /// run` never initializes one implicitly, since an empty or missing directory is often a volume that is not
    /// mounted, and a fresh home there would come with a fresh database. Only the default home is initialized
    /// implicitly.
    pub fn require_initialized(&self) -> Result<(), HomeError> {
        if !exists(&self.dir)? {
            return Err(HomeError::Missing { path: self.dir.clone() });
        }
        if !exists(&self.config_path())? {
            return Err(HomeError::NotInitialized { path: self.config_path() });
        }
        Ok(())
    }

    /// `<dir>/sector-manager.cfg`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    /// `<dir>/token`.
    pub fn token_path(&self) -> PathBuf {
        self.dir.join(TOKEN_FILE)
    }

    /// Creates what is missing, and nothing else: the directory, a random 32-byte hex API token (mode 0600), and,
    /// when there is no config, the plugin directory and the commented default config. An existing config (an
    /// operator may write it first, by hand or with config management) and an existing token (workers and tools
    /// hold it) are kept byte for byte. The config is written last, so an interrupted `init` can be run again.
    pub fn init(&self) -> Result<InitReport, HomeError> {
        let config_path = self.config_path();
        create_dir(&self.dir)?;
        let wrote_token = self.write_token_unless_present()?;
        if exists(&config_path)? {
            tracing::info!(config = %config_path.display(), "keeping the existing config");
            return Ok(InitReport { wrote_config: false, wrote_token });
        }
        create_dir(&self.dir.join("plugins"))?;
        // The config holds absolute paths: relative ones would be resolved against the config's directory.
        let wrote_config = match write_new(&config_path, default_config_text(&absolute(&self.dir)?).as_bytes(), 0o644) {
            Ok(()) => true,
            // Another process wrote one between our check and our write: keep theirs.
            Err(HomeError::Io { error, .. }) if error.kind() == ErrorKind::AlreadyExists => false,
            Err(err) => return Err(err),
        };
        if wrote_config {
            tracing::info!(home = %self.dir.display(), config = %config_path.display(), "wrote the default config");
        }
        Ok(InitReport { wrote_config, wrote_token })
    }

    /// [`Home::init`] for `daemon run`: `Ok(true)` if it wrote the default config just now.
    pub fn ensure_initialized(&self) -> Result<bool, HomeError> {
        Ok(self.init()?.wrote_config)
    }

    /// Loads and validates `<dir>/sector-manager.cfg`; [`HomeError::NotInitialized`] if it is missing,
    /// [`HomeError::Config`] if it is invalid.
    pub fn load_config(&self) -> Result<Config, HomeError> {
        match Config::load(&self.config_path()) {
            Err(ConfigError::Read { file, error }) if error.kind() == ErrorKind::NotFound => {
                Err(HomeError::NotInitialized { path: file })
            }
            other => Ok(other?),
        }
    }

    /// The API token from `<dir>/token`, trimmed; [`HomeError::NoToken`] if the file is missing or empty.
    pub fn read_token(&self) -> Result<String, HomeError> {
        let path = self.token_path();
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
            Ok(_) => Err(HomeError::NoToken { path }),
            Err(error) if error.kind() == ErrorKind::NotFound => Err(HomeError::NoToken { path }),
            Err(error) => Err(HomeError::Io { action: "read", path, error }),
        }
    }

    /// [`read_token`](Self::read_token) for `daemon run`: also refuses a token shorter than [`MIN_TOKEN_LEN`] or a
    /// token file readable by group or others, naming the file and the fix.
    pub fn read_token_to_serve(&self) -> Result<String, HomeError> {
        let token = self.read_token()?;
        let path = self.token_path();
        if token.chars().count() < MIN_TOKEN_LEN {
            return Err(HomeError::WeakToken { path, len: token.chars().count() });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(&path).map_err(|error| HomeError::Io {
                action: "inspect",
                path: path.clone(),
                error,
            })?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(HomeError::TokenReadable { path, mode });
            }
        }
        Ok(token)
    }

    /// Writes a new token unless a non-empty one exists; `Ok(true)` if it wrote one. An empty token file (left by
    /// a crash during `init`) is replaced: it is no token, and keeping it would leave `daemon run` refusing for
    /// good.
    fn write_token_unless_present(&self) -> Result<bool, HomeError> {
        let path = self.token_path();
        if self.token_file_is_empty()? {
            let temp = self.dir.join(format!("{TOKEN_FILE}.tmp"));
            let _ = std::fs::remove_file(&temp);
            write_new(&temp, new_token().as_bytes(), 0o600)?;
            std::fs::rename(&temp, &path).map_err(|error| HomeError::Io {
                action: "replace",
                path: path.clone(),
                error,
            })?;
            tracing::warn!(token = %path.display(), "replaced an empty API token file with a new token (mode 0600)");
            return Ok(true);
        }
        match write_new(&path, new_token().as_bytes(), 0o600) {
            Ok(()) => {
                tracing::info!(
                    token = %path.display(),
                    "created the API token (mode 0600); clients send it as `Authorization: Bearer <token>`"
                );
                Ok(true)
            }
            Err(HomeError::Io { error, .. }) if error.kind() == ErrorKind::AlreadyExists => {
                tracing::debug!(token = %path.display(), "keeping the existing API token");
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }
}

impl Home {
    /// Whether the token file exists and holds nothing but white space.
    fn token_file_is_empty(&self) -> Result<bool, HomeError> {
        let path = self.token_path();
        match std::fs::read(&path) {
            Ok(bytes) => Ok(bytes.iter().all(u8::is_ascii_whitespace)),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(false),
            Err(error) => Err(HomeError::Io { action: "read", path, error }),
        }
    }
}

/// What [`Home::init`] created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitReport {
    /// It wrote the default config (there was none).
    pub wrote_config: bool,
    /// It wrote a new API token (there was none).
    pub wrote_token: bool,
}

/// [`Home::locate`] with the environment passed in, so tests need not touch the process environment.
fn locate_with(
    dir: Option<PathBuf>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<(PathBuf, HomeOrigin), HomeError> {
    let user_home = env("HOME").filter(|home| !home.is_empty());
    let expand = |dir: PathBuf| match (dir.strip_prefix("~"), &user_home) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => dir,
    };
    if let Some(dir) = dir {
        return Ok((expand(dir), HomeOrigin::Flag));
    }
    for name in HOME_VARIABLES {
        if let Some(value) = env(name).filter(|value| !value.is_empty()) {
            return Ok((expand(PathBuf::from(value)), HomeOrigin::Variable(name)));
        }
    }
    match user_home {
        Some(home) => Ok((PathBuf::from(home).join(DEFAULT_HOME_DIR), HomeOrigin::Default)),
        None => Err(HomeError::NoHomeDir),
    }
}

/// 32 random bytes from the thread-local CSPRNG, hex-encoded (64 characters).
fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn absolute(path: &Path) -> Result<PathBuf, HomeError> {
    std::path::absolute(path).map_err(|error| HomeError::Io { action: "resolve", path: path.to_path_buf(), error })
}

fn exists(path: &Path) -> Result<bool, HomeError> {
    path.try_exists().map_err(|error| HomeError::Io { action: "inspect", path: path.to_path_buf(), error })
}

fn create_dir(path: &Path) -> Result<(), HomeError> {
    std::fs::create_dir_all(path).map_err(|error| HomeError::Io {
        action: "create directory",
        path: path.to_path_buf(),
        error,
    })
}

/// Creates `path` (failing if it exists) with `mode` from the start, so a secret is never readable by others even
/// briefly, writes `contents` and syncs it to disk.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), HomeError> {
    let io_error = |error| HomeError::Io { action: "write", path: path.to_path_buf(), error };
    let mut file = open_new(path, mode).map_err(io_error)?;
    file.write_all(contents).and_then(|()| file.sync_all()).map_err(io_error)
}

#[cfg(unix)]
fn open_new(path: &Path, mode: u32) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().write(true).create_new(true).mode(mode).open(path)
}

#[cfg(not(unix))]
fn open_new(path: &Path, _mode: u32) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_home() -> (tempfile::TempDir, Home) {
        let temp = tempfile::tempdir().unwrap();
        let home = Home::at(temp.path().join("home"));
        (temp, home)
    }

    /// `locate_with` over a fixed environment.
    fn locate_in(dir: Option<&str>, vars: &[(&str, &str)]) -> Result<(PathBuf, HomeOrigin), HomeError> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        locate_with(dir.map(PathBuf::from), move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn resolve_defaults_to_dot_damocles_manager_under_home() {
        let (dir, origin) = locate_in(None, &[("HOME", "/home/op")]).unwrap();
        let home = Home::at(dir);
        assert_eq!(origin, HomeOrigin::Default);
        assert_eq!(home.dir, Path::new("/home/op/.damocles-manager"));
        assert_eq!(home.config_path(), Path::new("/home/op/.damocles-manager/sector-manager.cfg"));
        assert_eq!(home.token_path(), Path::new("/home/op/.damocles-manager/token"));
        assert_eq!(locate_in(Some("/x"), &[]).unwrap(), (PathBuf::from("/x"), HomeOrigin::Flag));
    }

    #[test]
    fn home_variables_apply_in_gos_order_after_ours_and_the_flag_beats_them_all() {
        let all = [
            ("HOME", "/home/op"),
            ("DAMOCLES_HOME", "/a"),
            ("DAMOCLES_PATH", "/b"),
            ("VENUS_SECTOR_MANAGER_PATH", "/c"),
            ("VSM_PATH", "~/d"),
        ];
        // Each variable wins over the ones after it (dropping them from the front, one by one).
        let expected = [
            ("/a", HomeOrigin::Variable("DAMOCLES_HOME")),
            ("/b", HomeOrigin::Variable("DAMOCLES_PATH")),
            ("/c", HomeOrigin::Variable("VENUS_SECTOR_MANAGER_PATH")),
            ("/home/op/d", HomeOrigin::Variable("VSM_PATH")),
            ("/home/op/.damocles-manager", HomeOrigin::Default),
        ];
        for (dropped, (dir, origin)) in expected.into_iter().enumerate() {
            let vars: Vec<(&str, &str)> = [all[0]].into_iter().chain(all[1 + dropped..].iter().copied()).collect();
            assert_eq!(locate_in(None, &vars).unwrap(), (PathBuf::from(dir), origin), "{vars:?}");
        }
        assert_eq!(locate_in(Some("/flag"), &all).unwrap(), (PathBuf::from("/flag"), HomeOrigin::Flag));
        // An empty variable is skipped (Go would use "").
        let empty = [("HOME", "/home/op"), ("DAMOCLES_PATH", ""), ("VSM_PATH", "/z")];
        assert_eq!(locate_in(None, &empty).unwrap(), (PathBuf::from("/z"), HomeOrigin::Variable("VSM_PATH")));
    }

    #[test]
    fn resolve_makes_a_relative_dir_absolute() {
        let home = Home::resolve(Some("relative/home".into())).unwrap();
        assert!(home.dir.is_absolute() && home.dir.ends_with("relative/home"), "{}", home.dir.display());
    }

    #[test]
    fn resolve_without_dir_or_home_env_is_an_error() {
        assert!(matches!(locate_in(None, &[]), Err(HomeError::NoHomeDir)));
        assert!(matches!(locate_in(None, &[("HOME", "")]), Err(HomeError::NoHomeDir)));
    }

    #[test]
    fn init_writes_a_loadable_config_and_a_private_token() {
        let (_temp, home) = temp_home();
        home.init().unwrap();
        assert_eq!(home.load_config().unwrap(), Config::default_for_home(&home.dir));
        assert!(home.dir.join("plugins").is_dir());
        let token = home.read_token().unwrap();
        assert_eq!(token.len(), 64);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(home.token_path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn init_a_second_time_changes_nothing() {
        let (_temp, home) = temp_home();
        assert_eq!(home.init().unwrap(), InitReport { wrote_config: true, wrote_token: true });
        let token = home.read_token().unwrap();
        let config = std::fs::read(home.config_path()).unwrap();
        assert_eq!(home.init().unwrap(), InitReport { wrote_config: false, wrote_token: false });
        assert_eq!(home.read_token().unwrap(), token);
        assert_eq!(std::fs::read(home.config_path()).unwrap(), config);
    }

    #[test]
    fn init_on_a_home_with_only_a_config_creates_the_token_and_keeps_the_config() {
        let (_temp, home) = temp_home();
        std::fs::create_dir_all(&home.dir).unwrap();
        let operator_config = "# mine\n[[Miners]]\nActor = 7\nSealProof = 8\n";
        std::fs::write(home.config_path(), operator_config).unwrap();
        assert_eq!(home.init().unwrap(), InitReport { wrote_config: false, wrote_token: true });
        assert_eq!(std::fs::read_to_string(home.config_path()).unwrap(), operator_config);
        assert_eq!(home.read_token().unwrap().len(), 64);
        assert!(!home.dir.join("plugins").exists(), "only what is missing for the operator's config is created");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(home.token_path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn init_keeps_an_existing_token() {
        let (_temp, home) = temp_home();
        std::fs::create_dir_all(&home.dir).unwrap();
        std::fs::write(home.token_path(), "operator-token\n").unwrap();
        home.init().unwrap();
        assert_eq!(home.read_token().unwrap(), "operator-token");
    }

    #[test]
    fn ensure_initialized_is_idempotent() {
        let (_temp, home) = temp_home();
        assert!(home.ensure_initialized().unwrap());
        let token = home.read_token().unwrap();
        assert!(!home.ensure_initialized().unwrap());
        assert_eq!(home.read_token().unwrap(), token);
    }

    #[test]
    fn an_explicit_home_must_exist_and_hold_a_config() {
        let (_temp, home) = temp_home();
        let err = home.require_initialized().unwrap_err();
        assert!(matches!(err, HomeError::Missing { .. }), "{err}");
        assert!(err.to_string().contains(&home.dir.display().to_string()) && err.to_string().contains("daemon init"));
        // An empty directory (a mount point without its volume) is refused too.
        std::fs::create_dir_all(&home.dir).unwrap();
        assert!(matches!(home.require_initialized().unwrap_err(), HomeError::NotInitialized { .. }));
        assert!(!home.config_path().exists(), "refusing must not initialize");
        home.init().unwrap();
        home.require_initialized().unwrap();
    }

    #[test]
    fn tokens_differ_between_homes() {
        assert_ne!(new_token(), new_token());
    }

    #[test]
    fn read_token_error_names_the_file_and_suggests_init() {
        let (_temp, home) = temp_home();
        let message = home.read_token().unwrap_err().to_string();
        assert!(message.contains(&home.token_path().display().to_string()), "{message}");
        assert!(message.contains("damocles-manager daemon init"), "{message}");
    }

    #[test]
    fn load_config_without_init_suggests_init() {
        let (_temp, home) = temp_home();
        let err = home.load_config().unwrap_err();
        assert!(matches!(err, HomeError::NotInitialized { .. }));
        assert!(err.to_string().contains("daemon init"), "{err}");
    }

    #[test]
    fn load_config_reports_an_invalid_config() {
        let (_temp, home) = temp_home();
        home.init().unwrap();
        std::fs::write(home.config_path(), "[Common.DB]\nDrvier = \"redis\"\n").unwrap();
        let message = home.load_config().unwrap_err().to_string();
        assert!(message.contains("Drvier") && message.contains(CONFIG_FILE), "{message}");
    }
}
