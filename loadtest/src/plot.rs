//! SVG plots of a call run (plotters' SVG backend only: text is written
//! as SVG `<text>`, so no font library is needed at build or run time).
//!
//! * `cps.svg`: attempted, answered and failed calls per second, active
//!   calls on the right axis;
//! * `setup_latency_cdf.svg`: CDF of INVITE → 2xx;
//! * `audio_gap_cdf.svg`: CDF of the per-call longest audio gap, all calls
//!   and the calls up at the injected failure;
//! * `audio_gap_timeline.svg`: each call's longest gap at the moment it
//!   began.
//!
//! Plots over time mark the injected failure with a vertical red line.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::report::CallReport;
use crate::stats::cdf;

const SIZE: (u32, u32) = (960, 540);
const GREY: RGBColor = RGBColor(140, 140, 140);
const DARK_GREEN: RGBColor = RGBColor(0, 140, 60);
/// At most this many points per CDF and in the timeline scatter.
const MAX_POINTS: usize = 2000;

/// Writes every plot into `dir` (created if missing); returns the files.
pub fn write_all(dir: &Path, report: &CallReport) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let fail_at = report.failure.as_ref().map(|f| f.at_s);
    let mut files = Vec::new();

    let file = dir.join("cps.svg");
    cps(&file, report, fail_at).map_err(|e| plot_error(&file, e))?;
    files.push(file);

    let file = dir.join("setup_latency_cdf.svg");
    let series = vec![Series {
        label: "all answered calls",
        color: BLUE,
        points: thin(&report.setup_cdf),
    }];
    cdf_plot(
        &file,
        "Setup latency INVITE → 200",
        "setup latency (ms)",
        series,
    )
    .map_err(|e| plot_error(&file, e))?;
    files.push(file);

    let file = dir.join("audio_gap_cdf.svg");
    let gaps = |up_only: bool| {
        cdf(
            report
                .records
                .iter()
                .filter(|r| !up_only || r.up_at_failure)
                .filter_map(|r| r.rtp.map(|s| s.max_gap_ms)),
            MAX_POINTS,
        )
    };
    let mut series = vec![Series {
        label: "all calls with media",
        color: BLUE,
        points: gaps(false),
    }];
    if fail_at.is_some() {
        series.push(Series {
            label: "calls up at the failure",
            color: RED,
            points: gaps(true),
        });
    }
    cdf_plot(
        &file,
        "Longest audio gap per call",
        "audio gap (ms)",
        series,
    )
    .map_err(|e| plot_error(&file, e))?;
    files.push(file);

    let file = dir.join("audio_gap_timeline.svg");
    gap_timeline(&file, report, fail_at).map_err(|e| plot_error(&file, e))?;
    files.push(file);
    Ok(files)
}

fn plot_error(file: &Path, e: Box<dyn std::error::Error>) -> Error {
    Error::Plot {
        file: file.to_owned(),
        reason: e.to_string(),
    }
}

/// One line of a CDF plot.
struct Series<'a> {
    label: &'a str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

type PlotResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let step = points.len().div_ceil(MAX_POINTS).max(1);
    let mut out: Vec<(f64, f64)> = points.iter().step_by(step).copied().collect();
    if let (Some(last), Some(kept)) = (points.last(), out.last()) {
        if last != kept {
            out.push(*last);
        }
    }
    out
}

/// `0..max` with some headroom, never empty.
fn upper(max: f64) -> f64 {
    if max.is_finite() && max > 0.0 {
        max * 1.05
    } else {
        1.0
    }
}

fn cps(file: &Path, report: &CallReport, fail_at: Option<f64>) -> PlotResult {
    let seconds = &report.timeline;
    let x_max = upper(seconds.len() as f64).max(fail_at.unwrap_or(0.0) + 1.0);
    let y_max = upper(
        seconds
            .iter()
            .map(|s| s.attempted.max(s.answered).max(s.failed))
            .max()
            .unwrap_or(0) as f64,
    );
    let active_max = upper(seconds.iter().map(|s| s.active).max().unwrap_or(0) as f64);
    let root = SVGBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Calls per second", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .right_y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?
        .set_secondary_coord(0f64..x_max, 0f64..active_max);
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("calls per second")
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("active calls")
        .draw()?;
    // Each bucket covers t..t+1; plot it at its middle.
    let series = |f: fn(&crate::stats::Second) -> u64| -> Vec<(f64, f64)> {
        seconds
            .iter()
            .map(|s| (s.t as f64 + 0.5, f(s) as f64))
            .collect()
    };
    for (label, color, points) in [
        ("attempted/s", GREY, series(|s| s.attempted)),
        ("answered/s", BLUE, series(|s| s.answered)),
        ("failed/s", RED, series(|s| s.failed)),
    ] {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .draw_secondary_series(LineSeries::new(
            series(|s| s.active),
            DARK_GREEN.stroke_width(1),
        ))?
        .label("active calls (right axis)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], DARK_GREEN));
    if let Some(at) = fail_at {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(at, 0.0), (at, y_max)],
                RED.mix(0.7).stroke_width(2),
            )))?
            .label(format!("failure injected at {at:.1} s"))
            .legend(|(x, y)| PathElement::new(vec![(x, y - 6), (x, y + 6)], RED.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn cdf_plot(file: &Path, title: &str, x_desc: &str, series: Vec<Series<'_>>) -> PlotResult {
    let x_max = upper(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|(x, _)| *x))
            .fold(0.0, f64::max),
    );
    let root = SVGBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..1.0)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("fraction of calls ≤ x")
        .draw()?;
    let mut any = false;
    for Series {
        label,
        color,
        points,
    } in series
    {
        if points.is_empty() {
            continue;
        }
        any = true;
        // Steps: the fraction holds until the next value.
        let mut steps = Vec::with_capacity(points.len() * 2 + 1);
        let mut previous = 0.0;
        for (x, y) in points {
            steps.push((x, previous));
            steps.push((x, y));
            previous = y;
        }
        chart
            .draw_series(LineSeries::new(steps, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    if any {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    } else {
        root.draw_text(
            "no data",
            &("sans-serif", 20).into_text_style(&root),
            (SIZE.0 as i32 / 2 - 30, SIZE.1 as i32 / 2),
        )?;
    }
    root.present()?;
    Ok(())
}

fn gap_timeline(file: &Path, report: &CallReport, fail_at: Option<f64>) -> PlotResult {
    let mut points: Vec<(f64, f64, bool)> = report
        .records
        .iter()
        .filter_map(|r| {
            r.rtp
                .map(|s| (s.max_gap_at_s, s.max_gap_ms, r.up_at_failure))
        })
        .collect();
    if points.len() > MAX_POINTS {
        // Keep the largest gaps: they are what the plot is for.
        points.sort_by(|a, b| b.1.total_cmp(&a.1));
        points.truncate(MAX_POINTS);
    }
    let x_max = upper(report.duration_s.max(fail_at.unwrap_or(0.0)));
    let y_max = upper(points.iter().map(|p| p.1).fold(0.0, f64::max));
    let root = SVGBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Longest audio gap of each call, by when it began",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("audio gap (ms)")
        .draw()?;
    chart
        .draw_series(
            points
                .iter()
                .filter(|p| !p.2)
                .map(|&(x, y, _)| Circle::new((x, y), 3, BLUE.mix(0.6).filled())),
        )?
        .label("call")
        .legend(|(x, y)| Circle::new((x + 10, y), 3, BLUE.filled()));
    if fail_at.is_some() {
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.2)
                    .map(|&(x, y, _)| Circle::new((x, y), 3, RED.mix(0.6).filled())),
            )?
            .label("call up at the failure")
            .legend(|(x, y)| Circle::new((x + 10, y), 3, RED.filled()));
    }
    if let Some(at) = fail_at {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(at, 0.0), (at, y_max)],
                RED.mix(0.7).stroke_width(2),
            )))?
            .label(format!("failure injected at {at:.1} s"))
            .legend(|(x, y)| PathElement::new(vec![(x, y - 6), (x, y + 6)], RED.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests;
