//! A middleware that only some requests pass through ([`OnlyWhen`]).
//!
//! The CSRF origin check and the request body's deadline have nothing to do on a `GET` or a
//! `HEAD` (the safe methods), which is nearly every request; written with `from_fn`, each still
//! cost every one of those a boxed future (an allocation, a free and a dynamic call, about 350
//! instructions of a cache hit). Likewise the session middleware has nothing to load or save for
//! a visitor without a session reading a public page. Wrapped in [`OnlyWhen`], a request the
//! predicate leaves out goes straight to the service inside, and only the others meet the
//! middleware.

use std::rc::Rc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::Error;
use futures_util::future::{Either, LocalBoxFuture, MapOk};
use futures_util::TryFutureExt;

/// Runs the middleware `T` only for the requests `when` picks.
pub struct OnlyWhen<T> {
    when: fn(&ServiceRequest) -> bool,
    middleware: T,
}

impl<T> OnlyWhen<T> {
    pub fn new(when: fn(&ServiceRequest) -> bool, middleware: T) -> OnlyWhen<T> {
        OnlyWhen { when, middleware }
    }

    /// For requests with an unsafe method only (`POST` and the like).
    pub fn writes(middleware: T) -> OnlyWhen<T> {
        OnlyWhen::new(|req| !req.method().is_safe(), middleware)
    }
}

impl<S, B, T, W, WB> Transform<S, ServiceRequest> for OnlyWhen<T>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
    T: Transform<Shared<S>, ServiceRequest, Transform = W, InitError = ()>,
    T::Future: 'static,
    W: Service<ServiceRequest, Response = ServiceResponse<WB>, Error = Error> + 'static,
    WB: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<WB, B>>;
    type Error = Error;
    type Transform = OnlyWhenService<S, W>;
    type InitError = ();
    type Future = LocalBoxFuture<'static, Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let plain = Rc::new(service);
        let guarded = self.middleware.new_transform(Shared {
            inner: Rc::clone(&plain),
        });
        let when = self.when;
        Box::pin(async move {
            Ok(OnlyWhenService {
                when,
                plain,
                guarded: guarded.await?,
            })
        })
    }
}

pub struct OnlyWhenService<S, W> {
    when: fn(&ServiceRequest) -> bool,
    plain: Rc<S>,
    guarded: W,
}

type Answer<WB, B> = ServiceResponse<EitherBody<WB, B>>;

impl<S, B, W, WB> Service<ServiceRequest> for OnlyWhenService<S, W>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    W: Service<ServiceRequest, Response = ServiceResponse<WB>, Error = Error>,
    B: MessageBody,
    WB: MessageBody,
{
    type Response = Answer<WB, B>;
    type Error = Error;
    #[allow(clippy::type_complexity)]
    type Future = Either<
        MapOk<W::Future, fn(ServiceResponse<WB>) -> Answer<WB, B>>,
        MapOk<S::Future, fn(ServiceResponse<B>) -> Answer<WB, B>>,
    >;

    actix_web::dev::forward_ready!(plain);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        if !(self.when)(&req) {
            let done: fn(ServiceResponse<B>) -> Answer<WB, B> =
                ServiceResponse::map_into_right_body;
            Either::Right(self.plain.call(req).map_ok(done))
        } else {
            let done: fn(ServiceResponse<WB>) -> Answer<WB, B> =
                ServiceResponse::map_into_left_body;
            Either::Left(self.guarded.call(req).map_ok(done))
        }
    }
}

/// The service inside, shared by both ways through.
pub struct Shared<S> {
    inner: Rc<S>,
}

impl<S> Service<ServiceRequest> for Shared<S>
where
    S: Service<ServiceRequest>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    actix_web::dev::forward_ready!(inner);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use actix_web::middleware::{from_fn, Next};
    use actix_web::{test, web, App, HttpResponse};

    use super::*;

    static MET: AtomicUsize = AtomicUsize::new(0);

    async fn count(
        req: ServiceRequest,
        next: Next<impl MessageBody>,
    ) -> Result<ServiceResponse<impl MessageBody>, Error> {
        MET.fetch_add(1, Ordering::SeqCst);
        next.call(req).await
    }

    #[actix_web::test]
    async fn only_requests_with_an_unsafe_method_meet_the_middleware() {
        let app = test::init_service(
            App::new()
                .route("/", web::to(HttpResponse::Ok))
                .wrap(OnlyWhen::writes(from_fn(count))),
        )
        .await;
        for method in ["GET", "HEAD", "OPTIONS"] {
            let req = test::TestRequest::default()
                .method(method.parse().unwrap())
                .to_request();
            assert_eq!(test::call_service(&app, req).await.status(), 200);
        }
        assert_eq!(MET.load(Ordering::SeqCst), 0, "no safe request met it");
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let req = test::TestRequest::default()
                .method(method.parse().unwrap())
                .to_request();
            assert_eq!(test::call_service(&app, req).await.status(), 200);
        }
        assert_eq!(MET.load(Ordering::SeqCst), 4, "every other did");
    }
}
