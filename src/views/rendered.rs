//! The public pages as last rendered for visitors, by validator.
//!
//! A visitor's page shows nothing but the value (no session), so its validator (`http_cache`:
//! the build, the generation, the representation, where the value came from, and so the badge)
//! names its bytes exactly, but for the average page's timing, which each answer measures anew:
//! that page is kept with a hole where the timing goes. A hit then costs a map lookup (and a
//! copy into which the timing is spliced) instead of rendering the page. What a key names never
//! changes, so an entry is never stale; a new generation makes new keys, and the map is emptied
//! when it is full.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use actix_web::http::header::HeaderValue;
use actix_web::web::Bytes;

/// Enough for every page a burst of visitors reads between two writes.
const CAPACITY: usize = 256;

#[derive(Default)]
pub struct RenderedPages(Mutex<HashMap<HeaderValue, Rendered>>);

/// A page's bytes, with where its timing goes when it shows one.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    body: Bytes,
    timing_at: Option<usize>,
}

/// What a page with a timing is rendered with in place of it, to be cut out: a control
/// character never appears in a page's text.
pub const TIMING_MARK: &str = "\u{1}timing\u{1}";

impl Rendered {
    /// A page that shows no timing.
    pub fn whole(body: Bytes) -> Rendered {
        Rendered {
            body,
            timing_at: None,
        }
    }

    /// A page rendered with [`TIMING_MARK`] for its timing (`None` if the mark is not in it).
    pub fn with_timing_hole(page: &str) -> Option<Rendered> {
        let at = page.find(TIMING_MARK)?;
        let mut body = String::with_capacity(page.len() - TIMING_MARK.len());
        body.push_str(&page[..at]);
        body.push_str(&page[at + TIMING_MARK.len()..]);
        Some(Rendered {
            body: Bytes::from(body),
            timing_at: Some(at),
        })
    }

    /// The page's bytes, with `timing` where it goes.
    pub fn with_timing(&self, timing: &str) -> Bytes {
        let Some(at) = self.timing_at else {
            return self.body.clone();
        };
        let mut page = Vec::with_capacity(self.body.len() + timing.len());
        page.extend_from_slice(&self.body[..at]);
        page.extend_from_slice(timing.as_bytes());
        page.extend_from_slice(&self.body[at..]);
        Bytes::from(page)
    }
}

impl RenderedPages {
    pub fn get(&self, etag: &HeaderValue) -> Option<Rendered> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(etag)
            .cloned()
    }

    pub fn keep(&self, etag: HeaderValue, page: Rendered) {
        let mut pages = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if pages.len() >= CAPACITY {
            pages.clear();
        }
        pages.insert(etag, page);
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
        let page = Rendered::whole(Bytes::from_static(b"<p>page</p>"));
        pages.keep(tag.clone(), page.clone());
        assert_eq!(pages.get(&tag), Some(page));
        for n in 0..CAPACITY + 1 {
            let other = HeaderValue::from_str(&format!("W/\"{n}\"")).unwrap();
            pages.keep(other, Rendered::whole(Bytes::new()));
        }
        assert!(pages.0.lock().unwrap().len() <= CAPACITY);
    }

    #[test]
    fn a_page_kept_with_a_hole_gets_each_answer_s_timing_where_the_mark_was() {
        let page = format!("<p>took {TIMING_MARK}</p><p>4 students</p>");
        let kept = Rendered::with_timing_hole(&page).unwrap();
        assert_eq!(
            &kept.with_timing("850 µs")[..],
            "<p>took 850 µs</p><p>4 students</p>".as_bytes()
        );
        assert_eq!(
            &kept.with_timing("1.20 s")[..],
            "<p>took 1.20 s</p><p>4 students</p>".as_bytes()
        );
        assert_eq!(Rendered::with_timing_hole("<p>no timing</p>"), None);
    }
}
