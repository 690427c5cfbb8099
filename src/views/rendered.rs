//! The list pages as last rendered for visitors, by validator.
//!
//! A visitor's page of the list shows nothing but the page of the value (no badge, no timing,
//! no session), so its validator (`http_cache`: the build, the generation, the page, where the
//! value came from) names its bytes exactly, and the bytes can be kept: a hit then costs a map
//! lookup instead of rendering fifty rows. What a key names never changes, so an entry is never
//! stale; a new generation makes new keys, and the map is emptied when it is full.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use actix_web::http::header::HeaderValue;
use actix_web::web::Bytes;

/// Enough for every page a burst of visitors reads between two writes.
const CAPACITY: usize = 256;

#[derive(Default)]
pub struct RenderedPages(Mutex<HashMap<HeaderValue, Bytes>>);

impl RenderedPages {
    pub fn get(&self, etag: &HeaderValue) -> Option<Bytes> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(etag)
            .cloned()
    }

    pub fn keep(&self, etag: HeaderValue, body: Bytes) {
        let mut pages = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if pages.len() >= CAPACITY {
            pages.clear();
        }
        pages.insert(etag, body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_kept_by_its_validator_and_the_map_stays_bounded() {
        let pages = RenderedPages::default();
        let tag = HeaderValue::from_static("W/\"x-1-list.html.p1-memory\"");
        assert_eq!(pages.get(&tag), None);
        pages.keep(tag.clone(), Bytes::from_static(b"<p>page</p>"));
        assert_eq!(pages.get(&tag), Some(Bytes::from_static(b"<p>page</p>")));
        for n in 0..CAPACITY + 1 {
            let other = HeaderValue::from_str(&format!("W/\"{n}\"")).unwrap();
            pages.keep(other, Bytes::new());
        }
        assert!(pages.0.lock().unwrap().len() <= CAPACITY);
    }
}
