//! NRRD images (the format of 3D Slicer and ITK; specification at teem.sourceforge.net,
//! "NRRD0004"): what this crate writes, and the subset it reads back.
//!
//! Written files are single-file NRRD0004 with gzip encoding, little-endian, LPS space, the
//! grid's `space directions` (axis-aligned for every patient grid) and the `space origin` at the
//! first voxel's centre, so Slicer and ITK place them correctly. Reading accepts `raw` or `gzip`
//! encoding, either byte order, and `space directions` (each axis along one patient axis, either
//! way) or `spacings`; anything else (detached data, oblique axes, other dimensions) is refused
//! with the reason, never guessed.

use std::io::{Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use tps_api::error::{Error, Result};
use tps_api::grid::Grid;

/// Voxel types this crate stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoxelType {
    /// `uint8`: masks.
    U8,
    /// `int16`: CT numbers.
    I16,
    /// `float`: dose.
    F32,
}

impl VoxelType {
    fn nrrd_name(self) -> &'static str {
        match self {
            VoxelType::U8 => "uint8",
            VoxelType::I16 => "int16",
            VoxelType::F32 => "float",
        }
    }

    fn size(self) -> usize {
        match self {
            VoxelType::U8 => 1,
            VoxelType::I16 => 2,
            VoxelType::F32 => 4,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "uchar" | "unsigned char" | "uint8" | "uint8_t" => Some(VoxelType::U8),
            "short" | "short int" | "signed short" | "signed short int" | "int16" | "int16_t" => {
                Some(VoxelType::I16)
            }
            "float" => Some(VoxelType::F32),
            _ => None,
        }
    }
}

/// Voxel data read from a file, by type.
#[derive(Debug, Clone, PartialEq)]
pub enum Voxels {
    /// Unsigned bytes.
    U8(Vec<u8>),
    /// Signed 16-bit integers.
    I16(Vec<i16>),
    /// 32-bit floats.
    F32(Vec<f32>),
}

fn fmt_vec(v: [f64; 3]) -> String {
    format!("({},{},{})", v[0], v[1], v[2])
}

/// Writes `bytes` (already little-endian voxel data) as an NRRD file, atomically: the data
/// go to a temporary file in the same directory that is renamed into place, so a crash never
/// leaves a half-written image under the final name.
fn write_bytes(path: &Path, grid: &Grid, ty: VoxelType, bytes: &[u8]) -> Result<()> {
    let header = format!(
        "NRRD0004\n# written by autoplan\ntype: {}\ndimension: 3\nspace: left-posterior-superior\n\
         sizes: {} {} {}\nspace directions: {} {} {}\nkinds: domain domain domain\n\
         endian: little\nencoding: gzip\nspace origin: {}\n\n",
        ty.nrrd_name(),
        grid.dims[0],
        grid.dims[1],
        grid.dims[2],
        fmt_vec(grid.direction[0].map(|c| c * grid.spacing_mm[0])),
        fmt_vec(grid.direction[1].map(|c| c * grid.spacing_mm[1])),
        fmt_vec(grid.direction[2].map(|c| c * grid.spacing_mm[2])),
        fmt_vec(grid.origin_mm),
    );
    tps_api::files::write_atomic_with(path, |w| {
        w.write_all(header.as_bytes())?;
        let mut gz = GzEncoder::new(w, Compression::fast());
        gz.write_all(bytes)?;
        gz.finish().map(|_| ())
    })
}

/// Writes a CT (HU) volume.
pub fn write_i16(path: &Path, grid: &Grid, data: &[i16]) -> Result<()> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_bytes(path, grid, VoxelType::I16, &bytes)
}

/// Writes a mask as 0/1 bytes.
pub fn write_mask(path: &Path, grid: &Grid, data: &[bool]) -> Result<()> {
    let bytes: Vec<u8> = data.iter().map(|&v| v as u8).collect();
    write_bytes(path, grid, VoxelType::U8, &bytes)
}

/// Writes a float volume (dose).
pub fn write_f32(path: &Path, grid: &Grid, data: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_bytes(path, grid, VoxelType::F32, &bytes)
}

fn parse_triple(path: &Path, field: &str, s: &str) -> Result<[f64; 3]> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| Error::corrupt(path, format!("`{field}`: expected (a,b,c), found {s:?}")))?;
    let parts: Vec<f64> = inner
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::corrupt(path, format!("`{field}`: not numbers: {s:?}")))?;
    <[f64; 3]>::try_from(parts)
        .map_err(|_| Error::corrupt(path, format!("`{field}`: expected 3 components in {s:?}")))
}

/// Reads an NRRD file: its grid and voxels.
pub fn read(path: &Path) -> Result<(Grid, Voxels)> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    read_bytes(&raw, path)
}

/// Parses NRRD bytes that came from `path` (used in messages).
pub fn read_bytes(raw: &[u8], path: &Path) -> Result<(Grid, Voxels)> {
    let bad = |why: String| Error::corrupt(path, why);
    if !raw.starts_with(b"NRRD000") {
        return Err(bad("not an NRRD file (no NRRD000x magic)".into()));
    }
    // The header ends at the first empty line.
    let end = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or_else(|| bad("header has no terminating blank line (truncated?)".into()))?;
    let header = std::str::from_utf8(&raw[..end]).map_err(|_| bad("header is not text".into()))?;
    let data = &raw[end + 2..];
    let mut ty = None;
    let mut dimension = None;
    let mut sizes: Option<Vec<usize>> = None;
    let mut encoding = None;
    let mut endian = "little".to_string();
    let mut directions: Option<[[f64; 3]; 3]> = None;
    let mut spacings: Option<[f64; 3]> = None;
    let mut origin = [0.0; 3];
    for line in header.lines().skip(1) {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        // Key/value pairs (`key:=value`) carry no geometry; skip them.
        if line.contains(":=") {
            continue;
        }
        let Some((key, value)) = line.split_once(": ") else {
            return Err(bad(format!("malformed header line {line:?}")));
        };
        let value = value.trim();
        match key.trim() {
            "type" => {
                ty = Some(
                    VoxelType::parse(value)
                        .ok_or_else(|| bad(format!("unsupported voxel type {value:?}")))?,
                )
            }
            "dimension" => dimension = value.parse::<usize>().ok(),
            "sizes" => {
                sizes = Some(
                    value
                        .split_whitespace()
                        .map(|v| v.parse::<usize>())
                        .collect::<std::result::Result<_, _>>()
                        .map_err(|_| bad(format!("`sizes` not integers: {value:?}")))?,
                )
            }
            "encoding" => encoding = Some(value.to_string()),
            "endian" => endian = value.to_string(),
            "space" if !matches!(value, "left-posterior-superior" | "LPS") => {
                return Err(bad(format!(
                    "space {value:?} is not supported (only left-posterior-superior)"
                )));
            }
            "space directions" => {
                let vecs: Vec<&str> = value.split_whitespace().collect();
                if vecs.len() != 3 {
                    return Err(bad(format!(
                        "`space directions` needs 3 vectors: {value:?}"
                    )));
                }
                let mut d = [[0.0; 3]; 3];
                for (a, v) in vecs.iter().enumerate() {
                    d[a] = parse_triple(path, "space directions", v)?;
                }
                directions = Some(d);
            }
            "spacings" => {
                let v: Vec<f64> = value
                    .split_whitespace()
                    .map(|v| v.parse::<f64>())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|_| bad(format!("`spacings` not numbers: {value:?}")))?;
                spacings = Some(
                    <[f64; 3]>::try_from(v).map_err(|_| bad("`spacings` needs 3 values".into()))?,
                );
            }
            "space origin" => origin = parse_triple(path, "space origin", value)?,
            "data file" | "datafile" => {
                return Err(bad("detached data files are not supported".into()));
            }
            _ => {}
        }
    }
    let ty = ty.ok_or_else(|| bad("header has no `type`".into()))?;
    if dimension != Some(3) {
        return Err(bad(format!(
            "expected a 3-D image, `dimension` is {dimension:?}"
        )));
    }
    let sizes = sizes.ok_or_else(|| bad("header has no `sizes`".into()))?;
    let dims: [usize; 3] = sizes
        .try_into()
        .map_err(|_| bad("`sizes` needs 3 values".into()))?;
    let mut direction = tps_api::grid::LPS;
    let spacing = match (directions, spacings) {
        (Some(d), _) => {
            // Each axis along one patient axis, either way (a flipped or permuted grid, as a
            // prone or feet-first series gives); anything oblique is refused.
            let mut s = [0.0; 3];
            for a in 0..3 {
                let len = d[a].iter().map(|v| v * v).sum::<f64>().sqrt();
                let along: Vec<usize> = (0..3)
                    .filter(|&c| d[a][c].abs() > 1e-9 * len.max(1.0))
                    .collect();
                if along.len() != 1 {
                    return Err(bad(
                        "oblique `space directions` are not supported (each axis must run along                          one patient axis)"
                            .into(),
                    ));
                }
                let c = along[0];
                s[a] = len;
                direction[a] = [0.0; 3];
                direction[a][c] = d[a][c].signum();
            }
            s
        }
        (None, Some(s)) => s,
        (None, None) => {
            return Err(bad(
                "header gives neither `space directions` nor `spacings`".into(),
            ));
        }
    };
    let grid = Grid::with_direction(dims, spacing, origin, direction)
        .map_err(|e| bad(format!("bad geometry: {e}")))?;
    let bytes = match encoding.as_deref() {
        Some("raw") => data.to_vec(),
        Some("gzip") | Some("gz") => {
            let mut out = Vec::with_capacity(grid.len() * ty.size());
            GzDecoder::new(data)
                .read_to_end(&mut out)
                .map_err(|e| bad(format!("gzip data is damaged or truncated: {e}")))?;
            out
        }
        other => return Err(bad(format!("unsupported encoding {other:?}"))),
    };
    let expected = grid.len() * ty.size();
    if bytes.len() != expected {
        return Err(bad(format!(
            "data hold {} bytes, the header promises {expected} ({:?} voxels of {})",
            bytes.len(),
            dims,
            ty.nrrd_name()
        )));
    }
    let big = match endian.as_str() {
        "little" => false,
        "big" => true,
        other => return Err(bad(format!("unknown endian {other:?}"))),
    };
    let voxels = match ty {
        VoxelType::U8 => Voxels::U8(bytes),
        VoxelType::I16 => Voxels::I16(
            bytes
                .chunks_exact(2)
                .map(|c| {
                    let b = [c[0], c[1]];
                    if big {
                        i16::from_be_bytes(b)
                    } else {
                        i16::from_le_bytes(b)
                    }
                })
                .collect(),
        ),
        VoxelType::F32 => Voxels::F32(
            bytes
                .chunks_exact(4)
                .map(|c| {
                    let b = [c[0], c[1], c[2], c[3]];
                    if big {
                        f32::from_be_bytes(b)
                    } else {
                        f32::from_le_bytes(b)
                    }
                })
                .collect(),
        ),
    };
    Ok((grid, voxels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Grid {
        Grid::new([3, 4, 5], [2.5, 2.5, 3.0], [-10.0, 5.5, 100.0]).unwrap()
    }

    #[test]
    fn ct_round_trips_with_geometry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ct.nrrd");
        let data: Vec<i16> = (0..60).map(|v| v * 37 - 1000).collect();
        write_i16(&path, &grid(), &data).unwrap();
        let (g, v) = read(&path).unwrap();
        assert_eq!(g, grid());
        assert_eq!(v, Voxels::I16(data));
    }

    /// A dose on a flipped, permuted grid (a feet-first series, a remote system's convention)
    /// keeps its directions through a file.
    #[test]
    fn flipped_and_permuted_grids_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dose.nrrd");
        let d = [[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]];
        let g = Grid::with_direction([3, 4, 5], [2.5, 2.0, 3.0], [10.0, 5.5, 100.0], d).unwrap();
        let data: Vec<f32> = (0..60).map(|v| v as f32 * 0.5).collect();
        write_f32(&path, &g, &data).unwrap();
        let (back, v) = read(&path).unwrap();
        assert_eq!(back, g);
        assert_eq!(v, Voxels::F32(data));
    }

    #[test]
    fn raw_big_endian_with_spacings_is_read() {
        let mut bytes = b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 1 1\nspacings: 1 2 3\nendian: big\nencoding: raw\n\n".to_vec();
        bytes.extend_from_slice(&(-5i16).to_be_bytes());
        bytes.extend_from_slice(&300i16.to_be_bytes());
        let (g, v) = read_bytes(&bytes, Path::new("x.nrrd")).unwrap();
        assert_eq!(g.spacing_mm, [1.0, 2.0, 3.0]);
        assert_eq!(v, Voxels::I16(vec![-5, 300]));
    }

    #[test]
    fn truncated_and_corrupt_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.nrrd");
        write_mask(&path, &grid(), &[true; 60]).unwrap();
        let full = std::fs::read(&path).unwrap();
        for cut in [5, full.len() / 3, full.len() - 4] {
            let e = read_bytes(&full[..cut], &path).unwrap_err();
            assert!(matches!(e, Error::Corrupt { .. }), "cut {cut}: {e}");
        }
        let e = read_bytes(b"P6\n3 3\n255\n", &path).unwrap_err();
        assert!(e.to_string().contains("not an NRRD"), "{e}");
        let oblique = b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 1 1 1\nspace directions: (1,0.5,0) (0,1,0) (0,0,1)\nencoding: raw\n\n\x01";
        let e = read_bytes(oblique, &path).unwrap_err();
        assert!(e.to_string().contains("oblique"), "{e}");
    }
}
