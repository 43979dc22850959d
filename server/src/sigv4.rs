//! AWS Signature Version 4 checks for the AWS-compatible APIs on the HTTP port. Off when no
//! keys are configured (the embedded default); on when `[http.aws_credentials]` lists any.
//!
//! The canonical request is rebuilt from the request as received (method, path, query, the
//! signed headers, the SHA-256 of the body) and signed with the configured secret of the
//! request's access key; the signature must match and the request be at most 15 minutes old.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Method, Uri};
use chrono::{NaiveDateTime, Utc};
use ring::{digest, hmac};
use tarn_catalog::Secret;

use crate::aws::AwsError;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const MAX_SKEW_SECS: i64 = 15 * 60;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn sign(key: &[u8], data: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
        .as_ref()
        .to_vec()
}

/// The `Credential=…, SignedHeaders=…, Signature=…` parts of an `Authorization` header.
struct Authorization<'a> {
    access_key: &'a str,
    scope: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix(ALGORITHM)?.trim();
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let credential = credential?;
    let (access_key, scope) = credential.split_once('/')?;
    let mut scope_parts = scope.split('/');
    let date = scope_parts.next()?;
    let region = scope_parts.next()?;
    let service = scope_parts.next()?;
    (scope_parts.next()? == "aws4_request").then_some(())?;
    Some(Authorization {
        access_key,
        scope,
        date,
        region,
        service,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    })
}

/// Checks the request's signature against `keys` (access key id → secret). `Ok` when `keys`
/// is empty: signing is then not required.
pub(crate) fn verify(
    keys: &BTreeMap<String, Secret>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), AwsError> {
    if keys.is_empty() {
        return Ok(());
    }
    let missing = || {
        AwsError::new(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let auth = header("authorization").ok_or_else(missing)?;
    let auth = parse_authorization(auth).ok_or_else(|| {
        AwsError::new(
            "IncompleteSignatureException",
            "Authorization header requires Credential, SignedHeaders and Signature (AWS4-HMAC-SHA256)",
        )
    })?;
    let secret = keys.get(auth.access_key).ok_or_else(|| {
        AwsError::new(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    })?;
    let amz_date = header("x-amz-date").ok_or_else(|| {
        AwsError::new(
            "IncompleteSignatureException",
            "X-Amz-Date header is missing",
        )
    })?;
    let when = NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| AwsError::new("IncompleteSignatureException", "X-Amz-Date is malformed"))?
        .and_utc();
    if (Utc::now() - when).num_seconds().abs() > MAX_SKEW_SECS || !amz_date.starts_with(auth.date) {
        return Err(AwsError::new(
            "InvalidSignatureException",
            format!(
                "Signature expired or not yet valid: {amz_date} is more than 15 minutes from the server's time"
            ),
        ));
    }
    if !auth.signed_headers.contains(&"host") {
        return Err(AwsError::new(
            "InvalidSignatureException",
            "the host header must be signed",
        ));
    }
    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        let values: Vec<&str> = headers
            .get_all(*name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = match header("x-amz-content-sha256") {
        Some(h) if h != "UNSIGNED-PAYLOAD" => h.to_owned(),
        _ => hex(digest::digest(&digest::SHA256, body).as_ref()),
    };
    let mut query: Vec<(&str, &str)> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    query.sort_unstable();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        method.as_str(),
        uri.path(),
        canonical_query,
        canonical_headers,
        auth.signed_headers.join(";"),
        payload_hash
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        auth.scope,
        hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref())
    );
    let k_date = sign(format!("AWS4{}", secret.expose()).as_bytes(), auth.date);
    let k_region = sign(&k_date, auth.region);
    let k_service = sign(&k_region, auth.service);
    let k_signing = sign(&k_service, "aws4_request");
    // ring's verify compares in constant time.
    let provided = unhex(auth.signature).unwrap_or_default();
    let matches = hmac::verify(
        &hmac::Key::new(hmac::HMAC_SHA256, &k_signing),
        string_to_sign.as_bytes(),
        &provided,
    )
    .is_ok();
    if !matches {
        return Err(AwsError::new(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from AWS's SigV4 documentation (GET with the `iam` service), re-dated to now
    /// is not possible; instead a request signed here is checked, then tampered with.
    #[test]
    fn a_signed_request_verifies_and_a_changed_one_does_not() {
        let keys: BTreeMap<String, Secret> =
            [("AKIDEXAMPLE".to_owned(), Secret::new("secret"))].into();
        let now = Utc::now();
        let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
        let date = now.format("%Y%m%d").to_string();
        let body = br#"{"StreamName":"s"}"#;
        let scope = format!("{date}/us-east-1/kinesis/aws4_request");
        let canonical = format!(
            "POST\n/\n\nhost:localhost\nx-amz-date:{amz_date}\n\nhost;x-amz-date\n{}",
            hex(digest::digest(&digest::SHA256, body).as_ref())
        );
        let to_sign = format!(
            "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
            hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
        );
        let k = sign(
            &sign(&sign(&sign(b"AWS4secret", &date), "us-east-1"), "kinesis"),
            "aws4_request",
        );
        let signature = hex(&sign(&k, &to_sign));
        let mut headers = HeaderMap::new();
        headers.insert("host", "localhost".parse().expect("h"));
        headers.insert("x-amz-date", amz_date.parse().expect("h"));
        headers.insert(
            "authorization",
            format!("{ALGORITHM} Credential=AKIDEXAMPLE/{scope}, SignedHeaders=host;x-amz-date, Signature={signature}")
                .parse()
                .expect("h"),
        );
        let uri: Uri = "/".parse().expect("uri");
        assert!(verify(&keys, &Method::POST, &uri, &headers, body).is_ok());
        assert!(verify(&keys, &Method::POST, &uri, &headers, b"{}").is_err());
        assert!(
            verify(
                &BTreeMap::new(),
                &Method::POST,
                &uri,
                &HeaderMap::new(),
                b""
            )
            .is_ok()
        );
        assert!(verify(&keys, &Method::POST, &uri, &HeaderMap::new(), body).is_err());
    }
}
