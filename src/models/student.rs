//! The `students` table.

use diesel::dsl::{count_star, sql};
use diesel::prelude::*;
use diesel::sql_types::{Double, Nullable};
use serde::{Deserialize, Serialize};

use crate::db::DbConn;
use crate::on_backend;
use crate::schema::students;

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// A student as the pages show one.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable, PartialEq)]
#[diesel(table_name = students)]
pub struct Student {
    pub id: i32,
    pub name: String,
    pub age: i32,
}

/// A validated student to insert or to write over an existing row.
#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = students)]
pub struct NewStudent {
    pub name: String,
    pub age: i32,
}

/// The cached aggregate: what one `SELECT AVG(age), COUNT(*)` returns.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AverageAge {
    /// `None` for an empty table (SQL's AVG of nothing is NULL).
    pub average_age: Option<f64>,
    pub student_count: i64,
}

/// One page of the list and the size of the whole.
pub struct StudentPage {
    pub students: Vec<Student>,
    pub total: i64,
}

impl Student {
    /// The aggregate the average page shows, in one statement.
    pub fn average_age(conn: &mut DbConn) -> QueryResult<AverageAge> {
        // AVG over integers is NUMERIC in the SQL standard; the cast gives a float on every
        // backend. A constant fragment: nothing from the request reaches it.
        let (average_age, student_count) = students::table
            .select((
                sql::<Nullable<Double>>("CAST(AVG(age) AS DOUBLE PRECISION)"),
                count_star(),
            ))
            .first::<(Option<f64>, i64)>(conn)?;
        Ok(AverageAge {
            average_age,
            student_count,
        })
    }

    pub fn count(conn: &mut DbConn) -> QueryResult<i64> {
        students::table.count().get_result(conn)
    }

    /// Students in id order, `per_page` at a time; `page` counts from 1. `name_contains`
    /// filters by a case-insensitive substring of the name (case-folded).
    pub fn page(
        conn: &mut DbConn,
        page: i64,
        per_page: i64,
        name_contains: Option<&str>,
    ) -> QueryResult<StudentPage> {
        let filtered = || {
            let mut query = students::table.into_boxed();
            if let Some(needle) = name_contains {
                // lower() on both sides: LIKE folds case in SQLite but not in PostgreSQL.
                query = query.filter(
                    lower(students::name)
                        .like(like_pattern(&needle.to_lowercase()))
                        .escape('\\'),
                );
            }
            query
        };
        let total = filtered().count().get_result(conn)?;
        let students = filtered()
            .order(students::id)
            .limit(per_page)
            .offset((page - 1).saturating_mul(per_page))
            .select(Student::as_select())
            .load(conn)?;
        Ok(StudentPage { students, total })
    }

    pub fn find(conn: &mut DbConn, id: i32) -> QueryResult<Student> {
        students::table
            .find(id)
            .select(Student::as_select())
            .first(conn)
    }

    // RETURNING and multi-row INSERT do not type-check through the multi-backend connection,
    // so these are compiled once per backend (`on_backend!`), still one statement each.

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

    /// Inserts many rows in one statement; the caller chooses the transaction.
    pub fn insert_batch(conn: &mut DbConn, batch: &[NewStudent]) -> QueryResult<usize> {
        on_backend!(conn, c => diesel::insert_into(students::table)
            .values(batch)
            .execute(c))
    }
}

/// `%needle%` with LIKE's wildcards in the needle taken literally.
fn like_pattern(needle: &str) -> String {
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
    fn like_wildcards_in_a_search_are_literal() {
        assert_eq!(like_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }
}
