//! actix-web's ceiling on this machine, for the benchmarks: the same server set-up (workers,
//! security headers) answering a constant page the size of the average-age page, with no I/O.
//!
//!     cargo run --release --example ceiling -- 127.0.0.1:8201 [PAGE_BYTES]

use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App, HttpResponse, HttpServer};

/// The average page's body with `bench/run`'s 10,000 students (4,933 before `f06cf27` trimmed
/// the chart's markup).
const PAGE_BYTES: usize = 4009;

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8201".into());
    let page_bytes = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(PAGE_BYTES)
        .max(15);
    let body: &'static str =
        Box::leak(format!("<!doctype html>{}", "x".repeat(page_bytes - 15)).into_boxed_str());
    HttpServer::new(move || {
        App::new()
            .wrap(
                DefaultHeaders::new()
                    .add(("Content-Security-Policy", "default-src 'self'"))
                    .add(("X-Frame-Options", "DENY")),
            )
            .route(
                "/students/average-age",
                web::get().to(move || async move {
                    HttpResponse::Ok()
                        .content_type("text/html; charset=utf-8")
                        .insert_header(("X-Cache", "HIT"))
                        .body(body)
                }),
            )
    })
    .bind(addr)?
    .run()
    .await
}
