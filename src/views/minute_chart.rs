//! The staff cache page's per-minute bar charts, laid out for a server-rendered SVG: one bar per
//! minute of the last hour, each with a tooltip naming the minute and the count.

use crate::cache::history::{Minute, MINUTES};

/// A per-minute bar chart (server-rendered SVG), one bar per minute of the hour.
pub struct MinuteChart {
    pub bars: Vec<MinuteBar>,
    pub peak: u64,
    pub summary: String,
}

pub struct MinuteBar {
    pub x: String,
    pub y: String,
    pub height: String,
    pub label: String,
}

/// The chart's coordinate space: one 10-unit column per minute.
pub const CHART_WIDTH: u32 = 600;
pub const CHART_HEIGHT: u32 = 130;
/// Room above the plot for the scale's label (the peak).
pub const PLOT_TOP: f64 = 18.0;
pub const BASELINE: f64 = 110.0;

impl MinuteChart {
    pub fn new(name: &str, minutes: &[Minute], series: usize) -> MinuteChart {
        let peak = minutes.iter().map(|m| m.counts[series]).max().unwrap_or(0);
        let step = f64::from(CHART_WIDTH) / MINUTES as f64;
        let offset = MINUTES.saturating_sub(minutes.len());
        let bars = minutes
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let count = m.counts[series];
                let height = if peak == 0 {
                    0.0
                } else {
                    (BASELINE - PLOT_TOP) * count as f64 / peak as f64
                };
                MinuteBar {
                    x: format!("{:.1}", step * (i + offset) as f64 + 1.0),
                    y: format!("{:.1}", BASELINE - height),
                    height: format!("{height:.1}"),
                    label: format!("{} UTC: {count} {name}", clock(m.minute)),
                }
            })
            .collect();
        MinuteChart {
            bars,
            peak,
            summary: format!("{name} per minute over the last hour, at most {peak} in a minute"),
        }
    }
}

/// `HH:MM` of a Unix minute, UTC.
pub fn clock(minute: u64) -> String {
    format!("{:02}:{:02}", (minute / 60) % 24, minute % 60)
}
