//! `student_history`: every change made to a student through the application, by whom, with
//! the name and age before and after. Recorded in the change's own transaction, so the history
//! and the data agree.

use diesel::prelude::*;

use super::Student;
use crate::db::DbConn;
use crate::schema::student_history;

/// Rows per INSERT: 8 values a row stays under SQLite's 32,766 bound parameters.
const BATCH: usize = 4_000;

/// One change, as the history page shows it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = student_history)]
pub struct Change {
    pub at_ms: i64,
    pub who: String,
    pub action: String,
    pub name_before: Option<String>,
    pub name_after: Option<String>,
    pub age_before: Option<i32>,
    pub age_after: Option<i32>,
}

/// A field that changed: its name, and its value before and after ("—" for none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub field: &'static str,
    pub before: String,
    pub after: String,
}

impl Change {
    /// The fields whose value differs before and after: both of them for an addition or a
    /// deletion.
    pub fn fields(&self) -> Vec<FieldChange> {
        let shown = |v: Option<String>| v.unwrap_or_else(|| "—".to_owned());
        let mut fields = Vec::new();
        if self.name_before != self.name_after {
            fields.push(FieldChange {
                field: "name",
                before: shown(self.name_before.clone()),
                after: shown(self.name_after.clone()),
            });
        }
        if self.age_before != self.age_after {
            fields.push(FieldChange {
                field: "age",
                before: shown(self.age_before.map(|a| a.to_string())),
                after: shown(self.age_after.map(|a| a.to_string())),
            });
        }
        fields
    }
}

// None is NULL, not DEFAULT: SQLite has no DEFAULT in a multi-row VALUES.
#[derive(Insertable)]
#[diesel(table_name = student_history, treat_none_as_default_value = false)]
struct NewChange<'a> {
    student_id: i32,
    at_ms: i64,
    who: &'a str,
    action: &'static str,
    name_before: Option<&'a str>,
    name_after: Option<&'a str>,
    age_before: Option<i32>,
    age_after: Option<i32>,
}

fn insert(conn: &mut DbConn, changes: &[NewChange]) -> QueryResult<()> {
    // A multi-row INSERT does not type-check through the multi-backend connection.
    for batch in changes.chunks(BATCH) {
        crate::on_backend!(conn, c => diesel::insert_into(student_history::table)
            .values(batch)
            .execute(c))?;
    }
    Ok(())
}

pub(super) fn now_ms() -> i64 {
    crate::cache::trust::now_ms() as i64
}

/// Records that `who` added these students.
pub fn added(conn: &mut DbConn, who: &str, students: &[Student]) -> QueryResult<()> {
    let at_ms = now_ms();
    let changes: Vec<NewChange> = students
        .iter()
        .map(|s| NewChange {
            student_id: s.id,
            at_ms,
            who,
            action: "added",
            name_before: None,
            name_after: Some(&s.name),
            age_before: None,
            age_after: Some(s.age),
        })
        .collect();
    insert(conn, &changes)
}

/// Records that `who` is about to change student `id`, with the name and age it has now, and
/// returns the record for [`changed`] to complete. The row is read, and locked, by the
/// statement that writes the record, so that concurrent changes form one chain in the history
/// (each starting where the one before it ended):
/// - on SQLite, a read as a transaction's first statement would take a shared lock that a
///   concurrent writer's lock then keeps from becoming a write lock (SQLITE_BUSY at once,
///   whatever the busy timeout); a write takes the database's one write lock first;
/// - on PostgreSQL, a plain read takes no lock: two edits would both read the same "before".
///   `FOR UPDATE` waits for the other edit and reads the row as it left it.
///
/// `NotFound` when there is no such student.
pub fn changing(conn: &mut DbConn, who: &str, id: i32) -> QueryResult<i32> {
    use crate::schema::students;
    use diesel::sql_types::{BigInt, Text};
    let current = students::table.filter(students::id.eq(id)).select((
        students::id,
        now_ms().into_sql::<BigInt>(),
        who.to_owned().into_sql::<Text>(),
        "changed".into_sql::<Text>(),
        students::name.nullable(),
        students::age.nullable(),
    ));
    let columns = (
        student_history::student_id,
        student_history::at_ms,
        student_history::who,
        student_history::action,
        student_history::name_before,
        student_history::age_before,
    );
    match conn {
        DbConn::Pg(c) => diesel::insert_into(student_history::table)
            .values(current.for_update())
            .into_columns(columns)
            .returning(student_history::id)
            .get_result(c),
        DbConn::Sqlite(c) => diesel::insert_into(student_history::table)
            .values(current)
            .into_columns(columns)
            .returning(student_history::id)
            .get_result(c),
    }
}

/// Completes the record [`changing`] began, with the student as the change left it.
pub fn changed(conn: &mut DbConn, record: i32, after: &Student) -> QueryResult<()> {
    diesel::update(student_history::table.find(record))
        .set((
            student_history::name_after.eq(&after.name),
            student_history::age_after.eq(after.age),
        ))
        .execute(conn)?;
    Ok(())
}

/// Records that `who` deleted these students.
pub fn deleted(conn: &mut DbConn, who: &str, students: &[Student]) -> QueryResult<()> {
    let at_ms = now_ms();
    let changes: Vec<NewChange> = students
        .iter()
        .map(|s| NewChange {
            student_id: s.id,
            at_ms,
            who,
            action: "deleted",
            name_before: Some(&s.name),
            name_after: None,
            age_before: Some(s.age),
            age_after: None,
        })
        .collect();
    insert(conn, &changes)
}

/// A student's changes, newest first.
pub fn of_student(conn: &mut DbConn, student_id: i32) -> QueryResult<Vec<Change>> {
    student_history::table
        .filter(student_history::student_id.eq(student_id))
        .order(student_history::id.desc())
        .select(Change::as_select())
        .load(conn)
}
