//! The CSV import: a form to upload a spreadsheet's students, then all of them in one
//! transaction with one invalidation, or none and every reason why.

use std::sync::Arc;
use std::time::Duration;

use actix_multipart::Multipart;
use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, CustomizeResponder, Either, Responder};
use askama::Template;
use askama_web::WebTemplate;
use futures_util::StreamExt;

use super::students::staff_name;
use crate::csv_import::{self, BadRow, Refusal};
use crate::db;
use crate::error::AppError;
use crate::models::{write_log, Student};
use crate::session;
use crate::views::{AppState, Nav};

/// How long the upload may take: ten megabytes on a slow office link.
const UPLOAD_DEADLINE: Duration = Duration::from_secs(120);
/// A body that goes on past the limit is read (and dropped) up to this much, so that the client
/// gets its 413 rather than a reset connection; beyond it, the connection is closed.
const DRAIN_LIMIT: usize = 4 * csv_import::MAX_BYTES;

#[derive(Template, WebTemplate)]
#[template(path = "admin/import.html")]
pub struct ImportPage {
    nav: Nav,
    csrf_token: String,
    /// Why the file was refused as a whole.
    error: Option<String>,
    /// The first bad rows, and how many more there were.
    bad_rows: Vec<BadRow>,
    more_bad_rows: usize,
}

impl ImportPage {
    fn new(session: &Session) -> Result<ImportPage, AppError> {
        Ok(ImportPage {
            nav: Nav::new(session)?.at("staff"),
            csrf_token: session::csrf_token(session)?,
            error: None,
            bad_rows: Vec::new(),
            more_bad_rows: 0,
        })
    }

    pub fn max_rows(&self) -> String {
        crate::views::thousands(csv_import::MAX_ROWS as i64)
    }
}

pub async fn form(session: Session) -> Result<ImportPage, AppError> {
    ImportPage::new(&session)
}

/// What the form sent: its token and its file.
#[derive(Default)]
struct Upload {
    csrf_token: String,
    file: Option<Vec<u8>>,
    too_large: bool,
}

impl Upload {
    async fn read(mut body: Multipart) -> Result<Upload, AppError> {
        let not_multipart = |e| {
            AppError::BadRequest(format!(
                "Send the file from the import form (multipart/form-data): {e}."
            ))
        };
        let mut upload = Upload::default();
        let mut read = 0usize;
        while let Some(field) = body.next().await {
            let mut field = field.map_err(not_multipart)?;
            let name = field.name().unwrap_or_default().to_owned();
            let mut value = Vec::new();
            while let Some(chunk) = field.next().await {
                let chunk = chunk.map_err(not_multipart)?;
                read += chunk.len();
                if read > DRAIN_LIMIT {
                    return Err(AppError::PayloadTooLarge);
                }
                if read > csv_import::MAX_BYTES {
                    upload.too_large = true;
                }
                if !upload.too_large {
                    value.extend_from_slice(&chunk);
                }
            }
            match &*name {
                "csrf_token" => upload.csrf_token = String::from_utf8_lossy(&value).into_owned(),
                "file" => upload.file = Some(value),
                _ => {}
            }
        }
        Ok(upload)
    }
}

pub async fn import(
    state: web::Data<AppState>,
    session: Session,
    body: Multipart,
) -> Result<Either<web::Redirect, CustomizeResponder<ImportPage>>, AppError> {
    let upload = tokio::time::timeout(UPLOAD_DEADLINE, Upload::read(body))
        .await
        .unwrap_or(Err(AppError::RequestTimeout))?;
    session::verify_csrf(&session, &upload.csrf_token)?;
    let refuse = |status: StatusCode, error: Option<String>, bad: Vec<BadRow>| {
        let mut page = ImportPage::new(&session)?;
        page.more_bad_rows = bad.len().saturating_sub(csv_import::ROWS_SHOWN);
        page.bad_rows = bad.into_iter().take(csv_import::ROWS_SHOWN).collect();
        page.error = error;
        Ok::<_, AppError>(Either::Right(page.customize().with_status(status)))
    };
    if upload.too_large {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("The file is over 10 MiB: split it into smaller files.".into()),
            Vec::new(),
        );
    }
    let Some(file) = upload.file.filter(|f| !f.is_empty()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            Some("Choose a CSV file to import.".into()),
            Vec::new(),
        );
    };
    // A hundred thousand rows take tens of milliseconds to check: off the executor.
    let students = match db::blocking(move || Ok::<_, AppError>(csv_import::parse(&file))).await? {
        Ok(students) => students,
        Err(Refusal::File(why)) => return refuse(StatusCode::BAD_REQUEST, Some(why), Vec::new()),
        Err(Refusal::Rows(bad)) => {
            return refuse(StatusCode::UNPROCESSABLE_ENTITY, None, bad);
        }
    };
    let who = staff_name(&session);
    let (cache, pool) = (Arc::clone(&state.cache), state.db.clone());
    let imported = db::blocking(move || {
        cache.commit_and_invalidate(&pool, move |conn| {
            Student::insert_recorded(conn, &students, &who)?;
            let what = format!(
                "imported {} student{} from a CSV file",
                students.len(),
                if students.len() == 1 { "" } else { "s" }
            );
            write_log::record(conn, &who, &what)?;
            Ok(students.len())
        })
    })
    .await?;
    session::flash(
        &session,
        format!(
            "Imported {imported} student{}.",
            if imported == 1 { "" } else { "s" }
        ),
    );
    Ok(Either::Left(
        web::Redirect::to("/admin/students").see_other(),
    ))
}
