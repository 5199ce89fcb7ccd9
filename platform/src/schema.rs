//! Versioned, idempotent schema migrations for every database the platform owns,
//! applied at start-up. Each database keeps the versions it has applied in its own
//! `schema_migrations` table; every statement is written to be safe to re-run
//! (`IF NOT EXISTS`), so a start-up that died half way is finished by the next one.

use clickhouse::Client;
use serde::Deserialize;

use crate::error::Result;

/// One migration: a version within its database and the SQL (statements separated by `;`).
pub struct Migration {
    pub database: &'static str,
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Databases owned by the platform, in creation order.
pub const DATABASES: &[&str] = &["staging", "warehouse"];

/// Every migration, in order. Append only: never edit a migration that has shipped.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        database: "staging",
        version: 1,
        name: "events",
        sql: include_str!("../migrations/staging/0001_events.sql"),
    },
    Migration {
        database: "warehouse",
        version: 1,
        name: "star_schema",
        sql: include_str!("../migrations/warehouse/0001_star_schema.sql"),
    },
    Migration {
        database: "warehouse",
        version: 2,
        name: "news2_alerts",
        sql: include_str!("../migrations/warehouse/0002_news2_alerts.sql"),
    },
    Migration {
        database: "warehouse",
        version: 3,
        name: "diagnoses_procedures",
        sql: include_str!("../migrations/warehouse/0003_diagnoses_procedures.sql"),
    },
    Migration {
        database: "warehouse",
        version: 4,
        name: "vital_sign_sets",
        sql: include_str!("../migrations/warehouse/0004_vital_sign_sets.sql"),
    },
    Migration {
        database: "warehouse",
        version: 5,
        name: "lab_text_icu_stays",
        sql: include_str!("../migrations/warehouse/0005_lab_text_icu_stays.sql"),
    },
    Migration {
        database: "warehouse",
        version: 6,
        name: "bed_status_current",
        sql: include_str!("../migrations/warehouse/0006_bed_status_current.sql"),
    },
    Migration {
        database: "warehouse",
        version: 7,
        name: "risk_scores",
        sql: include_str!("../migrations/warehouse/0007_risk_scores.sql"),
    },
    Migration {
        database: "warehouse",
        version: 8,
        name: "risk_alerts",
        sql: include_str!("../migrations/warehouse/0008_risk_alerts.sql"),
    },
];

#[derive(clickhouse::Row, Deserialize)]
struct Applied {
    version: u32,
}

/// Creates the databases and applies every migration not yet recorded. Returns how many
/// migrations were applied.
pub async fn migrate(client: &Client) -> Result<usize> {
    let mut applied_now = 0;
    for db in DATABASES {
        client
            .query(&format!("CREATE DATABASE IF NOT EXISTS {db}"))
            .execute()
            .await?;
        client
            .query(&format!(
                "CREATE TABLE IF NOT EXISTS {db}.schema_migrations \
                 (version UInt32, name String, applied_at DateTime) \
                 ENGINE = ReplacingMergeTree ORDER BY version"
            ))
            .execute()
            .await?;
        let applied: Vec<u32> = client
            .query(&format!("SELECT version FROM {db}.schema_migrations"))
            .fetch_all::<Applied>()
            .await?
            .into_iter()
            .map(|a| a.version)
            .collect();
        for m in MIGRATIONS.iter().filter(|m| m.database == *db) {
            if applied.contains(&m.version) {
                continue;
            }
            for statement in statements(m.sql) {
                match client.query(&statement).execute().await {
                    Err(e) if column_already_added(&statement, &e.to_string()) => {}
                    r => r?,
                }
            }
            client
                .query(&format!(
                    "INSERT INTO {db}.schema_migrations (version, name, applied_at) VALUES (?, ?, now())"
                ))
                .bind(m.version)
                .bind(m.name)
                .execute()
                .await?;
            tracing::info!(database = db, version = m.version, name = m.name, "migration applied");
            applied_now += 1;
        }
    }
    Ok(applied_now)
}

/// An `ALTER TABLE .. ADD COLUMN` whose column exists: a migration redone after a
/// start-up that died half way (18.16 has no `ADD COLUMN IF NOT EXISTS`).
fn column_already_added(statement: &str, error: &str) -> bool {
    let s = statement.to_ascii_uppercase();
    s.starts_with("ALTER TABLE") && s.contains(" ADD COLUMN ") && error.contains("already exists")
}

/// Splits a migration file into statements: `;` ends a statement, `--` starts a comment.
fn statements(sql: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .map(|l| match l.find("--") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_and_drops_comments() {
        let s = statements(
            "-- a comment\nCREATE TABLE a (x UInt8) ENGINE = Log;\n\n-- b\nCREATE TABLE b (y UInt8) ENGINE = Log;\n",
        );
        assert_eq!(s.len(), 2);
        assert!(s[0].starts_with("CREATE TABLE a"));
        assert!(s[1].starts_with("CREATE TABLE b"));
    }

    #[test]
    fn an_added_column_that_exists_is_done() {
        let add = "ALTER TABLE warehouse.t ADD COLUMN c String";
        assert!(column_already_added(
            add,
            "Code: 44. Cannot add column c: column with this name already exists"
        ));
        assert!(!column_already_added(add, "Code: 60. Table warehouse.t doesn't exist"));
        assert!(!column_already_added(
            "CREATE TABLE t (c String) ENGINE = Log",
            "already exists"
        ));
    }

    #[test]
    fn versions_are_unique_and_increasing_per_database() {
        for db in DATABASES {
            let versions: Vec<u32> = MIGRATIONS
                .iter()
                .filter(|m| m.database == *db)
                .map(|m| m.version)
                .collect();
            assert!(versions.windows(2).all(|w| w[0] < w[1]), "{db}: {versions:?}");
            assert_eq!(versions.first(), Some(&1), "{db} starts at version 1");
        }
    }
}
