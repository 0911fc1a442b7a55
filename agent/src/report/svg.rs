//! Line charts as inline SVG, drawn in Rust.
//!
//! The report must open anywhere, offline, years later: no JavaScript
//! library and no network, so each chart is a small SVG element written
//! here. A chart has one series per job (a polyline plus a dot per point,
//! so that a single run is still visible), a time axis labelled with its
//! first and last instant, and a value axis from zero to the largest value
//! labelled by a caller-supplied formatter.

use std::fmt::Write as _;

use super::html::escape;
use crate::units::format_time;

/// Width and height of a chart's drawing, in SVG user units.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
/// Margins around the plot area (left holds the value labels).
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 40.0;

/// Series colours, one per job in turn (colour-blind-safe palette).
const COLOURS: [&str; 6] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00",
];

/// One job's points: (seconds since the epoch, value).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend's name (a job).
    pub name: String,
    /// The points, in time order.
    pub points: Vec<(f64, f64)>,
}

/// The scale of a chart: the time and value ranges its points span.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scale {
    t0: f64,
    t1: f64,
    vmax: f64,
}

impl Scale {
    /// The ranges of `series` (`None` when there is no point).
    fn of(series: &[Series]) -> Option<Scale> {
        let points = series.iter().flat_map(|s| s.points.iter());
        let mut scale: Option<Scale> = None;
        for &(t, v) in points {
            let s = scale.get_or_insert(Scale {
                t0: t,
                t1: t,
                vmax: 0.0,
            });
            s.t0 = s.t0.min(t);
            s.t1 = s.t1.max(t);
            s.vmax = s.vmax.max(v);
        }
        scale.map(|s| Scale {
            // Headroom above the largest value; a flat zero line still
            // gets an axis.
            vmax: if s.vmax > 0.0 { s.vmax * 1.1 } else { 1.0 },
            ..s
        })
    }

    /// The drawing's x of time `t` (the middle when all times are equal).
    fn x(&self, t: f64) -> f64 {
        let width = WIDTH - LEFT - RIGHT;
        if self.t1 > self.t0 {
            LEFT + (t - self.t0) / (self.t1 - self.t0) * width
        } else {
            LEFT + width / 2.0
        }
    }

    /// The drawing's y of value `v`.
    fn y(&self, v: f64) -> f64 {
        let height = HEIGHT - TOP - BOTTOM;
        TOP + height - (v / self.vmax).clamp(0.0, 1.0) * height
    }
}

/// A chart titled `title` of `series`, values labelled by `label`; a note
/// instead of a plot when there is no point.
pub fn line_chart(title: &str, series: &[Series], label: &dyn Fn(f64) -> String) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<figure class=\"chart\"><figcaption>{}</figcaption>",
        escape(title)
    );
    let Some(scale) = Scale::of(series) else {
        out += "<p class=\"empty\">No runs recorded yet.</p></figure>";
        return out;
    };
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-label=\"{}\">",
        escape(title)
    );
    axes(&mut out, &scale, label);
    for (i, s) in series.iter().enumerate() {
        if s.points.is_empty() {
            continue;
        }
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", scale.x(t), scale.y(v)))
            .collect();
        let _ = write!(
            out,
            "<polyline class=\"series\" data-job=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            escape(&s.name),
            points.join(" ")
        );
        for &(t, v) in &s.points {
            let _ = write!(
                out,
                "<circle class=\"point\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{colour}\"><title>{}: {} at {} UTC</title></circle>",
                scale.x(t),
                scale.y(v),
                escape(&s.name),
                escape(&label(v)),
                format_time(t as i64)
            );
        }
    }
    out += "</svg>";
    legend(&mut out, series);
    out += "</figure>";
    out
}

/// The plot area's frame, the value axis labels (0, half, top) and the
/// time axis labels (first and last instant).
fn axes(out: &mut String, scale: &Scale, label: &dyn Fn(f64) -> String) {
    let (x0, x1) = (LEFT, WIDTH - RIGHT);
    let (y0, y1) = (TOP, HEIGHT - BOTTOM);
    let _ = write!(
        out,
        "<rect x=\"{x0}\" y=\"{y0}\" width=\"{}\" height=\"{}\" fill=\"#fafafa\" stroke=\"#bbb\"/>",
        x1 - x0,
        y1 - y0
    );
    for share in [0.0, 0.5, 1.0] {
        let v = scale.vmax * share;
        let y = scale.y(v);
        let _ = write!(
            out,
            "<line x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{x1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\">{}</text>",
            x0 - 6.0,
            y + 4.0,
            escape(&label(v))
        );
    }
    let times = if scale.t1 > scale.t0 {
        vec![(scale.t0, x0, "start"), (scale.t1, x1, "end")]
    } else {
        vec![(scale.t0, scale.x(scale.t0), "middle")]
    };
    for (t, x, anchor) in times {
        let _ = write!(
            out,
            "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"{anchor}\" font-size=\"11\">{} UTC</text>",
            y1 + 16.0,
            format_time(t as i64)
        );
    }
}

/// The legend: a coloured swatch and the name of each series.
fn legend(out: &mut String, series: &[Series]) {
    *out += "<ul class=\"legend\">";
    for (i, s) in series.iter().enumerate() {
        let _ = write!(
            out,
            "<li><span style=\"background:{}\"></span>{} ({} point{})</li>",
            COLOURS[i % COLOURS.len()],
            escape(&s.name),
            s.points.len(),
            if s.points.len() == 1 { "" } else { "s" }
        );
    }
    *out += "</ul>";
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn plain(v: f64) -> String {
        format!("{v:.0}")
    }

    #[test]
    fn every_point_is_inside_the_plot_area() {
        let s = Series {
            name: "web".into(),
            points: vec![(1000.0, 0.0), (2000.0, 50.0), (3000.0, 100.0)],
        };
        let svg = line_chart("t", &[s], &plain);
        let points = svg
            .split("points=\"")
            .nth(1)
            .and_then(|p| p.split('"').next())
            .unwrap();
        let xy: Vec<(f64, f64)> = points
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert_eq!(xy.len(), 3);
        assert_eq!(xy[0].0, LEFT);
        assert_eq!(xy[2].0, WIDTH - RIGHT);
        assert_eq!(xy[0].1, HEIGHT - BOTTOM, "zero sits on the axis");
        assert!(xy[2].1 > TOP && xy[2].1 < xy[1].1, "{xy:?}");
        assert_eq!(svg.matches("<circle").count(), 3);
    }

    #[test]
    fn one_point_is_centred_and_no_point_is_a_note() {
        let s = Series {
            name: "a<b".into(),
            points: vec![(1000.0, 5.0)],
        };
        let svg = line_chart("x & y", &[s], &plain);
        assert!(svg.contains(&format!(
            "cx=\"{:.1}\"",
            LEFT + (WIDTH - LEFT - RIGHT) / 2.0
        )));
        assert!(svg.contains("a&lt;b"), "{svg}");
        assert!(svg.contains("x &amp; y"), "{svg}");
        assert!(!svg.contains("a<b"));
        let empty = line_chart("nothing", &[], &plain);
        assert!(empty.contains("No runs recorded yet"));
        assert!(!empty.contains("<svg"));
    }
}
