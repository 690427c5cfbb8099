//! The log: `env_logger` (so `RUST_LOG` filters as ever), as text or as one JSON object a line
//! (`LOG_FORMAT=json`, for Loki, Elasticsearch or CloudWatch), every line written while serving
//! a request naming that request's `X-Request-Id`.
//!
//! The access log line is written by the request's own middleware (`startup::observe`) under
//! [`ACCESS`], with its fields as key-values (`method`, `path`, `status`, `duration_ms`); the
//! JSON format puts them at the top level.

use std::io::Write;

use log::kv::{Key, Value, VisitSource};
use serde_json::{Map, Value as Json};

use crate::cache::timings::current_request_id;

/// The target of the access log lines: `RUST_LOG=cachewithredis::access=warn` drops them.
pub const ACCESS: &str = "cachewithredis::access";

/// `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(value: &str) -> Option<LogFormat> {
        match value.trim() {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Installs the logger; `info` unless `RUST_LOG` says otherwise.
pub fn init(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    match format {
        LogFormat::Text => builder.format(|buf, record| {
            write!(
                buf,
                "[{} {:<5} {}] {}",
                buf.timestamp_millis(),
                record.level(),
                record.target(),
                record.args()
            )?;
            if let Some(id) = current_request_id() {
                write!(buf, " request_id={id}")?;
            }
            writeln!(buf)
        }),
        LogFormat::Json => builder.format(|buf, record| {
            let line = json_line(
                &buf.timestamp_millis().to_string(),
                record,
                current_request_id().as_deref(),
            );
            writeln!(buf, "{line}")
        }),
    };
    builder.init();
}

/// One JSON object: `time`, `level`, `target`, `message`, the request's `request_id`, and the
/// record's key-values.
fn json_line(time: &str, record: &log::Record, request_id: Option<&str>) -> String {
    let mut line = Map::new();
    line.insert("time".into(), time.into());
    line.insert("level".into(), record.level().as_str().into());
    line.insert("target".into(), record.target().into());
    line.insert("message".into(), record.args().to_string().into());
    if let Some(id) = request_id {
        line.insert("request_id".into(), id.into());
    }
    let _ = record.key_values().visit(&mut Fields(&mut line));
    Json::Object(line).to_string()
}

struct Fields<'a>(&'a mut Map<String, Json>);

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let json = if let Some(n) = value.to_u64() {
            Json::from(n)
        } else if let Some(n) = value.to_f64() {
            Json::from(n)
        } else {
            Json::from(value.to_string())
        };
        self.0.insert(key.as_str().to_owned(), json);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_has_the_fields_and_the_records_key_values() {
        let args = format_args!("GET /students 200");
        let kvs: [(&str, Value); 4] = [
            ("method", Value::from("GET")),
            ("path", Value::from("/students")),
            ("status", Value::from(200u64)),
            ("duration_ms", Value::from(1.5f64)),
        ];
        let record = log::Record::builder()
            .args(args)
            .level(log::Level::Info)
            .target(ACCESS)
            .key_values(&kvs)
            .build();
        let line = json_line("2026-12-06T20:00:00.000Z", &record, Some("abc-1"));
        let json: Json = serde_json::from_str(&line).unwrap();
        assert_eq!(json["level"], "INFO");
        assert_eq!(json["target"], ACCESS);
        assert_eq!(json["message"], "GET /students 200");
        assert_eq!(json["request_id"], "abc-1");
        assert_eq!(json["method"], "GET");
        assert_eq!(json["status"], 200);
        assert_eq!(json["duration_ms"], 1.5);
        assert!(!line.contains('\n'));
    }

    #[test]
    fn log_format_is_text_or_json() {
        assert_eq!(LogFormat::parse("json"), Some(LogFormat::Json));
        assert_eq!(LogFormat::parse("text"), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse("yaml"), None);
    }
}
