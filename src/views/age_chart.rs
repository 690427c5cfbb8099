//! The average page's bar chart of students per age, laid out for a server-rendered SVG.
//!
//! Every bar carries its age below and its count above, so the chart reads without colour;
//! the page repeats the numbers in a table for screen readers.

use std::sync::{Arc, PoisonError, RwLock};

use askama::Template;

use crate::models::AgeCounts;

/// The SVG's coordinate space; CSS scales it to the page's width.
pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 240;
const LEFT: f64 = 8.0;
const RIGHT: f64 = 8.0;
/// Room above the tallest bar for its count.
const TOP: f64 = 22.0;
/// Between the top of a bar and the baseline of its count.
const COUNT_GAP: f64 = 6.0;
/// Room below the bars for the ages and the axis title.
const BOTTOM: f64 = 44.0;
/// Beyond this many bars, only every n-th age and no counts are printed, so labels never
/// overlap; the table still has every number.
const MAX_LABELS: usize = 32;

/// The chart's HTML, rendered once per distribution: every view of the average page between
/// two writes shows the same one, and laying it out and rendering it cost as much as the rest
/// of a cache hit.
#[derive(Default)]
pub struct RenderedChart(RwLock<Option<(AgeCounts, Arc<str>)>>);

impl RenderedChart {
    /// The chart of `ages`, as HTML; `None` when there are no students.
    pub fn html(&self, ages: &AgeCounts) -> Option<Arc<str>> {
        if let Some((drawn, html)) = &*self.0.read().unwrap_or_else(PoisonError::into_inner) {
            if drawn == ages {
                return Some(Arc::clone(html));
            }
        }
        let chart = AgeChart::new(ages)?;
        let html: Arc<str> = match (ChartFragment { chart: &chart }).render() {
            Ok(html) => html.into(),
            Err(e) => {
                log::error!("the age chart did not render: {e}");
                return None;
            }
        };
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some((*ages, Arc::clone(&html)));
        Some(html)
    }
}

#[derive(Template)]
#[template(path = "students/_chart.html")]
struct ChartFragment<'a> {
    chart: &'a AgeChart,
}

/// One bar: its age, its count, and where to draw it.
pub struct Bar {
    pub age: usize,
    pub count: u32,
    pub x: String,
    pub y: String,
    pub width: String,
    pub height: String,
    /// Where the labels are centred.
    pub middle: String,
    /// The baseline of the count printed above the bar.
    pub count_y: String,
    pub show_age: bool,
    pub show_count: bool,
}

/// The chart: bars for every age from the youngest to the oldest (ages nobody has included,
/// so gaps show), and a one-line summary for the SVG's title.
pub struct AgeChart {
    pub bars: Vec<Bar>,
    pub summary: String,
    pub width: u32,
    pub height: u32,
    /// The y of the baseline and of the age labels.
    pub baseline: String,
    pub age_label_y: String,
    pub axis_title_y: String,
}

impl AgeChart {
    /// `None` when there are no students.
    pub fn new(ages: &AgeCounts) -> Option<AgeChart> {
        let (youngest, oldest) = ages.range()?;
        let n = oldest - youngest + 1;
        let tallest = (youngest..=oldest).map(|a| ages.get(a)).max()?.max(1);
        let plot_width = f64::from(WIDTH) - LEFT - RIGHT;
        let plot_height = f64::from(HEIGHT) - TOP - BOTTOM;
        let baseline = f64::from(HEIGHT) - BOTTOM;
        let step = plot_width / n as f64;
        let bar_width = (step * 0.72).max(1.0);
        let label_every = n.div_ceil(MAX_LABELS);
        let bars = (youngest..=oldest)
            .map(|age| {
                let count = ages.get(age);
                let height = plot_height * f64::from(count) / f64::from(tallest);
                let x = LEFT + step * (age - youngest) as f64 + (step - bar_width) / 2.0;
                Bar {
                    age,
                    count,
                    x: coordinate(x),
                    y: coordinate(baseline - height),
                    width: coordinate(bar_width),
                    height: coordinate(height),
                    middle: coordinate(x + bar_width / 2.0),
                    count_y: coordinate(baseline - height - COUNT_GAP),
                    show_age: (age - youngest) % label_every == 0,
                    show_count: label_every == 1,
                }
            })
            .collect::<Vec<_>>();
        let (mode_age, mode_count) = bars
            .iter()
            .map(|b| (b.age, b.count))
            .max_by_key(|&(age, count)| (count, std::cmp::Reverse(age)))?;
        let summary = if youngest == oldest {
            format!("Students by age: all {mode_count} are {youngest}.")
        } else {
            format!(
                "Students by age, from {youngest} to {oldest}; the most common age is \
                 {mode_age} ({mode_count} student{}).",
                if mode_count == 1 { "" } else { "s" }
            )
        };
        Some(AgeChart {
            bars,
            summary,
            width: WIDTH,
            height: HEIGHT,
            baseline: coordinate(baseline),
            age_label_y: coordinate(baseline + 16.0),
            axis_title_y: coordinate(baseline + 36.0),
        })
    }

    /// Every age with at least one student, for the table.
    pub fn rows(&self) -> impl Iterator<Item = &Bar> {
        self.bars.iter().filter(|b| b.count > 0)
    }

    pub fn middle(&self) -> String {
        coordinate(f64::from(self.width) / 2.0)
    }
}

/// SVG coordinates to a tenth of a unit: enough on any screen, and short.
fn coordinate(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_age_between_the_youngest_and_the_oldest_gets_a_bar_and_the_tallest_fills_the_plot() {
        let mut ages = AgeCounts::default();
        ages.add(18, 4);
        ages.add(20, 2);
        let chart = AgeChart::new(&ages).unwrap();
        let bars: Vec<_> = chart.bars.iter().map(|b| (b.age, b.count)).collect();
        assert_eq!(bars, [(18, 4), (19, 0), (20, 2)]);
        assert_eq!(
            chart.bars[0].height,
            coordinate(f64::from(HEIGHT) - TOP - BOTTOM)
        );
        assert_eq!(chart.rows().count(), 2);
        assert!(chart.summary.contains("most common age is 18 (4 students)"));
        assert!(AgeChart::new(&AgeCounts::default()).is_none());
    }

    #[test]
    fn a_wide_range_prints_fewer_labels() {
        let mut ages = AgeCounts::default();
        ages.add(0, 1);
        ages.add(150, 1);
        let chart = AgeChart::new(&ages).unwrap();
        assert_eq!(chart.bars.len(), 151);
        assert!(chart.bars.iter().filter(|b| b.show_age).count() <= MAX_LABELS);
        assert!(chart.bars.iter().all(|b| !b.show_count));
    }
}
