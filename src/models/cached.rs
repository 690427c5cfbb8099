//! The queries the cache serves (see `cache::query`): the average page's aggregate and the
//! pages of the public list. Each says what its key is and how to compute it; the cache does
//! the rest, and one invalidation covers both.

use std::borrow::Cow;

use diesel::QueryResult;

use super::student::{self, StudentFilter, StudentPage};
use super::student_window::Matches;
use super::{AverageAge, Student};
use crate::cache::CachedQuery;
use crate::db::DbConn;

/// Averages closer than this are equal: both come from the same SQL, but may be rounded
/// differently on the way through JSON.
const TOLERANCE: f64 = 1e-9;

/// The average page's aggregate.
#[derive(Clone, Copy, Debug, Default)]
pub struct AverageAgeQuery;

/// The key of [`AverageAgeQuery`], under the prefix.
pub const AVERAGE_AGE_KEY: &str = "students:average_age";

impl CachedQuery for AverageAgeQuery {
    type Value = AverageAge;

    fn key(&self) -> Cow<'static, str> {
        Cow::Borrowed(AVERAGE_AGE_KEY)
    }

    fn compute(&self, conn: &mut DbConn) -> QueryResult<AverageAge> {
        Student::average_age(conn)
    }

    /// One `SELECT` over the per-age counts.
    fn several_statements(&self) -> bool {
        false
    }

    fn agrees(&self, a: &AverageAge, b: &AverageAge) -> bool {
        a.student_count == b.student_count
            && a.ages == b.ages
            && match (a.average_age, b.average_age) {
                (Some(x), Some(y)) => (x - y).abs() <= TOLERANCE * x.abs().max(1.0),
                (None, None) => true,
                _ => false,
            }
    }

    fn describe(&self, value: &AverageAge) -> String {
        format!(
            "{} students averaging {:?}",
            value.student_count, value.average_age
        )
    }
}

/// One page of the public list, `students:page:{n}`.
#[derive(Clone)]
pub struct StudentListQuery {
    pub page: i64,
    pub per_page: i64,
}

impl CachedQuery for StudentListQuery {
    type Value = StudentPage;

    fn key(&self) -> Cow<'static, str> {
        Cow::Owned(format!("students:page:{}", self.page))
    }

    fn compute(&self, conn: &mut DbConn) -> QueryResult<StudentPage> {
        student::list_page(conn, self.page, self.per_page)
    }

    /// A page past the end answers 404, and anyone may ask for any number: not stored.
    fn worth_storing(&self, value: &StudentPage) -> bool {
        self.page == 1 || !value.students.is_empty()
    }

    fn agrees(&self, a: &StudentPage, b: &StudentPage) -> bool {
        a == b
    }

    fn describe(&self, value: &StudentPage) -> String {
        format!(
            "page {} of {} students: ids {:?}",
            self.page,
            value.total,
            value.students.iter().map(|s| s.id).collect::<Vec<_>>()
        )
    }
}

/// One page of the public list searched or sorted (`?q=`, `?sort=`):
/// `students:list:{sort}:{page}:{q}`, the search in hex so that any text makes a valid,
/// unambiguous key. Written by any visitor, so bounded like the list's pages: the memory tier
/// holds at most `MAX_ENTRIES` values, Redis each for the TTL, and a page past the end or a
/// search that finds nothing beyond page 1 is not stored.
#[derive(Clone, Debug)]
pub struct StudentSearchQuery {
    /// Lowercase or not, as typed: the search folds case itself.
    pub name_contains: Option<String>,
    pub order: student::ListOrder,
    pub page: i64,
    pub per_page: i64,
}

impl CachedQuery for StudentSearchQuery {
    type Value = StudentPage;

    fn key(&self) -> Cow<'static, str> {
        Cow::Owned(format!(
            "students:list:{}:{}:{}",
            self.order.as_str(),
            self.page,
            hex(self.name_contains.as_deref().unwrap_or_default())
        ))
    }

    fn compute(&self, conn: &mut DbConn) -> QueryResult<StudentPage> {
        Student::page(
            conn,
            self.page,
            self.per_page,
            &StudentFilter::named(self.name_contains.clone()),
            self.order,
        )
    }

    fn worth_storing(&self, value: &StudentPage) -> bool {
        self.page == 1 || !value.students.is_empty()
    }

    fn agrees(&self, a: &StudentPage, b: &StudentPage) -> bool {
        a == b
    }

    fn describe(&self, value: &StudentPage) -> String {
        format!(
            "page {} of {} students matching {:?} by {}: ids {:?}",
            self.page,
            value.total,
            self.name_contains,
            self.order.as_str(),
            value.students.iter().map(|s| s.id).collect::<Vec<_>>()
        )
    }
}

/// `text`'s bytes in hex: any search as a part of a key or a validator, unambiguous and with
/// nothing in it that Redis or HTTP would read as a separator.
pub fn hex(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len() * 2);
    for byte in text.bytes() {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// How many students a staff search matches (`/admin/students?q=…`), with the number of
/// students the plan is chosen against: `students:staff_count:{limit}:{age_min}:{age_max}:{q}`.
///
/// At a million students the count is most of a searched staff page's time (BENCHMARKS.md, "The
/// staff search's count, cached"), and it depends on neither the order nor the place in it: every
/// page of a search, in every order, reads the one count until the next write, which the cache's
/// generation makes stale for all of them at once. A list without a search is not counted this
/// way: its count is a row the triggers keep.
#[derive(Clone, Debug)]
pub struct StaffSearchCount {
    pub filter: StudentFilter,
    /// The rows a read takes, which sets how far the count goes (`StudentFilter::count_cap`).
    pub limit: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SearchCount {
    /// Every student, as the count saw them.
    pub total: i64,
    pub matches: Matches,
}

impl CachedQuery for StaffSearchCount {
    type Value = SearchCount;

    fn key(&self) -> Cow<'static, str> {
        let bound = |b: Option<i32>| b.map(|b| b.to_string()).unwrap_or_default();
        Cow::Owned(format!(
            "students:staff_count:{}:{}:{}:{}",
            self.limit,
            bound(self.filter.age_min),
            bound(self.filter.age_max),
            hex(self.filter.name_contains.as_deref().unwrap_or_default())
        ))
    }

    fn compute(&self, conn: &mut DbConn) -> QueryResult<SearchCount> {
        let total = Student::stored_count(conn)?;
        let cap = StudentFilter::count_cap(total, self.limit);
        Ok(SearchCount {
            total,
            matches: self.filter.matches(conn, cap)?,
        })
    }

    fn agrees(&self, a: &SearchCount, b: &SearchCount) -> bool {
        a == b
    }

    fn describe(&self, value: &SearchCount) -> String {
        format!(
            "{:?} of {} students match {:?}",
            value.matches, value.total, self.filter
        )
    }
}
