//! gzip and br for text answers of 1 KiB or more, through actix-web's own `Compress`, for the
//! requests that ask for a coding.
//!
//! `Compress` picks the coding from `Accept-Encoding`, leaves images and video alone, and adds
//! `Vary: Accept-Encoding`, but compresses every other answer whatever its size: a 200-byte
//! JSON answer would grow by gzip's header and cost a compressor's set-up for nothing. Its one
//! way to be told to leave an answer alone is a `Content-Encoding` already set; the answers
//! under [`MIN_COMPRESSED`] get `identity` on the way in, and lose it again on the way out
//! (RFC 9110 §8.4.1: `identity` is not a coding to send).
//!
//! A request with no `Accept-Encoding`, or one that accepts only `identity`, goes past all of
//! that: `Compress` would answer it as it is anyway (no coding, no `Vary` added), but only
//! after parsing the answer's `Content-Type` and wrapping its body, a twentieth of a cached
//! page's whole cost (BENCHMARKS.md). Browsers always ask; load balancers' health checks,
//! monitoring, `curl` and load generators mostly do not.

use std::rc::Rc;

use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, VARY};
use actix_web::middleware::Compress;
use actix_web::Error;
use futures_util::future::{Either, MapOk};
use futures_util::{FutureExt, TryFutureExt};

/// Answers shorter than this are sent as they are.
pub const MIN_COMPRESSED: u64 = 1024;

const IDENTITY: HeaderValue = HeaderValue::from_static("identity");

/// The middleware: `Compress` with the two fixes above, for requests that ask for a coding.
pub struct CompressWhenAsked;

/// `Compress` around the marking of short answers, around the application.
type Compressing<S> = <Compress as Transform<MarkShort<S>, ServiceRequest>>::Transform;

impl<S, B> Transform<S, ServiceRequest> for CompressWhenAsked
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response =
        <CompressWhenAskedService<S, Compressing<S>> as Service<ServiceRequest>>::Response;
    type Error = Error;
    type Transform = CompressWhenAskedService<S, Compressing<S>>;
    type InitError = ();
    type Future = std::future::Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let plain = Rc::new(service);
        // `Compress` makes its middleware at once (its future is a ready one).
        let compress = Compress::default()
            .new_transform(MarkShort {
                app: Rc::clone(&plain),
            })
            .now_or_never()
            .unwrap_or(Err(()));
        std::future::ready(compress.map(|compress| CompressWhenAskedService { plain, compress }))
    }
}

pub struct CompressWhenAskedService<S, C> {
    plain: Rc<S>,
    compress: C,
}

type Answer<CB, B> = ServiceResponse<EitherBody<CB, B>>;

impl<S, B, C, CB> Service<ServiceRequest> for CompressWhenAskedService<S, C>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    C: Service<ServiceRequest, Response = ServiceResponse<CB>, Error = Error>,
    B: MessageBody,
    CB: MessageBody,
{
    type Response = Answer<CB, B>;
    type Error = Error;
    #[allow(clippy::type_complexity)]
    type Future = Either<
        MapOk<C::Future, fn(ServiceResponse<CB>) -> Answer<CB, B>>,
        MapOk<S::Future, fn(ServiceResponse<B>) -> Answer<CB, B>>,
    >;

    actix_web::dev::forward_ready!(plain);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        if asks_for_a_coding(&req) {
            let done: fn(ServiceResponse<CB>) -> Answer<CB, B> =
                |res| unmark(res).map_into_left_body();
            Either::Left(self.compress.call(req).map_ok(done))
        } else {
            let done: fn(ServiceResponse<B>) -> Answer<CB, B> =
                ServiceResponse::map_into_right_body;
            Either::Right(self.plain.call(req).map_ok(done))
        }
    }
}

/// Whether `Accept-Encoding` names anything but `identity` (which `Compress` would answer as
/// the request that names nothing: Python's `http.client` sends it on every request).
fn asks_for_a_coding(req: &ServiceRequest) -> bool {
    req.headers().get_all(ACCEPT_ENCODING).any(|value| {
        !value
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"identity")
    })
}

/// Inside `Compress`: marks an answer too short to be worth compressing.
pub struct MarkShort<S> {
    app: Rc<S>,
}

impl<S, B> Service<ServiceRequest> for MarkShort<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = MapOk<S::Future, fn(ServiceResponse<B>) -> ServiceResponse<B>>;

    actix_web::dev::forward_ready!(app);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        self.app.call(req).map_ok(mark_short)
    }
}

fn mark_short<B: MessageBody>(mut res: ServiceResponse<B>) -> ServiceResponse<B> {
    let short = matches!(res.response().body().size(), BodySize::Sized(n) if n < MIN_COMPRESSED);
    if short && !res.headers().contains_key(CONTENT_ENCODING) {
        res.headers_mut().insert(CONTENT_ENCODING, IDENTITY);
    }
    res
}

/// Outside `Compress`: removes the mark, and folds the `Vary: accept-encoding` that
/// `Compress` appends into a `Vary` the page already sent that names it.
fn unmark<B>(mut res: ServiceResponse<B>) -> ServiceResponse<B> {
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
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn only_a_request_that_names_a_coding_other_than_identity_goes_through_compress() {
        let asks = |values: &[&str]| {
            let mut req = TestRequest::default();
            for v in values {
                req = req.append_header((ACCEPT_ENCODING, *v));
            }
            asks_for_a_coding(&req.to_srv_request())
        };
        assert!(!asks(&[]));
        assert!(!asks(&["identity"]));
        assert!(!asks(&[" IDENTITY "]));
        assert!(asks(&["gzip"]));
        assert!(asks(&["identity, br"]));
        assert!(asks(&["identity", "gzip"]));
        assert!(asks(&["*"]));
    }
}
