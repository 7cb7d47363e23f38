//! The one path-parameter extractor of the API. axum's own `Path` answers a parameter it cannot
//! decode (`%FF`, not UTF-8) with a plain-text `400`; every error of this API is a problem
//! document, so routes take their `{name}` through [`PathParam`] instead.

use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use crate::error::ApiError;

/// A single `{…}` path segment, percent-decoded.
#[derive(Debug)]
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParam(value)),
            Err(rejection) => {
                let parameter = match &rejection {
                    PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                        ErrorKind::InvalidUtf8InPathParam { key } => Some(key.clone()),
                        _ => None,
                    },
                    _ => None,
                };
                Err(ApiError::InvalidQuery { parameter, detail: format!("path: {}", rejection.body_text()) })
            }
        }
    }
}
