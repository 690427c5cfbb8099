//! actix-web's ceiling on this machine, for the benchmarks: the very answers a running instance
//! gives for a page (its status, headers and bytes, and its `304` to a request naming the
//! page's `ETag`), read from that instance at start and answered with no I/O, on the same
//! number of workers.
//!
//!     cargo run --release --example ceiling -- 127.0.0.1:8201 http://127.0.0.1:8000/students/average-age

// A benchmark tool that cannot read its page should stop at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use actix_web::http::header::{HeaderMap, IF_NONE_MATCH};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

/// Headers that belong to one answer, not to the page: the server sets them itself.
const PER_ANSWER: [&str; 5] = [
    "date",
    "content-length",
    "transfer-encoding",
    "connection",
    "server-timing",
];

/// One recorded answer.
#[derive(Clone)]
struct Answer {
    status: StatusCode,
    headers: Vec<(String, Vec<u8>)>,
    body: web::Bytes,
}

impl Answer {
    async fn read(url: &str, etag: Option<&str>) -> Answer {
        let client = reqwest::Client::new();
        let mut request = client.get(url);
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        let response = request.send().await.expect("the instance answers");
        let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
        let headers = response
            .headers()
            .iter()
            .filter(|(name, _)| !PER_ANSWER.contains(&name.as_str()))
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect();
        let body = response.bytes().await.expect("body");
        Answer {
            status,
            headers,
            body: web::Bytes::copy_from_slice(&body),
        }
    }

    fn etag(&self) -> Option<String> {
        self.headers
            .iter()
            .find(|(name, _)| name == "etag")
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    }

    fn respond(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            response.append_header((name.as_str(), value.as_slice()));
        }
        response.body(self.body.clone())
    }
}

fn names(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(IF_NONE_MATCH)
        .is_some_and(|value| value.as_bytes() == etag.as_bytes())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8201".into());
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8000/students/average-age".into());
    let path = reqwest::Url::parse(&url).expect("a URL").path().to_owned();
    // Twice: the second answer is the one a warm instance gives (a hit from memory).
    Answer::read(&url, None).await;
    let page = Answer::read(&url, None).await;
    let etag = page.etag().unwrap_or_default();
    let not_modified = Answer::read(&url, Some(&etag)).await;
    eprintln!(
        "ceiling: {path}: {} bytes, {} headers; with If-None-Match: {}",
        page.body.len(),
        page.headers.len(),
        not_modified.status
    );
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    HttpServer::new(move || {
        let (page, not_modified, etag) = (page.clone(), not_modified.clone(), etag.clone());
        App::new().route(
            &path,
            web::route().to(move |req: HttpRequest| {
                let answer = match !etag.is_empty() && names(req.headers(), &etag) {
                    true => not_modified.respond(),
                    false => page.respond(),
                };
                async move { answer }
            }),
        )
    })
    .workers(workers)
    .bind(addr)?
    .run()
    .await
}
