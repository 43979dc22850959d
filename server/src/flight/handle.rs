//! What a Flight SQL client holds between calls: prepared-statement handles and tickets.
//!
//! They carry the statement itself, and bound parameters as Arrow IPC, so they depend on no
//! server memory: a handle outlives a restart and works on every tarn sharing the warehouse,
//! and a client that never closes one leaks nothing. They hold only what the client could send
//! as SQL anyway, so they need no signature.

use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tonic::Status;

/// Every handle starts with this, so that anything else is told apart at once.
const MAGIC: &[u8] = b"tarn-flight-1:";
/// Bound parameters a handle carries at most (Arrow IPC bytes).
pub(crate) const MAX_PARAMS_BYTES: usize = 1 << 20;

/// A statement, with its parameters once bound, and (in a ticket) the id of one execution.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Handle {
    pub(crate) sql: String,
    /// Arrow IPC stream of the bound parameter rows, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params: Option<String>,
    /// Set in tickets: what `CancelFlightInfo` names and the running-query list shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) query_id: Option<uuid::Uuid>,
    /// Set in tickets of commands (DDL, inserts), which run at `GetFlightInfo`: their result,
    /// Arrow IPC, base64. `DoGet` returns it without running anything again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<String>,
}

impl Handle {
    pub(crate) fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            ..Self::default()
        }
    }

    pub(crate) fn encode(&self) -> Bytes {
        let mut out = MAGIC.to_vec();
        // A struct of strings always serializes.
        out.extend(serde_json::to_vec(self).unwrap_or_default());
        out.into()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Status> {
        let unknown = || {
            Status::invalid_argument(
                "unknown prepared statement handle: it was not made by this server",
            )
        };
        let body = bytes.strip_prefix(MAGIC).ok_or_else(unknown)?;
        serde_json::from_slice(body).map_err(|_| unknown())
    }

    /// Binds `batches` (one row per execution), replacing any earlier binding.
    pub(crate) fn with_params(mut self, batches: &[RecordBatch]) -> Result<Self, Status> {
        self.params = match batches.first() {
            None => None,
            Some(first) => Some(encode_ipc(&first.schema(), batches, "parameters")?),
        };
        Ok(self)
    }

    /// The bound parameter rows; empty when none are bound.
    pub(crate) fn params(&self) -> Result<Vec<RecordBatch>, Status> {
        match &self.params {
            None => Ok(Vec::new()),
            Some(encoded) => Ok(decode_ipc(encoded, "bound parameters")?.1),
        }
    }

    /// Records a command's result, which `DoGet` then returns.
    pub(crate) fn with_result(
        mut self,
        schema: &Schema,
        batches: &[RecordBatch],
    ) -> Result<Self, Status> {
        self.result = Some(encode_ipc(schema, batches, "the command's result")?);
        Ok(self)
    }

    /// A command's result, if this ticket is for one that has run.
    pub(crate) fn result(&self) -> Result<Option<(SchemaRef, Vec<RecordBatch>)>, Status> {
        self.result
            .as_ref()
            .map(|encoded| decode_ipc(encoded, "the command's result"))
            .transpose()
    }
}

fn encode_ipc(schema: &Schema, batches: &[RecordBatch], what: &str) -> Result<String, Status> {
    let mut buffer = Vec::new();
    let written = (|| {
        let mut writer = StreamWriter::try_new(&mut buffer, schema)?;
        for batch in batches {
            writer.write(batch)?;
        }
        writer.finish()
    })();
    written.map_err(|e| Status::invalid_argument(format!("{what}: {e}")))?;
    if buffer.len() > MAX_PARAMS_BYTES {
        return Err(Status::invalid_argument(format!(
            "{what}: {} bytes; a handle carries at most {MAX_PARAMS_BYTES}",
            buffer.len()
        )));
    }
    Ok(STANDARD.encode(buffer))
}

fn decode_ipc(encoded: &str, what: &str) -> Result<(SchemaRef, Vec<RecordBatch>), Status> {
    let bad = |e: String| Status::invalid_argument(format!("{what}: {e}"));
    let bytes = STANDARD.decode(encoded).map_err(|e| bad(e.to_string()))?;
    let reader = StreamReader::try_new(Cursor::new(bytes), None).map_err(|e| bad(e.to_string()))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    Ok((schema, batches))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};

    use super::*;

    #[test]
    fn round_trips_with_parameters() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Int64, true),
            Field::new("$2", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["a", "b"])),
            ],
        )
        .expect("batch");
        let handle = Handle::new("SELECT $1, $2")
            .with_params(std::slice::from_ref(&batch))
            .expect("bind");
        let decoded = Handle::decode(&handle.encode()).expect("decode");
        assert_eq!(decoded.sql, "SELECT $1, $2");
        assert_eq!(decoded.params().expect("params"), vec![batch.clone()]);
        let done = Handle::new("INSERT …")
            .with_result(&batch.schema(), std::slice::from_ref(&batch))
            .expect("result");
        let (schema, batches) = Handle::decode(&done.encode())
            .expect("decode")
            .result()
            .expect("result")
            .expect("some");
        assert_eq!((schema, batches), (batch.schema(), vec![batch]));
    }

    #[test]
    fn foreign_bytes_are_an_unknown_handle() {
        for bytes in [&b""[..], b"garbage", b"tarn-flight-1:{not json"] {
            let err = Handle::decode(bytes).expect_err("must fail");
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(err.message().contains("unknown prepared statement handle"));
        }
    }
}
