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
/// The labels' font size, in the SVG's units (the stylesheet says the same), and how wide a
/// character of it is at most (digits are tabular; the en dash is no wider): enough to know
/// whether a label fits its bar without measuring text on the server.
const FONT: f64 = 13.0;
const CHAR_WIDTH: f64 = FONT * 0.6;
/// While the ages span at most this many years, one bar a year.
const MAX_YEAR_BARS: usize = 20;
/// Beyond, bins of one of these widths, the narrowest that needs at most `MAX_BINS` bars.
const BIN_WIDTHS: [usize; 6] = [2, 5, 10, 20, 25, 50];
const MAX_BINS: usize = 15;
/// A bar for a handful of students among thousands is still seen.
const MIN_BAR_HEIGHT: f64 = 2.0;

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

/// One bar: an age, a range of ages, or the outliers on one side, with where to draw it.
pub struct Bar {
    /// Printed under the bar: "18", "20–29", or the outliers' "37" or "37–150".
    pub label: String,
    /// The bar's tooltip: "Age 18: 15 students".
    pub title: String,
    pub count: u32,
    pub outlier: bool,
    pub x: String,
    pub y: String,
    pub width: String,
    pub height: String,
    /// Where the labels are centred.
    pub middle: String,
    /// The baseline of the count printed above the bar.
    pub count_y: String,
    pub show_label: bool,
    pub show_count: bool,
}

/// The ages the chart draws in the plot, and those it draws apart.
struct Bins {
    /// The first age of the first bin, the bins' width in years, and how many bins.
    start: usize,
    width: usize,
    count: usize,
    /// The oldest age in the bins: the last one's label stops there ("140–150", not "–159").
    oldest: usize,
    /// Ages outside the bulk, far enough from it that giving them the plot's scale would crush
    /// the real bars into slivers: drawn as one bar on each side, apart from the rest.
    below: Option<(usize, usize)>,
    above: Option<(usize, usize)>,
}

impl Bins {
    /// Outliers by Tukey's far-out fences (three interquartile ranges beyond the quartiles),
    /// with the fences at least `MIN_FENCE` years out, so that a narrow bulk (every student
    /// 20 but one of 21) calls nothing an outlier.
    fn of(ages: &AgeCounts) -> Option<Bins> {
        const MIN_FENCE: usize = 5;
        let total: u64 = ages.present().map(|(_, n)| u64::from(n)).sum();
        let quantile = |q: u64| {
            let mut seen = 0;
            ages.present()
                .find(|&(_, n)| {
                    seen += u64::from(n);
                    seen * 4 >= q * total
                })
                .map(|(age, _)| age)
        };
        let (q1, q3) = (quantile(1)?, quantile(3)?);
        let fence = (3 * (q3 - q1)).max(MIN_FENCE);
        let (low_fence, high_fence) = (q1.saturating_sub(fence), q3 + fence);
        let side = |keep: &dyn Fn(usize) -> bool| {
            let mut outside = ages.present().map(|(age, _)| age).filter(|&a| keep(a));
            let first = outside.next()?;
            Some((first, outside.last().unwrap_or(first)))
        };
        let below = side(&|age| age < low_fence);
        let above = side(&|age| age > high_fence);
        let (youngest, oldest) = side(&|age| (low_fence..=high_fence).contains(&age))?;
        let span = oldest - youngest + 1;
        let width = if span <= MAX_YEAR_BARS {
            1
        } else {
            BIN_WIDTHS
                .into_iter()
                .find(|w| oldest / w - youngest / w < MAX_BINS)
                .unwrap_or(50)
        };
        let start = youngest / width * width;
        Some(Bins {
            start,
            width,
            count: (oldest - start) / width + 1,
            oldest,
            below,
            above,
        })
    }
}

/// A bar before it is placed: what it shows, and how much room it takes, in slots.
struct Planned {
    label: String,
    title: String,
    count: u32,
    outlier: bool,
    slots: f64,
    /// Room left empty after it: half a slot between the outliers and the rest.
    gap_after: f64,
}

/// "37", or "37–150" for a range.
fn ages_label(first: usize, last: usize) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}–{last}")
    }
}

fn students(count: u32) -> String {
    if count == 1 {
        "1 student".to_owned()
    } else {
        format!("{count} students")
    }
}

/// The chart: a bar for every age (or every range of ages, when they span many years) from the
/// youngest to the oldest of the bulk, empty ones included so gaps show; the outliers on each
/// side in a bar of their own, set apart; and a one-line summary for the SVG's title.
pub struct AgeChart {
    pub bars: Vec<Bar>,
    /// Every age with at least one student, and how many: the table's rows.
    pub rows: Vec<(usize, u32)>,
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
        let bins = Bins::of(ages)?;
        let sum = |first: usize, last: usize| {
            (first..=last)
                .map(|a| ages.get(a))
                .fold(0u32, u32::saturating_add)
        };
        // An outlier bar is a slot and a half wide (its label may be a range) and half a slot
        // from the others: apart, and not read as the next age.
        let outliers = |(first, last): (usize, usize)| {
            let count = sum(first, last);
            let label = ages_label(first, last);
            Planned {
                title: format!("Outliers, age {label}: {}", students(count)),
                label,
                count,
                outlier: true,
                slots: 1.5,
                gap_after: 0.0,
            }
        };
        let mut planned: Vec<Planned> = Vec::new();
        if let Some(below) = bins.below {
            planned.push(Planned {
                gap_after: 0.5,
                ..outliers(below)
            });
        }
        for i in 0..bins.count {
            let first = bins.start + i * bins.width;
            let last = (first + bins.width - 1).min(bins.oldest);
            let count = sum(first, last);
            let (label, title) = if bins.width == 1 {
                (
                    first.to_string(),
                    format!("Age {first}: {}", students(count)),
                )
            } else {
                let label = ages_label(first, last);
                let title = format!("Ages {label}: {}", students(count));
                (label, title)
            };
            planned.push(Planned {
                label,
                title,
                count,
                outlier: false,
                slots: 1.0,
                gap_after: 0.0,
            });
        }
        if let Some(above) = bins.above {
            if let Some(previous) = planned.last_mut() {
                previous.gap_after = 0.5;
            }
            planned.push(outliers(above));
        }

        let slots: f64 = planned.iter().map(|p| p.slots + p.gap_after).sum();
        let plot_width = f64::from(WIDTH) - LEFT - RIGHT;
        let plot_height = f64::from(HEIGHT) - TOP - BOTTOM;
        let baseline = f64::from(HEIGHT) - BOTTOM;
        let step = plot_width / slots;
        let tallest = planned.iter().map(|p| p.count).max()?.max(1);
        // Labels that would touch their neighbours' are thinned to every n-th, and counts are
        // printed only when every one of them fits above its bar: no two labels ever overlap,
        // and the table has every number.
        let text_width = |text: &str| text.chars().count() as f64 * CHAR_WIDTH;
        let widest_label = planned
            .iter()
            .filter(|p| !p.outlier)
            .map(|p| text_width(&p.label))
            .fold(0.0, f64::max);
        let label_every = ((widest_label + CHAR_WIDTH) / step).ceil().max(1.0) as usize;
        let show_counts = planned
            .iter()
            .all(|p| text_width(&p.count.to_string()) + CHAR_WIDTH <= step * p.slots);

        let mut x = LEFT;
        let mut in_plot = 0;
        let mut bars = Vec::with_capacity(planned.len());
        for Planned {
            label,
            title,
            count,
            outlier,
            slots,
            gap_after,
        } in planned
        {
            let slot = step * slots;
            let bar_width = slot * 0.72;
            let height = match count {
                0 => 0.0,
                n => (plot_height * f64::from(n) / f64::from(tallest)).max(MIN_BAR_HEIGHT),
            };
            let left = x + (slot - bar_width) / 2.0;
            let show_label = outlier || {
                in_plot += 1;
                (in_plot - 1) % label_every == 0
            };
            bars.push(Bar {
                label,
                title,
                count,
                outlier,
                x: coordinate(left),
                y: coordinate(baseline - height),
                width: coordinate(bar_width),
                height: coordinate(height),
                middle: coordinate(left + bar_width / 2.0),
                count_y: coordinate(baseline - height - COUNT_GAP),
                show_label,
                show_count: show_counts,
            });
            x += slot + step * gap_after;
        }
        let rows: Vec<(usize, u32)> = ages.present().collect();
        let (youngest, oldest) = ages.range()?;
        let &(mode_age, mode_count) = rows
            .iter()
            .max_by_key(|&&(age, count)| (count, std::cmp::Reverse(age)))?;
        let mut summary = if youngest == oldest {
            format!("Students by age: all {mode_count} are {youngest}.")
        } else {
            format!(
                "Students by age, from {youngest} to {oldest}; the most common age is \
                 {mode_age} ({}).",
                students(mode_count)
            )
        };
        for (first, last) in [bins.below, bins.above].into_iter().flatten() {
            summary.push_str(&format!(
                " Ages {} are far from the rest and drawn apart.",
                ages_label(first, last)
            ));
        }
        Some(AgeChart {
            bars,
            rows,
            summary,
            width: WIDTH,
            height: HEIGHT,
            baseline: coordinate(baseline),
            age_label_y: coordinate(baseline + 16.0),
            axis_title_y: coordinate(baseline + 36.0),
        })
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

    fn chart(ages: &[(i32, i64)]) -> AgeChart {
        let mut counts = AgeCounts::default();
        for &(age, n) in ages {
            counts.add(age, n);
        }
        AgeChart::new(&counts).unwrap()
    }

    fn labels(chart: &AgeChart) -> Vec<(&str, u32, bool)> {
        chart
            .bars
            .iter()
            .map(|b| (b.label.as_str(), b.count, b.outlier))
            .collect()
    }

    #[test]
    fn a_narrow_range_has_a_bar_a_year_gaps_included_and_the_tallest_fills_the_plot() {
        let chart = chart(&[(18, 4), (20, 2)]);
        assert_eq!(
            labels(&chart),
            [("18", 4, false), ("19", 0, false), ("20", 2, false)]
        );
        assert_eq!(
            chart.bars[0].height,
            coordinate(f64::from(HEIGHT) - TOP - BOTTOM)
        );
        assert_eq!(chart.rows, [(18, 4), (20, 2)]);
        assert!(chart.summary.contains("most common age is 18 (4 students)"));
        assert!(chart.bars.iter().all(|b| b.show_label && b.show_count));
        assert!(AgeCounts::default().range().is_none());
    }

    #[test]
    fn one_far_age_is_an_outlier_drawn_apart_not_years_of_empty_bars() {
        let bulk: Vec<(i32, i64)> = (18..=25).map(|a| (a, 1_000)).collect();
        for far in [37, 150] {
            let mut ages = bulk.clone();
            ages.push((far, 1));
            let chart = chart(&ages);
            assert_eq!(chart.bars.len(), 9, "{far}");
            let last = chart.bars.last().unwrap();
            assert_eq!(
                (last.label.as_str(), last.count, last.outlier),
                (far.to_string().as_str(), 1, true)
            );
            assert!(chart.bars[..8]
                .iter()
                .all(|b| !b.outlier && b.count == 1_000));
            assert_eq!(
                last.height,
                coordinate(MIN_BAR_HEIGHT),
                "one student is still seen"
            );
            assert!(chart
                .summary
                .contains(&format!("Ages {far} are far from the rest")));
            assert_eq!(chart.rows.len(), 9, "the table has every age");
        }
        // Outliers on both sides, several ages each: one bar a side, labelled with the range.
        let mut ages = bulk.clone();
        ages.extend([(1, 1), (3, 2), (90, 1), (150, 1)]);
        let chart = chart(&ages);
        assert_eq!(labels(&chart)[0], ("1–3", 3, true));
        assert_eq!(labels(&chart)[9], ("90–150", 2, true));
    }

    #[test]
    fn a_narrow_bulk_calls_nothing_an_outlier() {
        let chart = chart(&[(20, 100), (21, 1)]);
        assert_eq!(labels(&chart), [("20", 100, false), ("21", 1, false)]);
    }

    #[test]
    fn a_wide_spread_is_binned_and_its_labels_thinned_so_none_touch() {
        let ages: Vec<(i32, i64)> = (0..=150).map(|a| (a, 3)).collect();
        let chart = chart(&ages);
        assert!(chart.bars.len() <= MAX_BINS, "{}", chart.bars.len());
        assert_eq!(chart.bars[0].label, "0–19");
        assert_eq!(chart.bars[0].count, 60);
        assert_eq!(chart.bars.last().unwrap().label, "140–150");
        assert!(chart.bars.iter().all(|b| !b.outlier));
        let total: u32 = chart.bars.iter().map(|b| b.count).sum();
        assert_eq!(total, 151 * 3);
        // Every printed label fits in the room up to the next printed one.
        let shown: Vec<&Bar> = chart.bars.iter().filter(|b| b.show_label).collect();
        for pair in shown.windows(2) {
            let (a, b): (f64, f64) = (
                pair[0].middle.parse().unwrap(),
                pair[1].middle.parse().unwrap(),
            );
            let room = b - a;
            let needed = (pair[0].label.chars().count() + pair[1].label.chars().count()) as f64
                * CHAR_WIDTH
                / 2.0;
            assert!(
                room > needed,
                "{} and {} touch",
                pair[0].label,
                pair[1].label
            );
        }
    }

    #[test]
    fn counts_too_wide_for_their_bars_are_left_to_the_table() {
        let ages: Vec<(i32, i64)> = (5..=24).map(|a| (a, 1_000_000)).collect();
        let chart = chart(&ages);
        assert_eq!(chart.bars.len(), 20);
        assert!(chart.bars.iter().all(|b| !b.show_count));
    }
}
