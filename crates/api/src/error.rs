//! Errors become responses here and nowhere else.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_model::{ApiError, ErrorCode};

pub struct ApiErrorResponse(pub ApiError);

pub fn status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiErrorResponse {
    fn into_response(self) -> Response {
        if self.0.code == ErrorCode::Internal {
            tracing::error!(message = %self.0.message, "internal error");
        }
        (status(self.0.code), axum::Json(self.0)).into_response()
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

impl From<ApiError> for ApiErrorResponse {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

pub type ApiResult<T> = Result<T, ApiErrorResponse>;
