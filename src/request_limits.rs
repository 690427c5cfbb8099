//! Bounds on what one client can hold: the time its request body may take, and how many
//! connections the server keeps open at once.
//!
//! actix-web bounds the time to receive a request's head (`client_request_timeout`, 5 s), not
//! its body: 200 POSTs sending a byte a second were all still open after 40 s, and with 1,024
//! file descriptors 1,100 of them made the server answer "Too many open files" to everyone.

use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpMessage, ResponseError};
use futures_util::StreamExt;

use crate::error::AppError;
use crate::startup::MAX_BODY_BYTES;

/// How long a request body may take to arrive, from the end of its head. A form of 16 KiB
/// takes milliseconds on any link a person uses.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// The one body bigger than a form: the CSV import's file. Its handler reads it as a stream,
/// with its own limit and deadline, after the staff guard, so that no one who is not signed in
/// can make the server hold ten megabytes.
pub const STREAMED_UPLOAD: &str = "/admin/students/import";

/// Reads the body of a request that has one within [`BODY_DEADLINE`] (408 past it, 413 past
/// [`MAX_BODY_BYTES`]), before any handler or database work; the handler then reads it from
/// memory. Wrapped in [`OnlyWhen::writes`](crate::only_when::OnlyWhen::writes): a request with a safe method
/// (`GET`, `HEAD`) never comes here, and its body is never read.
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if req.path() == STREAMED_UPLOAD {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let mut payload = req.take_payload();
    let read = tokio::time::timeout(BODY_DEADLINE, async {
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk
                .map_err(|e| AppError::BadRequest(format!("The body could not be read: {e}.")))?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(AppError::PayloadTooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    })
    .await
    .unwrap_or(Err(AppError::RequestTimeout));
    match read {
        Ok(body) => {
            req.set_payload(payload_of(body));
            Ok(next.call(req).await?.map_into_left_body())
        }
        Err(refusal) => {
            let (req, _) = req.into_parts();
            let mut response = refusal.error_response();
            // The rest of the body may still be on its way: do not wait for it.
            response
                .head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
            Ok(ServiceResponse::new(req, response.map_into_right_body()))
        }
    }
}

fn payload_of(body: Bytes) -> Payload {
    Payload::from(body)
}

/// Connections each worker keeps open: the process' file descriptor limit (its soft
/// `RLIMIT_NOFILE`, from `/proc/self/limits`), less a reserve for the pools, the log and the
/// listener, shared between the workers. Past it, a worker stops accepting until one closes,
/// instead of accepting until `accept` fails with "Too many open files" and the process has no
/// descriptor left for its own database and Redis connections. (Connections held open by a
/// flood still wait their turn: the body deadline and the head's timeout are what end them.)
pub fn connections_per_worker(workers: usize) -> usize {
    const RESERVE: usize = 128;
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|line| line.starts_with("Max open files"))?
                .split_whitespace()
                .nth(3)?
                .parse::<usize>()
                .ok()
        })
        .unwrap_or(1024);
    (limit.saturating_sub(RESERVE) / workers.max(1)).clamp(32, 25_000)
}
