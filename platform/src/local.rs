//! The platform's local state files: redb databases under the configured state
//! directory (the staging key index, the real-time snapshot). Each is a cache of
//! staging that makes a start-up cheap; its owner checks it against staging when it
//! opens it. redb is blocking, so every access runs on the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::Database;

use crate::error::{Error, Result};

/// Names a local state file in its errors.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    what: &'static str,
    path: PathBuf,
}

impl Place {
    /// An internal error saying which file failed doing what.
    pub(crate) fn error(&self, action: &str, e: impl std::fmt::Display) -> Error {
        Error::Internal(format!("{} {}: {action}: {e}", self.what, self.path.display()))
    }
}

#[derive(Clone)]
pub(crate) struct LocalDb {
    db: Arc<Database>,
    place: Place,
}

impl LocalDb {
    /// Opens (or creates) `<dir>/<file>`; `what` names it in errors.
    pub(crate) async fn open(dir: &Path, file: &str, what: &'static str) -> Result<Self> {
        let place = Place {
            what,
            path: dir.join(file),
        };
        std::fs::create_dir_all(dir).map_err(|e| place.error("create directory", e))?;
        let path = place.path.clone();
        let db = tokio::task::spawn_blocking(move || Database::create(path))
            .await
            .map_err(|e| place.error("open", e))?
            .map_err(|e| place.error("open", e))?;
        Ok(Self {
            db: Arc::new(db),
            place,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.place.path
    }

    /// Runs `f` on the blocking pool.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database, &Place) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        let place = self.place.clone();
        tokio::task::spawn_blocking(move || f(&db, &place))
            .await
            .map_err(|e| self.place.error("task", e))?
    }
}
