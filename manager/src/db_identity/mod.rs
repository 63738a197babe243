//! Database identity: the guard that stops a manager from running on a database that is not the one it used.
//!
//! A vanished RocksDB directory (an unmounted volume), a Redis server that lost its data or a changed prefix all
//! look like an empty database, and on an empty database sector numbers start again at the bottom: numbers
//! would be handed out twice. So on first use the manager writes an identity (a random id and the creation
//! time) into the database (key `meta/identity` of the `sectors` collection) and into its home
//! (`<home>/db-identity`), and at every start both must agree:
//!
//! | home          | database                 | outcome                                                     |
//! |---------------|--------------------------|-------------------------------------------------------------|
//! | none          | empty                    | first start: a new identity is written to both              |
//! | none          | data, no identity        | a database from before identities: adopted, written to both |
//! | none          | identity, no other data  | an interrupted first start: adopted                         |
//! | none          | identity and data        | refused (a new home on a used database)                     |
//! | identity X    | identity X               | accepted                                                    |
//! | identity X    | empty, or no identity    | refused (the database was lost or is the wrong one)         |
//! | identity X    | identity Y               | refused (another manager's database, or a wrong prefix)     |
//!
//! `daemon run --adopt-db` turns every refusal into "take the database as found" (and records its identity, a
//! new one when it has none): for when a new database is really intended.
//!
//! While the daemon runs, [`IdentityFencedDb`] ([`fence`]) compares the identity inside every transaction, so a
//! database lost under a running daemon is refused too.

// The errors here are built once, at start-up, and end it: their size costs nothing worth boxing for.
#![allow(clippy::result_large_err)]

pub mod fence;

pub use fence::IdentityFencedDb;

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use manager_plugin::kv::{Db, KvError, KvStore, update_with_retry};
use serde::{Deserialize, Serialize};

use crate::config::{DbConfig, DbDriver};
use crate::home::Home;
use crate::sectors::COLLECTION;

/// The key of the identity in the `sectors` collection.
pub const IDENTITY_KEY: &[u8] = b"meta/identity";

/// Name of the identity file inside the home directory.
pub const IDENTITY_FILE: &str = "db-identity";

/// How many times writing the identity is retried on a conflict.
const TXN_ATTEMPTS: usize = 8;

/// A database's identity, as stored in the database and in the home.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DbIdentity {
    /// 128 random bits, hex.
    pub id: String,
    /// When the identity was created (RFC 3339, UTC).
    pub created: String,
}

impl DbIdentity {
    /// A new random identity created now.
    pub fn new() -> DbIdentity {
        let bytes: [u8; 16] = rand::random();
        let now = time::OffsetDateTime::now_utc();
        let created = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| now.to_string());
        DbIdentity { id: bytes.iter().map(|b| format!("{b:02x}")).collect(), created }
    }
}

impl Default for DbIdentity {
    fn default() -> Self {
        DbIdentity::new()
    }
}

impl std::fmt::Display for DbIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (created {})", self.id, self.created)
    }
}

/// Which database the config names, for messages, and what usually makes it look empty or foreign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbDescription {
    /// E.g. `RocksDB at /var/lib/damocles/db` or `Redis at 10.0.0.5:6379, prefix "damocles"`.
    pub name: String,
    /// The usual causes, for the message.
    pub likely_causes: &'static str,
}

impl DbDescription {
    /// The description of the database `config` selects.
    pub fn of(config: &DbConfig) -> DbDescription {
        match config.driver {
            DbDriver::RocksDb => DbDescription {
                name: format!("RocksDB at {}", config.rocksdb.dir.display()),
                likely_causes: "the volume holding the directory is not mounted, or [Common.DB.RocksDB] Dir \
                                changed (e.g. after a migration)",
            },
            DbDriver::Redis => DbDescription {
                name: format!("Redis at {}, prefix {:?}", redis_host(&config.redis.addr), config.redis.prefix),
                likely_causes: "the Redis server restarted without persistence (appendonly no) or was flushed, \
                                or [Common.DB.Redis] Addr or Prefix changed",
            },
            DbDriver::Plugin => DbDescription {
                name: format!("KVStore plugin {:?}", config.plugin.plugin_name),
                likely_causes: "the plugin's storage was lost, or [Common.DB.Plugin] PluginName or Meta changed",
            },
        }
    }
}

/// `host:port` of a Redis URL, without a password it may carry.
fn redis_host(addr: &str) -> String {
    let rest = addr.split_once("://").map_or(addr, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// Why the manager refuses the database, or could not check it. Every message names the database and the home.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The home recorded an identity, and the database has none.
    #[error(
        "refusing to start: {db} is empty (or has no identity), but home {home} records that this manager used \
         a database with identity {expected}. Starting would hand out sector numbers again from the start. \
         Likely cause: {causes}. Fix the configuration or the mount and start again; if the old database is gone \
         for good and a new one is intended, start once with `damocles-manager daemon run --adopt-db` (and set \
         [Miners.Sector] MinNumber above the last sector number used)",
        home = home.display()
    )]
    DatabaseLost {
        /// The database.
        db: String,
        /// The home directory.
        home: PathBuf,
        /// What the home recorded.
        expected: DbIdentity,
        /// The usual causes.
        causes: &'static str,
    },
    /// The database has another identity than the home recorded.
    #[error(
        "refusing to start: {db} has identity {found}, but home {home} expects {expected}: this is another \
         database than the one this manager used. Likely cause: {causes}, or another manager's database is \
         configured. If this database is the one to use from now on, start once with \
         `damocles-manager daemon run --adopt-db`",
        home = home.display()
    )]
    Mismatch {
        /// The database.
        db: String,
        /// The home directory.
        home: PathBuf,
        /// What the home recorded.
        expected: DbIdentity,
        /// What the database holds.
        found: DbIdentity,
        /// The usual causes.
        causes: &'static str,
    },
    /// The database holds data and an identity the home has no record of.
    #[error(
        "refusing to start: {db} holds sector data with identity {found}, but home {home} has no record of any \
         database (a new or restored home?). If this manager is to take over this database, make sure no other \
         manager uses it and start once with `damocles-manager daemon run --adopt-db`",
        home = home.display()
    )]
    UnknownToHome {
        /// The database.
        db: String,
        /// The home directory.
        home: PathBuf,
        /// What the database holds.
        found: DbIdentity,
    },
    /// The database could not be read or written.
    #[error("checking the identity of {db}: {source}")]
    Kv {
        /// The database.
        db: String,
        /// The store's error.
        source: KvError,
    },
    /// A stored identity is not valid JSON.
    #[error(
        "the database identity in {location} is unreadable ({message}); restore it from a backup, or start \
             with `damocles-manager daemon run --adopt-db` to replace it"
    )]
    Corrupt {
        /// The file, or the database and key.
        location: String,
        /// The decoder's complaint.
        message: String,
    },
    /// The home's identity file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Checks that `db` is the database `home` used before (see the module docs), writing the identity on first
/// use; with `adopt`, accepts the database as found and records its identity. Returns the identity in force.
pub fn verify(home: &Home, db: &dyn Db, describe: &DbDescription, adopt: bool) -> Result<DbIdentity, IdentityError> {
    let kv = |source| IdentityError::Kv { db: describe.name.clone(), source };
    let store = db.open_collection(COLLECTION).map_err(kv)?;
    let recorded = read_home_identity(home)?;
    let stored = read_db_identity(&*store, describe)?;
    let identity = match (recorded, stored) {
        (Some(expected), Some(found)) if expected == found => return Ok(found),
        (_, Some(found)) if adopt => {
            tracing::warn!(db = %describe.name, identity = %found, "--adopt-db: adopting the database's identity");
            found
        }
        (Some(expected), None) if !adopt => {
            let causes = describe.likely_causes;
            return Err(IdentityError::DatabaseLost {
                db: describe.name.clone(),
                home: home.dir.clone(),
                expected,
                causes,
            });
        }
        (Some(expected), Some(found)) => {
            let (db, home, causes) = (describe.name.clone(), home.dir.clone(), describe.likely_causes);
            return Err(IdentityError::Mismatch { db, home, expected, found, causes });
        }
        (None, Some(found)) => {
            if holds_data(&*store).map_err(kv)? {
                return Err(IdentityError::UnknownToHome { db: describe.name.clone(), home: home.dir.clone(), found });
            }
            tracing::info!(db = %describe.name, identity = %found, "adopting the identity of an empty database");
            found
        }
        (recorded, None) => {
            let identity = DbIdentity::new();
            if recorded.is_some() {
                tracing::warn!(db = %describe.name, identity = %identity, "--adopt-db: giving the database a new identity");
            } else if holds_data(&*store).map_err(kv)? {
                tracing::info!(db = %describe.name, identity = %identity, "recording the identity of an existing database");
            } else {
                tracing::info!(db = %describe.name, identity = %identity, "initializing a new database");
            }
            write_db_identity(&*store, &identity).map_err(kv)?;
            identity
        }
    };
    write_home_identity(home, &identity)?;
    Ok(identity)
}

/// The identity the home recorded, or `None`.
pub fn read_home_identity(home: &Home) -> Result<Option<DbIdentity>, IdentityError> {
    let path = home.dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| IdentityError::Corrupt { location: path.display().to_string(), message: err.to_string() }),
        Err(source) if source.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IdentityError::Io { action: "read", path, source }),
    }
}

/// Records `identity` in the home: written to a temporary file, synced, renamed over the old one, directory
/// synced, so a crash leaves the old or the new identity, never a torn one.
fn write_home_identity(home: &Home, identity: &DbIdentity) -> Result<(), IdentityError> {
    let path = home.dir.join(IDENTITY_FILE);
    let temp = home.dir.join(format!("{IDENTITY_FILE}.tmp"));
    let json = serde_json::to_vec_pretty(identity)
        .map_err(|err| IdentityError::Corrupt { location: path.display().to_string(), message: err.to_string() })?;
    let mut file = std::fs::File::create(&temp).map_err(io_error("create", &temp))?;
    file.write_all(&json).and_then(|()| file.sync_all()).map_err(io_error("write", &temp))?;
    std::fs::rename(&temp, &path).map_err(io_error("rename into place", &path))?;
    std::fs::File::open(&home.dir).and_then(|dir| dir.sync_all()).map_err(io_error("sync directory", &home.dir))
}

/// Maps an I/O error of `action` on `path`.
fn io_error<'a>(action: &'static str, path: &'a Path) -> impl Fn(std::io::Error) -> IdentityError + 'a {
    move |source| IdentityError::Io { action, path: path.to_path_buf(), source }
}

/// The identity stored in the database, or `None`.
fn read_db_identity(store: &dyn KvStore, describe: &DbDescription) -> Result<Option<DbIdentity>, IdentityError> {
    match store.get(IDENTITY_KEY) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|err| IdentityError::Corrupt {
            location: format!("{}, key {:?}", describe.name, String::from_utf8_lossy(IDENTITY_KEY)),
            message: err.to_string(),
        }),
        Err(KvError::KeyNotFound) => Ok(None),
        Err(source) => Err(IdentityError::Kv { db: describe.name.clone(), source }),
    }
}

/// Writes `identity` into the database (synced like every write of the drivers).
fn write_db_identity(store: &dyn KvStore, identity: &DbIdentity) -> Result<(), KvError> {
    let json = serde_json::to_vec(identity).map_err(|err| KvError::Backend(format!("encode identity: {err}")))?;
    update_with_retry(store, TXN_ATTEMPTS, &mut |txn| txn.put(IDENTITY_KEY, &json))
}

/// Whether the collection holds anything besides the identity.
fn holds_data(store: &dyn KvStore) -> Result<bool, KvError> {
    let mut iter = store.scan(b"")?;
    while let Some((key, _)) = iter.next_entry()? {
        if key != IDENTITY_KEY {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_hosts_lose_scheme_password_and_database() {
        assert_eq!(redis_host("redis://:secret@10.0.0.5:6380/2"), "10.0.0.5:6380");
        assert_eq!(redis_host("redis://127.0.0.1:6379"), "127.0.0.1:6379");
    }

    #[test]
    fn identities_differ_and_round_trip() {
        let (a, b) = (DbIdentity::new(), DbIdentity::new());
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.len(), 32);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<DbIdentity>(&json).unwrap(), a);
    }
}
