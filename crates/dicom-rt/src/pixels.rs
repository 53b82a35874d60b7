//! Uncompressed pixel data (CT slices, RT dose frames) as stored integers.
//!
//! Only the native transfer syntaxes are read; a compressed file (JPEG, JPEG 2000, RLE, ...) is
//! refused with its transfer syntax named, so the user can decompress it first (for example
//! with `gdcmconv --raw` or `dcmdjpeg`).

use dicom_core::value::{PrimitiveValue, Value};
use dicom_dictionary_std::{tags, uids};
use tps_api::error::{Error, Result};

use crate::read::DicomFile;

/// Explicit VR Big Endian: retired from the standard, still found in old archives.
const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";

/// Transfer syntaxes whose pixel data is stored uncompressed.
const NATIVE: [(&str, &str); 4] = [
    (uids::IMPLICIT_VR_LITTLE_ENDIAN, "Implicit VR Little Endian"),
    (uids::EXPLICIT_VR_LITTLE_ENDIAN, "Explicit VR Little Endian"),
    (EXPLICIT_VR_BIG_ENDIAN, "Explicit VR Big Endian"),
    (
        uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        "Deflated Explicit VR Little Endian",
    ),
];

/// The stored values of a file's pixel data: `count` samples of one channel, each as an
/// integer after masking to BitsStored and sign extension (PixelRepresentation 1).
pub fn stored_values(file: &DicomFile, count: usize) -> Result<Vec<i64>> {
    let a = file.attrs();
    let ts = file.transfer_syntax().trim_end_matches('\0').to_string();
    let little = ts != EXPLICIT_VR_BIG_ENDIAN;
    if !NATIVE.iter().any(|(uid, _)| *uid == ts) {
        return Err(Error::invalid(
            file.path.display().to_string(),
            "TransferSyntaxUID (0002,0010)",
            ts,
            "compressed pixel data cannot be decoded here; write the series uncompressed \
             (for example `gdcmconv --raw` or `dcmdjpeg`) and import again",
        ));
    }
    let samples = a.int(tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?;
    if samples != 1 {
        return Err(a.invalid(
            tags::SAMPLES_PER_PIXEL,
            "SamplesPerPixel",
            samples.to_string(),
            "only single-sample (grey-scale) pixel data is read",
        ));
    }
    let bits = a.int(tags::BITS_ALLOCATED, "BitsAllocated")?;
    if bits != 16 && bits != 32 {
        return Err(a.invalid(
            tags::BITS_ALLOCATED,
            "BitsAllocated",
            bits.to_string(),
            "only 16- and 32-bit pixel data is read",
        ));
    }
    let stored = match a.opt_f64s(tags::BITS_STORED, "BitsStored")? {
        Some(v) if !v.is_empty() => v[0] as i64,
        _ => bits,
    };
    if stored < 1 || stored > bits {
        return Err(a.invalid(
            tags::BITS_STORED,
            "BitsStored",
            stored.to_string(),
            "must be between 1 and BitsAllocated",
        ));
    }
    let signed = a.int(tags::PIXEL_REPRESENTATION, "PixelRepresentation")? == 1;
    let elem = a
        .element(tags::PIXEL_DATA)
        .ok_or_else(|| a.invalid(tags::PIXEL_DATA, "PixelData", "(absent)", "required here"))?;
    let raw: Vec<u64> = match elem.value() {
        Value::Primitive(p) => words(p, bits as u32, little),
        _ => {
            return Err(a.invalid(
                tags::PIXEL_DATA,
                "PixelData",
                "(encapsulated)",
                "pixel data is encapsulated (compressed); write it uncompressed and import again",
            ));
        }
    };
    if raw.len() < count {
        return Err(a.invalid(
            tags::PIXEL_DATA,
            "PixelData",
            format!("{} values", raw.len()),
            &format!("expected {count} values (Rows x Columns x frames): the file is truncated"),
        ));
    }
    let mask: u64 = if stored == 64 {
        u64::MAX
    } else {
        (1u64 << stored) - 1
    };
    let sign = 1u64 << (stored - 1);
    Ok(raw[..count]
        .iter()
        .map(|&w| {
            let v = w & mask;
            if signed && v & sign != 0 {
                v as i64 - (1i64 << stored)
            } else {
                v as i64
            }
        })
        .collect())
}

/// The pixel words of a primitive value, however the reader typed them.
fn words(p: &PrimitiveValue, bits: u32, little: bool) -> Vec<u64> {
    match p {
        PrimitiveValue::U16(v) if bits == 16 => v.iter().map(|&x| x as u64).collect(),
        PrimitiveValue::I16(v) if bits == 16 => v.iter().map(|&x| x as u16 as u64).collect(),
        PrimitiveValue::U32(v) if bits == 32 => v.iter().map(|&x| x as u64).collect(),
        PrimitiveValue::I32(v) if bits == 32 => v.iter().map(|&x| x as u32 as u64).collect(),
        other => {
            let bytes = other.to_bytes();
            let width = (bits / 8) as usize;
            bytes
                .chunks_exact(width)
                .map(|c| {
                    let mut w = 0u64;
                    for (n, &b) in c.iter().enumerate() {
                        let shift = if little { n } else { width - 1 - n };
                        w |= (b as u64) << (8 * shift);
                    }
                    w
                })
                .collect()
        }
    }
}

/// The name of a transfer syntax UID, when it is one of the native ones.
pub fn native_name(uid: &str) -> Option<&'static str> {
    NATIVE.iter().find(|(u, _)| *u == uid).map(|(_, n)| *n)
}
