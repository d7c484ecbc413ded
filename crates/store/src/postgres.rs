//! The shared store: one PostgreSQL database that several gateway replicas and the CLI use at
//! once (`[store] url = "postgres://…"`, `--store-url`, `DOWNSHIFT_STORE_URL`).
//!
//! Same [`Store`] contract as [`crate::SqliteStore`]: payloads arrive sealed by the [`crate::Keyring`]
//! and are stored as ciphertext, so the database server never sees a prompt or a response.
//! The trait is synchronous and is called from blocking threads (the log writer's thread,
//! `spawn_blocking` in the gateway, the CLI), so this uses the synchronous `postgres` client
//! behind an `r2d2` pool rather than an async pool: each call checks a connection out, so
//! concurrent callers (the log writer, key lookups, the admin API) do not queue behind one
//! connection, and each connection keeps its prepared statements (one round trip per query).
//! A batch of calls is one `INSERT … SELECT FROM UNNEST(arrays)`: one round trip per batch.

use std::collections::HashMap;
use std::time::Duration;

use postgres::types::ToSql;
use postgres::{NoTls, Row, Statement, Transaction};

mod tls;

use crate::rows::{self, DATASET_COLUMNS, KEY_COLUMNS, NOISE, POLICY_COLUMNS, TASK_COLUMNS};
use crate::{
    AgreementRecord, ApiKeyRecord, AuditEntry, CallFilter, CallMeta, DatasetMeta, Policy, Result,
    RouteEvent, SealedCall, SealedExample, Store, StoreError, TaskRecord,
};

/// Versioned migrations, applied in order inside one transaction under an advisory lock (so
/// replicas starting together apply each once); `downshift_schema` records the versions applied.
const MIGRATIONS: &[&str] = &[include_str!("postgres/migrations/0001_schema.sql")];

/// The advisory lock key that serialises migrations ("dshf").
const MIGRATION_LOCK: i64 = 0x6473_6866;

/// A pooled connection with its prepared statements (prepared once per connection, by SQL text).
struct Conn {
    client: postgres::Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    fn prepare_cached(&mut self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

/// Opens connections for the pool.
struct Manager {
    config: postgres::Config,
    /// TLS as the URL's `sslmode` asks; `None`: plain TCP.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

/// A connection error with its causes spelled out: the pool keeps only an error's message, and
/// `postgres` puts the reason a TLS handshake failed (the certificate check) in the cause.
#[derive(Debug)]
struct ConnectError(String);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectError {}

impl From<postgres::Error> for ConnectError {
    fn from(e: postgres::Error) -> Self {
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            let more = c.to_string();
            if !text.contains(&more) {
                text = format!("{text}: {more}");
            }
            cause = c.source();
        }
        ConnectError(text)
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = ConnectError;

    fn connect(&self) -> std::result::Result<Conn, ConnectError> {
        let client = match &self.tls {
            Some(tls) => self.config.connect(tls.clone())?,
            None => self.config.connect(NoTls)?,
        };
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> std::result::Result<(), ConnectError> {
        Ok(conn.client.simple_query("").map(|_| ())?)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.client.is_closed()
    }
}

type Pool = r2d2::Pool<Manager>;

/// How a [`PgStore`] connects.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Most connections this handle keeps open.
    pub max_connections: u32,
    /// How long a caller waits for a free connection (or a new one) before failing.
    pub connect_timeout: Duration,
    /// How long a statement waits for a row or table lock another session holds before failing
    /// (PostgreSQL's `lock_timeout`; 0: no limit). Such a failure [`StoreError::is_busy`].
    pub lock_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 8,
            connect_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(10),
        }
    }
}

/// The PostgreSQL [`Store`](crate::Store): a pool of connections to one database that gateway
/// replicas and the CLI share. Its `Debug` output never shows the URL (it may hold a password).
pub struct PgStore {
    /// Always `Some` until dropped.
    pool: Option<Pool>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Each `postgres` connection owns a small tokio runtime, and dropping a runtime on a
        // thread that drives async tasks panics (the gateway drops its stores on such a thread
        // at shutdown): close the connections on a thread of their own.
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: never print it.
        f.debug_struct("PgStore")
            .field(
                "connections",
                &self.pool.as_ref().map(|p| p.state().connections),
            )
            .finish()
    }
}

const CALL_COLUMNS: &str = "id, ts_ms, endpoint, model, upstream, status, http_status, stream, \
    latency_us, ttft_us, overhead_us, prompt_tokens, completion_tokens, agent, episode, \
    api_key_id, tags::text, source";

/// Whether `url` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `url` with its password replaced by `***`, for messages and logs.
pub(crate) fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = &rest[..at];
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            let masked = if user.len() < at { ":***" } else { "" };
            format!("{scheme}://{user}{masked}{}", &rest[at..])
        }
        None => url.to_owned(),
    }
}

impl PgStore {
    /// Connects to the database at `url` with the default options and brings its schema up to
    /// date.
    pub fn connect(url: &str) -> Result<PgStore> {
        PgStore::connect_with(url, &PgOptions::default())
    }

    /// Like [`PgStore::connect`], with `opts` (a `connect_timeout` in the URL wins over
    /// theirs); `sslmode` in the URL selects TLS. Sessions run in UTC.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a URL that is not a PostgreSQL one or does not parse,
    /// [`StoreError::Pg`] when no connection can be made, and any error of the migrations.
    pub fn connect_with(url: &str, opts: &PgOptions) -> Result<PgStore> {
        if !is_postgres_url(url) {
            return Err(StoreError::Invalid(format!(
                "unsupported store URL '{}': expected postgres://user:password@host:port/database (leave it unset for the SQLite file in the data directory)",
                redacted(url)
            )));
        }
        let (pg_url, tls) = tls::split_tls(url)?;
        let mut config: postgres::Config = pg_url.parse().map_err(|e| {
            StoreError::Invalid(format!(
                "invalid PostgreSQL URL: {e} (expected postgres://user:password@host:port/database)"
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(opts.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("downshift");
        }
        // Every session: bounded lock waits, UTC, and no surprise from a server's locale.
        let lock_ms = opts.lock_timeout.as_millis();
        config.options(&format!("-c lock_timeout={lock_ms} -c TimeZone=UTC"));
        let asks_tls = tls.is_some();
        let manager = Manager { config, tls };
        let pool = r2d2::Pool::builder()
            .max_size(opts.max_connections.max(1))
            .min_idle(Some(1))
            .connection_timeout(opts.connect_timeout)
            // A broken connection is noticed by the client (and dropped by the pool); testing
            // each checkout would cost a round trip per call.
            .test_on_check_out(false)
            .build(manager)
            .map_err(|e| {
                let text = e.to_string();
                let hint = if asks_tls && (text.contains("TLS") || text.contains("certificate")) {
                    " (the URL's sslmode asks for TLS: the server must accept it (ssl = on) and its certificate pass the check sslmode names; see docs/postgres.md)"
                } else {
                    ""
                };
                StoreError::Pg(format!(
                    "cannot connect to PostgreSQL at {}: {text}{hint}",
                    redacted(url)
                ))
            })?;
        let store = PgStore { pool: Some(pool) };
        store.migrate()?;
        Ok(store)
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<Manager>> {
        self.pool
            .as_ref()
            .ok_or_else(|| StoreError::Pg("the PostgreSQL store is closed".into()))?
            .get()
            .map_err(|e| StoreError::Pg(format!("no PostgreSQL connection: {e}")))
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.conn()?;
        let mut tx = conn.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS downshift_schema (\
             version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
        )?;
        let version = schema_version(&mut tx)?;
        for (to, sql) in crate::pending_migrations(version, MIGRATIONS)? {
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO downshift_schema (version, applied_ms) VALUES ($1, $2)",
                &[&to, &crate::now_ms()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The schema version in force.
    pub fn schema_version(&self) -> Result<i64> {
        let mut conn = self.conn()?;
        let mut tx = conn.client.transaction()?;
        schema_version(&mut tx)
    }

    fn query(&self, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let mut conn = self.conn()?;
        let stmt = conn.prepare_cached(sql)?;
        Ok(conn.client.query(&stmt, args)?)
    }

    fn query_opt(&self, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        let mut conn = self.conn()?;
        let stmt = conn.prepare_cached(sql)?;
        Ok(conn.client.query_opt(&stmt, args)?)
    }

    fn execute(&self, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let mut conn = self.conn()?;
        let stmt = conn.prepare_cached(sql)?;
        Ok(conn.client.execute(&stmt, args)?)
    }

    /// Every row of the query, mapped.
    fn rows_of<T>(
        &self,
        sql: &str,
        args: &[&(dyn ToSql + Sync)],
        map: fn(&Row) -> std::result::Result<T, postgres::Error>,
    ) -> Result<Vec<T>> {
        let rows = self.query(sql, args)?;
        Ok(rows
            .iter()
            .map(map)
            .collect::<std::result::Result<_, _>>()?)
    }

    /// The first row of the query, if any, mapped.
    fn row_of<T>(
        &self,
        sql: &str,
        args: &[&(dyn ToSql + Sync)],
        map: fn(&Row) -> std::result::Result<T, postgres::Error>,
    ) -> Result<Option<T>> {
        Ok(self.query_opt(sql, args)?.as_ref().map(map).transpose()?)
    }

    /// Runs `sql` with the filter's WHERE clause and limit, mapping each row.
    fn filtered<T>(
        &self,
        select: &str,
        order: &str,
        filter: &CallFilter,
        map: fn(&Row) -> std::result::Result<T, postgres::Error>,
    ) -> Result<Vec<T>> {
        let mut w = Where::default();
        w.filter(filter);
        let mut sql = format!("{select}{} ORDER BY {order}", w.sql());
        if let Some(l) = filter.limit {
            let n = w.push(i64::try_from(l).unwrap_or(i64::MAX));
            sql.push_str(&format!(" LIMIT {n}"));
        }
        let args: Vec<&(dyn ToSql + Sync)> = w.args.iter().map(|a| a.as_ref()).collect();
        self.rows_of(&sql, &args, map)
    }
}

fn schema_version(tx: &mut Transaction<'_>) -> Result<i64> {
    let row = tx.query_one(
        "SELECT COALESCE(MAX(version), 0) FROM downshift_schema",
        &[],
    )?;
    Ok(row.try_get(0)?)
}

/// A WHERE clause with numbered parameters (`$1`, `$2`, …).
#[derive(Default)]
struct Where {
    clauses: Vec<String>,
    args: Vec<Box<dyn ToSql + Sync>>,
}

impl Where {
    /// Adds a parameter; returns its placeholder.
    fn push<T: ToSql + Sync + 'static>(&mut self, v: T) -> String {
        self.args.push(Box::new(v));
        format!("${}", self.args.len())
    }

    fn filter(&mut self, f: &CallFilter) {
        if let Some(s) = f.since_ms {
            let p = self.push(s);
            self.clauses.push(format!("ts_ms >= {p}"));
        }
        if let Some(u) = f.until_ms {
            let p = self.push(u);
            self.clauses.push(format!("ts_ms < {p}"));
        }
        if let Some(m) = &f.model {
            let p = self.push(m.clone());
            self.clauses.push(format!("model = {p}"));
        }
        if let Some(s) = f.status {
            let p = self.push(s.as_str().to_owned());
            self.clauses.push(format!("status = {p}"));
        }
        if let Some(a) = &f.agent {
            let p = self.push(a.clone());
            self.clauses.push(format!("agent = {p}"));
        }
        if let Some(t) = &f.task {
            let p = self.push(t.clone());
            self.clauses.push(format!(
                "id IN (SELECT call_id FROM task_assignments WHERE task_id = {p} AND task_id <> '')"
            ));
        }
        if let Some((ts, id)) = &f.after {
            let t = self.push(*ts);
            let i = self.push(id.clone());
            self.clauses
                .push(format!("(ts_ms > {t} OR (ts_ms = {t} AND id > {i}))"));
        }
        for (k, v) in &f.tags {
            let k = self.push(k.clone());
            let v = self.push(v.clone());
            self.clauses.push(format!("tags ->> {k} = {v}"));
        }
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(|x| i64::try_from(x).unwrap_or(i64::MAX))
}

/// Writes (call, task) assignments, noise as [`NOISE`], replacing a call's earlier one: one
/// statement for the whole batch.
fn put_assignments(
    tx: &mut Transaction<'_>,
    assignments: &[(String, Option<String>)],
) -> Result<()> {
    if assignments.is_empty() {
        return Ok(());
    }
    // A call listed twice keeps its last assignment (ON CONFLICT cannot touch a row twice).
    let mut last = std::collections::HashMap::with_capacity(assignments.len());
    for (call, task) in assignments {
        last.insert(call.as_str(), task.as_deref().unwrap_or(NOISE));
    }
    let (calls, tasks): (Vec<&str>, Vec<&str>) = last.into_iter().unzip();
    tx.execute(
        "INSERT INTO task_assignments (call_id, task_id) \
         SELECT * FROM UNNEST($1::text[], $2::text[]) \
         ON CONFLICT (call_id) DO UPDATE SET task_id = excluded.task_id",
        &[&calls, &tasks],
    )?;
    Ok(())
}

impl Store for PgStore {
    fn probe_write(&self) -> Result<()> {
        let mut conn = self.conn()?;
        let mut tx = conn.client.transaction()?;
        // Fails on a read-only server (a standby) or when the connection is gone; writes
        // nothing and conflicts with no writer.
        tx.batch_execute("LOCK TABLE calls IN ROW EXCLUSIVE MODE NOWAIT")?;
        tx.rollback()?;
        Ok(())
    }

    fn insert_calls(&self, calls: &[SealedCall]) -> Result<usize> {
        if calls.is_empty() {
            return Ok(0);
        }
        // One statement per batch: the columns travel as arrays and UNNEST turns them back
        // into rows (one round trip instead of one per call).
        let col = |f: fn(&SealedCall) -> Option<i64>| calls.iter().map(f).collect::<Vec<_>>();
        let ids: Vec<&str> = calls.iter().map(|c| c.meta.id.as_str()).collect();
        let ts: Vec<i64> = calls.iter().map(|c| c.meta.ts_ms).collect();
        let endpoints: Vec<&str> = calls.iter().map(|c| c.meta.endpoint.as_str()).collect();
        let models: Vec<&str> = calls.iter().map(|c| c.meta.model.as_str()).collect();
        let upstreams: Vec<Option<&str>> =
            calls.iter().map(|c| c.meta.upstream.as_deref()).collect();
        let statuses: Vec<&str> = calls.iter().map(|c| c.meta.status.as_str()).collect();
        let http: Vec<Option<i64>> = calls
            .iter()
            .map(|c| c.meta.http_status.map(i64::from))
            .collect();
        let stream: Vec<bool> = calls.iter().map(|c| c.meta.stream).collect();
        let latency = col(|c| opt_i64(c.meta.latency_us));
        let ttft = col(|c| opt_i64(c.meta.ttft_us));
        let overhead = col(|c| opt_i64(c.meta.overhead_us));
        let prompt = col(|c| opt_i64(c.meta.prompt_tokens));
        let completion = col(|c| opt_i64(c.meta.completion_tokens));
        let agents: Vec<Option<&str>> = calls.iter().map(|c| c.meta.agent.as_deref()).collect();
        let episodes: Vec<Option<&str>> = calls.iter().map(|c| c.meta.episode.as_deref()).collect();
        let keys: Vec<Option<&str>> = calls.iter().map(|c| c.meta.api_key_id.as_deref()).collect();
        let tags: Vec<String> = calls
            .iter()
            .map(|c| serde_json::to_string(&c.meta.tags).unwrap_or_else(|_| "{}".into()))
            .collect();
        let sources: Vec<&str> = calls.iter().map(|c| c.meta.source.as_str()).collect();
        let key_ids: Vec<&str> = calls.iter().map(|c| c.key_id.as_str()).collect();
        let nonces: Vec<&[u8]> = calls.iter().map(|c| c.nonce.as_slice()).collect();
        let payloads: Vec<&[u8]> = calls.iter().map(|c| c.ciphertext.as_slice()).collect();
        let n = self.execute(
            "INSERT INTO calls (id, ts_ms, endpoint, model, upstream, status, http_status, \
             stream, latency_us, ttft_us, overhead_us, prompt_tokens, completion_tokens, agent, \
             episode, api_key_id, tags, source, key_id, nonce, payload) \
             SELECT id, ts, ep, m, up, st, hs, s, l, t, o, p, c, a, e, k, tg::jsonb, src, kid, n, pl \
             FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::int8[], $8::bool[], $9::int8[], $10::int8[], $11::int8[], $12::int8[], \
             $13::int8[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], \
             $19::text[], $20::bytea[], $21::bytea[]) \
             AS u(id, ts, ep, m, up, st, hs, s, l, t, o, p, c, a, e, k, tg, src, kid, n, pl) \
             ON CONFLICT (id) DO NOTHING",
            &[
                &ids,
                &ts,
                &endpoints,
                &models,
                &upstreams,
                &statuses,
                &http,
                &stream,
                &latency,
                &ttft,
                &overhead,
                &prompt,
                &completion,
                &agents,
                &episodes,
                &keys,
                &tags,
                &sources,
                &key_ids,
                &nonces,
                &payloads,
            ],
        )?;
        Ok(n as usize)
    }

    fn list_calls(&self, filter: &CallFilter) -> Result<Vec<CallMeta>> {
        self.filtered(
            &format!("SELECT {CALL_COLUMNS} FROM calls"),
            "ts_ms DESC, id DESC",
            filter,
            rows::meta,
        )
    }

    fn get_call(&self, id: &str) -> Result<Option<SealedCall>> {
        self.row_of(
            &format!("SELECT {CALL_COLUMNS}, key_id, nonce, payload FROM calls WHERE id = $1"),
            &[&id],
            rows::sealed,
        )
    }

    fn call_ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<String>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // `id >= prefix` lets the primary key's (byte-ordered) index start at the prefix.
        self.query(
            "SELECT id FROM calls WHERE id >= $1 AND starts_with(id, $1) ORDER BY id LIMIT $2",
            &[&prefix, &limit],
        )?
        .iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect()
    }

    fn scan_calls(&self, filter: &CallFilter) -> Result<Vec<SealedCall>> {
        self.filtered(
            &format!("SELECT {CALL_COLUMNS}, key_id, nonce, payload FROM calls"),
            "ts_ms, id",
            filter,
            rows::sealed,
        )
    }

    fn count_calls(&self) -> Result<u64> {
        let row = self.query_opt("SELECT COUNT(*) FROM calls", &[])?;
        let n: i64 = row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    fn create_api_key(&self, k: &ApiKeyRecord) -> Result<()> {
        self.execute(
            &format!("INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)"),
            &[
                &k.id,
                &k.name,
                &k.role.as_str(),
                &k.key_hash,
                &k.prefix,
                &k.agent,
                &k.created_ms,
                &k.revoked_ms,
            ],
        )?;
        Ok(())
    }

    fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        self.rows_of(
            &format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_ms, id"),
            &[],
            rows::key,
        )
    }

    fn find_api_key(&self, hash: &[u8]) -> Result<Option<ApiKeyRecord>> {
        self.row_of(
            &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"),
            &[&hash],
            rows::key,
        )
    }

    fn revoke_api_key(&self, id_or_prefix: &str) -> Result<ApiKeyRecord> {
        let mut conn = self.conn()?;
        let mut tx = conn.client.transaction()?;
        let matches = tx
            .query(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 OR prefix = $1 OR name = $1 \
                     FOR UPDATE"
                ),
                &[&id_or_prefix],
            )?
            .iter()
            .map(rows::key)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut key = crate::apikey::single_key_match(id_or_prefix, matches)?;
        if key.revoked_ms.is_none() {
            let now = crate::now_ms();
            tx.execute(
                "UPDATE api_keys SET revoked_ms = $1 WHERE id = $2",
                &[&now, &key.id],
            )?;
            key.revoked_ms = Some(now);
        }
        tx.commit()?;
        Ok(key)
    }

    fn audit(&self, e: &AuditEntry) -> Result<()> {
        self.execute(
            "INSERT INTO audit (id, ts_ms, actor, action, target, detail) VALUES ($1,$2,$3,$4,$5,$6)",
            &[&e.id, &e.ts_ms, &e.actor, &e.action, &e.target, &e.detail],
        )?;
        Ok(())
    }

    fn list_audit(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.rows_of(
            "SELECT id, ts_ms, actor, action, target, detail FROM audit \
             ORDER BY ts_ms DESC, id DESC LIMIT $1",
            &[&limit],
            rows::audit,
        )
    }

    fn create_dataset(&self, meta: &DatasetMeta, examples: &[SealedExample]) -> Result<()> {
        let mut conn = self.conn()?;
        let mut tx = conn.client.transaction()?;
        // Two writers racing for one name: the second waits for the first's row, then conflicts.
        let inserted = tx.execute(
            &format!(
                "INSERT INTO datasets ({DATASET_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6) \
                 ON CONFLICT (name) DO NOTHING"
            ),
            &[
                &meta.id,
                &meta.name,
                &meta.created_ms,
                &i64::try_from(meta.examples).unwrap_or(i64::MAX),
                &meta.params.to_string(),
                &meta.report.to_string(),
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::Invalid(format!(
                "dataset '{}' already exists; snapshots are immutable, choose another name",
                meta.name
            )));
        }
        if !examples.is_empty() {
            let seqs: Vec<i64> = examples
                .iter()
                .map(|e| i64::try_from(e.seq).unwrap_or(i64::MAX))
                .collect();
            let calls: Vec<&str> = examples.iter().map(|e| e.call_id.as_str()).collect();
            let keys: Vec<&str> = examples.iter().map(|e| e.key_id.as_str()).collect();
            let nonces: Vec<&[u8]> = examples.iter().map(|e| e.nonce.as_slice()).collect();
            let payloads: Vec<&[u8]> = examples.iter().map(|e| e.ciphertext.as_slice()).collect();
            tx.execute(
                "INSERT INTO dataset_examples (dataset_id, seq, call_id, key_id, nonce, payload) \
                 SELECT $1, * FROM UNNEST($2::int8[], $3::text[], $4::text[], $5::bytea[], $6::bytea[])",
                &[&meta.id, &seqs, &calls, &keys, &nonces, &payloads],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn list_datasets(&self) -> Result<Vec<DatasetMeta>> {
        self.rows_of(
            &format!("SELECT {DATASET_COLUMNS} FROM datasets ORDER BY created_ms DESC, id DESC"),
            &[],
            rows::dataset,
        )
    }

    fn get_dataset(&self, name_or_id: &str) -> Result<Option<DatasetMeta>> {
        self.row_of(
            &format!(
                "SELECT {DATASET_COLUMNS} FROM datasets WHERE name = $1 OR id = $1 \
                 ORDER BY (name = $1) DESC LIMIT 1"
            ),
            &[&name_or_id],
            rows::dataset,
        )
    }

    fn dataset_examples(&self, dataset_id: &str) -> Result<Vec<SealedExample>> {
        self.rows_of(
            "SELECT seq, call_id, key_id, nonce, payload FROM dataset_examples \
             WHERE dataset_id = $1 ORDER BY seq",
            &[&dataset_id],
            rows::example,
        )
    }

    fn assign_tasks(&self, assignments: &[(String, Option<String>)]) -> Result<()> {
        let mut conn = self.conn()?;
        let mut tx = conn.client.transaction()?;
        put_assignments(&mut tx, assignments)?;
        tx.commit()?;
        Ok(())
    }

    fn task_size(&self, task_id: &str) -> Result<u64> {
        let row = self.query_opt(
            "SELECT COUNT(*) FROM task_assignments WHERE task_id = $1",
            &[&task_id],
        )?;
        let n: i64 = row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    fn replace_tasks(
        &self,
        tasks: &[TaskRecord],
        assignments: &[(String, Option<String>)],
    ) -> Result<()> {
        let mut conn = self.conn()?;
        let mut tx = conn.client.transaction()?;
        tx.batch_execute("DELETE FROM tasks; DELETE FROM task_assignments;")?;
        let put = tx.prepare(&format!(
            "INSERT INTO tasks ({TASK_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)"
        ))?;
        for t in tasks {
            let calls = i64::try_from(t.calls).unwrap_or(i64::MAX);
            let centroid = crate::model::centroid_bytes(&t.centroid);
            tx.execute(
                &put,
                &[
                    &t.id,
                    &t.label,
                    &t.created_ms,
                    &t.updated_ms,
                    &calls,
                    &t.signature,
                    &t.stats.to_string(),
                    &centroid,
                ],
            )?;
        }
        put_assignments(&mut tx, assignments)?;
        tx.commit()?;
        Ok(())
    }

    fn list_tasks(&self) -> Result<Vec<TaskRecord>> {
        self.rows_of(
            &format!("SELECT {TASK_COLUMNS} FROM tasks ORDER BY calls DESC, id"),
            &[],
            rows::task,
        )
    }

    fn get_task(&self, id: &str) -> Result<Option<TaskRecord>> {
        self.row_of(
            &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"),
            &[&id],
            rows::task,
        )
    }

    fn task_assignments(&self) -> Result<Vec<(String, Option<String>)>> {
        self.query(
            "SELECT call_id, task_id FROM task_assignments ORDER BY call_id",
            &[],
        )?
        .iter()
        .map(|r| {
            let task: String = r.try_get(1)?;
            Ok((r.try_get(0)?, (task != NOISE).then_some(task)))
        })
        .collect()
    }

    fn set_policy(&self, p: &Policy) -> Result<()> {
        p.validate()?;
        self.execute(
            &format!(
                "INSERT INTO task_policies ({POLICY_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) \
                 ON CONFLICT (task) DO UPDATE SET mode = excluded.mode, \
                 specialist = excluded.specialist, min_confidence = excluded.min_confidence, \
                 agreement_threshold = excluded.agreement_threshold, \
                 window_size = excluded.window_size, shadow_sample = excluded.shadow_sample, \
                 updated_ms = excluded.updated_ms, updated_by = excluded.updated_by"
            ),
            &[
                &p.task,
                &p.mode.to_string(),
                &p.specialist,
                &p.min_confidence,
                &p.agreement_threshold,
                &i64::from(p.window),
                &p.shadow_sample,
                &p.updated_ms,
                &p.updated_by,
            ],
        )?;
        Ok(())
    }

    fn get_policy(&self, task: &str) -> Result<Option<Policy>> {
        self.row_of(
            &format!("SELECT {POLICY_COLUMNS} FROM task_policies WHERE task = $1"),
            &[&task],
            rows::policy,
        )
    }

    fn list_policies(&self) -> Result<Vec<Policy>> {
        self.rows_of(
            &format!("SELECT {POLICY_COLUMNS} FROM task_policies ORDER BY task"),
            &[],
            rows::policy,
        )
    }

    fn record_agreement(&self, a: &AgreementRecord) -> Result<()> {
        a.validate()?;
        self.execute(
            "INSERT INTO agreement (task, ts_ms, value, source, call_id, specialist) \
             VALUES ($1,$2,$3,$4,$5,$6)",
            &[
                &a.task,
                &a.ts_ms,
                &a.value,
                &a.source.as_str(),
                &a.call_id,
                &a.specialist,
            ],
        )?;
        Ok(())
    }

    fn recent_agreement(&self, task: &str, n: usize) -> Result<Vec<AgreementRecord>> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        // Insertion order (seq), not the timestamp, as in SQLite.
        self.rows_of(
            "SELECT task, ts_ms, value, source, call_id, specialist FROM agreement \
             WHERE task = $1 ORDER BY seq DESC LIMIT $2",
            &[&task, &n],
            rows::agreement,
        )
    }

    fn record_route_event(&self, e: &RouteEvent) -> Result<()> {
        self.execute(
            "INSERT INTO route_events (id, task, ts_ms, kind, detail) VALUES ($1,$2,$3,$4,$5)",
            &[
                &e.id,
                &e.task,
                &e.ts_ms,
                &e.kind.as_str(),
                &e.detail.to_string(),
            ],
        )?;
        Ok(())
    }

    fn list_route_events(&self, task: Option<&str>, limit: usize) -> Result<Vec<RouteEvent>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // `$1` NULL: every task.
        self.rows_of(
            "SELECT id, task, ts_ms, kind, detail FROM route_events \
             WHERE $1::text IS NULL OR task = $1 ORDER BY ts_ms DESC, id DESC LIMIT $2",
            &[&task, &limit],
            rows::route_event,
        )
    }
}

#[cfg(test)]
mod tests;
