//! De-aggregation of Kinesis Producer Library records: many user records packed into one
//! Kinesis record as `magic | AggregatedRecord (protobuf) | MD5 of the protobuf`.
//!
//! ```text
//! AggregatedRecord { repeated string partition_key_table = 1;
//!                    repeated string explicit_hash_key_table = 2;
//!                    repeated Record records = 3; }
//! Record { uint64 partition_key_index = 1; uint64 explicit_hash_key_index = 2;
//!          bytes data = 3; repeated Tag tags = 4; }
//! ```

/// The four bytes every aggregated record starts with.
pub const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// One user record out of an aggregated one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Splits a message into (field number, wire type, payload) triples; payload is the bytes of
/// a length-delimited field or the varint of a varint field.
enum Field<'a> {
    Varint(u32, u64),
    Bytes(u32, &'a [u8]),
}

fn fields(buf: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let number = u32::try_from(key >> 3).ok()?;
        match key & 7 {
            0 => out.push(Field::Varint(number, varint(buf, &mut pos)?)),
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let bytes = buf.get(pos..pos.checked_add(len)?)?;
                pos += len;
                out.push(Field::Bytes(number, bytes));
            }
            1 => pos = pos.checked_add(8)?,
            5 => pos = pos.checked_add(4)?,
            _ => return None,
        }
    }
    (pos == buf.len()).then_some(out)
}

/// The user records of a KPL-aggregated record, or `None` if `data` is not one (no magic, a
/// checksum that does not match, or a message that does not parse): then it is a plain record.
pub fn deaggregate(data: &[u8]) -> Option<Vec<UserRecord>> {
    use md5::Digest;
    let body = data.strip_prefix(&KPL_MAGIC)?;
    if body.len() < 16 {
        return None;
    }
    let (message, checksum) = body.split_at(body.len() - 16);
    if md5::Md5::digest(message).as_slice() != checksum {
        return None;
    }
    let mut keys = Vec::new();
    let mut records = Vec::new();
    for field in fields(message)? {
        match field {
            Field::Bytes(1, key) => keys.push(String::from_utf8(key.to_vec()).ok()?),
            Field::Bytes(3, record) => records.push(record),
            _ => {}
        }
    }
    records
        .into_iter()
        .map(|r| {
            let mut key_index = None;
            let mut data = None;
            for field in fields(r)? {
                match field {
                    Field::Varint(1, i) => key_index = Some(usize::try_from(i).ok()?),
                    Field::Bytes(3, d) => data = Some(d.to_vec()),
                    _ => {}
                }
            }
            Some(UserRecord {
                partition_key: keys.get(key_index?)?.clone(),
                data: data.unwrap_or_default(),
            })
        })
        .collect()
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, field << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Packs `(partition key, data)` pairs into one record the way the KPL does (the inverse of
/// [`deaggregate`]).
pub fn aggregate(records: &[(&str, &[u8])]) -> Vec<u8> {
    use md5::Digest;
    let mut keys: Vec<&str> = Vec::new();
    let mut message = Vec::new();
    let mut bodies = Vec::new();
    for (key, data) in records {
        let index = keys.iter().position(|k| k == key).unwrap_or_else(|| {
            keys.push(key);
            keys.len() - 1
        });
        let mut r = Vec::new();
        put_varint(&mut r, 1 << 3);
        put_varint(&mut r, index as u64);
        put_bytes(&mut r, 3, data);
        bodies.push(r);
    }
    for k in &keys {
        put_bytes(&mut message, 1, k.as_bytes());
    }
    for b in &bodies {
        put_bytes(&mut message, 3, b);
    }
    let mut out = KPL_MAGIC.to_vec();
    out.extend_from_slice(&message);
    out.extend_from_slice(&md5::Md5::digest(&message));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_records_come_apart_and_plain_ones_do_not() {
        let blob = aggregate(&[("a", b"one"), ("b", b"two"), ("a", b"three")]);
        let records = deaggregate(&blob).expect("aggregated");
        let got: Vec<(&str, &[u8])> = records
            .iter()
            .map(|r| (r.partition_key.as_str(), r.data.as_slice()))
            .collect();
        assert_eq!(got, [("a", &b"one"[..]), ("b", b"two"), ("a", b"three")]);
        assert_eq!(deaggregate(b"{\"plain\": true}"), None);
        // A bad checksum: a plain record that happens to start with the magic.
        let mut broken = blob.clone();
        let last = broken.len() - 1;
        broken[last] ^= 1;
        assert_eq!(deaggregate(&broken), None);
        // Truncated: not parseable either.
        assert_eq!(deaggregate(&blob[..6]), None);
    }
}
