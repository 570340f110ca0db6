//! Extractors whose rejections use the API's error envelope instead of axum's plain text.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;

use crate::error::ApiError;

/// `Json<T>` with a 400 `invalid_json` / 422 `validation_error` envelope on bad input.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `Query<T>` with a 400 `invalid_query` envelope on bad input, including a query string that
/// is not UTF-8 once percent-decoded (`?actor_id=%FF%FE`): axum's own extractor replaces such
/// bytes with U+FFFD, so a mangled value would be acted on (an authorize flow started for an
/// actor nobody named).
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        // Decoding the whole string at once is enough: an encoded `&` or `=` decodes to ASCII,
        // which cannot make invalid UTF-8 valid or the other way round.
        if percent_encoding::percent_decode_str(query)
            .decode_utf8()
            .is_err()
        {
            return Err(ApiError::bad_request(
                "invalid_query",
                "the query string is not valid UTF-8 once percent-decoded",
            ));
        }
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// `Path<T>` with a 400 `invalid_path` envelope on a segment that does not decode (e.g. `%FF`).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);
