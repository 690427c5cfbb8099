//! A window of the staff list: up to a page of the students that match a filter, in an order,
//! from a place in that order on (keyset pagination: the place is a row's sort key and id, so
//! the millionth row costs what the first does, where `OFFSET` would skip every row before it
//! again on each read).
//!
//! A filter and an order pull the planner two ways. Walking the order's index and keeping the
//! rows that match finds a page at once when most rows match, and reads the whole table when
//! none do; collecting the matches by the filter's own index (the age index, the name trigrams)
//! and sorting them is the other way round. The planners cannot tell which case they are in
//! (SQLite keeps no statistics here; PostgreSQL's guess for `LIKE '%ann%'` is a constant), but
//! this module can: it counts the matches first, cheaply and up to a cap, and picks the plan
//! from the count, then writes the SQL so that the planner has only that plan to choose.

use chrono::NaiveDateTime;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sqlite::Sqlite;

use super::name_grams;
use super::student::{ListOrder, StudentFilter, StudentRecord};
use super::Student;
use crate::db::DbConn;

/// A row's place in an order: the value of the order's column, and the id that breaks ties.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub id: i32,
    pub key: SortKey,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    /// The id orders: the id is the whole key.
    Id,
    Name(String),
    Age(i32),
    Added(NaiveDateTime),
}

/// The longest cursor the list takes: an id, a colon and a name of at most 100 characters of up
/// to 4 bytes each, with room to spare.
const MAX_CURSOR_BYTES: usize = 512;

impl Cursor {
    /// `record`'s place in `order`.
    pub fn of(record: &StudentRecord, order: ListOrder) -> Cursor {
        use ListOrder::*;
        let key = match order {
            Id | IdDesc => SortKey::Id,
            Name | NameDesc => SortKey::Name(record.name.clone()),
            Age | AgeDesc => SortKey::Age(record.age),
            CreatedAt | CreatedAtDesc => SortKey::Added(record.created_at),
        };
        Cursor { id: record.id, key }
    }

    /// As a link carries it: the id, then a colon and the key unless the id is the key.
    pub fn encode(&self) -> String {
        match &self.key {
            SortKey::Id => self.id.to_string(),
            SortKey::Name(name) => format!("{}:{name}", self.id),
            SortKey::Age(age) => format!("{}:{age}", self.id),
            SortKey::Added(at) => format!("{}:{}", self.id, at.format("%Y-%m-%dT%H:%M:%S%.f")),
        }
    }

    /// A cursor that `encode` wrote for `order`; `None` for anything else.
    pub fn parse(raw: &str, order: ListOrder) -> Option<Cursor> {
        use ListOrder::*;
        if raw.len() > MAX_CURSOR_BYTES {
            return None;
        }
        let (id, key) = match order {
            Id | IdDesc => (raw, None),
            _ => {
                let (id, key) = raw.split_once(':')?;
                (id, Some(key))
            }
        };
        let id = id.parse().ok()?;
        let key = match (order, key) {
            (Id | IdDesc, _) => SortKey::Id,
            (Name | NameDesc, Some(name)) => SortKey::Name(name.to_owned()),
            (Age | AgeDesc, Some(age)) => SortKey::Age(age.parse().ok()?),
            (CreatedAt | CreatedAtDesc, Some(at)) => {
                SortKey::Added(NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S%.f").ok()?)
            }
            _ => return None,
        };
        Some(Cursor { id, key })
    }
}

/// How many students match a filter: exactly, or at least `count` when a search was counted
/// only that far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Matches {
    pub count: i64,
    pub capped: bool,
}

/// A search is counted up to this many matches (more, at tables large enough that the plans'
/// crossing point is further out): enough to show any count a person reads, and cheap to reach
/// whether the matches are many (the first ten thousand come at once) or few (the index finds
/// them).
pub const COUNT_CAP: i64 = 10_000;

/// How a read finds its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Walk the order's index from the cursor, keeping the rows that match: right when a page's
    /// worth of matches is near; `chunk` bounds each walk on PostgreSQL (see `walk_pg`).
    Walk { chunk: i64 },
    /// Collect every match by the filter's own indexes, then sort: right when matches are few.
    Collect,
    /// The count found none: reading would only look again.
    Nothing,
}

/// Where a window of the list starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Position {
    First,
    /// The rows after this one.
    After(Cursor),
    /// The rows before this one.
    Before(Cursor),
    /// The last `n` rows.
    Last(i64),
    /// The rows after the first `n` (a page number typed into the address).
    Skip(i64),
}

/// A window's rows, and whether there are matching rows on either side of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub rows: Vec<StudentRecord>,
    pub more_before: bool,
    pub more_after: bool,
    /// The window is the first page, whatever was asked (a step back that reached the start).
    pub is_first: bool,
}

impl StudentFilter {
    /// How many students match, exact without a search (the counts the triggers keep); with
    /// one, counted up to `cap`.
    pub fn matches(&self, conn: &mut DbConn, cap: i64) -> QueryResult<Matches> {
        if self.name_contains.is_none() {
            return Ok(Matches {
                count: self.count(conn)?,
                capped: false,
            });
        }
        let mut sql = Sql::new(conn);
        sql.push("SELECT count(*) AS n FROM (SELECT 1 ");
        self.push_collect_source(&mut sql);
        sql.push(" LIMIT ");
        sql.bind(Bind::Big(cap + 1));
        sql.push(") AS counted");
        let count = sql.load::<Counted>(conn)?.first().map_or(0, |c| c.n);
        Ok(Matches {
            count: count.min(cap),
            capped: count > cap,
        })
    }

    /// The cap for `matches` on a table of `total` students read `limit` rows at a time: at
    /// least the point where the two plans cost the same, so that the count can choose.
    pub fn count_cap(total: i64, limit: i64) -> i64 {
        let crossing = ((limit + 1) as f64 * total as f64).sqrt() as i64;
        COUNT_CAP.max((crossing + 999) / 1_000 * 1_000)
    }

    /// The plan for reading `limit` rows at a time in `order`, given how many of the `total`
    /// students match.
    ///
    /// With `m` of `n` rows matching, a walk reads about `limit * n / m` rows for a window and a
    /// collection reads the `m` matches: the walk wins when `m * m > limit * n` (7,141 matches
    /// at a million students and 51 rows a read).
    pub fn plan(&self, order: ListOrder, matches: Matches, total: i64, limit: i64) -> Plan {
        let rows_per_match = total / matches.count.max(1);
        let chunk = (limit + 1)
            .saturating_mul(rows_per_match)
            .saturating_mul(4)
            .clamp(1_000, 1_000_000);
        if !self.has_residual(order) {
            return Plan::Walk { chunk };
        }
        if !matches.capped && matches.count == 0 {
            return Plan::Nothing;
        }
        let dense = matches.capped
            || i128::from(matches.count) * i128::from(matches.count)
                > i128::from(limit + 1) * i128::from(total);
        if dense {
            Plan::Walk { chunk }
        } else {
            Plan::Collect
        }
    }

    /// The plan for `order` at `limit` rows a read, from a fresh count.
    pub fn plan_reads(
        &self,
        conn: &mut DbConn,
        order: ListOrder,
        limit: i64,
    ) -> QueryResult<(Matches, Plan)> {
        let total = Student::stored_count(conn)?;
        let matches = self.matches(conn, Self::count_cap(total, limit))?;
        Ok((matches, self.plan(order, matches, total, limit)))
    }

    /// Up to `limit` matching students after `after` (from the first without one) in `order`.
    pub fn read(
        &self,
        conn: &mut DbConn,
        order: ListOrder,
        plan: Plan,
        after: Option<&Cursor>,
        limit: i64,
    ) -> QueryResult<Vec<StudentRecord>> {
        match (plan, &*conn) {
            (Plan::Nothing, _) => Ok(Vec::new()),
            (Plan::Collect, _) => self.collect(conn, order, after, limit),
            (Plan::Walk { .. }, DbConn::Sqlite(_)) => self.walk_sqlite(conn, order, after, limit),
            (Plan::Walk { chunk }, DbConn::Pg(_)) => self.walk_pg(conn, order, after, limit, chunk),
        }
    }

    /// The window at `position`: `limit` rows (fewer at the end), and what lies either side.
    pub fn window(
        &self,
        conn: &mut DbConn,
        order: ListOrder,
        plan: Plan,
        position: &Position,
        limit: i64,
    ) -> QueryResult<Window> {
        // One row more than shown says whether there is more that way.
        let (mut rows, backwards, is_first) = match position {
            Position::First => (self.read(conn, order, plan, None, limit + 1)?, false, true),
            Position::After(cursor) => (
                self.read(conn, order, plan, Some(cursor), limit + 1)?,
                false,
                false,
            ),
            Position::Skip(skip) => (
                self.skipped(conn, order, *skip, limit + 1)?,
                false,
                *skip == 0,
            ),
            Position::Before(cursor) => {
                let rows = self.read(conn, order.reversed(), plan, Some(cursor), limit + 1)?;
                if (rows.len() as i64) < limit + 1 {
                    // Back at the start (rows before it went since the link was made): the
                    // first page, full, rather than a short page that is first but not page 1.
                    return self.window(conn, order, plan, &Position::First, limit);
                }
                (rows, true, false)
            }
            Position::Last(n) => (
                self.read(conn, order.reversed(), plan, None, n + 1)?,
                true,
                false,
            ),
        };
        let wanted = match position {
            Position::Last(n) => *n,
            _ => limit,
        };
        let more = rows.len() as i64 > wanted;
        rows.truncate(wanted as usize);
        if backwards {
            rows.reverse();
            Ok(Window {
                rows,
                more_before: more,
                more_after: !matches!(position, Position::Last(_)),
                is_first: false,
            })
        } else {
            Ok(Window {
                rows,
                more_before: !is_first,
                more_after: more,
                is_first,
            })
        }
    }

    /// Whether the filter leaves rows out that `order`'s index range cannot: a search, or an
    /// age range under another order.
    fn has_residual(&self, order: ListOrder) -> bool {
        let by_age = matches!(order, ListOrder::Age | ListOrder::AgeDesc);
        self.name_contains.is_some()
            || (!by_age && (self.age_min.is_some() || self.age_max.is_some()))
    }

    /// `FROM … WHERE …` of the matches, written for their own indexes: the age range as is, the
    /// search through the names' index that holds it. Those indexes find every name that holds
    /// the needle and may find more (FTS5's trigrams fold Unicode case, where SQLite's LIKE
    /// folds ASCII only), so the LIKE that `push_conditions` adds still decides, and a search
    /// means the same whichever plan reads it.
    fn push_collect_source(&self, sql: &mut Sql) {
        let needle = self.name_contains.as_ref().map(|n| n.to_lowercase());
        match (needle, sql.sqlite) {
            // SQLite, three characters or more: the FTS5 trigram table.
            (Some(needle), true) if needle.chars().count() >= 3 => {
                sql.push(
                    "FROM students_name_trigram AS f CROSS JOIN students AS s ON s.id = f.rowid \
                     WHERE f.students_name_trigram MATCH ",
                );
                sql.bind(Bind::Text(format!("\"{}\"", needle.replace('"', "\"\""))));
            }
            // SQLite, one or two: the grams table, which keeps case (its migration says why):
            // the needle in each ASCII case, as the LIKE would match it.
            (Some(needle), true) => {
                sql.push(
                    "FROM students_name_grams AS g CROSS JOIN students AS s ON s.id = g.rowid \
                     WHERE g.students_name_grams MATCH ",
                );
                sql.bind(Bind::Text(name_grams::sqlite_tokens(&needle)));
            }
            // PostgreSQL, any length: the GIN index of each lowered name's characters and
            // pairs, for the rows that hold every pair of the needle (or its one character).
            (Some(needle), false) => match name_grams::pg_needle_keys(&needle) {
                Some(keys) => {
                    sql.push("FROM students AS s WHERE s.name_grams @> ");
                    sql.bind(Bind::Text(keys));
                    sql.push("::int4[]");
                }
                None => sql.push("FROM students AS s WHERE 1 = 1"),
            },
            (None, _) => sql.push("FROM students AS s WHERE 1 = 1"),
        }
        self.push_conditions(sql, Indexed::Yes);
    }

    /// ` AND …` for each part of the filter.
    fn push_conditions(&self, sql: &mut Sql, indexed: Indexed) {
        // SQLite's unary `+` keeps a column from being looked up by an index, so that the walk
        // stays on the order's index.
        let age = match (indexed, sql.sqlite) {
            (Indexed::No, true) => "+s.age",
            _ => "s.age",
        };
        if let Some(needle) = &self.name_contains {
            // lower() on both sides: LIKE folds case in SQLite but not in PostgreSQL.
            sql.push(" AND ");
            sql.push(sql.lowered.unwrap_or(LOWER_NAME));
            sql.push(" LIKE ");
            sql.bind(Bind::Text(super::student::like_pattern(
                &needle.to_lowercase(),
            )));
            sql.push(" ESCAPE '\\'");
        }
        if indexed == Indexed::Residual {
            return;
        }
        self.push_age_range(sql, age);
    }

    fn push_age_range(&self, sql: &mut Sql, age: &str) {
        if let Some(min) = self.age_min {
            sql.push(&format!(" AND {age} >= "));
            sql.bind(Bind::Int(min));
        }
        if let Some(max) = self.age_max {
            sql.push(&format!(" AND {age} <= "));
            sql.bind(Bind::Int(max));
        }
    }

    /// Every match, by the filter's indexes, then sorted: `MATERIALIZED` keeps the planner from
    /// trading the filter's index for the order's.
    fn collect(
        &self,
        conn: &mut DbConn,
        order: ListOrder,
        after: Option<&Cursor>,
        limit: i64,
    ) -> QueryResult<Vec<StudentRecord>> {
        let mut sql = Sql::new(conn);
        sql.push("WITH matched AS MATERIALIZED (SELECT s.id, s.name, s.age, s.created_at ");
        self.push_collect_source(&mut sql);
        sql.push(") SELECT s.id, s.name, s.age, s.created_at FROM matched AS s WHERE 1 = 1");
        sql.lowered = None;
        push_after(&mut sql, order, after);
        push_order_limit(&mut sql, order, limit);
        sql.load(conn)
    }

    /// SQLite: one statement on the order's index, the rest of the filter out of the index's
    /// reach (`+`); SQLite reads the index in order and stops at `limit` matches.
    fn walk_sqlite(
        &self,
        conn: &mut DbConn,
        order: ListOrder,
        after: Option<&Cursor>,
        limit: i64,
    ) -> QueryResult<Vec<StudentRecord>> {
        let mut sql = Sql::new(conn);
        sql.push("SELECT s.id, s.name, s.age, s.created_at FROM students AS s WHERE 1 = 1");
        push_after(&mut sql, order, after);
        self.push_walk_conditions(&mut sql, order);
        push_order_limit(&mut sql, order, limit);
        sql.load(conn)
    }

    /// PostgreSQL has no way to keep a condition off an index, and with one it may sort the
    /// whole table rather than walk; so the walk is its own subquery of at most `chunk` rows in
    /// order (an index scan, which the outer query stops pulling from once it has `limit`
    /// matches), and when a chunk holds too few, the next starts where it ended.
    fn walk_pg(
        &self,
        conn: &mut DbConn,
        order: ListOrder,
        after: Option<&Cursor>,
        limit: i64,
        chunk: i64,
    ) -> QueryResult<Vec<StudentRecord>> {
        let by_name = order_column(order) == Some("name");
        if by_name && self.age_min.is_none() && self.age_max.is_none() {
            return self.walk_pg_names(conn, order, after, limit);
        }
        let mut rows: Vec<StudentRecord> = Vec::new();
        let mut from = after.cloned();
        loop {
            let mut sql = Sql::new(conn);
            sql.push("SELECT s.id, s.name, s.age, s.created_at FROM (");
            self.push_walked(&mut sql, order, from.as_ref());
            sql.push(" LIMIT ");
            sql.bind(Bind::Big(chunk));
            sql.push(") AS s WHERE 1 = 1");
            if by_name {
                // Carried out of the index: the outer query reads the order the walk made
                // and stops pulling at its page, where `lower(s.name)` would sort again.
                sql.lowered = Some("s.name_lowered");
            }
            if self.has_residual(order) {
                self.push_conditions(&mut sql, Indexed::Yes);
            }
            push_order_limit(&mut sql, order, limit - rows.len() as i64);
            rows.extend(sql.load::<StudentRecord>(conn)?);
            if rows.len() as i64 >= limit || !self.has_residual(order) {
                return Ok(rows);
            }
            // Too few matches in this chunk: go on after its last row, if it had `chunk` rows.
            let mut sql = Sql::new(conn);
            self.push_walked(&mut sql, order, from.as_ref());
            sql.push(" LIMIT 1 OFFSET ");
            sql.bind(Bind::Big(chunk - 1));
            match sql.load::<StudentRecord>(conn)?.first() {
                Some(end) => from = Some(Cursor::of(end, order)),
                None => return Ok(rows),
            }
        }
    }

    /// A search alone under a name order needs nothing the `(name, lower(name), id)` index
    /// lacks, so the walk reads that index alone (an index-only scan, the LIKE on the lowered
    /// name it holds) and the table only for the rows it keeps: matches may lie far along the
    /// order (no name before "Chloe" holds "oe", a fifth of the table by name): reading the
    /// table for each row skipped cost ten times more, and lowering each name it passes three
    /// times more than reading the lowered name from the index.
    /// One statement, no chunks: no other index can serve the LIKE, so PostgreSQL walks (and a
    /// chunk's end would be read twice).
    fn walk_pg_names(
        &self,
        conn: &mut DbConn,
        order: ListOrder,
        after: Option<&Cursor>,
        limit: i64,
    ) -> QueryResult<Vec<StudentRecord>> {
        let mut sql = Sql::new(conn);
        sql.push("SELECT s.id, s.name, s.age, s.created_at FROM students AS s JOIN (");
        sql.push("SELECT s.id FROM students AS s WHERE 1 = 1");
        push_after(&mut sql, order, after);
        self.push_conditions(&mut sql, Indexed::Yes);
        push_order_limit(&mut sql, order, limit);
        sql.push(") AS kept ON kept.id = s.id");
        sql.lowered = None;
        push_order(&mut sql, order);
        sql.load(conn)
    }

    /// The rows of the walk in order from `after`. Under the age order the age range is a
    /// range of the `(age, id)` index, so it goes in here, as row comparisons: written
    /// `age >= 20`, PostgreSQL reads the whole range through a bitmap and sorts it (a quarter
    /// of the table for ages 20–21, 160 ms) rather than walk it in order.
    fn push_walked(&self, sql: &mut Sql, order: ListOrder, after: Option<&Cursor>) {
        sql.push("SELECT s.id, s.name, s.age, s.created_at");
        if order_column(order) == Some("name") && !sql.sqlite {
            sql.push(", lower(s.name) AS name_lowered");
        }
        sql.push(" FROM students AS s WHERE 1 = 1");
        push_after(sql, order, after);
        if matches!(order, ListOrder::Age | ListOrder::AgeDesc) {
            if let Some(min) = self.age_min {
                sql.push(" AND (s.age, s.id) >= (");
                sql.bind(Bind::Int(min));
                sql.push(", ");
                sql.bind(Bind::Int(i32::MIN));
                sql.push(")");
            }
            if let Some(max) = self.age_max {
                sql.push(" AND (s.age, s.id) <= (");
                sql.bind(Bind::Int(max));
                sql.push(", ");
                sql.bind(Bind::Int(i32::MAX));
                sql.push(")");
            }
        }
        push_order(sql, order);
    }

    fn push_walk_conditions(&self, sql: &mut Sql, order: ListOrder) {
        if matches!(order, ListOrder::Age | ListOrder::AgeDesc) {
            self.push_age_range(sql, "s.age");
            self.push_conditions(sql, Indexed::Residual);
        } else {
            self.push_conditions(sql, Indexed::No);
        }
    }

    /// A page number typed into the address: `OFFSET`, as there is no row to start from.
    /// PostgreSQL is offered the names' index too (its planner weighs it against the order's);
    /// SQLite's would be joined first and the matches sorted, however many.
    fn skipped(
        &self,
        conn: &mut DbConn,
        order: ListOrder,
        skip: i64,
        limit: i64,
    ) -> QueryResult<Vec<StudentRecord>> {
        let mut sql = Sql::new(conn);
        sql.push("SELECT s.id, s.name, s.age, s.created_at ");
        if sql.sqlite {
            sql.push("FROM students AS s WHERE 1 = 1");
            self.push_conditions(&mut sql, Indexed::Yes);
        } else {
            self.push_collect_source(&mut sql);
        }
        push_order_limit(&mut sql, order, limit);
        sql.push(" OFFSET ");
        sql.bind(Bind::Big(skip));
        sql.load(conn)
    }
}

/// Whether a condition may be looked up by an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Indexed {
    Yes,
    /// Out of an index's reach (SQLite's walk).
    No,
    /// The search only: the age range is part of the walk's index range.
    Residual,
}

/// ` AND (column, id) > (key, id)`, the way `order` runs: a row comparison, which both
/// databases read as a range of the `(column, id)` index (PostgreSQL's name index has the
/// lowered name between them).
fn push_after(sql: &mut Sql, order: ListOrder, after: Option<&Cursor>) {
    let Some(after) = after else {
        return;
    };
    let column = order_column(order);
    let beyond = if descending(order) { "<" } else { ">" };
    match (&after.key, column, sql.lowered) {
        (SortKey::Id, _, _) | (_, None, _) => {
            sql.push(&format!(" AND s.id {beyond} "));
            sql.bind(Bind::Int(after.id));
            return;
        }
        (SortKey::Name(name), _, Some(lowered)) => {
            // The index's three columns (see `Sql::lowered`), so that the walk starts in it.
            sql.push(&format!(" AND (s.name, {lowered}, s.id) {beyond} ("));
            sql.bind(Bind::Text(name.clone()));
            sql.push(", lower(");
            sql.bind(Bind::Text(name.clone()));
            sql.push("), ");
            sql.bind(Bind::Int(after.id));
            sql.push(")");
            return;
        }
        (_, Some(column), _) => sql.push(&format!(" AND (s.{column}, s.id) {beyond} (")),
    }
    match &after.key {
        SortKey::Name(name) => sql.bind(Bind::Text(name.clone())),
        SortKey::Age(age) => sql.bind(Bind::Int(*age)),
        SortKey::Added(at) => sql.bind(Bind::At(*at)),
        SortKey::Id => unreachable!("the id order is handled above"),
    }
    sql.push(", ");
    sql.bind(Bind::Int(after.id));
    sql.push(")");
}

fn push_order(sql: &mut Sql, order: ListOrder) {
    let direction = if descending(order) { "DESC" } else { "ASC" };
    match (order_column(order), sql.lowered) {
        // The same order as `(name, id)`, but the planner sees that the index serves it only
        // when the query names all three columns (else it sorts each run of equal names again,
        // and a walk no longer stops at its page).
        (Some("name"), Some(lowered)) => sql.push(&format!(
            " ORDER BY s.name {direction}, {lowered} {direction}, s.id {direction}"
        )),
        (Some(column), _) => sql.push(&format!(
            " ORDER BY s.{column} {direction}, s.id {direction}"
        )),
        (None, _) => sql.push(&format!(" ORDER BY s.id {direction}")),
    }
}

fn push_order_limit(sql: &mut Sql, order: ListOrder, limit: i64) {
    push_order(sql, order);
    sql.push(" LIMIT ");
    sql.bind(Bind::Big(limit));
}

/// The order's column besides the id: `None` for the id orders.
fn order_column(order: ListOrder) -> Option<&'static str> {
    use ListOrder::*;
    match order {
        Id | IdDesc => None,
        Name | NameDesc => Some("name"),
        Age | AgeDesc => Some("age"),
        CreatedAt | CreatedAtDesc => Some("created_at"),
    }
}

fn descending(order: ListOrder) -> bool {
    use ListOrder::*;
    matches!(order, IdDesc | NameDesc | AgeDesc | CreatedAtDesc)
}

/// A value for a placeholder.
enum Bind {
    Int(i32),
    Big(i64),
    Text(String),
    At(NaiveDateTime),
}

/// SQL text and its values, with each backend's placeholders (`?`, `$1`): the plans above need
/// derived tables and `MATERIALIZED`, which Diesel's query builder does not write.
struct Sql {
    text: String,
    binds: Vec<Bind>,
    sqlite: bool,
    /// The lowered name where the rows come from PostgreSQL's `(name, lower(name), id)` index
    /// (see its migration): the middle column that a name order and its cursor name, so that
    /// the index serves the order whole, and that a search reads instead of lowering each
    /// name. `None` where rows are sorted anyway (SQLite, a collection), which then order by
    /// `(name, id)`, the same order.
    lowered: Option<&'static str>,
}

/// The lowered name of a row read from the table.
const LOWER_NAME: &str = "lower(s.name)";

impl Sql {
    fn new(conn: &DbConn) -> Sql {
        let sqlite = matches!(conn, DbConn::Sqlite(_));
        Sql {
            text: String::with_capacity(512),
            binds: Vec::new(),
            sqlite,
            lowered: (!sqlite).then_some(LOWER_NAME),
        }
    }

    fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    fn bind(&mut self, value: Bind) {
        self.binds.push(value);
        if self.sqlite {
            self.text.push('?');
        } else {
            self.text.push_str(&format!("${}", self.binds.len()));
        }
    }

    fn load<U>(self, conn: &mut DbConn) -> QueryResult<Vec<U>>
    where
        U: QueryableByName<Pg> + QueryableByName<Sqlite> + 'static,
    {
        use diesel::sql_types::{BigInt, Integer, Text, Timestamp};
        let Sql { text, binds, .. } = self;
        crate::on_backend!(conn, c => {
            let mut query = diesel::sql_query(text).into_boxed();
            for value in binds {
                query = match value {
                    Bind::Int(v) => query.bind::<Integer, _>(v),
                    Bind::Big(v) => query.bind::<BigInt, _>(v),
                    Bind::Text(v) => query.bind::<Text, _>(v),
                    Bind::At(v) => query.bind::<Timestamp, _>(v),
                };
            }
            query.load::<U>(c)
        })
    }
}

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> StudentRecord {
        StudentRecord {
            id: 42,
            name: "Ann: the 2nd".into(),
            age: 20,
            created_at: NaiveDateTime::parse_from_str(
                "2026-01-02 03:04:05.5",
                "%Y-%m-%d %H:%M:%S%.f",
            )
            .unwrap(),
        }
    }

    #[test]
    fn a_cursor_reads_back_as_written_in_every_order() {
        for order in ListOrder::ALL {
            let cursor = Cursor::of(&record(), order);
            assert_eq!(
                Cursor::parse(&cursor.encode(), order),
                Some(cursor),
                "{order:?}"
            );
        }
        assert_eq!(
            Cursor::of(&record(), ListOrder::Name).encode(),
            "42:Ann: the 2nd"
        );
    }

    #[test]
    fn a_cursor_for_another_order_or_garbage_is_refused() {
        assert_eq!(Cursor::parse("42:Ann", ListOrder::Age), None);
        assert_eq!(Cursor::parse("x", ListOrder::Id), None);
        assert_eq!(Cursor::parse("42", ListOrder::Name), None);
        assert_eq!(Cursor::parse(&"9".repeat(600), ListOrder::Id), None);
    }

    #[test]
    fn the_count_picks_the_plan_at_the_crossing() {
        let filter = StudentFilter {
            age_min: Some(20),
            ..StudentFilter::default()
        };
        let at =
            |count, capped| filter.plan(ListOrder::Name, Matches { count, capped }, 1_000_000, 50);
        assert_eq!(at(7_000, false), Plan::Collect);
        assert_eq!(at(0, false), Plan::Nothing);
        assert!(matches!(at(7_200, false), Plan::Walk { .. }));
        assert!(matches!(at(10_000, true), Plan::Walk { .. }));
        // Under its own order an age range is an index range: always a walk.
        assert!(matches!(
            filter.plan(
                ListOrder::Age,
                Matches {
                    count: 1,
                    capped: false
                },
                1_000_000,
                50
            ),
            Plan::Walk { .. }
        ));
    }
}
