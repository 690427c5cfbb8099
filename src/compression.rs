//! gzip and br for text answers of 1 KiB or more, through actix-web's own `Compress`.
//!
//! `Compress` picks the coding from `Accept-Encoding`, leaves images and video alone, and adds
//! `Vary: Accept-Encoding`, but compresses every other answer whatever its size: a 200-byte
//! JSON answer would grow by gzip's header and cost a compressor's set-up for nothing. Its one
//! way to be told to leave an answer alone is a `Content-Encoding` already set; the answers
//! under [`MIN_COMPRESSED`] get `identity` on the way in, and lose it again on the way out
//! (RFC 9110 §8.4.1: `identity` is not a coding to send).

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, CONTENT_ENCODING, VARY};
use actix_web::middleware::Next;

/// Answers shorter than this are sent as they are.
pub const MIN_COMPRESSED: u64 = 1024;

const IDENTITY: HeaderValue = HeaderValue::from_static("identity");

/// Inside `Compress`: marks an answer too short to be worth compressing.
pub async fn leave_short_answers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let short = matches!(res.response().body().size(), BodySize::Sized(n) if n < MIN_COMPRESSED);
    if short && !res.headers().contains_key(CONTENT_ENCODING) {
        res.headers_mut().insert(CONTENT_ENCODING, IDENTITY);
    }
    Ok(res)
}

/// Outside `Compress`: removes the mark, and folds the `Vary: accept-encoding` that
/// `Compress` appends into a `Vary` the page already sent that names it.
pub async fn unmark(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    if headers.get(CONTENT_ENCODING) == Some(&IDENTITY) {
        headers.remove(CONTENT_ENCODING);
    }
    // Only a compressed answer has two; every other passes without an allocation.
    if headers.get_all(VARY).nth(1).is_some() {
        let vary: Vec<HeaderValue> = headers.get_all(VARY).cloned().collect();
        let mut names: Vec<&str> = Vec::new();
        for name in vary
            .iter()
            .flat_map(|v| v.to_str().unwrap_or_default().split(','))
        {
            let name = name.trim();
            if !name.is_empty() && !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                names.push(name);
            }
        }
        if let Ok(merged) = HeaderValue::from_str(&names.join(", ")) {
            headers.insert(VARY, merged);
        }
    }
    Ok(res)
}
