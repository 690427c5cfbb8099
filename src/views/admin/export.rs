//! `GET /admin/students/export.csv`: the students the staff list shows, with its filters and in
//! its order, as CSV, streamed a batch at a time so that memory does not grow with the table.

use actix_web::{web, HttpResponse};
use futures_util::{stream, StreamExt, TryStreamExt};

use super::students::IndexQuery;
use crate::db;
use crate::error::AppError;
use crate::models::student::{ListOrder, StudentFilter, StudentRecord};
use crate::models::student_window::{Cursor, Plan};
use crate::views::AppState;

/// Rows per database read: one blocking call per batch, and a batch's CSV is all that is ever
/// held (a few hundred KiB).
const BATCH: i64 = 2_000;

pub async fn students_csv(
    state: web::Data<AppState>,
    query: web::Query<IndexQuery>,
) -> Result<HttpResponse, AppError> {
    // A bad parameter is a 400 before anything is sent.
    let (filter, order) = query.parse()?;
    let header = web::Bytes::from_static(b"id,name,age,created_at\r\n");
    let pool = state.db.clone();
    // The state: the plan (chosen by the first read, from the count) and the last row sent;
    // `None` once a short batch said there is no more.
    let rows = stream::try_unfold(
        Some((None::<Plan>, None::<Cursor>)),
        move |state: Option<(Option<Plan>, Option<Cursor>)>| {
            let (pool, filter) = (pool.clone(), filter.clone());
            async move {
                let Some((plan, after)) = state else {
                    return Ok(None);
                };
                let (plan, batch) = next_batch(&pool, filter, order, plan, after).await?;
                if batch.is_empty() {
                    return Ok(None);
                }
                let bytes = csv_rows(&batch)?;
                // A short batch is the last: no read that finds nothing.
                let next = (batch.len() as i64 == BATCH)
                    .then(|| (Some(plan), batch.last().map(|row| Cursor::of(row, order))));
                Ok::<_, AppError>(Some((bytes, next)))
            }
        },
    );
    let body = stream::once(async move { Ok::<_, AppError>(header) })
        .chain(rows)
        .inspect_err(|e| log::error!("the CSV export stopped part-way: {e}"));
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            "attachment; filename=\"students.csv\"",
        ))
        .streaming(body))
}

async fn next_batch(
    pool: &db::DbPool,
    filter: StudentFilter,
    order: ListOrder,
    plan: Option<Plan>,
    after: Option<Cursor>,
) -> Result<(Plan, Vec<StudentRecord>), AppError> {
    db::with_conn(pool, move |conn| {
        let plan = match plan {
            Some(plan) => plan,
            None => filter.plan_reads(conn, order, BATCH)?.1,
        };
        Ok((plan, filter.read(conn, order, plan, after.as_ref(), BATCH)?))
    })
    .await
}

/// The rows in RFC 4180 CSV (CRLF, quotes where needed), each name made safe to open.
fn csv_rows(batch: &[StudentRecord]) -> Result<web::Bytes, AppError> {
    let mut out = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(batch.len() * 48));
    for student in batch {
        out.write_record([
            student.id.to_string(),
            not_a_formula(&student.name),
            student.age.to_string(),
            student.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        ])
        .map_err(AppError::unexpected)?;
    }
    let bytes = out.into_inner().map_err(AppError::unexpected)?;
    Ok(web::Bytes::from(bytes))
}

/// A cell that a spreadsheet would run as a formula (OWASP's "CSV injection": a leading `=`,
/// `+`, `-`, `@`, tab or carriage return) gets a leading `'`, which spreadsheets show as text.
fn not_a_formula(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_that_would_run_as_formulas_are_written_as_text() {
        for cell in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(not_a_formula(cell), format!("'{cell}"));
        }
        assert_eq!(not_a_formula("Ada = 1"), "Ada = 1");
    }
}
