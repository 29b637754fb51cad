//! The JSON body extractor and response of every route: axum's `Json`,
//! whose rejections (malformed JSON, a missing field, a wrong content type,
//! a body over its limit) answer with berth's error document
//! (`{"code","message"}`) through [`ApiErrorResponse`] like every other
//! error, instead of axum's plain-text 4xx; and [`views`], what an answer shows
//! of stored records.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_model::{ApiError, ErrorCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiErrorResponse;

/// A JSON request or response body.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiErrorResponse;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(ApiErrorResponse(rejected(&rejection))),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// What the API shows of stored `records`: each one's view (`berth_model`).
pub(crate) fn views<R, V: From<R>>(records: Vec<R>) -> Vec<V> {
    records.into_iter().map(V::from).collect()
}

/// The error a rejected body answers with: 413 for a body over the route's
/// limit, else 400 naming what was wrong.
fn rejected(rejection: &JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            ErrorCode::PayloadTooLarge,
            "the request body is larger than this route accepts",
        );
    }
    let reason = match rejection {
        JsonRejection::MissingJsonContentType(_) => "send it with Content-Type: application/json".to_string(),
        other => other.body_text(),
    };
    ApiError::invalid(format!("invalid request body: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[derive(Debug, serde::Deserialize)]
    struct Named {
        #[allow(dead_code)]
        name: String,
    }

    async fn extract(content_type: Option<&str>, body: &'static str) -> Result<Json<Named>, ApiError> {
        let mut req = axum::http::Request::builder().method("POST").uri("/");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let req = req.body(Body::from(body)).expect("request");
        Json::<Named>::from_request(req, &()).await.map_err(|e| e.0)
    }

    #[tokio::test]
    async fn rejections_are_api_errors() {
        assert!(extract(Some("application/json"), r#"{"name":"a"}"#).await.is_ok());
        let e = extract(Some("application/json"), "{").await.err().expect("malformed");
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.starts_with("invalid request body: "), "{}", e.message);
        let e = extract(Some("application/json"), "{}")
            .await
            .err()
            .expect("missing field");
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.contains("name"), "{}", e.message);
        let e = extract(None, r#"{"name":"a"}"#).await.err().expect("no content type");
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.contains("Content-Type: application/json"), "{}", e.message);
    }
}
