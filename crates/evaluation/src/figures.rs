//! The study's figures, as PNG and SVG: DVH curves of two plans (solid and dashed, the
//! study's Fig. 4), box plots of a metric across methods (Fig. 2), and per-patient differences
//! between two methods (Fig. 5). Isodose lines on CT slices (Fig. 3) are drawn by
//! `tps_core::render` with isodose overlays.
//!
//! Text in PNGs uses the embedded DejaVu Sans (Bitstream Vera licence, `assets/`), so figures
//! look the same on every machine.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::data::Quartiles;
use plotters::prelude::*;

use crate::dvh::Dvh;
use crate::error::{Error, Result};

const FONT: &str = "sans-serif";
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        // The bytes are a valid TrueType font shipped with the crate; registration only fails on
        // a malformed font.
        let _ = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            include_bytes!("../assets/DejaVuSans.ttf"),
        );
    });
}

/// Distinct line colours (Okabe-Ito, readable with colour-vision deficiency, then extras).
const COLOURS: [RGBColor; 10] = [
    RGBColor(213, 94, 0),
    RGBColor(0, 114, 178),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(0, 0, 0),
    RGBColor(150, 80, 30),
    RGBColor(110, 60, 170),
];

fn err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Output {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// A figure that can draw itself on any plotters backend.
pub trait Figure {
    /// Draws on `root`; errors are returned as text.
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String>;
}

/// Draws `fig` into `<stem>.png` and `<stem>.svg` at `size` pixels; returns both paths.
pub fn save(fig: &impl Figure, stem: &Path, size: (u32, u32)) -> Result<Vec<PathBuf>> {
    register_font();
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    }
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        fig.draw(&root).map_err(|e| err(&png, e))?;
        root.present().map_err(|e| err(&png, e))?;
    }
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        fig.draw(&root).map_err(|e| err(&svg, e))?;
        root.present().map_err(|e| err(&svg, e))?;
    }
    Ok(vec![png, svg])
}

fn s<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// DVH curves of one plan, or of two plans of one patient (plan A solid, plan B dashed, the
/// study's Fig. 4), one colour per structure.
pub struct DvhComparison<'a> {
    /// Title.
    pub title: String,
    /// Plan A's name, and plan B's when there are two plans.
    pub plans: (String, Option<String>),
    /// Per structure: plan A's DVH, and plan B's when there are two plans.
    pub curves: Vec<(&'a Dvh, Option<&'a Dvh>)>,
}

impl Figure for DvhComparison<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        root.fill(&WHITE).map_err(s)?;
        let max_gy = self
            .curves
            .iter()
            .map(|(a, b)| a.max().max(b.map_or(0.0, |b| b.max())))
            .fold(0.0, f64::max)
            / 100.0;
        // Room on the right for the legend, clear of the curves.
        let x_max = (max_gy * 1.3).max(1.0);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 24))
            .margin(18)
            .x_label_area_size(50)
            .y_label_area_size(65)
            .build_cartesian_2d(0.0..x_max, 0.0..105.0)
            .map_err(s)?;
        chart
            .configure_mesh()
            .x_desc("Dose (Gy)")
            .y_desc("Volume (%)")
            .axis_desc_style((FONT, 18))
            .label_style((FONT, 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(s)?;
        for (n, (a, b)) in self.curves.iter().enumerate() {
            let c = COLOURS[n % COLOURS.len()];
            let pts = |d: &Dvh| -> Vec<(f64, f64)> {
                d.cumulative(10.0)
                    .into_iter()
                    .map(|(x, v)| (x / 100.0, v))
                    .collect()
            };
            chart
                .draw_series(LineSeries::new(pts(a), c.stroke_width(2)))
                .map_err(s)?
                .label(a.structure.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], c.filled()));
            if let Some(b) = b {
                chart
                    .draw_series(DashedLineSeries::new(pts(b), 8, 5, c.stroke_width(2)))
                    .map_err(s)?;
            }
        }
        // Line-style key: which plan is solid and which dashed.
        if let Some(b_name) = &self.plans.1 {
            chart
                .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())
                .map_err(s)?
                .label(format!("{} (solid)", self.plans.0))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], BLACK.stroke_width(2))
                });
            chart
                .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())
                .map_err(s)?
                .label(format!("{b_name} (dashed)"))
                .legend(|(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (8, 0)], BLACK.stroke_width(2))
                        + PathElement::new(vec![(14, 0), (22, 0)], BLACK.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(160, 160, 160))
            .label_font((FONT, 15))
            .draw()
            .map_err(s)?;
        Ok(())
    }
}

/// The apertures of a deliverable plan: per arc, a strip of the opening of every leaf pair
/// inside the jaws over the control points (white closed, darker wider), and
/// the MU of each segment below it.
pub struct ArcApertures<'a> {
    /// Title.
    pub title: String,
    /// The plan.
    pub plan: &'a tps_api::deliverable::DeliverablePlan,
}

impl Figure for ArcApertures<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        root.fill(&WHITE).map_err(s)?;
        let root = root.titled(&self.title, (FONT, 24)).map_err(s)?;
        let arcs = &self.plan.arcs;
        if arcs.is_empty() {
            return Ok(());
        }
        let bounds = &self.plan.leaf_boundaries_mm;
        let widest = arcs
            .iter()
            .flat_map(|a| &a.control_points)
            .flat_map(|cp| cp.leaves_mm.iter().map(|l| l[1] - l[0]))
            .fold(1.0f64, f64::max);
        for (arc, area) in arcs.iter().zip(root.split_evenly((arcs.len(), 1))) {
            let (strip, mu) = area.split_vertically(area.dim_in_pixel().1 * 2 / 3);
            let cps = &arc.control_points;
            let n = cps.len().max(2);
            // Leaf pairs whose rows the jaws leave open.
            let rows: Vec<usize> = (0..bounds.len() - 1)
                .filter(|&p| bounds[p + 1] > arc.jaws.y_mm[0] && bounds[p] < arc.jaws.y_mm[1])
                .collect();
            let (lo, hi) = (
                rows.first().copied().unwrap_or(0),
                rows.last().copied().unwrap_or(0) + 1,
            );
            let (first, last) = (
                cps.first().map_or(0.0, |c| c.gantry_deg),
                cps.last().map_or(0.0, |c| c.gantry_deg),
            );
            let mut chart = ChartBuilder::on(&strip)
                .caption(
                    format!(
                        "{:?} arc, gantry {first:.0} to {last:.0} deg: leaf-pair opening (white closed, dark blue {widest:.0} mm)",
                        arc.rotation
                    ),
                    (FONT, 17),
                )
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(55)
                .build_cartesian_2d(0.0..(n - 1) as f64, lo as f64..hi as f64)
                .map_err(s)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("control point")
                .y_desc("leaf pair")
                .axis_desc_style((FONT, 15))
                .label_style((FONT, 13))
                .draw()
                .map_err(s)?;
            let colour = |w: f64| {
                let f = (w / widest).clamp(0.0, 1.0);
                let mix = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
                RGBColor(mix(255.0, 8.0), mix(255.0, 48.0), mix(255.0, 107.0))
            };
            chart
                .draw_series(cps.iter().enumerate().flat_map(|(k, cp)| {
                    rows.iter().map(move |&p| {
                        let l = cp.leaves_mm[p];
                        Rectangle::new(
                            [(k as f64 - 0.5, p as f64), (k as f64 + 0.5, p as f64 + 1.0)],
                            colour(l[1] - l[0]).filled(),
                        )
                    })
                }))
                .map_err(s)?;
            let mut bars = ChartBuilder::on(&mu)
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(55)
                .build_cartesian_2d(
                    0.0..(n - 1) as f64,
                    0.0..cps
                        .windows(2)
                        .map(|w| w[1].cumulative_mu - w[0].cumulative_mu)
                        .fold(0.1f64, f64::max)
                        * 1.1,
                )
                .map_err(s)?;
            bars.configure_mesh()
                .disable_x_mesh()
                .x_desc("segment")
                .y_desc("MU per fraction")
                .axis_desc_style((FONT, 15))
                .label_style((FONT, 13))
                .draw()
                .map_err(s)?;
            bars.draw_series(cps.windows(2).enumerate().map(|(k, w)| {
                Rectangle::new(
                    [
                        (k as f64 + 0.1, 0.0),
                        (k as f64 + 0.9, w[1].cumulative_mu - w[0].cumulative_mu),
                    ],
                    COLOURS[1].filled(),
                )
            }))
            .map_err(s)?;
        }
        Ok(())
    }
}

/// Box plots of one metric across methods, with every patient's value as a point (the
/// study's Fig. 2).
pub struct MethodBoxPlot {
    /// Title, e.g. `PTV D98`.
    pub title: String,
    /// Y-axis label with unit, e.g. `D98 (Gy)`.
    pub y_label: String,
    /// (method name, values in display units).
    pub methods: Vec<(String, Vec<f64>)>,
}

/// Per-patient differences between two methods for several metrics (the study's Fig. 5).
pub struct DifferencePlot {
    /// Title, e.g. `rule-based minus manual`.
    pub title: String,
    /// Y-axis label with unit.
    pub y_label: String,
    /// (metric label, per-patient differences in display units).
    pub metrics: Vec<(String, Vec<f64>)>,
}

fn value_range(groups: &[(String, Vec<f64>)], include_zero: bool) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for (_, v) in groups.iter().filter(|(_, v)| !v.is_empty()) {
        // The whiskers (Tukey fences) may reach past the data.
        let fences = Quartiles::new(v).values();
        for x in v
            .iter()
            .copied()
            .chain([fences[0] as f64, fences[4] as f64])
        {
            lo = lo.min(x);
            hi = hi.max(x);
        }
    }
    if include_zero {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(1e-3 * hi.abs().max(1.0));
    (lo - pad, hi + pad)
}

/// Box plots with points, one group per category; a dashed zero line when asked.
fn draw_groups<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    y_label: &str,
    groups: &[(String, Vec<f64>)],
    zero_line: bool,
) -> std::result::Result<(), String> {
    root.fill(&WHITE).map_err(s)?;
    let n = groups.len() as i32;
    let (lo, hi) = value_range(groups, zero_line);
    let names: Vec<String> = groups.iter().map(|(g, _)| g.clone()).collect();
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 24))
        .margin(18)
        .x_label_area_size(50)
        .y_label_area_size(75)
        // A segmented range a..b has a slot for every value a..=b.
        .build_cartesian_2d((0..n - 1).into_segmented(), lo as f32..hi as f32)
        .map_err(s)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y_label)
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 15))
        .light_line_style(RGBColor(235, 235, 235))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(s)?;
    if zero_line {
        chart
            .draw_series(DashedLineSeries::new(
                vec![
                    (SegmentValue::Exact(0), 0.0f32),
                    (SegmentValue::Exact(n), 0.0f32),
                ],
                6,
                4,
                RGBColor(90, 90, 90).stroke_width(1),
            ))
            .map_err(s)?;
    }
    for (i, (_, v)) in groups.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        if v.is_empty() {
            continue;
        }
        let q = Quartiles::new(v);
        chart
            .draw_series(std::iter::once(
                Boxplot::new_vertical(SegmentValue::CenterOf(i as i32), &q)
                    .width(40)
                    .whisker_width(0.5)
                    .style(c.stroke_width(2)),
            ))
            .map_err(s)?;
        // Points spread deterministically across the box (pixel offsets) so that ties stay
        // visible.
        let m = v.len().max(1) as f64;
        chart
            .draw_series(v.iter().enumerate().map(|(k, &y)| {
                let dx = (((k as f64 + 0.5) / m - 0.5) * 36.0).round() as i32;
                EmptyElement::at((SegmentValue::CenterOf(i as i32), y as f32))
                    + Circle::new((dx, 0), 3, c.mix(0.55).filled())
            }))
            .map_err(s)?;
    }
    Ok(())
}

impl Figure for MethodBoxPlot {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        draw_groups(root, &self.title, &self.y_label, &self.methods, false)
    }
}

impl Figure for DifferencePlot {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        draw_groups(root, &self.title, &self.y_label, &self.metrics, true)
    }
}
