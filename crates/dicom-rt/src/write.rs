//! Building and writing DICOM data sets: typed puts with the right value representation,
//! decimal strings within their 16 characters, UIDs, and Part 10 files.

use std::path::Path;

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;
use tps_api::error::{Error, Result};

/// Implementation Class UID of files this crate writes: a UUID-derived UID (PS3.5 B.2) fixed
/// for the project.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.170364998811375616862346040938741356313";
/// Implementation Version Name written to the file meta group.
pub const IMPLEMENTATION_VERSION: &str = "AUTOPLAN_0_1";

/// A decimal string (VR DS) of at most 16 characters holding `v` to better than 1e-6 of its
/// magnitude: fixed notation with as many decimals as fit for magnitudes from 1e-4 up,
/// scientific below (a dose grid scaling) and for the huge.
pub fn ds(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".into();
    }
    if v.abs() >= 1e-4 && v.abs() < 1e15 {
        for decimals in (0..=10).rev() {
            let mut s = format!("{v:.decimals$}");
            if s.contains('.') {
                let trimmed = s.trim_end_matches('0').trim_end_matches('.').len();
                s.truncate(trimmed);
            }
            if s.len() <= 16 {
                return s;
            }
        }
    }
    for digits in (0..=10).rev() {
        let s = format!("{v:.digits$e}");
        if s.len() <= 16 {
            return s;
        }
    }
    format!("{v:e}")
}

/// A fresh UID under the UUID arc 2.25 (PS3.5 B.2): 128 bits from the clock, the process and a
/// counter, mixed, as a decimal integer.
pub fn new_uid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let c = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    };
    let hi = mix(nanos ^ (std::process::id() as u64) << 32);
    let lo = mix(c.wrapping_add(0x9e3779b97f4a7c15).wrapping_mul(nanos | 1));
    let n = ((hi as u128) << 64 | lo as u128) >> 1; // below 2^127: at most 39 digits
    format!("2.25.{n}")
}

/// A data set under construction.
pub struct Builder {
    obj: InMemDicomObject,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// An empty data set.
    pub fn new() -> Self {
        Self {
            obj: InMemDicomObject::new_empty(),
        }
    }

    /// A text value of VR `vr`.
    pub fn str(&mut self, tag: Tag, vr: VR, value: &str) -> &mut Self {
        self.obj
            .put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
        self
    }

    /// Several text values (backslash-separated in the file).
    pub fn strs(&mut self, tag: Tag, vr: VR, values: &[&str]) -> &mut Self {
        let v: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        self.obj
            .put(DataElement::new(tag, vr, PrimitiveValue::Strs(v.into())));
        self
    }

    /// Decimal strings.
    pub fn ds(&mut self, tag: Tag, values: &[f64]) -> &mut Self {
        let v: Vec<String> = values.iter().map(|&x| ds(x)).collect();
        self.obj.put(DataElement::new(
            tag,
            VR::DS,
            PrimitiveValue::Strs(v.into()),
        ));
        self
    }

    /// An integer string.
    pub fn is(&mut self, tag: Tag, value: i64) -> &mut Self {
        self.str(tag, VR::IS, &value.to_string())
    }

    /// Integer strings.
    pub fn is_multi(&mut self, tag: Tag, values: &[i64]) -> &mut Self {
        let v: Vec<String> = values.iter().map(|x| x.to_string()).collect();
        self.obj.put(DataElement::new(
            tag,
            VR::IS,
            PrimitiveValue::Strs(v.into()),
        ));
        self
    }

    /// Unsigned shorts.
    pub fn us(&mut self, tag: Tag, values: &[u16]) -> &mut Self {
        self.obj.put(DataElement::new(
            tag,
            VR::US,
            PrimitiveValue::U16(values.to_vec().into()),
        ));
        self
    }

    /// An attribute tag (VR AT).
    pub fn at(&mut self, tag: Tag, value: Tag) -> &mut Self {
        self.obj.put(DataElement::new(
            tag,
            VR::AT,
            PrimitiveValue::Tags(vec![value].into()),
        ));
        self
    }

    /// Pixel data as 16-bit words (VR OW).
    pub fn ow(&mut self, tag: Tag, words: Vec<u16>) -> &mut Self {
        self.obj.put(DataElement::new(
            tag,
            VR::OW,
            PrimitiveValue::U16(words.into()),
        ));
        self
    }

    /// A sequence of items.
    pub fn seq(&mut self, tag: Tag, items: Vec<Builder>) -> &mut Self {
        let items: Vec<InMemDicomObject> = items.into_iter().map(|b| b.obj).collect();
        self.obj
            .put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
        self
    }

    /// The data set.
    pub fn build(self) -> InMemDicomObject {
        self.obj
    }
}

/// Writes `obj` as a Part 10 file at `path` in transfer syntax `ts`, its file meta group from
/// its SOP Class and Instance UIDs.
pub fn save(obj: InMemDicomObject, ts: &str, path: &Path) -> Result<()> {
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(ts)
                .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
                .implementation_version_name(IMPLEMENTATION_VERSION),
        )
        .map_err(|e| Error::corrupt(path, format!("cannot build the file meta group: {e}")))?;
    file.write_to_file(path)
        .map_err(|e| Error::corrupt(path, format!("cannot write the DICOM file: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_fit_16_characters_and_keep_their_value() {
        for v in [
            0.0,
            -0.0,
            1.0,
            -123.456789,
            0.000123456,
            1.5e-7,
            123456789.123,
            -9.87654321e12,
            3.0,
            2.5e-10,
        ] {
            let s = ds(v);
            assert!(s.len() <= 16, "{v}: {s}");
            let back: f64 = s.parse().unwrap();
            assert!((back - v).abs() <= 1e-6 * v.abs(), "{v}: {s}");
            assert!(!s.starts_with("-0") || s.contains('.'), "{v}: {s}");
        }
        assert_eq!(ds(-125.0), "-125");
        assert_eq!(ds(0.5), "0.5");
    }

    #[test]
    fn uids_are_unique_and_within_64_characters() {
        let a: Vec<String> = (0..1000).map(|_| new_uid()).collect();
        let set: std::collections::BTreeSet<&String> = a.iter().collect();
        assert_eq!(set.len(), a.len());
        for u in &a {
            assert!(
                u.len() <= 64 && u.starts_with("2.25.") && !u[5..].starts_with('0'),
                "{u}"
            );
        }
    }
}
