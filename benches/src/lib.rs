//! tarn's benchmarks: the harness that runs tarn side by side with DuckDB and stock DataFusion
//! (see BENCHMARKS.md), and the helpers the stream benches share.

use std::time::Duration;

/// Records per put in the stream benches (Kinesis' PutRecords maximum).
pub const BATCH: usize = 500;
/// Bytes per record in the stream benches.
pub const RECORD: usize = 1024;

/// A JSON record of exactly [`RECORD`] bytes: `{"producer", "i", "payload"}`.
pub fn json_record(producer: usize, i: usize) -> Vec<u8> {
    let mut s = format!("{{\"producer\":{producer},\"i\":{i},\"payload\":\"");
    while s.len() < RECORD - 2 {
        s.push('x');
    }
    s.push_str("\"}");
    s.into_bytes()
}

/// The `p` quantile (0 to 1) of `sorted`; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
