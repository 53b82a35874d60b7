//! RT structure sets: reading their ROIs and contours, and rasterizing closed planar contours
//! onto a CT grid.
//!
//! # The fill rule
//!
//! A voxel belongs to a structure when its centre lies inside the structure's contours on that
//! slice by the even-odd rule: every contour of the structure on the slice is an edge set, and
//! a point is inside when a ray from it crosses those edges an odd number of times. So a
//! contour inside another is a hole, a contour inside a hole an island, and several separate
//! contours are several islands, however the contours are oriented. A voxel centre exactly on
//! an edge belongs to the region on its right (x, then y, growing), the half-open rule of
//! scanline filling: contours traced along voxel edges give back exactly the voxels they
//! enclose, and two structures sharing an edge never both claim its voxels.

use dicom_dictionary_std::tags;
use rayon::prelude::*;
use tps_api::error::Result;
use tps_api::grid::Grid;
use tps_api::structure::Mask;

use crate::read::DicomFile;

/// A ROI of a structure set with its closed planar contours.
#[derive(Debug, Clone)]
pub struct Roi {
    /// ROINumber.
    pub number: i64,
    /// ROIName as written.
    pub name: String,
    /// RTROIInterpretedType (EXTERNAL, PTV, ORGAN, ...), when given.
    pub interpreted_type: Option<String>,
    /// Closed planar contours, each a list of points in patient coordinates (mm).
    pub contours: Vec<Vec<[f64; 3]>>,
    /// Contours of other geometric types that were skipped, with their type.
    pub skipped: Vec<String>,
}

/// The content of an RTSTRUCT file that import needs.
#[derive(Debug, Clone)]
pub struct StructureSet {
    /// StructureSetLabel, when given.
    pub label: Option<String>,
    /// SOPInstanceUID.
    pub sop_uid: String,
    /// The frames of reference it refers to.
    pub frames: Vec<String>,
    /// The image series it refers to (SeriesInstanceUID).
    pub series: Vec<String>,
    /// Its ROIs in file order.
    pub rois: Vec<Roi>,
}

/// Reads the ROIs and contours of an RTSTRUCT file.
pub fn read(file: &DicomFile) -> Result<StructureSet> {
    let a = file.attrs();
    let mut frames = Vec::new();
    let mut series = Vec::new();
    for f in a.items(
        tags::REFERENCED_FRAME_OF_REFERENCE_SEQUENCE,
        "ReferencedFrameOfReferenceSequence",
    ) {
        if let Some(uid) = f.opt_str(tags::FRAME_OF_REFERENCE_UID, "FrameOfReferenceUID")? {
            frames.push(uid);
        }
        for st in f.items(
            tags::RT_REFERENCED_STUDY_SEQUENCE,
            "RTReferencedStudySequence",
        ) {
            for se in st.items(
                tags::RT_REFERENCED_SERIES_SEQUENCE,
                "RTReferencedSeriesSequence",
            ) {
                if let Some(uid) = se.opt_str(tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")? {
                    series.push(uid);
                }
            }
        }
    }
    let mut rois = Vec::new();
    for r in a.items(tags::STRUCTURE_SET_ROI_SEQUENCE, "StructureSetROISequence") {
        let number = r.int(tags::ROI_NUMBER, "ROINumber")?;
        let name = r.opt_str(tags::ROI_NAME, "ROIName")?.unwrap_or_default();
        if let Some(uid) = r.opt_str(
            tags::REFERENCED_FRAME_OF_REFERENCE_UID,
            "ReferencedFrameOfReferenceUID",
        )? && !frames.contains(&uid)
        {
            frames.push(uid);
        }
        rois.push(Roi {
            number,
            name,
            interpreted_type: None,
            contours: Vec::new(),
            skipped: Vec::new(),
        });
    }
    for o in a.items(
        tags::RTROI_OBSERVATIONS_SEQUENCE,
        "RTROIObservationsSequence",
    ) {
        let n = o.int(tags::REFERENCED_ROI_NUMBER, "ReferencedROINumber")?;
        let t = o.opt_str(tags::RTROI_INTERPRETED_TYPE, "RTROIInterpretedType")?;
        if let Some(roi) = rois.iter_mut().find(|r| r.number == n) {
            roi.interpreted_type = t.map(|s| s.to_uppercase());
        }
    }
    for rc in a.items(tags::ROI_CONTOUR_SEQUENCE, "ROIContourSequence") {
        let n = rc.int(tags::REFERENCED_ROI_NUMBER, "ReferencedROINumber")?;
        let Some(idx) = rois.iter().position(|r| r.number == n) else {
            return Err(rc.invalid(
                tags::REFERENCED_ROI_NUMBER,
                "ReferencedROINumber",
                n.to_string(),
                "no ROI with this number in StructureSetROISequence",
            ));
        };
        for c in rc.items(tags::CONTOUR_SEQUENCE, "ContourSequence") {
            let kind = c
                .opt_str(tags::CONTOUR_GEOMETRIC_TYPE, "ContourGeometricType")?
                .unwrap_or_default();
            if kind != "CLOSED_PLANAR" {
                rois[idx].skipped.push(kind);
                continue;
            }
            let data = c
                .opt_f64s(tags::CONTOUR_DATA, "ContourData")?
                .unwrap_or_default();
            if data.len() % 3 != 0 {
                return Err(c.invalid(
                    tags::CONTOUR_DATA,
                    "ContourData",
                    format!("{} numbers", data.len()),
                    "must be x, y, z triplets",
                ));
            }
            if let Some(count) =
                c.opt_f64s(tags::NUMBER_OF_CONTOUR_POINTS, "NumberOfContourPoints")?
                && count.first().is_some_and(|&v| v as usize != data.len() / 3)
            {
                return Err(c.invalid(
                    tags::NUMBER_OF_CONTOUR_POINTS,
                    "NumberOfContourPoints",
                    format!("{}", count[0]),
                    &format!("ContourData holds {} points", data.len() / 3),
                ));
            }
            let points: Vec<[f64; 3]> = data.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect();
            if points.len() >= 3 {
                rois[idx].contours.push(points);
            }
        }
    }
    Ok(StructureSet {
        label: a.opt_str(tags::STRUCTURE_SET_LABEL, "StructureSetLabel")?,
        sop_uid: a.str(tags::SOP_INSTANCE_UID, "SOPInstanceUID")?,
        frames,
        series,
        rois,
    })
}

/// What rasterizing one ROI found besides its voxels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RasterNotes {
    /// Contour points outside the grid's extent (their part of the structure is clipped).
    pub points_off_grid: usize,
    /// Contours whose plane lies off every CT slice by more than a quarter of the spacing or
    /// beyond the first or last slice (dropped).
    pub contours_off_slices: usize,
    /// Contours whose points do not share one axial plane (placed at their mean z).
    pub non_planar: usize,
}

/// Rasterizes closed planar axial contours onto an LPS-aligned `grid` by the even-odd rule
/// with voxel centres (see the module documentation).
pub fn rasterize(contours: &[Vec<[f64; 3]>], grid: &Grid) -> (Mask, RasterNotes) {
    let [nx, ny, nz] = grid.dims;
    let mut notes = RasterNotes::default();
    // Contours per slice, in continuous voxel coordinates.
    let mut per_slice: Vec<Vec<Vec<(f64, f64)>>> = vec![Vec::new(); nz];
    let lo = [0, 1].map(|a| grid.origin_mm[a] - 0.5 * grid.spacing_mm[a]);
    let hi = [0, 1].map(|a| lo[a] + grid.extent_mm()[a]);
    for c in contours {
        let zs: Vec<f64> = c.iter().map(|p| p[2]).collect();
        let z = zs.iter().sum::<f64>() / zs.len() as f64;
        if zs.iter().any(|v| (v - z).abs() > 0.01) {
            notes.non_planar += 1;
        }
        let kc = grid.continuous_index(2, z);
        let k = kc.round();
        if (kc - k).abs() > 0.25 || k < 0.0 || k > (nz - 1) as f64 {
            notes.contours_off_slices += 1;
            continue;
        }
        notes.points_off_grid += c
            .iter()
            .filter(|p| (0..2).any(|a| p[a] < lo[a] || p[a] > hi[a]))
            .count();
        per_slice[k as usize].push(
            c.iter()
                .map(|p| {
                    (
                        grid.continuous_index(0, p[0]),
                        grid.continuous_index(1, p[1]),
                    )
                })
                .collect(),
        );
    }
    let mut data = vec![false; grid.len()];
    data.par_chunks_mut(nx * ny)
        .zip(per_slice.par_iter())
        .for_each(|(slice, polys)| fill_slice(polys, nx, ny, slice));
    (
        Mask::from_vec(*grid, data).expect("mask built on its grid"),
        notes,
    )
}

/// Fills one slice (`nx` x `ny`, x-fastest) with the even-odd interior of `polys`.
fn fill_slice(polys: &[Vec<(f64, f64)>], nx: usize, ny: usize, slice: &mut [bool]) {
    if polys.is_empty() {
        return;
    }
    let mut crossings: Vec<f64> = Vec::new();
    let (ymin, ymax) = polys
        .iter()
        .flatten()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    let j0 = ymin.ceil().max(0.0) as usize;
    let j1 = (ymax.floor().min(ny as f64 - 1.0)).max(-1.0);
    if j1 < 0.0 {
        return;
    }
    for j in j0..=j1 as usize {
        let y = j as f64;
        crossings.clear();
        for poly in polys {
            let n = poly.len();
            for e in 0..n {
                let (a, b) = (poly[e], poly[(e + 1) % n]);
                // Half-open in y: an edge counts at rows y with min <= y < max.
                if (a.1 <= y) != (b.1 <= y) {
                    crossings.push(a.0 + (y - a.1) * (b.0 - a.0) / (b.1 - a.1));
                }
            }
        }
        crossings.sort_by(f64::total_cmp);
        for pair in crossings.chunks_exact(2) {
            // Half-open in x: voxel centres i with x0 <= i < x1.
            let i0 = pair[0].ceil().max(0.0);
            let i1 = pair[1].ceil().min(nx as f64);
            if i1 > i0 {
                let row = &mut slice[j * nx..(j + 1) * nx];
                row[i0 as usize..i1 as usize].fill(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Grid {
        Grid::new([10, 8, 3], [2.0, 2.0, 3.0], [-9.0, -7.0, 0.0]).unwrap()
    }

    /// The square contour around voxels i in [a, b), j in [c, d) of slice k, along voxel edges.
    fn square(g: &Grid, (a, b): (usize, usize), (c, d): (usize, usize), k: usize) -> Vec<[f64; 3]> {
        let x = |i: f64| g.origin_mm[0] + (i - 0.5) * g.spacing_mm[0];
        let y = |j: f64| g.origin_mm[1] + (j - 0.5) * g.spacing_mm[1];
        let z = g.coord_mm(2, k);
        let (a, b, c, d) = (a as f64, b as f64, c as f64, d as f64);
        vec![
            [x(a), y(c), z],
            [x(b), y(c), z],
            [x(b), y(d), z],
            [x(a), y(d), z],
        ]
    }

    fn count(m: &Mask) -> usize {
        m.data().iter().filter(|&&v| v).count()
    }

    #[test]
    fn a_contour_along_voxel_edges_gives_back_exactly_its_voxels() {
        let g = grid();
        let (m, notes) = rasterize(&[square(&g, (2, 6), (1, 4), 1)], &g);
        assert_eq!(notes, RasterNotes::default());
        assert_eq!(count(&m), 12);
        for j in 1..4 {
            for i in 2..6 {
                assert!(m.get(i, j, 1));
            }
        }
    }

    #[test]
    fn an_inner_contour_is_a_hole_and_an_island_inside_it_is_filled() {
        let g = grid();
        let outer = square(&g, (0, 9), (0, 8), 0);
        let hole = square(&g, (2, 7), (2, 6), 0);
        let island = square(&g, (4, 5), (3, 5), 0);
        let (m, _) = rasterize(&[outer, hole, island], &g);
        assert_eq!(count(&m), 9 * 8 - 5 * 4 + 2);
        assert!(!m.get(2, 2, 0));
        assert!(m.get(4, 3, 0) && m.get(4, 4, 0));
        assert!(m.get(0, 0, 0) && m.get(8, 7, 0));
    }

    #[test]
    fn points_off_the_grid_are_clipped_and_counted() {
        let g = grid();
        let mut c = square(&g, (0, 4), (0, 4), 2);
        c[0][0] -= 20.0; // a corner 20 mm beyond the grid's left edge
        let (m, notes) = rasterize(&[c], &g);
        assert_eq!(notes.points_off_grid, 1);
        assert!(m.get(0, 0, 2) && count(&m) > 0);
        let mut far = square(&g, (0, 4), (0, 4), 2);
        far.iter_mut().for_each(|p| p[2] = 30.0);
        let (m, notes) = rasterize(&[far], &g);
        assert_eq!((count(&m), notes.contours_off_slices), (0, 1));
    }

    #[test]
    fn a_triangle_fills_the_voxel_centres_inside_it() {
        let g = Grid::new([20, 20, 1], [1.0; 3], [0.0; 3]).unwrap();
        // Its hypotenuse x + y = 10 passes through voxel centres: those on it are outside.
        let c = vec![[-0.1, -0.1, 0.0], [10.1, -0.1, 0.0], [-0.1, 10.1, 0.0]];
        let (m, _) = rasterize(&[c], &g);
        let mut expected = 0;
        for j in 0..20 {
            for i in 0..20 {
                let inside = i + j < 10;
                expected += inside as usize;
                assert_eq!(m.get(i, j, 0), inside, "voxel ({i}, {j})");
            }
        }
        assert_eq!(count(&m), expected);
    }
}
