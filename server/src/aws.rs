//! AWS JSON protocol plumbing shared by the AWS-compatible APIs on the HTTP port (Glue,
//! Kinesis): awsJson1_1 answers and `{"__type", "message"}` errors.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The account id tarn answers with (Glue's `CatalogId`, the account in ARNs).
pub(crate) const ACCOUNT_ID: &str = "000000000000";

/// An AWS-style error.
pub(crate) struct AwsError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl AwsError {
    pub(crate) fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new("EntityNotFoundException", message)
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidInputException", message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "InternalServiceException",
            message: message.into(),
        }
    }
}

impl AwsError {
    /// The error in the request's own encoding: CBOR for CBOR requests, JSON otherwise.
    pub(crate) fn into_response_as(self, cbor: bool) -> Response {
        if !cbor {
            return self.into_response();
        }
        let body = crate::cbor::encode(&json!({"__type": self.kind, "message": self.message}));
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::cbor::CONTENT_TYPE),
        );
        if let Ok(v) = HeaderValue::from_str(self.kind) {
            headers.insert("x-amzn-errortype", v);
        }
        response
    }
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        let body = json!({"__type": self.kind, "message": self.message}).to_string();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        if let Ok(v) = HeaderValue::from_str(self.kind) {
            headers.insert("x-amzn-errortype", v);
        }
        response
    }
}

/// A successful answer in CBOR.
pub(crate) fn aws_cbor(value: &Value) -> Response {
    let mut response = (StatusCode::OK, crate::cbor::encode(value)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::cbor::CONTENT_TYPE),
    );
    response
}

/// A successful awsJson1_1 answer.
pub(crate) fn aws_json(value: Value) -> Response {
    let mut response = (StatusCode::OK, value.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
}
