//! The embedded default store: one SQLite file (bundled SQLite, WAL journal).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{
    Connection, OptionalExtension, TransactionBehavior, params, params_from_iter,
    types::Value as Sql,
};

use crate::rows::{self, NOISE, POLICY_COLUMNS, TASK_COLUMNS};
use crate::{
    AgreementRecord, ApiKeyRecord, AuditEntry, CallFilter, CallMeta, DatasetMeta, Policy, Result,
    RouteEvent, SealedCall, SealedExample, Store, StoreError, TaskRecord,
};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE calls (
    id TEXT PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    upstream TEXT,
    status TEXT NOT NULL,
    http_status INTEGER,
    stream INTEGER NOT NULL,
    latency_us INTEGER,
    ttft_us INTEGER,
    overhead_us INTEGER,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    agent TEXT,
    episode TEXT,
    api_key_id TEXT,
    tags TEXT NOT NULL DEFAULT '{}',
    source TEXT NOT NULL,
    key_id TEXT NOT NULL,
    nonce BLOB NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX calls_ts ON calls(ts_ms);
CREATE INDEX calls_model ON calls(model, ts_ms);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    key_hash BLOB NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    agent TEXT,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT
);
"#,
    r#"
CREATE TABLE datasets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    examples INTEGER NOT NULL,
    params TEXT NOT NULL,
    report TEXT NOT NULL
);
CREATE TABLE dataset_examples (
    dataset_id TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    call_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    nonce BLOB NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (dataset_id, seq)
);
"#,
    r#"
CREATE TABLE task_assignments (
    call_id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL
);
CREATE INDEX task_assignments_task ON task_assignments(task_id);
"#,
    r#"
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    signature TEXT NOT NULL,
    stats TEXT NOT NULL,
    centroid BLOB NOT NULL
);
"#,
    r#"
CREATE TABLE task_policies (
    task TEXT PRIMARY KEY,
    mode TEXT NOT NULL,
    specialist TEXT,
    min_confidence REAL,
    agreement_threshold REAL NOT NULL,
    window_size INTEGER NOT NULL,
    shadow_sample REAL NOT NULL,
    updated_ms INTEGER NOT NULL,
    updated_by TEXT NOT NULL
);
CREATE TABLE agreement (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    value REAL NOT NULL,
    source TEXT NOT NULL,
    call_id TEXT NOT NULL,
    specialist TEXT
);
CREATE INDEX agreement_task ON agreement(task, seq);
CREATE TABLE route_events (
    id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX route_events_task ON route_events(task, ts_ms);
CREATE INDEX route_events_ts ON route_events(ts_ms);
"#,
];

/// The embedded SQLite [`Store`](crate::Store): one connection to a WAL-mode database file,
/// serialized by a lock. Other processes (the CLI while the gateway serves) may open the same
/// file; writers wait for each other up to the busy timeout.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

const CALL_COLUMNS: &str = "id, ts_ms, endpoint, model, upstream, status, http_status, stream, \
    latency_us, ttft_us, overhead_us, prompt_tokens, completion_tokens, agent, episode, \
    api_key_id, tags, source";

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        SqliteStore::open_with_busy_timeout(path, std::time::Duration::from_secs(10))
    }

    /// Like [`SqliteStore::open`], waiting at most `busy` for another writer's lock before a
    /// write fails with "database is locked" (see [`crate::StoreError::is_busy`]).
    pub fn open_with_busy_timeout(path: &Path, busy: std::time::Duration) -> Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        }
        make_private(path)?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(busy)?;
        // A new database gets 16 KiB pages. A sealed call (2-3 KB) took most of a 4 KiB page to
        // itself; in 16 KiB pages about six share one, so the WAL, the checkpoints and the file
        // carry about a third fewer bytes per call and the log writer spends less CPU in SQLite
        // and in write(2) (bench/gateway/README.md). An existing database keeps its page size:
        // the pragma changes nothing once the file has pages.
        conn.pragma_update(None, "page_size", 16384)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let store = SqliteStore {
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back), so a poisoned lock is safe to keep using.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.lock();
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (to, sql) in crate::pending_migrations(version, MIGRATIONS)? {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", to)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// The schema version in force.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .lock()
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }
}

/// Creates the database file with mode 0600 if it is missing, and tightens an existing one
/// (and its WAL and shared-memory files, which SQLite creates with the database's mode) to 0600.
fn make_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if path.as_os_str() == ":memory:" {
            return Ok(());
        }
        // Only a missing file is opened here: closing a descriptor of a database this process
        // already has open would drop SQLite's POSIX locks on it (a silent loss of locking).
        // An existing file is tightened by path (chmod), which opens nothing.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::io(path, e)),
        }
        let name = path.as_os_str().to_owned();
        for suffix in ["", "-wal", "-shm"] {
            let mut p = name.clone();
            p.push(suffix);
            let p = std::path::PathBuf::from(p);
            match std::fs::metadata(&p) {
                Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| StoreError::io(&p, e))?;
                }
                _ => {}
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// WHERE clause and parameters for a filter.
fn where_clause(f: &CallFilter) -> (String, Vec<Sql>) {
    let mut clauses = Vec::new();
    let mut args: Vec<Sql> = Vec::new();
    if let Some(s) = f.since_ms {
        clauses.push("ts_ms >= ?".to_owned());
        args.push(Sql::Integer(s));
    }
    if let Some(u) = f.until_ms {
        clauses.push("ts_ms < ?".to_owned());
        args.push(Sql::Integer(u));
    }
    if let Some(m) = &f.model {
        clauses.push("model = ?".to_owned());
        args.push(Sql::Text(m.clone()));
    }
    if let Some(s) = f.status {
        clauses.push("status = ?".to_owned());
        args.push(Sql::Text(s.as_str().to_owned()));
    }
    if let Some(a) = &f.agent {
        clauses.push("agent = ?".to_owned());
        args.push(Sql::Text(a.clone()));
    }
    if let Some(t) = &f.task {
        clauses.push(
            "id IN (SELECT call_id FROM task_assignments WHERE task_id = ? AND task_id <> '')"
                .to_owned(),
        );
        args.push(Sql::Text(t.clone()));
    }
    if let Some((ts, id)) = &f.after {
        clauses.push("(ts_ms > ? OR (ts_ms = ? AND id > ?))".to_owned());
        args.push(Sql::Integer(*ts));
        args.push(Sql::Integer(*ts));
        args.push(Sql::Text(id.clone()));
    }
    for (k, v) in &f.tags {
        clauses.push("json_extract(tags, ?) = ?".to_owned());
        // Quote the key so dots and spaces in tag names are taken literally.
        args.push(Sql::Text(format!("$.\"{}\"", k.replace('"', "\\\""))));
        args.push(Sql::Text(v.clone()));
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    (sql, args)
}

impl Store for SqliteStore {
    fn probe_write(&self) -> Result<()> {
        let conn = self.lock();
        conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
        Ok(())
    }

    fn insert_calls(&self, calls: &[SealedCall]) -> Result<usize> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut inserted = 0;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO calls (id, ts_ms, endpoint, model, upstream, status, \
                 http_status, stream, latency_us, ttft_us, overhead_us, prompt_tokens, \
                 completion_tokens, agent, episode, api_key_id, tags, source, key_id, nonce, payload) \
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21)",
            )?;
            for c in calls {
                let m = &c.meta;
                let tags = serde_json::to_string(&m.tags).unwrap_or_else(|_| "{}".into());
                inserted += stmt.execute(params![
                    m.id,
                    m.ts_ms,
                    m.endpoint,
                    m.model,
                    m.upstream,
                    m.status.as_str(),
                    m.http_status.map(i64::from),
                    m.stream,
                    m.latency_us.map(|v| v as i64),
                    m.ttft_us.map(|v| v as i64),
                    m.overhead_us.map(|v| v as i64),
                    m.prompt_tokens.map(|v| v as i64),
                    m.completion_tokens.map(|v| v as i64),
                    m.agent,
                    m.episode,
                    m.api_key_id,
                    tags,
                    m.source.as_str(),
                    c.key_id,
                    c.nonce,
                    c.ciphertext,
                ])?;
            }
        }
        tx.commit()?;
        Ok(inserted)
    }

    fn list_calls(&self, filter: &CallFilter) -> Result<Vec<CallMeta>> {
        let (clause, mut args) = where_clause(filter);
        let mut sql =
            format!("SELECT {CALL_COLUMNS} FROM calls{clause} ORDER BY ts_ms DESC, id DESC");
        if let Some(l) = filter.limit {
            sql.push_str(" LIMIT ?");
            args.push(Sql::Integer(l as i64));
        }
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), |r| rows::meta(r))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn get_call(&self, id: &str) -> Result<Option<SealedCall>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {CALL_COLUMNS}, key_id, nonce, payload FROM calls WHERE id = ?"
        ))?;
        Ok(stmt.query_row([id], |r| rows::sealed(r)).optional()?)
    }

    fn call_ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<String>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id FROM calls WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(rusqlite::params![prefix, limit], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    fn scan_calls(&self, filter: &CallFilter) -> Result<Vec<SealedCall>> {
        let (clause, mut args) = where_clause(filter);
        let mut sql = format!(
            "SELECT {CALL_COLUMNS}, key_id, nonce, payload FROM calls{clause} ORDER BY ts_ms, id"
        );
        if let Some(l) = filter.limit {
            sql.push_str(" LIMIT ?");
            args.push(Sql::Integer(l as i64));
        }
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), |r| rows::sealed(r))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn count_calls(&self) -> Result<u64> {
        let n: i64 = self
            .lock()
            .query_row("SELECT COUNT(*) FROM calls", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn create_api_key(&self, k: &ApiKeyRecord) -> Result<()> {
        self.lock().execute(
            "INSERT INTO api_keys (id, name, role, key_hash, prefix, agent, created_ms, revoked_ms) \
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
            params![
                k.id,
                k.name,
                k.role.as_str(),
                k.key_hash,
                k.prefix,
                k.agent,
                k.created_ms,
                k.revoked_ms
            ],
        )?;
        Ok(())
    }

    fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, role, key_hash, prefix, agent, created_ms, revoked_ms FROM api_keys ORDER BY created_ms, id",
        )?;
        let rows = stmt.query_map([], |r| rows::key(r))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn find_api_key(&self, hash: &[u8]) -> Result<Option<ApiKeyRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, role, key_hash, prefix, agent, created_ms, revoked_ms FROM api_keys WHERE key_hash = ?",
        )?;
        Ok(stmt.query_row([hash], |r| rows::key(r)).optional()?)
    }

    fn revoke_api_key(&self, id_or_prefix: &str) -> Result<ApiKeyRecord> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, role, key_hash, prefix, agent, created_ms, revoked_ms FROM api_keys \
             WHERE id = ?1 OR prefix = ?1 OR name = ?1",
        )?;
        let matches = stmt
            .query_map([id_or_prefix], |r| rows::key(r))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut key = crate::apikey::single_key_match(id_or_prefix, matches)?;
        if key.revoked_ms.is_none() {
            let now = crate::now_ms();
            conn.execute(
                "UPDATE api_keys SET revoked_ms = ?1 WHERE id = ?2",
                params![now, key.id],
            )?;
            key.revoked_ms = Some(now);
        }
        Ok(key)
    }

    fn audit(&self, e: &AuditEntry) -> Result<()> {
        self.lock().execute(
            "INSERT INTO audit (id, ts_ms, actor, action, target, detail) VALUES (?1,?2,?3,?4,?5,?6)",
            params![e.id, e.ts_ms, e.actor, e.action, e.target, e.detail],
        )?;
        Ok(())
    }

    fn list_audit(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, ts_ms, actor, action, target, detail FROM audit ORDER BY ts_ms DESC, id DESC LIMIT ?",
        )?;
        let rows = stmt.query_map([limit as i64], |r| rows::audit(r))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
    fn create_dataset(&self, meta: &DatasetMeta, examples: &[SealedExample]) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let taken: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM datasets WHERE name = ?1)",
            [&meta.name],
            |r| r.get(0),
        )?;
        if taken {
            return Err(StoreError::Invalid(format!(
                "dataset '{}' already exists; snapshots are immutable, choose another name",
                meta.name
            )));
        }
        tx.execute(
            "INSERT INTO datasets (id, name, created_ms, examples, params, report) VALUES (?1,?2,?3,?4,?5,?6)",
            params![
                meta.id,
                meta.name,
                meta.created_ms,
                meta.examples as i64,
                meta.params.to_string(),
                meta.report.to_string()
            ],
        )?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO dataset_examples (dataset_id, seq, call_id, key_id, nonce, payload) VALUES (?1,?2,?3,?4,?5,?6)",
            )?;
            for e in examples {
                stmt.execute(params![
                    meta.id,
                    e.seq as i64,
                    e.call_id,
                    e.key_id,
                    e.nonce,
                    e.ciphertext
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn list_datasets(&self) -> Result<Vec<DatasetMeta>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, created_ms, examples, params, report FROM datasets ORDER BY created_ms DESC, id DESC",
        )?;
        let rows = stmt.query_map([], |r| rows::dataset(r))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn get_dataset(&self, name_or_id: &str) -> Result<Option<DatasetMeta>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, created_ms, examples, params, report FROM datasets WHERE name = ?1 OR id = ?1",
        )?;
        Ok(stmt
            .query_row([name_or_id], |r| rows::dataset(r))
            .optional()?)
    }

    fn dataset_examples(&self, dataset_id: &str) -> Result<Vec<SealedExample>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, call_id, key_id, nonce, payload FROM dataset_examples WHERE dataset_id = ? ORDER BY seq",
        )?;
        let rows = stmt.query_map([dataset_id], |r| rows::example(r))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
    fn assign_tasks(&self, assignments: &[(String, Option<String>)]) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        put_assignments(&tx, assignments)?;
        tx.commit()?;
        Ok(())
    }

    fn replace_tasks(
        &self,
        tasks: &[TaskRecord],
        assignments: &[(String, Option<String>)],
    ) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM tasks", [])?;
        tx.execute("DELETE FROM task_assignments", [])?;
        {
            let mut put = tx.prepare_cached(&format!(
                "INSERT INTO tasks ({TASK_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)"
            ))?;
            for t in tasks {
                let centroid = crate::model::centroid_bytes(&t.centroid);
                put.execute(params![
                    t.id,
                    t.label,
                    t.created_ms,
                    t.updated_ms,
                    t.calls as i64,
                    t.signature,
                    t.stats.to_string(),
                    centroid
                ])?;
            }
            put_assignments(&tx, assignments)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn list_tasks(&self) -> Result<Vec<TaskRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks ORDER BY calls DESC, id"
        ))?;
        let rows = stmt.query_map([], |r| rows::task(r))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn get_task(&self, id: &str) -> Result<Option<TaskRecord>> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))?;
        Ok(stmt.query_row([id], |r| rows::task(r)).optional()?)
    }

    fn task_assignments(&self) -> Result<Vec<(String, Option<String>)>> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached("SELECT call_id, task_id FROM task_assignments ORDER BY call_id")?;
        let rows = stmt.query_map([], |r| {
            let task: String = r.get(1)?;
            Ok((r.get(0)?, (task != NOISE).then_some(task)))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn set_policy(&self, p: &Policy) -> Result<()> {
        p.validate()?;
        self.lock().execute(
            &format!(
                "INSERT INTO task_policies ({POLICY_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9) \
                 ON CONFLICT(task) DO UPDATE SET mode = excluded.mode, \
                 specialist = excluded.specialist, min_confidence = excluded.min_confidence, \
                 agreement_threshold = excluded.agreement_threshold, window_size = excluded.window_size, \
                 shadow_sample = excluded.shadow_sample, updated_ms = excluded.updated_ms, \
                 updated_by = excluded.updated_by"
            ),
            params![
                p.task,
                p.mode.to_string(),
                p.specialist,
                p.min_confidence,
                p.agreement_threshold,
                i64::from(p.window),
                p.shadow_sample,
                p.updated_ms,
                p.updated_by
            ],
        )?;
        Ok(())
    }

    fn get_policy(&self, task: &str) -> Result<Option<Policy>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {POLICY_COLUMNS} FROM task_policies WHERE task = ?1"
        ))?;
        Ok(stmt.query_row([task], |r| rows::policy(r)).optional()?)
    }

    fn list_policies(&self) -> Result<Vec<Policy>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {POLICY_COLUMNS} FROM task_policies ORDER BY task"
        ))?;
        let rows = stmt.query_map([], |r| rows::policy(r))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn record_agreement(&self, a: &AgreementRecord) -> Result<()> {
        a.validate()?;
        self.lock().execute(
            "INSERT INTO agreement (task, ts_ms, value, source, call_id, specialist) \
             VALUES (?1,?2,?3,?4,?5,?6)",
            params![
                a.task,
                a.ts_ms,
                a.value,
                a.source.as_str(),
                a.call_id,
                a.specialist
            ],
        )?;
        Ok(())
    }

    fn recent_agreement(&self, task: &str, n: usize) -> Result<Vec<AgreementRecord>> {
        let conn = self.lock();
        // Insertion order (seq), not the timestamp: measurements finishing out of order still
        // enter the window in the order they were recorded.
        let mut stmt = conn.prepare_cached(
            "SELECT task, ts_ms, value, source, call_id, specialist FROM agreement \
             WHERE task = ?1 ORDER BY seq DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![task, i64::try_from(n).unwrap_or(i64::MAX)], |r| {
            rows::agreement(r)
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn record_route_event(&self, e: &RouteEvent) -> Result<()> {
        self.lock().execute(
            "INSERT INTO route_events (id, task, ts_ms, kind, detail) VALUES (?1,?2,?3,?4,?5)",
            params![e.id, e.task, e.ts_ms, e.kind.as_str(), e.detail.to_string()],
        )?;
        Ok(())
    }

    fn list_route_events(&self, task: Option<&str>, limit: usize) -> Result<Vec<RouteEvent>> {
        let conn = self.lock();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let cols = "id, task, ts_ms, kind, detail";
        let rows = match task {
            Some(t) => {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {cols} FROM route_events WHERE task = ?1 \
                     ORDER BY ts_ms DESC, id DESC LIMIT ?2"
                ))?;
                stmt.query_map(params![t, limit], |r| rows::route_event(r))?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            }
            None => {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {cols} FROM route_events ORDER BY ts_ms DESC, id DESC LIMIT ?1"
                ))?;
                stmt.query_map(params![limit], |r| rows::route_event(r))?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            }
        };
        Ok(rows)
    }

    fn task_size(&self, task_id: &str) -> Result<u64> {
        let n: i64 = self.lock().query_row(
            "SELECT COUNT(*) FROM task_assignments WHERE task_id = ?1",
            [task_id],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }
}

/// Writes (call, task) assignments, noise as [`NOISE`], replacing a call's earlier one.
fn put_assignments(
    tx: &rusqlite::Transaction<'_>,
    assignments: &[(String, Option<String>)],
) -> Result<()> {
    let mut set = tx.prepare_cached(
        "INSERT INTO task_assignments (call_id, task_id) VALUES (?1, ?2) \
         ON CONFLICT(call_id) DO UPDATE SET task_id = excluded.task_id",
    )?;
    for (call, task) in assignments {
        set.execute(params![call, task.as_deref().unwrap_or(NOISE)])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
