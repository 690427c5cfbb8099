//! How many students have each age: the numbers behind the average page's bar chart.
//!
//! Ages are 0–150 (a CHECK on both backends), so the distribution is a fixed array. It is
//! `Copy`, like the rest of the cached value, so the memory tier and the read path pass it
//! around as they did the average alone (about 600 bytes).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The highest age a student may have (SPEC §2).
pub const MAX_AGE: usize = 150;

/// The number of students of each age.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AgeCounts([u32; MAX_AGE + 1]);

impl Default for AgeCounts {
    fn default() -> Self {
        AgeCounts([0; MAX_AGE + 1])
    }
}

impl std::fmt::Debug for AgeCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.present()).finish()
    }
}

impl AgeCounts {
    /// Adds `count` students of `age`; an age outside 0–150 (impossible under the CHECK) is
    /// left out of the chart rather than failing the page.
    pub fn add(&mut self, age: i32, count: i64) {
        if let Some(slot) = usize::try_from(age).ok().and_then(|a| self.0.get_mut(a)) {
            *slot = slot.saturating_add(u32::try_from(count).unwrap_or(u32::MAX));
        }
    }

    pub fn get(&self, age: usize) -> u32 {
        self.0.get(age).copied().unwrap_or(0)
    }

    /// `(age, count)` for every age that at least one student has, youngest first.
    pub fn present(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(age, &n)| (age, n))
    }

    /// The youngest and the oldest age present, or `None` when there are no students.
    pub fn range(&self) -> Option<(usize, usize)> {
        let mut present = self.present().map(|(age, _)| age);
        let first = present.next()?;
        Some((first, present.last().unwrap_or(first)))
    }
}

/// Stored as a JSON object `{"18": 12, "19": 15}` (ages present only), so `redis-cli` shows it.
impl Serialize for AgeCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.present())
    }
}

impl<'de> Deserialize<'de> for AgeCounts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<usize, u32>::deserialize(deserializer)?;
        let mut counts = AgeCounts::default();
        for (age, n) in map {
            if age > MAX_AGE {
                return Err(serde::de::Error::custom(format!("age {age} out of range")));
            }
            counts.0[age] = n;
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_distribution_is_stored_as_readable_json_and_read_back() {
        let mut counts = AgeCounts::default();
        counts.add(18, 2);
        counts.add(25, 1);
        let json = serde_json::to_string(&counts).unwrap();
        assert_eq!(json, r#"{"18":2,"25":1}"#);
        assert_eq!(serde_json::from_str::<AgeCounts>(&json).unwrap(), counts);
        assert_eq!(counts.range(), Some((18, 25)));
        assert!(serde_json::from_str::<AgeCounts>(r#"{"151":1}"#).is_err());
    }
}
