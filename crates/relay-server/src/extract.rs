//! Extractors whose rejections use the API's error envelope instead of axum's plain text.

use axum::extract::{FromRequest, FromRequestParts};

use crate::error::ApiError;

/// `Json<T>` with a 400 `invalid_json` / 422 `validation_error` envelope on bad input.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `Query<T>` with a 400 `invalid_query` envelope on bad input.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `Path<T>` with a 400 `invalid_path` envelope on a segment that does not decode (e.g. `%FF`).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);
