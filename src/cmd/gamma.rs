//! `autoplan gamma`: the gamma index of one dose against another (same grid), at one or more
//! criteria; the pass rates printed and optionally written as CSV, the gamma map as NRRD.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use evaluation::gamma::{GammaCriteria, GammaSummary, gamma};
use patient_model::nrrd;

use super::read_dose;

/// One criterion as written on the command line: `3/3` for 3 % / 3 mm.
fn criterion(s: &str) -> Result<(f64, f64), String> {
    let (dd, dta) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}`: write a criterion as PERCENT/MM, e.g. 3/3"))?;
    let num = |t: &str, what: &str| {
        t.trim()
            .trim_end_matches("mm")
            .trim_end_matches('%')
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("`{s}`: {what} `{t}` is not a number"))
    };
    Ok((num(dd, "dose percent")?, num(dta, "distance")?))
}

/// Compare two doses on the same grid with the global gamma index (Low et al. 1998): print
/// the pass rate, mean and maximum gamma at each criterion.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The reference dose (NRRD, float, cGy): gamma is computed at each of its points.
    #[arg(long)]
    pub reference: PathBuf,
    /// The evaluated dose (NRRD, float, cGy, the reference's grid), searched around each point.
    #[arg(long)]
    pub evaluated: PathBuf,
    /// Criteria as dose-percent/distance-mm; repeat or separate with commas.
    #[arg(long, value_delimiter = ',', value_parser = criterion, default_values = ["3/3", "2/2"])]
    pub criteria: Vec<(f64, f64)>,
    /// Reference points below this percentage of the normalization dose are not evaluated.
    #[arg(long, default_value_t = 10.0)]
    pub cutoff_percent: f64,
    /// Dose the percentages refer to, cGy (the prescription); default the reference maximum.
    #[arg(long)]
    pub normalization_cgy: Option<f64>,
    /// Write one row per criterion as CSV to this file.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write the gamma map of the first criterion (NaN below the cutoff) as NRRD.
    #[arg(long)]
    pub map: Option<PathBuf>,
}

/// The summaries as CSV, one row per criterion.
pub fn summaries_csv(rows: &[GammaSummary]) -> String {
    let mut s = String::from(
        "dose_percent,distance_mm,lower_cutoff_percent,normalization_cgy,evaluated,passed,\
         pass_rate_percent,mean_gamma,max_gamma\n",
    );
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}\n",
            r.criteria.dose_percent,
            r.criteria.distance_mm,
            r.criteria.lower_cutoff_percent,
            r.normalization_cgy,
            r.evaluated,
            r.passed,
            r.pass_rate_percent,
            r.mean,
            r.max
        ));
    }
    s
}

/// Runs `autoplan gamma`.
pub fn run(a: &Args) -> Result<()> {
    let reference = read_dose(&a.reference)?;
    let evaluated = read_dose(&a.evaluated)?;
    let mut rows = Vec::new();
    for (n, &(dd, dta)) in a.criteria.iter().enumerate() {
        let criteria = GammaCriteria {
            lower_cutoff_percent: a.cutoff_percent,
            normalization_cgy: a.normalization_cgy,
            ..GammaCriteria::new(dd, dta)
        };
        let t = Instant::now();
        let map = gamma(&reference, &evaluated, &criteria).with_context(|| {
            format!(
                "gamma of {} against {}",
                a.evaluated.display(),
                a.reference.display()
            )
        })?;
        let s = &map.summary;
        out!(
            "{:>10}: pass {:6.2} % of {} points ({} fail), mean {:.3}, max {:.2}{} ({:.1} s)",
            criteria.label(),
            s.pass_rate_percent,
            s.evaluated,
            s.evaluated - s.passed,
            s.mean,
            s.max,
            if s.max >= criteria.max_gamma {
                " (capped)"
            } else {
                ""
            },
            t.elapsed().as_secs_f64()
        );
        if n == 0
            && let Some(path) = &a.map
        {
            nrrd::write_f32(path, reference.grid(), &map.gamma)
                .with_context(|| format!("writing {}", path.display()))?;
            out!("wrote {}", path.display());
        }
        rows.push(map.summary);
    }
    out!(
        "global gamma, {} % cutoff of {:.1} cGy ({})",
        a.cutoff_percent,
        rows[0].normalization_cgy,
        if a.normalization_cgy.is_some() {
            "given"
        } else {
            "the reference maximum"
        }
    );
    if let Some(path) = &a.csv {
        crate::output::write_text(path, &summaries_csv(&rows))
            .with_context(|| format!("writing {}", path.display()))?;
        out!("wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_parse_with_or_without_units() {
        assert_eq!(criterion("3/3"), Ok((3.0, 3.0)));
        assert_eq!(criterion("2%/2mm"), Ok((2.0, 2.0)));
        assert_eq!(criterion(" 1 % / 0.5 mm"), Ok((1.0, 0.5)));
        assert!(criterion("3").unwrap_err().contains("PERCENT/MM"));
        assert!(criterion("3/x").unwrap_err().contains("distance `x`"));
    }
}
