//! A spreadsheet's students as CSV (`name,age`), read and checked whole before anything is
//! written: the import is all or nothing, so every bad row is reported at once.

use crate::forms::{StudentAge, StudentName};
use crate::models::NewStudent;

/// The largest file: about 100,000 rows of long names.
pub const MAX_BYTES: usize = 10 * 1024 * 1024;
/// The most rows one import takes: one transaction, checked in memory first.
pub const MAX_ROWS: usize = 100_000;
/// The bad rows a refused import lists; the page says how many more there were.
pub const ROWS_SHOWN: usize = 100;

/// Why a file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The file as a whole: not text, the wrong header, no rows, too many (400).
    File(String),
    /// Rows that are not students, by line number, in file order (422).
    Rows(Vec<BadRow>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// The line of the file the row starts on, counting the header as line 1.
    pub line: u64,
    pub reason: String,
}

/// The students in `bytes`: UTF-8 (a byte-order mark is allowed), CRLF or LF, fields quoted as
/// RFC 4180 says, a header row `name,age`, each row checked as the staff form checks it.
pub fn parse(bytes: &[u8]) -> Result<Vec<NewStudent>, Refusal> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(Refusal::File(format!(
            "The file is not UTF-8 text (byte {} is not): save it as “CSV UTF-8”.",
            e.valid_up_to() + 1
        )));
    }
    if bytes.contains(&0) {
        return Err(Refusal::File(
            "The file has NUL bytes, so it is not a CSV text file.".into(),
        ));
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut records = reader.records();
    let header = match records.next() {
        Some(Ok(header)) => header,
        Some(Err(e)) => return Err(Refusal::File(format!("The file is not CSV: {e}."))),
        None => return Err(Refusal::File("The file is empty.".into())),
    };
    let columns: Vec<String> = header.iter().map(|c| c.trim().to_lowercase()).collect();
    if columns != ["name", "age"] {
        return Err(Refusal::File(format!(
            "The first line must be the header name,age, not {:?}.",
            header.iter().collect::<Vec<_>>().join(",")
        )));
    }
    let mut students = Vec::new();
    let mut bad = Vec::new();
    for (rows, record) in records.enumerate() {
        if rows == MAX_ROWS {
            return Err(Refusal::File(format!(
                "The file has more than {MAX_ROWS} rows: split it into smaller files."
            )));
        }
        let record = match record {
            Ok(record) => record,
            Err(e) => return Err(Refusal::File(format!("The file is not CSV: {e}."))),
        };
        let line = record.position().map_or(0, csv::Position::line);
        match student(&record) {
            Ok(student) => students.push(student),
            Err(reason) => bad.push(BadRow { line, reason }),
        }
    }
    if !bad.is_empty() {
        return Err(Refusal::Rows(bad));
    }
    if students.is_empty() {
        return Err(Refusal::File(
            "The file has the header but no students.".into(),
        ));
    }
    Ok(students)
}

fn student(record: &csv::StringRecord) -> Result<NewStudent, String> {
    if record.len() != 2 {
        return Err(format!(
            "expected 2 fields (name,age), found {}",
            record.len()
        ));
    }
    match (
        StudentName::parse(&record[0]),
        StudentAge::parse(&record[1]),
    ) {
        (Ok(name), Ok(age)) => Ok(NewStudent {
            name: name.into_inner(),
            age: age.get(),
        }),
        (name, age) => Err([name.err(), age.err()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(students: &[NewStudent]) -> Vec<(&str, i32)> {
        students.iter().map(|s| (s.name.as_str(), s.age)).collect()
    }

    #[test]
    fn a_spreadsheets_csv_with_a_bom_crlf_and_quotes_is_read() {
        let file =
            "\u{feff}Name,Age\r\n\"Lovelace, Ada\",36\r\n\"Said \"\"Zed\"\"\", 21 \r\nZoë,0\r\n";
        let students = parse(file.as_bytes()).unwrap();
        assert_eq!(
            names(&students),
            [("Lovelace, Ada", 36), ("Said \"Zed\"", 21), ("Zoë", 0)]
        );
        assert_eq!(names(&parse(b"name,age\nA,1").unwrap()), [("A", 1)]);
    }

    #[test]
    fn every_bad_row_is_reported_by_its_line() {
        let file = "name,age\nAda,36\n,20\nBob,151\n\"multi\nline\",x\nCy,20,extra\n";
        let Err(Refusal::Rows(bad)) = parse(file.as_bytes()) else {
            panic!("refused by rows");
        };
        let lines: Vec<(u64, &str)> = bad.iter().map(|b| (b.line, b.reason.as_str())).collect();
        assert_eq!(
            lines,
            [
                (3, "Enter a name."),
                (4, "Enter an age from 0 to 150."),
                (
                    5,
                    "Remove the control characters from the name. \
                     Enter the age as a whole number, e.g. 21."
                ),
                (7, "expected 2 fields (name,age), found 3"),
            ]
        );
    }

    #[test]
    fn a_file_that_is_not_a_students_csv_is_refused_whole() {
        let refused = |bytes: &[u8]| match parse(bytes) {
            Err(Refusal::File(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(refused(b"").contains("empty"));
        assert!(refused(b"id,name,age\n1,A,2\n").contains("header name,age"));
        assert!(refused(b"name,age\n").contains("no students"));
        assert!(refused(b"name,age\nA\xff,1\n").contains("not UTF-8"));
        assert!(refused(b"name,age\nA\0,1\n").contains("NUL"));
        let mut big = String::from("name,age\n");
        for _ in 0..=MAX_ROWS {
            big.push_str("A,1\n");
        }
        assert!(refused(big.as_bytes()).contains("more than 100000 rows"));
    }
}
