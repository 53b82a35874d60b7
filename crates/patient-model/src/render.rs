//! Slice pictures a person can look at: CT in a soft-tissue window with structure contours,
//! a legend, orientation letters and a title, written as PNG.
//!
//! Display conventions are the radiological ones: axial and coronal views show the patient's
//! right on the left of the image; axial views have anterior at the top; sagittal views have
//! anterior on the left; superior is at the top of sagittal and coronal views.

use std::path::Path;

use tps_api::error::{Error, Result};
use tps_api::patient::Patient;
use tps_api::structure::Mask;

/// Which orthogonal plane to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// Transverse (fixed z).
    Axial,
    /// Fixed x.
    Sagittal,
    /// Fixed y.
    Coronal,
}

impl Plane {
    /// All three planes.
    pub const ALL: [Plane; 3] = [Plane::Axial, Plane::Sagittal, Plane::Coronal];

    /// Lower-case name, used in file names.
    pub fn name(self) -> &'static str {
        match self {
            Plane::Axial => "axial",
            Plane::Sagittal => "sagittal",
            Plane::Coronal => "coronal",
        }
    }

    /// (horizontal axis, vertical axis, fixed axis, vertical axis grows downwards).
    fn axes(self) -> (usize, usize, usize, bool) {
        match self {
            Plane::Axial => (0, 1, 2, true),
            Plane::Sagittal => (1, 2, 0, false),
            Plane::Coronal => (0, 2, 1, false),
        }
    }

    /// Orientation letters at (left, right, top, bottom).
    fn letters(self) -> [char; 4] {
        match self {
            Plane::Axial => ['R', 'L', 'A', 'P'],
            Plane::Sagittal => ['A', 'P', 'S', 'I'],
            Plane::Coronal => ['R', 'L', 'S', 'I'],
        }
    }
}

/// An RGB raster.
#[derive(Debug, Clone)]
pub struct Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Row-major RGB bytes.
    pub rgb: Vec<u8>,
}

impl Image {
    /// A canvas filled with one colour.
    pub fn new(width: usize, height: usize, fill: [u8; 3]) -> Self {
        let mut rgb = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            rgb.extend_from_slice(&fill);
        }
        Self { width, height, rgb }
    }

    /// Sets one pixel (ignored outside the canvas).
    #[inline]
    pub fn put(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.width && y < self.height {
            let o = 3 * (y * self.width + x);
            self.rgb[o..o + 3].copy_from_slice(&c);
        }
    }

    /// Fills a rectangle.
    pub fn fill_rect(&mut self, x: usize, y: usize, w: usize, h: usize, c: [u8; 3]) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.put(xx, yy, c);
            }
        }
    }

    /// Draws ASCII text with the 8x8 public-domain font, scaled by `scale`; returns the width
    /// drawn. Characters outside ASCII are drawn as '?'.
    pub fn text(&mut self, x: usize, y: usize, s: &str, scale: usize, c: [u8; 3]) -> usize {
        let glyphs = &font8x8::legacy::BASIC_LEGACY;
        let mut cx = x;
        for ch in s.chars() {
            let code = if ch.is_ascii() {
                ch as usize
            } else {
                b'?' as usize
            };
            for (row, bits) in glyphs[code].iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 1 {
                        self.fill_rect(cx + col * scale, y + row * scale, scale, scale, c);
                    }
                }
            }
            cx += 8 * scale;
        }
        cx - x
    }

    /// Pastes `other` with its top-left corner at `(x, y)`.
    pub fn blit(&mut self, other: &Image, x: usize, y: usize) {
        for yy in 0..other.height {
            for xx in 0..other.width {
                let o = 3 * (yy * other.width + xx);
                self.put(
                    x + xx,
                    y + yy,
                    [other.rgb[o], other.rgb[o + 1], other.rgb[o + 2]],
                );
            }
        }
    }

    /// Writes the image as an 8-bit RGB PNG.
    pub fn write_png(&self, path: &Path) -> Result<()> {
        tps_api::files::write_atomic_with(path, |w| {
            let mut enc = png::Encoder::new(w, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let to_io = |e: png::EncodingError| std::io::Error::other(e.to_string());
            let mut writer = enc.write_header().map_err(to_io)?;
            writer.write_image_data(&self.rgb).map_err(to_io)?;
            writer.finish().map_err(to_io)
        })
    }
}

/// A contour to draw: a mask, its colour and its legend label.
pub struct Overlay<'a> {
    /// Legend text.
    pub label: String,
    /// Line colour.
    pub color: [u8; 3],
    /// The voxels whose outline is drawn.
    pub mask: &'a Mask,
}

/// Colour for a structure: fixed colours for the usual pelvic names (so pictures of different
/// patients compare at a glance), a palette for the rest.
pub fn structure_color(name: &str, index: usize) -> [u8; 3] {
    match name {
        "PTV" => [255, 40, 40],
        "CTV" => [255, 150, 0],
        "Bladder" => [255, 235, 0],
        "Rectum" => [170, 100, 40],
        "Bag_Bowel" => [60, 220, 90],
        "SpinalCord" => [0, 230, 230],
        "BoneMarrow" => [230, 60, 230],
        "Femur_Head_L" => [60, 120, 255],
        "Femur_Head_R" => [140, 190, 255],
        "External" => [150, 255, 150],
        _ => {
            const PALETTE: [[u8; 3]; 8] = [
                [255, 120, 180],
                [180, 255, 60],
                [120, 80, 255],
                [255, 200, 120],
                [0, 160, 160],
                [200, 200, 255],
                [255, 90, 0],
                [160, 160, 0],
            ];
            PALETTE[index % PALETTE.len()]
        }
    }
}

/// Overlays for every structure of a patient except the external contour.
pub fn structure_overlays(patient: &Patient) -> Vec<Overlay<'_>> {
    patient
        .structures()
        .iter()
        .enumerate()
        .filter(|(_, s)| s.role != tps_api::structure::Role::External)
        .map(|(n, s)| Overlay {
            label: s.name.clone(),
            color: structure_color(&s.name, n),
            mask: &s.mask,
        })
        .collect()
}

/// Isodose masks for drawing as overlays: one per level (cGy), labelled with the dose and,
/// when `reference_cgy` is given, its percentage. Colours run from red (hot) to blue (low).
pub fn isodose_masks(
    grid: &tps_api::grid::Grid,
    dose_cgy: &[f32],
    levels_cgy: &[f64],
    reference_cgy: Option<f64>,
) -> Vec<(String, [u8; 3], Mask)> {
    const RAMP: [[u8; 3]; 7] = [
        [255, 0, 0],
        [255, 140, 0],
        [255, 230, 0],
        [0, 220, 0],
        [0, 210, 210],
        [40, 110, 255],
        [160, 80, 255],
    ];
    levels_cgy
        .iter()
        .enumerate()
        .map(|(n, &level)| {
            let data = dose_cgy.iter().map(|&d| d as f64 >= level).collect();
            let mask = Mask::from_vec(*grid, data).expect("dose on the grid");
            let label = match reference_cgy {
                Some(r) => format!("{:.0} cGy ({:.0}%)", level, 100.0 * level / r),
                None => format!("{level:.0} cGy"),
            };
            (label, RAMP[n % RAMP.len()], mask)
        })
        .collect()
}

/// Maps CT numbers to grey with a window of width `w` centred at `l` (HU).
fn window(hu: i16, l: f64, w: f64) -> u8 {
    let v = ((hu as f64 - (l - w / 2.0)) / w).clamp(0.0, 1.0);
    (v * 255.0).round() as u8
}

const TEXT: [u8; 3] = [235, 235, 235];
const BACKGROUND: [u8; 3] = [18, 18, 22];

/// Renders one plane through `through_mm` at `px_per_mm`, with contours, legend and labels.
pub fn render_plane(
    patient: &Patient,
    plane: Plane,
    through_mm: [f64; 3],
    px_per_mm: f64,
    overlays: &[Overlay<'_>],
    title: &str,
) -> Image {
    let g = patient.grid();
    let (h_ax, v_ax, f_ax, down) = plane.axes();
    let extent = g.extent_mm();
    let w = (extent[h_ax] * px_per_mm).round().max(1.0) as usize;
    let h = (extent[v_ax] * px_per_mm).round().max(1.0) as usize;
    let fixed = g.nearest_clamped(f_ax, through_mm[f_ax]);
    // Voxel index under each display column / row.
    let col_voxel: Vec<usize> = (0..w)
        .map(|c| {
            let mm = g.origin_mm[h_ax] - 0.5 * g.spacing_mm[h_ax] + (c as f64 + 0.5) / px_per_mm;
            g.nearest_clamped(h_ax, mm)
        })
        .collect();
    let row_voxel: Vec<usize> = (0..h)
        .map(|r| {
            let from_top = (r as f64 + 0.5) / px_per_mm;
            let mm = if down {
                g.origin_mm[v_ax] - 0.5 * g.spacing_mm[v_ax] + from_top
            } else {
                g.origin_mm[v_ax] - 0.5 * g.spacing_mm[v_ax] + extent[v_ax] - from_top
            };
            g.nearest_clamped(v_ax, mm)
        })
        .collect();
    let voxel = |c: usize, r: usize| -> usize {
        let mut ijk = [0usize; 3];
        ijk[h_ax] = col_voxel[c];
        ijk[v_ax] = row_voxel[r];
        ijk[f_ax] = fixed;
        g.index(ijk[0], ijk[1], ijk[2])
    };
    let mut panel = Image::new(w, h, [0, 0, 0]);
    let ct = patient.ct_hu();
    for r in 0..h {
        for c in 0..w {
            let v = window(ct[voxel(c, r)], 40.0, 400.0);
            panel.put(c, r, [v, v, v]);
        }
    }
    for ov in overlays {
        let data = ov.mask.data();
        let inside: Vec<bool> = (0..w * h).map(|n| data[voxel(n % w, n / w)]).collect();
        let thick = 1usize;
        for r in 0..h {
            for c in 0..w {
                if !inside[r * w + c] {
                    continue;
                }
                let edge = (r.saturating_sub(thick)..=(r + thick).min(h - 1)).any(|rr| {
                    (c.saturating_sub(thick)..=(c + thick).min(w - 1))
                        .any(|cc| !inside[rr * w + cc])
                }) || r == 0
                    || c == 0
                    || r == h - 1
                    || c == w - 1;
                if edge {
                    panel.put(c, r, ov.color);
                }
            }
        }
    }
    let [left, right, top, bottom] = plane.letters();
    panel.text(4, h / 2 - 8, &left.to_string(), 2, TEXT);
    panel.text(w.saturating_sub(20), h / 2 - 8, &right.to_string(), 2, TEXT);
    panel.text(w / 2 - 8, 4, &top.to_string(), 2, TEXT);
    panel.text(
        w / 2 - 8,
        h.saturating_sub(20),
        &bottom.to_string(),
        2,
        TEXT,
    );

    // Layout: title bar, panel, legend column.
    let title_h = 30;
    let legend_w = 20
        + overlays
            .iter()
            .map(|o| o.label.len())
            .max()
            .unwrap_or(6)
            .max(12)
            * 16
        + 30;
    // Entries, then the position and window lines below them.
    let legend_h = 8 + overlays.len() * 26 + 70;
    let mut out = Image::new(
        w + legend_w,
        (h + title_h).max(legend_h + title_h),
        BACKGROUND,
    );
    out.text(8, 7, title, 2, TEXT);
    out.blit(&panel, 0, title_h);
    let lx = w + 14;
    let mut ly = title_h + 8;
    for ov in overlays {
        out.fill_rect(lx, ly, 18, 18, ov.color);
        out.text(lx + 28, ly + 1, &ov.label, 2, TEXT);
        ly += 26;
    }
    let pos = g.coord_mm(f_ax, fixed);
    let axis_name = ["x", "y", "z"][f_ax];
    out.text(lx, ly + 10, &format!("{axis_name} = {pos:.1} mm"), 2, TEXT);
    out.text(lx, ly + 36, "W400 L40", 2, TEXT);
    out
}

/// Writes axial, sagittal and coronal PNGs through `through_mm` into `dir`, named
/// `<stem>-<plane>.png`; returns the paths written.
pub fn write_orthogonal_pngs(
    patient: &Patient,
    overlays: &[Overlay<'_>],
    through_mm: [f64; 3],
    dir: &Path,
    stem: &str,
) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut written = Vec::new();
    for plane in Plane::ALL {
        let title = format!("{}  {}", patient.id, plane.name());
        let img = render_plane(patient, plane, through_mm, 1.6, overlays, &title);
        let path = dir.join(format!("{stem}-{}.png", plane.name()));
        img.write_png(&path)?;
        written.push(path);
    }
    Ok(written)
}
