//! Errors become responses here and nowhere else.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_model::{ApiError, ErrorCode};

pub struct ApiErrorResponse(pub ApiError);

/// How a caller authenticates to the API, as every 401 says: a personal
/// access token (`Authorization: Bearer berth_pat_...`) or a user name
/// and password (HTTP Basic; a token works as the password too).
pub const CHALLENGES: [&str; 2] = ["Bearer realm=\"berth\"", "Basic realm=\"berth\", charset=\"UTF-8\""];

/// The message of a 401 for a caller who sent no credentials.
pub const AUTHENTICATION_REQUIRED: &str = "authentication required: send a personal access token \
     (Authorization: Bearer berth_pat_...), a user name and password (HTTP Basic), a session cookie \
     or a client certificate";

/// On a 401/403 response: why, for the audit log.
#[derive(Clone)]
pub struct Denied(pub String);

pub fn status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiErrorResponse {
    fn into_response(self) -> Response {
        if self.0.code == ErrorCode::Internal {
            tracing::error!(message = %self.0.message, "internal error");
        }
        let denied = matches!(self.0.code, ErrorCode::Forbidden | ErrorCode::Unauthorized)
            .then(|| Denied(self.0.message.clone()));
        let unauthorized = self.0.code == ErrorCode::Unauthorized;
        let mut response = (status(self.0.code), axum::Json(self.0)).into_response();
        if let Some(d) = denied {
            response.extensions_mut().insert(d);
        }
        if unauthorized {
            // RFC 9110: a 401 names the schemes the caller may use.
            for challenge in CHALLENGES {
                response
                    .headers_mut()
                    .append(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            }
        }
        response
    }
}

impl From<berth_engine::Error> for ApiErrorResponse {
    fn from(e: berth_engine::Error) -> Self {
        Self(e.into())
    }
}

impl From<berth_image::Error> for ApiErrorResponse {
    fn from(e: berth_image::Error) -> Self {
        Self(ApiError::new(e.code(), e.to_string()))
    }
}

impl From<berth_auth::Error> for ApiErrorResponse {
    fn from(e: berth_auth::Error) -> Self {
        Self(ApiError::new(e.code(), e.to_string()))
    }
}

impl From<berth_engine::scan::ScanError> for ApiErrorResponse {
    fn from(e: berth_engine::scan::ScanError) -> Self {
        Self(e.into())
    }
}

impl From<ApiError> for ApiErrorResponse {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

pub type ApiResult<T> = Result<T, ApiErrorResponse>;
