//! Errors as `application/problem+json` (RFC 9457), each with a `urn:raccordo:problem:`
//! type, and a pointer per invalid event where there is one.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One item of `errors`.
#[derive(Debug, Clone, Serialize)]
pub struct ProblemItem {
    /// A JSON pointer into the request body (events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// A spreadsheet row number, the header being row 1 (CSV).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
    /// The CSV column, where one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub detail: String,
}

/// One error response.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemItem>,
    #[serde(skip)]
    retry_after: Option<Duration>,
}

impl Problem {
    fn new(status: StatusCode, slug: &str, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:raccordo:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    pub fn invalid_event(detail: impl Into<String>, errors: Vec<ProblemItem>) -> Self {
        Self {
            errors,
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid-event",
                "Invalid event",
                detail,
            )
        }
    }

    pub fn invalid_csv(detail: impl Into<String>, errors: Vec<ProblemItem>) -> Self {
        Self {
            errors,
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid-csv",
                "Invalid CSV file",
                detail,
            )
        }
    }

    pub fn invalid_cursor(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-cursor",
            "Invalid cursor",
            detail,
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            "send Authorization: Bearer <token>, a live token made by `raccordo publishers token add USER`",
        )
    }

    pub fn forbidden(detail: impl Into<String>, errors: Vec<ProblemItem>) -> Self {
        Self {
            errors,
            ..Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
        }
    }

    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Request too large",
            detail,
        )
    }

    pub fn body_timeout(after: Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            "Request body too slow",
            format!(
                "the body did not arrive within {} s; nothing was published",
                after.as_secs()
            ),
        )
    }

    pub fn unsupported(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            detail,
        )
    }

    pub fn rate_limited(user: &str, rate: f64, wait: Duration) -> Self {
        Self {
            retry_after: Some(wait),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many events",
                format!(
                    "publisher {user:?} may post {rate} events per second; retry after the time in Retry-After"
                ),
            )
        }
    }

    pub fn broker_unavailable() -> Self {
        Self {
            retry_after: Some(Duration::from_secs(5)),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "broker-unavailable",
                "Broker unavailable",
                "the broker did not confirm the events, so none is acknowledged: send the same events again (their ids make a resend harmless)",
            )
        }
    }

    pub fn database_unavailable() -> Self {
        Self {
            retry_after: Some(Duration::from_secs(5)),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database-unavailable",
                "Database unavailable",
                "the hub's database did not answer; nothing was published: try again",
            )
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"raccordo\""),
            );
        }
        if let Some(wait) = self.retry_after {
            // Whole seconds, rounded up: `Retry-After: 0` would invite a busy loop.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}
