//! What the public pages tell the HTTP caches in front of them (the browser's, a proxy's):
//! a validator made from what the page shows, and whether it may be kept at all.
//!
//! A page of cached data shows a value at a generation (`cache::Lookup::generation`): every
//! write moves the generation before it answers, on every instance, so a validator that names
//! the generation, the representation (the average as HTML or JSON, a page of the list) and the
//! release's templates cannot match a page that shows something else. It also names where the
//! value came from (a hit from memory or Redis, a miss), which the page's badge shows: a reload
//! after a miss gets the page with the hit badge, and the reloads after that a 304, so the
//! badge a visitor sees is the one the server would show now. `Cache-Control: no-cache` makes
//! every cache ask before reusing its copy; a matching `If-None-Match` is answered `304`
//! without rendering, and on a memory hit without any I/O. The validator is weak (`W/`): the
//! timing differs from one answer to the next.
//!
//! No validator when the value was read without Redis (`BYPASS`: its generation is unknown),
//! or with `DEBUG=1` (each page shows its own request's queries). A page shown with a session
//! carries the username and a CSRF token: `Cache-Control: private, no-store`, and never a 304.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};

use crate::cache::Lookup;

/// What the templates and the stylesheet of this build make of a value (see `build.rs`).
const PAGES_DIGEST: &str = env!("PAGES_DIGEST");

/// How one answer may be cached by HTTP caches.
pub struct HttpCaching {
    /// `W/"…"`, for an anonymous page of a value at a known generation.
    etag: Option<HeaderValue>,
    /// Shown with a session: kept by no cache.
    private: bool,
}

const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
const PRIVATE: HeaderValue = HeaderValue::from_static("private, no-store");
/// The page differs with the session (the cookie) and, when compressed, with what the client
/// accepts; said on every variant so that a cache never serves one for the other.
const VARY: HeaderValue = HeaderValue::from_static("Cookie, Accept-Encoding");

impl HttpCaching {
    /// For a page showing `lookup`'s value as `representation` (a short name: `average.html`,
    /// `list.html.p2`), to a visitor (`signed_in` false) or to staff.
    pub fn for_page<V>(
        lookup: &Lookup<V>,
        representation: &str,
        signed_in: bool,
        debug: bool,
    ) -> HttpCaching {
        let etag = match (signed_in || debug, lookup.generation) {
            (false, Some(generation)) => {
                let source = match lookup.tier {
                    Some(tier) => tier.label(),
                    None => lookup.outcome.label(),
                };
                // Every visitor's page makes one: pushed piece by piece, as `format!` spent
                // 1,900 instructions on it, 4% of a hit.
                let mut digits = itoa::Buffer::new();
                let generation = digits.format(generation.get());
                let mut tag = String::with_capacity(
                    8 + PAGES_DIGEST.len() + generation.len() + representation.len() + source.len(),
                );
                for piece in [
                    "W/\"",
                    PAGES_DIGEST,
                    "-",
                    generation,
                    "-",
                    representation,
                    "-",
                ] {
                    tag.push_str(piece);
                }
                tag.push_str(source);
                tag.push('"');
                HeaderValue::from_str(&tag).ok()
            }
            _ => None,
        };
        HttpCaching {
            etag,
            private: signed_in,
        }
    }

    /// The validator, for a public page of a value at a known generation.
    pub fn etag(&self) -> Option<&HeaderValue> {
        self.etag.as_ref()
    }

    /// Whether the request's `If-None-Match` names this page's validator (or is `*`): the
    /// client's copy shows what this answer would.
    pub fn is_fresh(&self, req: &HttpRequest) -> bool {
        let Some(etag) = &self.etag else {
            return false;
        };
        let ours = opaque(etag.as_bytes());
        req.headers()
            .get_all(header::IF_NONE_MATCH)
            .flat_map(|value| value.as_bytes().split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .any(|tag| tag == b"*" || opaque(tag) == ours)
    }

    /// `304 Not Modified` with the headers the `200` would have had, and no body.
    pub fn not_modified(&self) -> HttpResponseBuilder {
        let mut response = HttpResponse::NotModified();
        self.apply(&mut response);
        response
    }

    /// `Cache-Control`, `Vary` and, for a public page, `ETag`.
    pub fn apply(&self, response: &mut HttpResponseBuilder) {
        response.insert_header((header::VARY, VARY));
        if self.private {
            response.insert_header((header::CACHE_CONTROL, PRIVATE));
            return;
        }
        response.insert_header((header::CACHE_CONTROL, NO_CACHE));
        if let Some(etag) = &self.etag {
            response.insert_header((header::ETAG, etag.clone()));
        }
    }
}

/// An entity tag without its weakness mark: `If-None-Match` compares weakly (RFC 9110 §8.8.3.2).
fn opaque(tag: &[u8]) -> &[u8] {
    tag.strip_prefix(b"W/").unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use actix_web::test::TestRequest;

    use super::*;
    use crate::cache::generation::Generation;
    use crate::cache::{CacheOutcome, Tier};

    fn lookup(generation: Option<u64>) -> Lookup<()> {
        Lookup {
            value: Arc::new(()),
            outcome: CacheOutcome::Hit,
            tier: Some(Tier::Memory),
            generation: generation.map(Generation::new),
            elapsed: Duration::ZERO,
        }
    }

    fn etag(caching: &HttpCaching) -> String {
        let mut response = HttpResponse::Ok();
        caching.apply(&mut response);
        let response = response.finish();
        response
            .headers()
            .get(header::ETAG)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn the_validator_names_the_generation_and_the_representation() {
        let html = HttpCaching::for_page(&lookup(Some(7)), "average.html", false, false);
        let json = HttpCaching::for_page(&lookup(Some(7)), "average.json", false, false);
        let later = HttpCaching::for_page(&lookup(Some(8)), "average.html", false, false);
        let tags = [etag(&html), etag(&json), etag(&later)];
        assert!(
            tags[0].starts_with("W/\"") && tags[0].ends_with("-7-average.html-memory\""),
            "{}",
            tags[0]
        );
        assert_ne!(tags[0], tags[1]);
        assert_ne!(tags[0], tags[2]);
    }

    #[test]
    fn the_validator_names_where_the_value_came_from_as_the_badge_does() {
        let memory = HttpCaching::for_page(&lookup(Some(7)), "average.html", false, false);
        let mut from_redis = lookup(Some(7));
        from_redis.tier = Some(Tier::Redis);
        let mut missed = lookup(Some(7));
        (missed.outcome, missed.tier) = (CacheOutcome::Miss, None);
        let tags = [
            etag(&memory),
            etag(&HttpCaching::for_page(
                &from_redis,
                "average.html",
                false,
                false,
            )),
            etag(&HttpCaching::for_page(
                &missed,
                "average.html",
                false,
                false,
            )),
        ];
        assert!(tags[2].ends_with("-miss\""), "{}", tags[2]);
        assert!(tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2]);
    }

    #[test]
    fn if_none_match_matches_weakly_in_a_list_or_as_a_star() {
        let caching = HttpCaching::for_page(&lookup(Some(7)), "average.html", false, false);
        let tag = etag(&caching);
        let strong = tag.trim_start_matches("W/").to_owned();
        for header in [tag.clone(), strong, format!("\"x\", {tag}"), "*".to_owned()] {
            let req = TestRequest::get()
                .insert_header((header::IF_NONE_MATCH, header.as_str()))
                .to_http_request();
            assert!(caching.is_fresh(&req), "{header}");
        }
        let req = TestRequest::get()
            .insert_header((header::IF_NONE_MATCH, "W/\"other\""))
            .to_http_request();
        assert!(!caching.is_fresh(&req));
        assert!(!caching.is_fresh(&TestRequest::get().to_http_request()));
    }

    #[test]
    fn no_validator_without_a_generation_for_staff_or_in_debug() {
        for caching in [
            HttpCaching::for_page(&lookup(None), "average.html", false, false),
            HttpCaching::for_page(&lookup(Some(7)), "average.html", true, false),
            HttpCaching::for_page(&lookup(Some(7)), "average.html", false, true),
        ] {
            assert_eq!(etag(&caching), "");
            let req = TestRequest::get()
                .insert_header((header::IF_NONE_MATCH, "*"))
                .to_http_request();
            assert!(!caching.is_fresh(&req), "no 304 without a validator");
        }
    }
}
