//! Rows to records, shared by the SQLite and PostgreSQL stores: both read the same columns in
//! the same order, so one mapping serves both (and they cannot drift apart).

use crate::{
    AgreementRecord, AgreementSource, ApiKeyRecord, AuditEntry, CallMeta, CallStatus, DatasetMeta,
    Policy, Role, RouteEvent, RouteEventKind, SealedCall, SealedExample, Source, TaskRecord,
};

/// A column value both drivers can read (text, integers, floats, booleans, bytes, and their
/// `Option`s).
pub(crate) trait Col:
    rusqlite::types::FromSql + for<'a> postgres::types::FromSql<'a>
{
}

impl<T: rusqlite::types::FromSql + for<'a> postgres::types::FromSql<'a>> Col for T {}

/// A result row of either driver.
pub(crate) trait Cols {
    type Error;
    /// Column `i` (0-based).
    fn col<T: Col>(&self, i: usize) -> Result<T, Self::Error>;
}

impl Cols for rusqlite::Row<'_> {
    type Error = rusqlite::Error;
    fn col<T: Col>(&self, i: usize) -> Result<T, rusqlite::Error> {
        self.get(i)
    }
}

impl Cols for postgres::Row {
    type Error = postgres::Error;
    fn col<T: Col>(&self, i: usize) -> Result<T, postgres::Error> {
        self.try_get(i)
    }
}

pub(crate) const KEY_COLUMNS: &str =
    "id, name, role, key_hash, prefix, agent, created_ms, revoked_ms";

pub(crate) const DATASET_COLUMNS: &str = "id, name, created_ms, examples, params, report";

pub(crate) fn audit<R: Cols>(r: &R) -> Result<AuditEntry, R::Error> {
    Ok(AuditEntry {
        id: r.col(0)?,
        ts_ms: r.col(1)?,
        actor: r.col(2)?,
        action: r.col(3)?,
        target: r.col(4)?,
        detail: r.col(5)?,
    })
}

pub(crate) fn example<R: Cols>(r: &R) -> Result<SealedExample, R::Error> {
    Ok(SealedExample {
        seq: r.col::<i64>(0)?.max(0) as u64,
        call_id: r.col(1)?,
        key_id: r.col(2)?,
        nonce: r.col(3)?,
        ciphertext: r.col(4)?,
    })
}

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.map(|x| x.max(0) as u64)
}

pub(crate) fn meta<R: Cols>(row: &R) -> Result<CallMeta, R::Error> {
    let status: String = row.col(5)?;
    let tags: String = row.col(16)?;
    let source: String = row.col(17)?;
    Ok(CallMeta {
        id: row.col(0)?,
        ts_ms: row.col(1)?,
        endpoint: row.col(2)?,
        model: row.col(3)?,
        upstream: row.col(4)?,
        status: CallStatus::parse(&status).unwrap_or(CallStatus::UpstreamError),
        http_status: row.col::<Option<i64>>(6)?.map(|s| s as u16),
        stream: row.col(7)?,
        latency_us: opt_u64(row.col(8)?),
        ttft_us: opt_u64(row.col(9)?),
        overhead_us: opt_u64(row.col(10)?),
        prompt_tokens: opt_u64(row.col(11)?),
        completion_tokens: opt_u64(row.col(12)?),
        agent: row.col(13)?,
        episode: row.col(14)?,
        api_key_id: row.col(15)?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        source: Source::from_stored(&source),
    })
}

pub(crate) fn key<R: Cols>(row: &R) -> Result<ApiKeyRecord, R::Error> {
    let role: String = row.col(2)?;
    Ok(ApiKeyRecord {
        id: row.col(0)?,
        name: row.col(1)?,
        // An unknown role grants the least.
        role: Role::parse(&role).unwrap_or(Role::Agent),
        key_hash: row.col(3)?,
        prefix: row.col(4)?,
        agent: row.col(5)?,
        created_ms: row.col(6)?,
        revoked_ms: row.col(7)?,
    })
}

pub(crate) const POLICY_COLUMNS: &str = "task, mode, specialist, min_confidence, agreement_threshold, \
    window_size, shadow_sample, updated_ms, updated_by";

pub(crate) fn policy<R: Cols>(row: &R) -> Result<Policy, R::Error> {
    let mode: String = row.col(1)?;
    Ok(Policy {
        task: row.col(0)?,
        // A mode this version cannot read routes nothing to a specialist.
        mode: mode.parse().unwrap_or_default(),
        specialist: row.col(2)?,
        min_confidence: row.col(3)?,
        agreement_threshold: row.col(4)?,
        window: row.col::<i64>(5)?.clamp(1, i64::from(u32::MAX)) as u32,
        shadow_sample: row.col(6)?,
        updated_ms: row.col(7)?,
        updated_by: row.col(8)?,
    })
}

pub(crate) fn agreement<R: Cols>(row: &R) -> Result<AgreementRecord, R::Error> {
    let source: String = row.col(3)?;
    Ok(AgreementRecord {
        task: row.col(0)?,
        ts_ms: row.col(1)?,
        value: row.col(2)?,
        source: AgreementSource::parse(&source).unwrap_or(AgreementSource::Shadow),
        call_id: row.col(4)?,
        specialist: row.col(5)?,
    })
}

pub(crate) fn route_event<R: Cols>(row: &R) -> Result<RouteEvent, R::Error> {
    let kind: String = row.col(3)?;
    let detail: String = row.col(4)?;
    Ok(RouteEvent {
        id: row.col(0)?,
        task: row.col(1)?,
        ts_ms: row.col(2)?,
        kind: RouteEventKind::parse(&kind).unwrap_or(RouteEventKind::Fallback),
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
    })
}

/// `task_assignments.task_id` of a call discovery saw and placed in no task (noise). Task ids
/// are never empty, and the column is NOT NULL in stores written before noise was recorded.
pub(crate) const NOISE: &str = "";

pub(crate) const TASK_COLUMNS: &str =
    "id, label, created_ms, updated_ms, calls, signature, stats, centroid";

pub(crate) fn task<R: Cols>(row: &R) -> Result<TaskRecord, R::Error> {
    let stats: String = row.col(6)?;
    let centroid: Vec<u8> = row.col(7)?;
    Ok(TaskRecord {
        id: row.col(0)?,
        label: row.col(1)?,
        created_ms: row.col(2)?,
        updated_ms: row.col(3)?,
        calls: row.col::<i64>(4)?.max(0) as u64,
        signature: row.col(5)?,
        stats: serde_json::from_str(&stats).unwrap_or(serde_json::Value::Null),
        centroid: crate::model::centroid_from_bytes(&centroid),
    })
}

pub(crate) fn dataset<R: Cols>(row: &R) -> Result<DatasetMeta, R::Error> {
    let params: String = row.col(4)?;
    let report: String = row.col(5)?;
    Ok(DatasetMeta {
        id: row.col(0)?,
        name: row.col(1)?,
        created_ms: row.col(2)?,
        examples: row.col::<i64>(3)?.max(0) as u64,
        params: serde_json::from_str(&params).unwrap_or(serde_json::Value::Null),
        report: serde_json::from_str(&report).unwrap_or(serde_json::Value::Null),
    })
}

pub(crate) fn sealed<R: Cols>(row: &R) -> Result<SealedCall, R::Error> {
    Ok(SealedCall {
        meta: meta(row)?,
        key_id: row.col(18)?,
        nonce: row.col(19)?,
        ciphertext: row.col(20)?,
    })
}
