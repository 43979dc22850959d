//! The CBOR form of the AWS JSON APIs (`Content-Type: application/x-amz-cbor-1.1`, the AWS
//! Java SDK's default for Kinesis): the same shapes as JSON, with blobs as byte strings and
//! timestamps as integer epoch milliseconds. Requests are turned into the JSON values the
//! handlers take (blobs base64-encoded, timestamps in seconds) and answers back into CBOR.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ciborium::value::{Integer, Value as Cbor};
use serde_json::{Map, Number, Value};

pub(crate) const CONTENT_TYPE: &str = "application/x-amz-cbor-1.1";

/// Members that hold blobs.
const BLOB_KEYS: [&str; 1] = ["Data"];
/// Members that hold timestamps.
const TIMESTAMP_KEYS: [&str; 5] = [
    "ApproximateArrivalTimestamp",
    "StreamCreationTimestamp",
    "Timestamp",
    "CreateTimestamp",
    "DeliveryStartTimestamp",
];

/// Whether the request's body is CBOR.
pub(crate) fn is_cbor(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(CONTENT_TYPE))
}

/// A CBOR request body as the JSON value the handlers take. An empty body is `{}`.
pub(crate) fn decode(body: &[u8]) -> Result<Value, String> {
    if body.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let value: Cbor =
        ciborium::de::from_reader(body).map_err(|e| format!("the body is not CBOR: {e}"))?;
    match to_json(value, None)? {
        v @ Value::Object(_) => Ok(v),
        _ => Err("the body is not a CBOR map".to_owned()),
    }
}

fn integer(i: Integer) -> Result<Number, String> {
    let wide = i128::from(i);
    if let Ok(n) = i64::try_from(wide) {
        Ok(Number::from(n))
    } else if let Ok(n) = u64::try_from(wide) {
        Ok(Number::from(n))
    } else {
        Err(format!("the integer {wide} is out of range"))
    }
}

fn seconds(value: f64) -> Result<Value, String> {
    Number::from_f64(value)
        .map(Value::Number)
        .ok_or_else(|| "a timestamp is not a finite number".to_owned())
}

fn to_json(value: Cbor, key: Option<&str>) -> Result<Value, String> {
    let is_timestamp = key.is_some_and(|k| TIMESTAMP_KEYS.contains(&k));
    Ok(match value {
        Cbor::Null => Value::Null,
        Cbor::Bool(b) => Value::Bool(b),
        // Timestamps come as epoch milliseconds; the handlers take seconds, as in JSON.
        Cbor::Integer(i) if is_timestamp => seconds(i128::from(i) as f64 / 1000.0)?,
        Cbor::Integer(i) => Value::Number(integer(i)?),
        Cbor::Float(f) if is_timestamp => seconds(f / 1000.0)?,
        Cbor::Float(f) => Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| "NaN and infinities are not numbers here".to_owned())?,
        Cbor::Text(s) => Value::String(s),
        Cbor::Bytes(b) => Value::String(STANDARD.encode(b)),
        // Tag 1 (epoch-based date/time) holds seconds.
        Cbor::Tag(1, inner) => match *inner {
            Cbor::Integer(i) => seconds(i128::from(i) as f64)?,
            Cbor::Float(f) => seconds(f)?,
            _ => return Err("a tag-1 timestamp must hold a number".to_owned()),
        },
        Cbor::Tag(_, inner) => to_json(*inner, key)?,
        Cbor::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| to_json(v, None))
                .collect::<Result<_, _>>()?,
        ),
        Cbor::Map(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                let Cbor::Text(k) = k else {
                    return Err("map keys must be text".to_owned());
                };
                let v = to_json(v, Some(&k))?;
                map.insert(k, v);
            }
            Value::Object(map)
        }
        _ => return Err("unsupported CBOR item".to_owned()),
    })
}

fn to_cbor(value: &Value, key: Option<&str>) -> Cbor {
    match value {
        Value::Null => Cbor::Null,
        Value::Bool(b) => Cbor::Bool(*b),
        Value::Number(n) if key.is_some_and(|k| TIMESTAMP_KEYS.contains(&k)) => {
            let millis = (n.as_f64().unwrap_or_default() * 1000.0).round() as i64;
            Cbor::Integer(millis.into())
        }
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cbor::Integer(i.into()),
            (None, Some(u)) => Cbor::Integer(u.into()),
            _ => Cbor::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) if key.is_some_and(|k| BLOB_KEYS.contains(&k)) => match STANDARD.decode(s)
        {
            Ok(bytes) => Cbor::Bytes(bytes),
            Err(_) => Cbor::Text(s.clone()),
        },
        Value::String(s) => Cbor::Text(s.clone()),
        Value::Array(items) => Cbor::Array(items.iter().map(|v| to_cbor(v, None)).collect()),
        Value::Object(map) => Cbor::Map(
            map.iter()
                .map(|(k, v)| (Cbor::Text(k.clone()), to_cbor(v, Some(k))))
                .collect(),
        ),
    }
}

/// An answer (or error body) in CBOR.
pub(crate) fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = ciborium::ser::into_writer(&to_cbor(value, None), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn blobs_and_timestamps_cross_between_cbor_and_json() {
        let request = Cbor::Map(vec![
            (Cbor::Text("StreamName".into()), Cbor::Text("s".into())),
            (Cbor::Text("Data".into()), Cbor::Bytes(vec![0, 1, 255])),
            (
                Cbor::Text("Timestamp".into()),
                Cbor::Integer(1_700_000_000_500i64.into()),
            ),
        ]);
        let mut body = Vec::new();
        ciborium::ser::into_writer(&request, &mut body).expect("encode");
        let json = decode(&body).expect("decode");
        assert_eq!(json["Data"], json!(STANDARD.encode([0, 1, 255])));
        assert_eq!(json["Timestamp"], json!(1_700_000_000.5));
        let answer = json!({"Records": [{"Data": STANDARD.encode(b"hi"), "ApproximateArrivalTimestamp": 1.5, "SequenceNumber": "7"}]});
        let back: Cbor = ciborium::de::from_reader(encode(&answer).as_slice()).expect("cbor");
        let record = &back.as_map().expect("map")[0]
            .1
            .as_array()
            .expect("records")[0];
        let fields = record.as_map().expect("record");
        let get = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key.as_text() == Some(k))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("Data"), Some(Cbor::Bytes(b"hi".to_vec())));
        assert_eq!(
            get("ApproximateArrivalTimestamp"),
            Some(Cbor::Integer(1500.into()))
        );
        assert_eq!(get("SequenceNumber"), Some(Cbor::Text("7".into())));
        assert!(decode(b"\xff\x00").is_err());
        assert!(
            decode(&{
                let mut b = Vec::new();
                ciborium::ser::into_writer(&Cbor::Integer(3.into()), &mut b).expect("encode");
                b
            })
            .is_err()
        );
    }
}
