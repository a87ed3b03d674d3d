//! Pictures of chart results: line charts over intervals (one line per series) and bar charts of
//! distributions, as SVG drawn by `plotters`, or an HTML page that embeds them.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{DataFusionError, Result, plan_err};
use plotters::prelude::*;

const WIDTH: u32 = 900;
const HEIGHT: u32 = 500;
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn plot_error<E: std::fmt::Display>(e: E) -> DataFusionError {
    DataFusionError::Execution(format!("cannot draw the chart: {e}"))
}

/// One named line or set of bars.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// One value per x label; `None` leaves a gap.
    pub values: Vec<Option<f64>>,
}

/// The smallest and largest value of all series, and 0.
fn extent(series: &[Series]) -> (f64, f64) {
    series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)))
}

/// A line chart: x labels (intervals), one line per series, with axis descriptions and a legend.
pub fn line_chart(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    x: &[String],
    series: &[Series],
) -> Result<String> {
    let (min, max) = extent(series);
    let top = if max > min { max * 1.1 } else { min + 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let n = x.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(0usize..n, min..top)
            .map_err(plot_error)?;
        let labels = x.to_vec();
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(n.min(12))
            .x_label_formatter(&|i| labels.get(*i).cloned().unwrap_or_default())
            .draw()
            .map_err(plot_error)?;
        for (k, s) in series.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let points: Vec<(usize, f64)> = s
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (i, v)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(plot_error)?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(plot_error)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// A bar chart of a distribution: one group of bars per bucket, one bar per series.
pub fn bar_chart(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    buckets: &[String],
    series: &[Series],
) -> Result<String> {
    let (_, max) = extent(series);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let n = buckets.len().max(1);
        let per = series.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(0f64..n as f64, 0f64..(max * 1.1).max(1.0))
            .map_err(plot_error)?;
        let labels = buckets.to_vec();
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(n + 1)
            .x_label_formatter(&|v| {
                let i = v.floor() as usize;
                if (v - v.floor() - 0.5).abs() < 1e-9 || v.fract() == 0.0 {
                    labels.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .disable_x_mesh()
            .draw()
            .map_err(plot_error)?;
        for (k, s) in series.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let width = 0.8 / per as f64;
            let bars: Vec<Rectangle<(f64, f64)>> = s
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let left = i as f64 + 0.1 + k as f64 * width;
                    Rectangle::new(
                        [(left, 0.0), (left + width, v.unwrap_or(0.0))],
                        color.filled(),
                    )
                })
                .collect();
            chart
                .draw_series(bars)
                .map_err(plot_error)?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// An HTML page holding the SVG pictures, each under a heading.
pub fn html_page(title: &str, pictures: &[(String, String)]) -> String {
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;margin:24px}} figure{{margin:0 0 32px}}</style></head>\
         <body><h1>{t}</h1>\n",
        t = escape(title)
    );
    for (heading, svg) in pictures {
        html.push_str(&format!(
            "<figure><h2>{}</h2>\n{svg}\n</figure>\n",
            escape(heading)
        ));
    }
    html.push_str("</body></html>\n");
    html
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A column of `batches` as text (one value per row; null as empty).
pub fn text_column(batches: &[RecordBatch], name: &str) -> Result<Vec<String>> {
    let mut out = vec![];
    for batch in batches {
        let Ok(index) = batch.schema().index_of(name) else {
            return plan_err!("the chart has no column '{name}'");
        };
        let text = cast(batch.column(index), &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        out.extend((0..text.len()).map(|i| {
            if text.is_null(i) {
                String::new()
            } else {
                text.value(i).to_string()
            }
        }));
    }
    Ok(out)
}

/// A column of `batches` as numbers.
pub fn number_column(batches: &[RecordBatch], name: &str) -> Result<Vec<Option<f64>>> {
    let mut out = vec![];
    for batch in batches {
        let Ok(index) = batch.schema().index_of(name) else {
            return plan_err!("the chart has no column '{name}'");
        };
        let numbers = cast(batch.column(index), &DataType::Float64)?;
        let numbers = numbers.as_primitive::<Float64Type>();
        out.extend((0..numbers.len()).map(|i| (!numbers.is_null(i)).then(|| numbers.value(i))));
    }
    Ok(out)
}

/// The x labels (distinct intervals, in order) and one series per label combination of
/// `series_columns`, for the metric `metric` of a chart result.
pub fn series_over_intervals(
    batches: &[RecordBatch],
    series_columns: &[String],
    metric: &str,
) -> Result<(Vec<String>, Vec<Series>)> {
    let intervals = text_column(batches, "interval_start")?;
    let values = number_column(batches, metric)?;
    let labels: Vec<Vec<String>> = series_columns
        .iter()
        .map(|c| text_column(batches, c))
        .collect::<Result<_>>()?;
    let mut x: Vec<String> = intervals.clone();
    x.sort();
    x.dedup();
    let mut by_series: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    for (row, interval) in intervals.iter().enumerate() {
        let name = labels
            .iter()
            .map(|l| {
                if l[row].is_empty() {
                    "(none)".to_string()
                } else {
                    l[row].clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" / ");
        let slot = x.iter().position(|i| i == interval).unwrap_or(0);
        by_series.entry(name).or_insert_with(|| vec![None; x.len()])[slot] = values[row];
    }
    let series = by_series
        .into_iter()
        .map(|(name, values)| Series { name, values })
        .collect();
    Ok((x, series))
}

/// Bar series of a distribution: one series per row of the result (interval and labels), over the
/// bucket columns.
pub fn distribution(
    batches: &[RecordBatch],
    series_columns: &[String],
    bucket_columns: &[String],
) -> Result<Vec<Series>> {
    let intervals = text_column(batches, "interval_start")?;
    let labels: Vec<Vec<String>> = series_columns
        .iter()
        .map(|c| text_column(batches, c))
        .collect::<Result<_>>()?;
    let buckets: Vec<Vec<Option<f64>>> = bucket_columns
        .iter()
        .map(|c| number_column(batches, c))
        .collect::<Result<_>>()?;
    Ok((0..intervals.len())
        .map(|row| {
            let parts: Vec<&str> = std::iter::once(intervals[row].as_str())
                .chain(labels.iter().map(|l| l[row].as_str()))
                .filter(|p| !p.is_empty())
                .collect();
            let name = parts.join(" / ");
            Series {
                name,
                values: buckets.iter().map(|b| b[row]).collect(),
            }
        })
        .collect())
}
