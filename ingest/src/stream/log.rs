//! One stream's write-ahead log: segment files of checksummed entries, appended by one writer
//! task that fsyncs once per batch of concurrent requests (group commit).
//!
//! ```text
//! <dir>/<segment:020>.log   entries, each: len u32 | crc32 u32 | body
//! body: shard u32 | sequence u64 | arrival_ms i64 | key_len u16 | key | data
//! ```
//! All integers little-endian. Recovery reads every segment in order; an entry cut short or
//! failing its checksum at the end of the last segment is a torn write (never acknowledged) and
//! is truncated away; anywhere else it is corruption and opening fails naming the file.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::StreamError;

const HEADER: usize = 8;
const BODY_FIXED: usize = 4 + 8 + 8 + 2;

/// Where one record sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) sequence: u64,
    pub(crate) arrival_ms: i64,
    pub(crate) segment: u64,
    /// Offset of the entry's header in the segment.
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

/// A record to append.
#[derive(Debug, Clone)]
pub(crate) struct NewRecord {
    pub(crate) shard: u32,
    pub(crate) key: String,
    pub(crate) data: Vec<u8>,
}

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub sequence: u64,
    pub arrival_ms: i64,
    pub partition_key: String,
    pub data: Vec<u8>,
}

pub(crate) fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.log"))
}

fn io(path: &Path, source: std::io::Error) -> StreamError {
    StreamError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn encode(record: &NewRecord, sequence: u64, arrival_ms: i64, out: &mut Vec<u8>) {
    let key = record.key.as_bytes();
    let body_len = BODY_FIXED + key.len() + record.data.len();
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&record.shard.to_le_bytes());
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&arrival_ms.to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&record.data);
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes one body (after its checksum was checked).
fn decode(body: &[u8]) -> Option<(u32, StoredRecord)> {
    if body.len() < BODY_FIXED {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes(body[i..i + 4].try_into().unwrap_or_default());
    let u64_at = |i: usize| u64::from_le_bytes(body[i..i + 8].try_into().unwrap_or_default());
    let shard = u32_at(0);
    let sequence = u64_at(4);
    let arrival_ms = u64_at(12) as i64;
    let key_len = u16::from_le_bytes([body[20], body[21]]) as usize;
    let key = body.get(BODY_FIXED..BODY_FIXED + key_len)?;
    let data = body.get(BODY_FIXED + key_len..)?;
    Some((
        shard,
        StoredRecord {
            sequence,
            arrival_ms,
            partition_key: String::from_utf8_lossy(key).into_owned(),
            data: data.to_vec(),
        },
    ))
}

/// Every entry of one segment, by shard. Truncates a torn tail when `last` (the segment being
/// appended to); a bad entry elsewhere is corruption.
pub(crate) fn recover_segment(
    dir: &Path,
    segment: u64,
    last: bool,
) -> Result<(Vec<(u32, Entry)>, u64), StreamError> {
    let path = segment_path(dir, segment);
    let mut file = OpenOptions::new()
        .read(true)
        .write(last)
        .open(&path)
        .map_err(|e| io(&path, e))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| io(&path, e))?;
    let mut entries = Vec::new();
    let mut pos = 0usize;
    let good_end = loop {
        if pos == bytes.len() {
            break pos;
        }
        let bad = |reason: &str| StreamError::Corrupt {
            path: path.display().to_string(),
            reason: format!("{reason} at offset {pos}"),
        };
        let Some(header) = bytes.get(pos..pos + HEADER) else {
            if last {
                break pos;
            }
            return Err(bad("a cut-short entry header"));
        };
        let len = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().unwrap_or_default());
        let body = bytes.get(pos + HEADER..pos + HEADER + len);
        let valid = body.filter(|b| crc32fast::hash(b) == crc).and_then(decode);
        match valid {
            Some((shard, record)) => {
                entries.push((
                    shard,
                    Entry {
                        sequence: record.sequence,
                        arrival_ms: record.arrival_ms,
                        segment,
                        offset: pos as u64,
                        len: len as u32,
                    },
                ));
                pos += HEADER + len;
            }
            None if last => break pos,
            None => return Err(bad("an entry that fails its checksum")),
        }
    };
    if last && good_end < bytes.len() {
        tracing::warn!(path = %path.display(), kept = good_end, dropped = bytes.len() - good_end,
            "stream log: truncating a torn write at the end");
        file.set_len(good_end as u64).map_err(|e| io(&path, e))?;
        file.sync_all().map_err(|e| io(&path, e))?;
    }
    Ok((entries, good_end as u64))
}

/// Reads one record back.
pub(crate) fn read_entry(dir: &Path, entry: &Entry) -> Result<StoredRecord, StreamError> {
    let path = segment_path(dir, entry.segment);
    let file = File::open(&path).map_err(|e| io(&path, e))?;
    let mut buf = vec![0u8; HEADER + entry.len as usize];
    file.read_exact_at(&mut buf, entry.offset)
        .map_err(|e| io(&path, e))?;
    decode(&buf[HEADER..])
        .map(|(_, r)| r)
        .ok_or_else(|| StreamError::Corrupt {
            path: path.display().to_string(),
            reason: format!("unreadable entry at offset {}", entry.offset),
        })
}

/// The segment being appended to.
pub(crate) struct Appender {
    dir: PathBuf,
    segment: u64,
    file: File,
    len: u64,
    segment_bytes: u64,
}

impl Appender {
    pub(crate) fn open(
        dir: &Path,
        segment: u64,
        len: u64,
        segment_bytes: u64,
    ) -> Result<Self, StreamError> {
        let path = segment_path(dir, segment);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        file.seek(SeekFrom::End(0)).map_err(|e| io(&path, e))?;
        Ok(Self {
            dir: dir.to_owned(),
            segment,
            file,
            len,
            segment_bytes,
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn segment(&self) -> u64 {
        self.segment
    }

    /// Appends `records` (sequence numbers from `first_sequence` on) and fsyncs. Returns each
    /// record's entry. Nothing is acknowledged unless this returns `Ok`.
    pub(crate) fn append(
        &mut self,
        records: &[NewRecord],
        first_sequence: u64,
        arrival_ms: i64,
    ) -> Result<Vec<(u32, Entry)>, StreamError> {
        if self.len >= self.segment_bytes {
            self.roll()?;
        }
        let path = segment_path(&self.dir, self.segment);
        let mut bytes = Vec::new();
        let mut entries = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            let offset = self.len + bytes.len() as u64;
            let sequence = first_sequence + i as u64;
            encode(record, sequence, arrival_ms, &mut bytes);
            let len = (self.len + bytes.len() as u64 - offset) as u32 - HEADER as u32;
            entries.push((
                record.shard,
                Entry {
                    sequence,
                    arrival_ms,
                    segment: self.segment,
                    offset,
                    len,
                },
            ));
        }
        let mut w = BufWriter::new(&self.file);
        let written = w.write_all(&bytes).and_then(|()| w.flush());
        drop(w);
        if let Err(e) = written.and_then(|()| self.file.sync_data()) {
            // The file may hold part of the batch: cut it back so nothing unacknowledged is
            // ever read as if it were.
            let _ = self.file.set_len(self.len);
            return Err(io(&path, e));
        }
        self.len += bytes.len() as u64;
        Ok(entries)
    }

    fn roll(&mut self) -> Result<(), StreamError> {
        let next = self.segment + 1;
        let fresh = Self::open(&self.dir, next, 0, self.segment_bytes)?;
        // The new file's name must survive a crash before anything in it is acknowledged.
        let dir = File::open(&self.dir).map_err(|e| io(&self.dir, e))?;
        dir.sync_all().map_err(|e| io(&self.dir, e))?;
        *self = fresh;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(shard: u32, key: &str, data: &[u8]) -> NewRecord {
        NewRecord {
            shard,
            key: key.into(),
            data: data.to_vec(),
        }
    }

    #[test]
    fn entries_round_trip_and_a_torn_tail_is_cut() -> Result<(), StreamError> {
        let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
        let mut a = Appender::open(dir.path(), 0, 0, 1 << 20)?;
        let written = a.append(&[rec(0, "k1", b"one"), rec(1, "k2", b"two")], 10, 1000)?;
        assert_eq!(written.len(), 2);
        let back = read_entry(dir.path(), &written[1].1)?;
        assert_eq!(back.data, b"two");
        assert_eq!(back.partition_key, "k2");
        assert_eq!(back.sequence, 11);
        // A torn write: half an entry at the end.
        let path = segment_path(dir.path(), 0);
        let full = std::fs::metadata(&path).map_err(|e| io(&path, e))?.len();
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        f.write_all(&[9, 0, 0, 0, 1, 2]).map_err(|e| io(&path, e))?;
        let (entries, end) = recover_segment(dir.path(), 0, true)?;
        assert_eq!(entries.len(), 2);
        assert_eq!(end, full);
        assert_eq!(
            std::fs::metadata(&path).map_err(|e| io(&path, e))?.len(),
            full
        );
        Ok(())
    }

    #[test]
    fn corruption_before_the_end_is_an_error() -> Result<(), StreamError> {
        let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
        let mut a = Appender::open(dir.path(), 0, 0, 1 << 20)?;
        a.append(&[rec(0, "k", b"aaaa"), rec(0, "k", b"bbbb")], 0, 1)?;
        let path = segment_path(dir.path(), 0);
        let mut bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
        bytes[HEADER + 3] ^= 0xff;
        std::fs::write(&path, &bytes).map_err(|e| io(&path, e))?;
        // Sealed segment: corruption is an error naming the file.
        let err = recover_segment(dir.path(), 0, false).expect_err("corrupt");
        assert!(
            err.to_string().contains("00000000000000000000.log"),
            "{err}"
        );
        Ok(())
    }
}
