//! The one error type of the web layer.
//!
//! Users see a short page that says what happened in their terms; the log gets the whole cause
//! chain. Nothing internal (SQL, file paths, Redis addresses) reaches a response body.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("request body too large")]
    PayloadTooLarge,
    /// The request's body did not arrive within the deadline (a slow or stalled client).
    #[error("request body too slow")]
    RequestTimeout,
    #[error("too many requests, retry in {retry_after_secs}s")]
    TooManyRequests { retry_after_secs: u64 },
    /// Too many sign-ins are already waiting to have their password checked.
    #[error("busy, retry in {retry_after_secs}s")]
    Busy { retry_after_secs: u64 },
    /// The database could not be reached in time: a 503 that says so, not a 500.
    #[error("database unavailable")]
    DatabaseUnavailable(#[source] anyhow::Error),
    #[error("unexpected error")]
    Unexpected(#[source] anyhow::Error),
}

impl AppError {
    pub fn unexpected(e: impl Into<anyhow::Error>) -> Self {
        AppError::Unexpected(e.into())
    }
}

/// How long a client is asked to wait when the database is unavailable.
const DATABASE_RETRY_AFTER_SECS: u64 = 5;

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::NotFound => AppError::NotFound,
            // A connection that died under the request (server restarted, connection killed)
            // or an SQLite file locked past busy_timeout: the database is unavailable for now,
            // which the client can retry, not a fault of this request.
            Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            ) => AppError::DatabaseUnavailable(e.into()),
            Error::DatabaseError(_, ref info) if info.message().contains("database is locked") => {
                AppError::DatabaseUnavailable(e.into())
            }
            other => AppError::Unexpected(other.into()),
        }
    }
}

impl From<cache::CacheError> for AppError {
    fn from(e: cache::CacheError) -> Self {
        use cache::CacheError;
        match e {
            CacheError::DatabaseUnavailable(e) => AppError::DatabaseUnavailable(e.into()),
            CacheError::Database(e) => e.into(),
            other => AppError::Unexpected(other.into()),
        }
    }
}

impl From<r2d2::Error> for AppError {
    fn from(e: r2d2::Error) -> Self {
        AppError::DatabaseUnavailable(e.into())
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        AppError::Unexpected(anyhow::anyhow!("blocking task failed: {e}"))
    }
}

#[derive(Template)]
#[template(path = "errors/error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: String,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Busy { .. } | AppError::DatabaseUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AppError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            log::error!("{status}: {:?}", ErrorChain(self));
        }
        let (title, message) = match self {
            AppError::NotFound => ("Not found", "There is nothing at this address.".into()),
            AppError::BadRequest(m) => ("Bad request", m.clone()),
            AppError::Forbidden(m) => ("Forbidden", m.clone()),
            AppError::PayloadTooLarge => (
                "Request too large",
                "The form sent more than 16 KiB; nothing was saved.".into(),
            ),
            AppError::RequestTimeout => (
                "Request timed out",
                "The form took too long to arrive; nothing was saved. Please send it again.".into(),
            ),
            AppError::TooManyRequests { retry_after_secs } => (
                "Too many attempts",
                format!(
                    "Too many failed sign-in attempts. Try again in {} minute(s).",
                    retry_after_secs.div_ceil(60).max(1)
                ),
            ),
            AppError::Busy { .. } => (
                "Service busy",
                "Too many sign-ins are being checked right now. Please try again shortly.".into(),
            ),
            AppError::DatabaseUnavailable(_) => (
                "Service unavailable",
                "The database is not answering right now. Please try again shortly.".into(),
            ),
            AppError::Unexpected(_) => (
                "Something went wrong",
                "An unexpected error happened; it has been logged.".into(),
            ),
        };
        let page = ErrorPage {
            status: status.as_u16(),
            title,
            message,
        };
        let body = page
            .render()
            .unwrap_or_else(|_| format!("{} {}", status.as_u16(), title));
        let mut response = HttpResponse::build(status);
        response.content_type("text/html; charset=utf-8");
        let retry_after = match self {
            AppError::TooManyRequests { retry_after_secs }
            | AppError::Busy { retry_after_secs } => Some(*retry_after_secs),
            AppError::DatabaseUnavailable(_) => Some(DATABASE_RETRY_AFTER_SECS),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        response.body(body)
    }
}

/// Lets `{:?}` on an anyhow error print the whole chain of an `AppError`.
struct ErrorChain<'a>(&'a AppError);

impl std::fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(self.0);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
