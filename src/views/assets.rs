//! The stylesheet and the staff page's script, built into the binary (`build.rs` embeds
//! static/), so that the binary serves them from whatever directory it runs in; `STATIC_DIR`
//! serves a directory instead (`super::static_files`).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::AppError;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/static_files.rs"));
}

/// As the directory is served: an hour in any cache, then revalidated by `ETag`.
const CACHE_CONTROL: HeaderValue = HeaderValue::from_static("public, max-age=3600");

/// `GET /static/{path}` from the binary.
pub async fn embedded_file(
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let (_, bytes, etag) = embedded::FILES
        .iter()
        .find(|(name, _, _)| *name == path.as_str())
        .ok_or(AppError::NotFound)?;
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == *etag || t == "*")
        });
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, *etag))
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL));
    if fresh {
        return Ok(response.finish());
    }
    Ok(response
        .insert_header((header::CONTENT_TYPE, content_type(&path)))
        .body(*bytes))
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stylesheet_is_built_in() {
        let (_, css, etag) = embedded::FILES
            .iter()
            .find(|(name, _, _)| *name == "css/site.css")
            .expect("static/css/site.css embedded");
        assert!(!css.is_empty());
        assert!(etag.starts_with('"') && etag.ends_with('"'));
        assert_eq!(content_type("css/site.css"), "text/css; charset=utf-8");
    }
}
