//! A sortable column's header link, for the public list and the staff list.

use crate::models::student::ListOrder;

/// A sortable column's header: where it links, and how the list is sorted by it now.
pub struct SortLink {
    pub href: String,
    /// `aria-sort`'s value when the list is sorted by this column.
    pub aria_sort: Option<&'static str>,
    pub arrow: &'static str,
}

impl SortLink {
    /// The header of the column that `ascending` sorts by: a click sorts by it ascending, or
    /// reverses it when it is the order already. `keep` (the search and filters, encoded, each
    /// followed by `&`) is kept; the page goes back to 1.
    pub fn new(current: ListOrder, ascending: ListOrder, keep: &str) -> SortLink {
        let descending = ascending.reversed();
        let (next, aria_sort, arrow) = if current == ascending {
            (descending, Some("ascending"), " ▲")
        } else if current == descending {
            (ascending, Some("descending"), " ▼")
        } else {
            (ascending, None, "")
        };
        SortLink {
            href: format!("?{keep}sort={}", next.as_str()),
            aria_sort,
            arrow,
        }
    }
}
