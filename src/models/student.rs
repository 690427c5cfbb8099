//! The `students` table.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::{name_grams, AgeCounts};
use crate::cache::schema::cache_generation;
use crate::db::DbConn;
use crate::on_backend;
use crate::schema::{student_age_counts, student_id_blocks, student_stats, students};

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

#[derive(QueryableByName)]
struct Lowered {
    #[diesel(sql_type = diesel::sql_types::Text)]
    lowered: String,
}

/// A student as the pages show one.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable, PartialEq, Serialize, Deserialize)]
#[diesel(table_name = students)]
pub struct Student {
    pub id: i32,
    pub name: String,
    pub age: i32,
}

/// A validated student to insert or to write over an existing row.
#[derive(Debug, Clone, Insertable, AsChangeset)]
// Without it, diesel takes every field for one that may be DEFAULT, which SQLite's multi-row
// VALUES cannot say, and inserts a slice one row per statement: 100,000 statements for an
// import, where one a slice takes a fifth of the time.
#[diesel(table_name = students, treat_none_as_default_value = false)]
pub struct NewStudent {
    pub name: String,
    pub age: i32,
}

/// The cached aggregate: how many students have each age, and the average and count that
/// follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AverageAge {
    /// `None` for an empty table (SQL's AVG of nothing is NULL).
    pub average_age: Option<f64>,
    pub student_count: i64,
    /// How many students have each age.
    pub ages: AgeCounts,
}

impl AverageAge {
    /// The average and the count from `(age, count)` groups, exactly as `AVG(age)` and
    /// `COUNT(*)` give them: integer sums, one division.
    pub fn from_groups(groups: &[(i32, i64)]) -> AverageAge {
        let mut ages = AgeCounts::default();
        let (mut sum, mut count) = (0i128, 0i64);
        for &(age, n) in groups {
            ages.add(age, n);
            sum += i128::from(age) * i128::from(n);
            count += n;
        }
        AverageAge {
            average_age: (count > 0).then(|| sum as f64 / count as f64),
            student_count: count,
            ages,
        }
    }

    /// The average as every page and the API show it: to two decimals.
    pub fn average_text(&self) -> Option<String> {
        self.average_age.map(|a| format!("{a:.2}"))
    }

    /// The sum of the ages, exact, from the per-age counts: with the count, the average to
    /// any precision, for an API client that needs more than two decimals.
    pub fn age_sum(&self) -> u64 {
        self.ages
            .present()
            .map(|(age, n)| age as u64 * u64::from(n))
            .sum()
    }
}

/// Pages up to this one are read with OFFSET, which skips at most a thousand rows.
const OFFSET_PAGES: i64 = 20;

/// The ids of `student_id_blocks`: a block holds the ids `block * ID_BLOCK ..`.
const ID_BLOCK: i64 = 1024;

/// The list's page `page` and the total, without counting or skipping the whole table: the
/// total from `student_stats`, a deep page's first row from `student_id_blocks` (both kept by
/// triggers, so exact whoever writes). Runs in one snapshot (the cache runs it in a
/// transaction: several statements), so the count, the blocks and the rows agree.
pub fn list_page(conn: &mut DbConn, page: i64, per_page: i64) -> QueryResult<StudentPage> {
    let total = Student::stored_count(conn)?;
    let skip = (page - 1).saturating_mul(per_page);
    if page <= OFFSET_PAGES {
        let students = Student::page_rows(conn, page, per_page)?;
        return Ok(StudentPage { students, total });
    }
    if skip >= total {
        return Ok(StudentPage {
            students: Vec::new(),
            total,
        });
    }
    // The block holding the skip-th id (counting from 0), and how many ids come before it: a
    // thousand rows at a million students, read in block order.
    let mut before = 0;
    let mut start = None;
    for (block, students) in Student::id_blocks(conn)? {
        if before + students > skip {
            start = Some(block);
            break;
        }
        before += students;
    }
    let students = match start {
        Some(block) => Student::rows_from(
            conn,
            i64::from(block).saturating_mul(ID_BLOCK),
            skip - before,
            per_page,
        )?,
        // The blocks say fewer ids than the count: they cannot, both come from one snapshot.
        None => Vec::new(),
    };
    Ok(StudentPage { students, total })
}

/// The orders a list can be read in: `?sort=` takes a column (`id`, `name`, `age`,
/// `created_at`), with a leading `-` for descending. The public list offers the first three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListOrder {
    #[default]
    Id,
    IdDesc,
    Name,
    NameDesc,
    Age,
    AgeDesc,
    CreatedAt,
    CreatedAtDesc,
}

impl ListOrder {
    pub const ALL: [ListOrder; 8] = [
        ListOrder::Id,
        ListOrder::IdDesc,
        ListOrder::Name,
        ListOrder::NameDesc,
        ListOrder::Age,
        ListOrder::AgeDesc,
        ListOrder::CreatedAt,
        ListOrder::CreatedAtDesc,
    ];

    pub fn parse(raw: &str) -> Option<ListOrder> {
        Some(match raw {
            "id" => ListOrder::Id,
            "-id" => ListOrder::IdDesc,
            "name" => ListOrder::Name,
            "-name" => ListOrder::NameDesc,
            "age" => ListOrder::Age,
            "-age" => ListOrder::AgeDesc,
            "created_at" => ListOrder::CreatedAt,
            "-created_at" => ListOrder::CreatedAtDesc,
            _ => return None,
        })
    }

    /// As `?sort=` says it.
    pub fn as_str(self) -> &'static str {
        match self {
            ListOrder::Id => "id",
            ListOrder::IdDesc => "-id",
            ListOrder::Name => "name",
            ListOrder::NameDesc => "-name",
            ListOrder::Age => "age",
            ListOrder::AgeDesc => "-age",
            ListOrder::CreatedAt => "created_at",
            ListOrder::CreatedAtDesc => "-created_at",
        }
    }

    /// The orders the public list offers: it shows neither ids nor dates.
    pub fn is_public(self) -> bool {
        matches!(
            self,
            ListOrder::Id
                | ListOrder::Name
                | ListOrder::NameDesc
                | ListOrder::Age
                | ListOrder::AgeDesc
        )
    }

    /// The same column the other way round.
    pub fn reversed(self) -> ListOrder {
        match self {
            ListOrder::Id => ListOrder::IdDesc,
            ListOrder::IdDesc => ListOrder::Id,
            ListOrder::Name => ListOrder::NameDesc,
            ListOrder::NameDesc => ListOrder::Name,
            ListOrder::Age => ListOrder::AgeDesc,
            ListOrder::AgeDesc => ListOrder::Age,
            ListOrder::CreatedAt => ListOrder::CreatedAtDesc,
            ListOrder::CreatedAtDesc => ListOrder::CreatedAt,
        }
    }
}

/// Which students a list shows: `?q=`, `?age_min=`, `?age_max=` (both bounds inclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudentFilter {
    /// A case-insensitive substring of the name, as typed.
    pub name_contains: Option<String>,
    pub age_min: Option<i32>,
    pub age_max: Option<i32>,
}

impl StudentFilter {
    pub fn named(name_contains: Option<String>) -> StudentFilter {
        StudentFilter {
            name_contains,
            ..StudentFilter::default()
        }
    }

    fn boxed(
        &self,
        conn: &DbConn,
    ) -> students::BoxedQuery<'static, <DbConn as diesel::Connection>::Backend> {
        let mut query = students::table.into_boxed();
        if let (Some(needle), DbConn::Pg(_)) = (&self.name_contains, conn) {
            // PostgreSQL's index of the names' pairs (`name_grams`), which the LIKE cannot use.
            if let Some(keys) = name_grams::pg_needle_keys(&needle.to_lowercase()) {
                query = query.filter(
                    diesel::dsl::sql::<diesel::sql_types::Bool>("name_grams @> ")
                        .bind::<diesel::sql_types::Text, _>(keys)
                        .sql("::int4[]"),
                );
            }
        }
        if let Some(needle) = &self.name_contains {
            // lower() on both sides: LIKE folds case in SQLite but not in PostgreSQL.
            query = query.filter(
                lower(students::name)
                    .like(like_pattern(&needle.to_lowercase()))
                    .escape('\\'),
            );
        }
        if let Some(min) = self.age_min {
            query = query.filter(students::age.ge(min));
        }
        if let Some(max) = self.age_max {
            query = query.filter(students::age.le(max));
        }
        query
    }

    /// How many students match: without a search, from the per-age counts the triggers keep
    /// (at most 151 rows, whatever the table's size); with one, by counting.
    pub(super) fn count(&self, conn: &mut DbConn) -> QueryResult<i64> {
        if self.name_contains.is_some() {
            return self.boxed(conn).count().get_result(conn);
        }
        if self.age_min.is_none() && self.age_max.is_none() {
            return Student::stored_count(conn);
        }
        let counts: Vec<i64> = student_age_counts::table
            .filter(student_age_counts::age.ge(self.age_min.unwrap_or(0)))
            .filter(student_age_counts::age.le(self.age_max.unwrap_or(i32::MAX)))
            .select(student_age_counts::students)
            .load(conn)?;
        Ok(counts.into_iter().sum())
    }

    /// The matching students in `order`; the id breaks ties, so that a page holds the same
    /// rows however often it is read.
    fn ordered(
        &self,
        conn: &DbConn,
        order: ListOrder,
    ) -> students::BoxedQuery<'static, <DbConn as diesel::Connection>::Backend> {
        let query = self.boxed(conn);
        let postgres = matches!(conn, DbConn::Pg(_));
        match order {
            ListOrder::Id => query.order(students::id.asc()),
            ListOrder::IdDesc => query.order(students::id.desc()),
            // PostgreSQL's name index is `(name, lower(name), id)` (see `student_window`).
            ListOrder::Name if postgres => query.order((
                students::name.asc(),
                lower(students::name).asc(),
                students::id.asc(),
            )),
            ListOrder::NameDesc if postgres => query.order((
                students::name.desc(),
                lower(students::name).desc(),
                students::id.desc(),
            )),
            ListOrder::Name => query.order((students::name.asc(), students::id.asc())),
            ListOrder::NameDesc => query.order((students::name.desc(), students::id.desc())),
            ListOrder::Age => query.order((students::age.asc(), students::id.asc())),
            ListOrder::AgeDesc => query.order((students::age.desc(), students::id.desc())),
            ListOrder::CreatedAt => query.order((students::created_at.asc(), students::id.asc())),
            ListOrder::CreatedAtDesc => {
                query.order((students::created_at.desc(), students::id.desc()))
            }
        }
    }
}

/// A student as the staff list and the CSV export show one: with the time it was added (UTC).
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, PartialEq)]
#[diesel(table_name = students)]
pub struct StudentRecord {
    pub id: i32,
    pub name: String,
    pub age: i32,
    pub created_at: chrono::NaiveDateTime,
}

impl StudentRecord {
    /// `created_at` to the minute, as the staff list prints it.
    pub fn added(&self) -> String {
        self.created_at.format("%Y-%m-%d %H:%M").to_string()
    }
}

/// One page of the list and the size of the whole: what the list pages cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudentPage {
    pub students: Vec<Student>,
    pub total: i64,
}

impl Student {
    /// The aggregate the average page shows, in one statement: the count of each age, from
    /// which the average and the count follow. The database's triggers keep the counts in
    /// `student_age_counts` in every write's own transaction, so this reads at most 151 rows
    /// that agree with `students` in any snapshot, instead of one index entry per student.
    pub fn average_age(conn: &mut DbConn) -> QueryResult<AverageAge> {
        let groups = student_age_counts::table
            .filter(student_age_counts::students.gt(0))
            .order(student_age_counts::age)
            .select((student_age_counts::age, student_age_counts::students))
            .load::<(i32, i64)>(conn)?;
        Ok(AverageAge::from_groups(&groups))
    }

    pub fn count(conn: &mut DbConn) -> QueryResult<i64> {
        students::table.count().get_result(conn)
    }

    /// Students matching `filter` in `order`, `per_page` at a time; `page` counts from 1.
    pub fn page(
        conn: &mut DbConn,
        page: i64,
        per_page: i64,
        filter: &StudentFilter,
        order: ListOrder,
    ) -> QueryResult<StudentPage> {
        let total = filter.count(conn)?;
        let students = filter
            .ordered(conn, order)
            .limit(per_page)
            .offset((page - 1).saturating_mul(per_page))
            .select(Student::as_select())
            .load(conn)?;
        Ok(StudentPage { students, total })
    }

    /// One page in id order by OFFSET, without counting.
    pub fn page_rows(conn: &mut DbConn, page: i64, per_page: i64) -> QueryResult<Vec<Student>> {
        students::table
            .order(students::id)
            .limit(per_page)
            .offset((page - 1).saturating_mul(per_page))
            .select(Student::as_select())
            .load(conn)
    }

    pub fn find(conn: &mut DbConn, id: i32) -> QueryResult<Student> {
        students::table
            .find(id)
            .select(Student::as_select())
            .first(conn)
    }

    // RETURNING and multi-row INSERT do not type-check through the multi-backend connection,
    // so these are compiled once per backend (`on_backend!`), still one statement each.

    // Triggers keep `student_stats`, the per-age counts and the cache's generation mark in the
    // writing statement's transaction, for these and for every other writer.

    pub fn insert(conn: &mut DbConn, new: &NewStudent) -> QueryResult<Student> {
        on_backend!(conn, c => diesel::insert_into(students::table)
            .values(new)
            .returning(Student::as_returning())
            .get_result(c))
    }

    pub fn update(conn: &mut DbConn, id: i32, changes: &NewStudent) -> QueryResult<Student> {
        on_backend!(conn, c => diesel::update(students::table.find(id))
            .set(changes)
            .returning(Student::as_returning())
            .get_result(c))
    }

    /// Deletes the row; `NotFound` when there was none.
    pub fn delete(conn: &mut DbConn, id: i32) -> QueryResult<Student> {
        on_backend!(conn, c => diesel::delete(students::table.find(id))
            .returning(Student::as_returning())
            .get_result(c))
    }

    /// The students with these ids, in id order; ids that match none are left out.
    pub fn find_many(conn: &mut DbConn, ids: &[i32]) -> QueryResult<Vec<Student>> {
        on_backend!(conn, c => students::table
            .filter(students::id.eq_any(ids))
            .order(students::id)
            .select(Student::as_select())
            .load(c))
    }

    /// Deletes the rows with these ids in one statement; returns those there were.
    pub fn delete_many(conn: &mut DbConn, ids: &[i32]) -> QueryResult<Vec<Student>> {
        on_backend!(conn, c => diesel::delete(students::table.filter(students::id.eq_any(ids)))
            .returning(Student::as_returning())
            .get_results(c))
    }

    /// Inserts many rows and records in the history that `who` added each, all or none.
    /// Returns how many were added.
    pub fn insert_recorded(
        conn: &mut DbConn,
        batch: &[NewStudent],
        who: &str,
    ) -> QueryResult<usize> {
        // A savepoint of the caller's transaction, or a transaction of its own. The parts bound
        // a statement's parameters (32,766 in SQLite's default build) and its memory.
        conn.transaction(|conn| {
            for part in batch.chunks(10_000) {
                let inserted = match conn {
                    DbConn::Pg(c) => {
                        // The history is written by the same statement.
                        Self::insert_recorded_pg(c, part, who)?;
                        continue;
                    }
                    DbConn::Sqlite(c) => Self::insert_batch_sqlite(c, part)?,
                };
                super::history::added(conn, who, &inserted)?;
            }
            Ok(batch.len())
        })
    }

    /// PostgreSQL's `insert_recorded`: the rows and their history in one statement, the values
    /// sent as one array a column. Multi-row `VALUES` lists cost a fifth of the import's time
    /// on the server in parsing and binding alone, 15,000 parameters a statement for the
    /// students and 24,000 for their history (1.1 s of 3.9 s for 100,000 rows, measured in
    /// PostgreSQL's log), where arrays are bound once and the history is read from the
    /// inserted rows without leaving the server. The counting triggers run once for the
    /// statement. The names' search keys are made here from the names as `lower()` lowers them
    /// (one statement asks for all), where the trigger that makes them for every other writer
    /// would cost 15 µs a row (the migration `students_name_grams` says more).
    fn insert_recorded_pg(
        c: &mut diesel::PgConnection,
        batch: &[NewStudent],
        who: &str,
    ) -> QueryResult<usize> {
        use diesel::sql_types::{Array, BigInt, Integer, Text};
        let names: Vec<&str> = batch.iter().map(|s| s.name.as_str()).collect();
        let ages: Vec<i32> = batch.iter().map(|s| s.age).collect();
        let lowered: Vec<Lowered> = diesel::sql_query(
            "SELECT lower(name) AS lowered \
             FROM unnest($1::text[]) WITH ORDINALITY AS given(name, n) ORDER BY n",
        )
        .bind::<Array<Text>, _>(&names)
        .load(c)?;
        let keys: Vec<String> = lowered
            .iter()
            .map(|l| name_grams::pg_keys_literal(&l.lowered))
            .collect();
        // `ORDER BY n`: the ids follow the rows' order in the batch (the file's, for an
        // import).
        diesel::sql_query(
            "WITH stored AS ( \
                 INSERT INTO students (name, age, name_grams) \
                 SELECT name, age, keys::int4[] \
                 FROM unnest($1::text[], $2::int4[], $3::text[]) \
                     WITH ORDINALITY AS given(name, age, keys, n) \
                 ORDER BY n \
                 RETURNING id, name, age) \
             INSERT INTO student_history (student_id, at_ms, who, action, name_after, age_after) \
             SELECT id, $4, $5, 'added', name, age FROM stored",
        )
        .bind::<Array<Text>, _>(&names)
        .bind::<Array<Integer>, _>(&ages)
        .bind::<Array<Text>, _>(&keys)
        .bind::<BigInt, _>(super::history::now_ms())
        .bind::<Text, _>(who)
        .execute(c)
    }

    /// SQLite's part of `insert_recorded`: the rows, in one statement. Returns them as stored,
    /// with their ids, for the history.
    fn insert_batch_sqlite(
        c: &mut diesel::SqliteConnection,
        batch: &[NewStudent],
    ) -> QueryResult<Vec<Student>> {
        // SQLite runs triggers once per row, which doubled the time of a million-row
        // `seed` (5.6 s to 11.7 s): the batch sets the flag that skips every per-row
        // INSERT trigger, and does once what they would have done per row (the names'
        // trigram and gram indexes, the per-age counts, the id blocks, the student count, the
        // generation mark). A flag, not dropped triggers: the migration that made it says
        // why the running system must never change its schema. It is set inside this
        // write transaction, which no other connection can see, and cleared before commit.
        // A write first: it takes the write lock (waiting under busy_timeout) before
        // anything is read, so the transaction never has to upgrade a read lock, which
        // SQLite refuses at once when another connection committed in between (see
        // `write_transaction`; `insert_recorded`'s transaction starts with it).
        diesel::sql_query("UPDATE students_bulk_insert SET active = 1").execute(c)?;
        // AUTOINCREMENT: the new ids are above every id there was.
        let highest: Option<i32> = students::table
            .select(diesel::dsl::max(students::id))
            .first(c)?;
        let inserted = diesel::insert_into(students::table)
            .values(batch)
            .execute(c)?;
        diesel::sql_query(
            "INSERT INTO students_name_trigram (rowid, name) \
             SELECT id, name FROM students WHERE id > ?",
        )
        .bind::<diesel::sql_types::Integer, _>(highest.unwrap_or(0))
        .execute(c)?;
        diesel::sql_query("UPDATE students_bulk_insert SET active = 0").execute(c)?;
        // The write lock is this connection's: every row past the highest is ours.
        let inserted_rows: Vec<Student> = students::table
            .filter(students::id.gt(highest.unwrap_or(0)))
            .order(students::id)
            .select(Student::as_select())
            .load(c)?;
        // The grams' tokens, made here rather than by the view `students_name_grams_source`:
        // for 100,000 rows the view's SQL and the index's insert took 1.8 s, the insert alone
        // 0.8 s (measured). They must be the view's very tokens (`name_grams::sqlite_tokens_of`;
        // a test holds them to it): the triggers delete a row from this contentless table by
        // spelling its tokens with the view's SQL, and tokens unlike those would stay behind.
        // One JSON object of id → tokens binds them all (an array of pairs took three times
        // as long: each pair was read again).
        let grams: std::collections::BTreeMap<i32, String> = inserted_rows
            .iter()
            .map(|s| (s.id, name_grams::sqlite_tokens_of(&s.name)))
            .collect();
        diesel::sql_query(
            "INSERT INTO students_name_grams (rowid, grams) \
             SELECT CAST(key AS INTEGER), value FROM json_each(?)",
        )
        .bind::<diesel::sql_types::Text, _>(
            serde_json::to_string(&grams)
                .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?,
        )
        .execute(c)?;
        let mut blocks = std::collections::BTreeMap::<i32, i64>::new();
        for student in &inserted_rows {
            *blocks.entry(student.id / ID_BLOCK as i32).or_default() += 1;
        }
        for (block, n) in blocks {
            diesel::insert_into(student_id_blocks::table)
                .values((
                    student_id_blocks::block.eq(block),
                    student_id_blocks::students.eq(n),
                ))
                .on_conflict(student_id_blocks::block)
                .do_update()
                .set(student_id_blocks::students.eq(student_id_blocks::students + n))
                .execute(c)?;
        }
        let mut ages = AgeCounts::default();
        for student in batch {
            ages.add(student.age, 1);
        }
        for (age, n) in ages.present() {
            diesel::update(student_age_counts::table.find(age as i32))
                .set(student_age_counts::students.eq(student_age_counts::students + i64::from(n)))
                .execute(c)?;
        }
        diesel::update(student_stats::table.find(1))
            .set((
                student_stats::student_count.eq(student_stats::student_count + inserted as i64),
                student_stats::version.eq(student_stats::version + 1),
            ))
            .execute(c)?;
        diesel::update(cache_generation::table)
            .set(cache_generation::generation.eq(cache_generation::generation + 1))
            .execute(c)?;
        Ok(inserted_rows)
    }

    /// The number of students, from `student_stats`: O(1).
    pub fn stored_count(conn: &mut DbConn) -> QueryResult<i64> {
        student_stats::table
            .find(1)
            .select(student_stats::student_count)
            .first(conn)
    }

    /// Every block of ids that has students, and how many, in block order.
    pub fn id_blocks(conn: &mut DbConn) -> QueryResult<Vec<(i32, i64)>> {
        student_id_blocks::table
            .filter(student_id_blocks::students.gt(0))
            .order(student_id_blocks::block)
            .select((student_id_blocks::block, student_id_blocks::students))
            .load(conn)
    }

    /// `per_page` students in id order from the `skip`-th whose id is at least `first_id`.
    pub fn rows_from(
        conn: &mut DbConn,
        first_id: i64,
        skip: i64,
        per_page: i64,
    ) -> QueryResult<Vec<Student>> {
        students::table
            .filter(students::id.ge(i32::try_from(first_id).unwrap_or(i32::MAX)))
            .order(students::id)
            .offset(skip)
            .limit(per_page)
            .select(Student::as_select())
            .load(conn)
    }
}

/// `%needle%` with LIKE's wildcards in the needle taken literally.
pub(super) fn like_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_average_and_count_follow_exactly_from_the_groups() {
        let stats = AverageAge::from_groups(&[(20, 2), (21, 1)]);
        assert_eq!(stats.student_count, 3);
        assert_eq!(format!("{:.2}", stats.average_age.unwrap()), "20.33");
        assert_eq!(stats.ages.get(20), 2);
        assert_eq!(AverageAge::from_groups(&[]).average_age, None);
    }

    #[test]
    fn like_wildcards_in_a_search_are_literal() {
        assert_eq!(like_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }
}
