//! Everything downshift persists: the encrypted call log, API keys with roles, the audit trail.
//!
//! Callers talk to the [`Store`] trait; [`SqliteStore`] is the embedded default (bundled SQLite
//! in WAL mode, versioned migrations), [`PgStore`] the shared one that gateway replicas use
//! (PostgreSQL, pooled connections, versioned migrations). Payloads are sealed with AES-256-GCM
//! by the [`Keyring`] before they reach a store, and agent/episode identifiers are replaced by
//! keyed-HMAC pseudonyms. The [`LogWriter`] puts a bounded, batched, asynchronous queue in
//! front of the store so that serving never waits for the disk; what does not fit spills to an
//! append-only file that is ingested again on the next start.
//!
//! The router's state (S6) is persisted here too: the per-task [`Policy`], live
//! [`AgreementRecord`]s and [`RouteEvent`]s (promotions, demotions, fallbacks).

mod apikey;
#[cfg(test)]
mod backends;
mod bootstrap;
mod data;
mod error;
mod interchange;
mod journal;
mod keyring;
mod model;
pub mod pg_testing;
mod policy;
mod postgres;
mod rows;
mod spill;
mod sqlite;
mod writer;

#[cfg(test)]
mod tests;

pub use apikey::{Permission, Role, generate_api_key, hash_api_key};
pub use bootstrap::{bootstrap_admin_key, create_api_key};
pub use data::{DataDir, StoreConfig};
pub use error::StoreError;
pub use interchange::{ImportReport, LineError, export_dataset_jsonl, export_jsonl, import_jsonl};
pub use journal::Journal;
pub use keyring::{KeyFileStamp, Keyring, KeyringInfo, open_reloading, reload_keyring};
pub use model::{
    ApiKeyRecord, AuditEntry, CallFilter, CallMeta, CallPayload, CallRecord, CallStatus,
    DatasetMeta, SealedCall, SealedExample, Source, TaskRecord, TaskStats, TokenPercentiles,
    now_ms,
};
pub use policy::{
    AgreementRecord, AgreementSource, FALLBACK_TAG, Mode, Policy, ROUTE_TAG, RouteEvent,
    RouteEventKind, TASK_TAG,
};
pub use postgres::{PgOptions, PgStore, is_postgres_url};
pub use spill::{IngestReport, SpillFile, ingest_spill_files};
pub use sqlite::SqliteStore;
pub use writer::{LogWriter, WriterConfig, WriterStats};

/// The result of every store operation.
pub type Result<T> = std::result::Result<T, StoreError>;

/// The migrations a schema at `version` still needs, each with the version it brings the schema
/// to; a schema newer than every migration this build knows is refused.
pub(crate) fn pending_migrations<'a>(
    version: i64,
    migrations: &'a [&'a str],
) -> Result<impl Iterator<Item = (i64, &'a str)>> {
    let known = migrations.len() as i64;
    if version > known {
        return Err(StoreError::SchemaTooNew {
            found: version,
            known,
        });
    }
    Ok((version.max(0)..known).map(move |v| (v + 1, migrations[v as usize])))
}

/// The persistence interface every stage uses. Implementations must be safe to share between
/// threads; SQLite is the default, PostgreSQL implements the same trait.
pub trait Store: Send + Sync {
    /// Inserts sealed calls in one transaction; ids already present are ignored (idempotent
    /// re-ingestion). Returns how many rows were new.
    fn insert_calls(&self, calls: &[SealedCall]) -> Result<usize>;
    /// Call metadata, newest first, filtered.
    fn list_calls(&self, filter: &CallFilter) -> Result<Vec<CallMeta>>;
    /// One call with its sealed payload.
    fn get_call(&self, id: &str) -> Result<Option<SealedCall>>;
    /// Ids of the calls whose id starts with `prefix`, ascending, at most `limit` (what a person
    /// types for an id). The default answers an exact id only.
    fn call_ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<String>> {
        let exact = self.get_call(prefix)?.map(|c| c.meta.id);
        Ok(exact.into_iter().take(limit).collect())
    }
    /// Sealed calls (metadata and payload), oldest first, filtered: the export path.
    fn scan_calls(&self, filter: &CallFilter) -> Result<Vec<SealedCall>>;
    /// How many calls the log holds.
    fn count_calls(&self) -> Result<u64>;

    /// Stores a new API key record (its hash, never the secret); see [`crate::create_api_key`].
    fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()>;
    /// Every API key, revoked ones included, oldest first.
    fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>>;
    /// The key whose hash is `hash`, revoked or not.
    fn find_api_key(&self, hash: &[u8]) -> Result<Option<ApiKeyRecord>>;
    /// Revokes the key with this id or display prefix; errors when none or several match.
    fn revoke_api_key(&self, id_or_prefix: &str) -> Result<ApiKeyRecord>;

    /// Appends one entry to the audit trail (a raw read, an export, a policy change).
    fn audit(&self, entry: &AuditEntry) -> Result<()>;

    /// Writes a dataset and all its examples in one transaction: after a crash or an
    /// interruption there is either the whole snapshot or none of it. A name already taken is
    /// an error (snapshots are immutable).
    fn create_dataset(&self, meta: &DatasetMeta, examples: &[SealedExample]) -> Result<()>;
    /// Datasets, newest first.
    fn list_datasets(&self) -> Result<Vec<DatasetMeta>>;
    /// The dataset with this name or id.
    fn get_dataset(&self, name_or_id: &str) -> Result<Option<DatasetMeta>>;
    /// A dataset's examples in order.
    fn dataset_examples(&self, dataset_id: &str) -> Result<Vec<SealedExample>>;

    /// Records which discovered task each call belongs to (`None`: noise — discovery saw the
    /// call and placed it in no task), replacing earlier assignments of those calls, in one
    /// transaction.
    fn assign_tasks(&self, assignments: &[(String, Option<String>)]) -> Result<()>;
    /// How many calls are assigned to a task.
    fn task_size(&self, task_id: &str) -> Result<u64>;
    /// Replaces the discovered tasks and all task assignments with the result of a discovery
    /// run, in one transaction (`None`: the call is noise, no task).
    fn replace_tasks(
        &self,
        tasks: &[TaskRecord],
        assignments: &[(String, Option<String>)],
    ) -> Result<()>;
    /// The discovered tasks, largest first.
    fn list_tasks(&self) -> Result<Vec<TaskRecord>>;
    /// One task by id.
    fn get_task(&self, id: &str) -> Result<Option<TaskRecord>>;
    /// Every call discovery has seen, with its task (`None`: noise). A call that is not listed
    /// was logged after the discovery run (or left out of it) and is neither a task's nor noise.
    fn task_assignments(&self) -> Result<Vec<(String, Option<String>)>>;
    /// The newest `limit` audit entries, newest first.
    fn list_audit(&self, limit: usize) -> Result<Vec<AuditEntry>>;

    /// Creates or replaces the policy of `policy.task` (validated first).
    fn set_policy(&self, policy: &Policy) -> Result<()>;
    /// The policy of a task, if one was set.
    fn get_policy(&self, task: &str) -> Result<Option<Policy>>;
    /// Every policy, by task id.
    fn list_policies(&self) -> Result<Vec<Policy>>;
    /// Appends one agreement measurement (`value` must be in [0, 1]).
    fn record_agreement(&self, record: &AgreementRecord) -> Result<()>;
    /// The newest `n` agreement measurements of a task, newest first.
    fn recent_agreement(&self, task: &str, n: usize) -> Result<Vec<AgreementRecord>>;
    /// Appends a promotion, demotion or fallback.
    fn record_route_event(&self, event: &RouteEvent) -> Result<()>;
    /// Route events, newest first, of one task or of all.
    fn list_route_events(&self, task: Option<&str>, limit: usize) -> Result<Vec<RouteEvent>>;

    /// Checks that the store can take a write now (readiness probes); writes nothing.
    fn probe_write(&self) -> Result<()> {
        Ok(())
    }
}
