//! Request body limits, in one place for every route: each route's limit
//! comes from the route table ([`crate::routes::Route::body_limit`]; 1 MiB
//! of JSON unless it says otherwise). A body declared larger is refused
//! before it is read; a JSON body is read here, up to its limit, so no
//! handler ever buffers more; a streamed body (uploads, imports) is counted
//! as the handler reads it and cut at its limit. Every refusal is
//! `413 {"code":"PAYLOAD_TOO_LARGE"}` naming the limit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_model::{ApiError, ErrorCode};
use futures_util::StreamExt;

use crate::error::ApiErrorResponse;
use crate::routes::{self, BodyLimit};

/// `n` bytes as a person reads a limit: `1 MiB`, `64 GiB`, `1000 bytes`.
pub fn human(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if n >= size && n.is_multiple_of(size) {
            return format!("{} {unit}", n / size);
        }
    }
    format!("{n} bytes")
}

fn too_large(method: &str, path: &str, limit: u64) -> Response {
    ApiErrorResponse(ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "the request body is larger than {} ({limit} bytes), the limit of {method} {path}",
            human(limit)
        ),
    ))
    .into_response()
}

pub async fn layer(req: Request, next: Next) -> Response {
    let Some(path) = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()) else {
        return next.run(req).await;
    };
    let Some(route) = routes::lookup(req.method(), &path) else {
        return next.run(req).await;
    };
    let limit = route.body_limit();
    let method = req.method().to_string();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit.bytes()) {
        return too_large(&method, &path, limit.bytes());
    }
    let (parts, body) = req.into_parts();
    match limit {
        BodyLimit::Json(max) => {
            let bytes = match axum::body::to_bytes(body, usize::try_from(max).unwrap_or(usize::MAX)).await {
                Ok(bytes) => bytes,
                Err(e) if is_length_limit(&e) => return too_large(&method, &path, max),
                Err(e) => {
                    return ApiErrorResponse(ApiError::invalid(format!("reading the request body: {e}")))
                        .into_response()
                }
            };
            next.run(Request::from_parts(parts, Body::from(bytes))).await
        }
        BodyLimit::Stream(max) => {
            let exceeded = Arc::new(AtomicBool::new(false));
            let body = capped(body, max, exceeded.clone());
            let response = next.run(Request::from_parts(parts, body)).await;
            if exceeded.load(Ordering::SeqCst) {
                // The handler saw its body fail; say why, whatever it answered.
                return too_large(&method, &path, max);
            }
            response
        }
    }
}

/// Whether `to_bytes` failed because the body passed its limit.
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// `body`, failing with an error once more than `max` bytes have passed
/// (and setting `exceeded`, so the layer answers 413).
fn capped(body: Body, max: u64, exceeded: Arc<AtomicBool>) -> Body {
    let mut seen: u64 = 0;
    let stream = body.into_data_stream().map(move |chunk| {
        let chunk: Bytes = chunk.map_err(std::io::Error::other)?;
        seen = seen.saturating_add(chunk.len() as u64);
        if seen > max {
            exceeded.store(true, Ordering::SeqCst);
            return Err(std::io::Error::other(format!(
                "the request body is larger than {}",
                human(max)
            )));
        }
        Ok(chunk)
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_people_write_them() {
        assert_eq!(human(1 << 20), "1 MiB");
        assert_eq!(human(64 << 30), "64 GiB");
        assert_eq!(human(1000), "1000 bytes");
        assert_eq!(human(1536), "1536 bytes");
    }

    /// A router with the layer over two real routes of the table: a JSON
    /// one and a streamed one, each handler reporting what it read.
    fn app() -> axum::Router {
        use axum::routing::post;
        axum::Router::new()
            .route(
                "/v1/teams",
                post(|body: Bytes| async move { format!("read {}", body.len()) }),
            )
            .route(
                "/v1/images/load",
                post(|body: Body| async move {
                    let mut stream = body.into_data_stream();
                    let mut n = 0;
                    while let Some(Ok(chunk)) = stream.next().await {
                        n += chunk.len();
                    }
                    format!("streamed {n}")
                }),
            )
            .layer(axum::middleware::from_fn(layer))
    }

    /// A body without a Content-Length (chunked), `chunks` of 64 KiB.
    fn chunked(chunks: usize) -> Body {
        let stream =
            futures_util::stream::iter((0..chunks).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 64 << 10]))));
        Body::from_stream(stream)
    }

    async fn send(uri: &str, body: Body, length: Option<u64>) -> (u16, String) {
        use tower::ServiceExt;
        let mut req = axum::http::Request::post(uri);
        if let Some(n) = length {
            req = req.header(header::CONTENT_LENGTH, n);
        }
        let response = app().oneshot(req.body(body).expect("request")).await.expect("response");
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn bodies_are_cut_at_the_routes_limit() {
        // Within the limit, chunked: the handler reads it all.
        assert_eq!(
            send("/v1/teams", chunked(15), None).await,
            (200, format!("read {}", 15 * (64 << 10)))
        );
        // Over it, chunked: 413 naming the limit; the handler never ran.
        let (status, text) = send("/v1/teams", chunked(17), None).await;
        assert_eq!(status, 413, "{text}");
        assert!(
            text.contains("PAYLOAD_TOO_LARGE") && text.contains("1 MiB") && text.contains("POST /v1/teams"),
            "{text}"
        );
        // Declared over it: refused before a byte is read.
        let (status, text) = send("/v1/teams", Body::empty(), Some((1 << 20) + 1)).await;
        assert_eq!(status, 413, "{text}");
        // A streamed route takes far more than 1 MiB.
        assert_eq!(
            send("/v1/images/load", chunked(40), None).await,
            (200, format!("streamed {}", 40 * (64 << 10)))
        );
        let (status, text) = send("/v1/images/load", Body::empty(), Some(routes::IMAGE_LOAD_LIMIT + 1)).await;
        assert_eq!(status, 413, "{text}");
        assert!(text.contains("64 GiB"), "{text}");
    }

    #[test]
    fn every_route_has_a_limit_and_json_routes_the_default() {
        for route in routes::TABLE {
            let limit = route.body_limit();
            assert!(
                limit.bytes() >= routes::JSON_BODY_LIMIT,
                "{} {}",
                route.method,
                route.path
            );
            if matches!(route.method.as_str(), "GET" | "HEAD" | "DELETE") {
                assert_eq!(
                    limit,
                    BodyLimit::Json(routes::JSON_BODY_LIMIT),
                    "{} {}",
                    route.method,
                    route.path
                );
            }
        }
    }
}
