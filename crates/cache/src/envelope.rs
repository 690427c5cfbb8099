//! The stored form of every cached value: what the scripts check, around a payload they never
//! look into.
//!
//! `{"generation": 7, "database": "…", "computed_at_ms": …, "compute_us": …, "payload": …}`.
//! The read script serves a value only at the current generation and from this database
//! (`read_or_lease.lua`); the payload is checked by deserialising it into the query's type, so a
//! value from an older release or typed by hand is a miss, never a wrong page.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A value as it is written.
#[derive(Serialize)]
pub struct Sealed<'a, V> {
    pub generation: u64,
    /// The identity of the database it was computed from (see [`super::owner`]).
    pub database: &'a str,
    /// When it was computed (Unix ms), for the staff cache page's "age".
    pub computed_at_ms: u64,
    /// How long the query took, in microseconds: the early refresh's δ (see [`super::xfetch`]).
    pub compute_us: u64,
    pub payload: &'a V,
}

/// A value as it is read back.
#[derive(Deserialize)]
pub struct Envelope<V> {
    pub generation: u64,
    pub database: String,
    #[serde(default)]
    pub computed_at_ms: u64,
    #[serde(default)]
    pub compute_us: u64,
    pub payload: V,
}

impl<V: DeserializeOwned> Envelope<V> {
    /// `None` for anything that is not a value this application wrote for this payload type.
    pub fn open(json: &str) -> Option<Envelope<V>> {
        serde_json::from_str(json).ok()
    }
}

impl<V: Serialize> Sealed<'_, V> {
    pub fn to_json(&self) -> String {
        // Serialising plain data into a String fails only for maps with non-string keys, which
        // no payload here has; an empty value would be refused by the read script anyway.
        serde_json::to_string(self).unwrap_or_default()
    }
}
