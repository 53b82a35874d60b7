//! Subcommands.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use tps_core::cohort::CohortSpec;
use tps_core::patient::Patient;
use tps_core::protocol::Protocol;
use tps_core::{patient_files, render};

/// The treatment machine and the CT calibration, shared by the commands that compute dose.
#[derive(Debug, Clone, clap::Args)]
pub struct MachineArgs {
    /// Machine (beam model) file.
    #[arg(long, default_value = "configs/machines/generic-6mv.toml")]
    pub machine: PathBuf,
    /// CT-to-density calibration file.
    #[arg(long, default_value = "configs/ct-calibration/default.toml")]
    pub calibration: PathBuf,
}

impl MachineArgs {
    /// Reads the beam model and the density curve.
    pub fn load(
        &self,
    ) -> Result<(
        tps_core::dose::model::BeamModel,
        tps_core::dose::calibration::DensityCurve,
    )> {
        Ok((
            tps_core::dose::model::BeamModel::load(&self.machine)?,
            tps_core::dose::calibration::DensityCurve::load(&self.calibration)?,
        ))
    }
}

/// Beams and dose grid of the native TPS, shared by the commands that optimize.
#[derive(Debug, Clone, clap::Args)]
pub struct BeamArgs {
    /// Number of full arcs.
    #[arg(long, default_value_t = 2)]
    pub arcs: usize,
    /// Static beams per arc (the arcs interleave: 2 x 18 gives one beam every 10 degrees).
    #[arg(long, default_value_t = 18)]
    pub beams_per_arc: usize,
    /// Dose grid spacing, mm (2 to 5).
    #[arg(long, default_value_t = 3.0)]
    pub grid_mm: f64,
}

impl BeamArgs {
    /// Native TPS settings with these beams and grid, the rest default.
    pub fn settings(&self) -> tps_core::native::NativeSettings {
        tps_core::native::NativeSettings {
            setup: tps_core::dose::plan::BeamSetup {
                arcs: self.arcs,
                beams_per_arc: self.beams_per_arc,
                ..Default::default()
            },
            dose_grid_mm: self.grid_mm,
            ..Default::default()
        }
    }
}

/// Writes a line to stdout; a closed pipe (`autoplan ... | head`) ends the program quietly
/// instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => { $crate::commands::emit(&format!("{}\n", format!($($arg)*))) };
}

/// Like `out!` without the newline.
macro_rules! outn {
    ($($arg:tt)*) => { $crate::commands::emit(&format!($($arg)*)) };
}

pub(crate) fn emit(s: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(s.as_bytes()).and_then(|_| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// Open LLM-driven radiotherapy planning.
#[derive(Debug, Parser)]
#[command(name = "autoplan", version, about, long_about = None)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate one synthetic patient of a cohort: print its structures, and optionally
    /// render slices and save it as NRRD.
    Phantom {
        /// Cohort specification (TOML).
        #[arg(long)]
        cohort: PathBuf,
        /// Patient id, 1-based.
        #[arg(long)]
        patient: usize,
        /// Protocol whose auxiliary structures (rings) to add.
        #[arg(long)]
        protocol: Option<PathBuf>,
        /// Directory for axial, sagittal and coronal PNGs through the PTV centroid.
        #[arg(long)]
        png: Option<PathBuf>,
        /// Directory to save the patient in (manifest, CT and masks as NRRD).
        #[arg(long)]
        save: Option<PathBuf>,
    },
    /// Generate every patient of a cohort and print a table of structure volumes.
    Cohort {
        /// Cohort specification (TOML).
        #[arg(long)]
        cohort: PathBuf,
        /// Directory to save every patient in (one sub-directory per patient).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the volume table as Markdown to this file.
        #[arg(long)]
        table: Option<PathBuf>,
        /// Directory for slice PNGs of every patient.
        #[arg(long)]
        png: Option<PathBuf>,
    },
    /// Evaluate a dose on a patient with a protocol's metrics (the study's Table 2, CI, HI,
    /// MU); optionally draw isodose slices and the DVH, and write the metrics as CSV.
    Eval {
        /// Patient directory (holds patient.toml).
        #[arg(long)]
        patient: PathBuf,
        /// Dose on the patient's CT grid, NRRD (float, cGy).
        #[arg(long)]
        dose: PathBuf,
        /// Protocol with the prescription and the metric list.
        #[arg(long)]
        protocol: PathBuf,
        /// Monitor units per fraction of the plan, when known.
        #[arg(long)]
        mu: Option<f64>,
        /// Directory for isodose slices and the DVH figure (PNG and SVG).
        #[arg(long)]
        png: Option<PathBuf>,
        /// Write the metric table as CSV to this file.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Write an idealized analytic dose around the prescription target (no beams, no physics:
    /// prescription inside, exponential fall-off outside) to exercise evaluation and figures.
    SyntheticDose {
        /// Patient directory (holds patient.toml).
        #[arg(long)]
        patient: PathBuf,
        /// Protocol with the prescription.
        #[arg(long)]
        protocol: PathBuf,
        /// Output NRRD file.
        #[arg(long)]
        out: PathBuf,
        /// Fall-off length outside the target, mm.
        #[arg(long, default_value_t = 12.0)]
        falloff_mm: f64,
        /// Dose inside the target relative to the prescription.
        #[arg(long, default_value_t = 1.03)]
        hot: f64,
        /// Seed of the ripple inside the target.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Compute dose on a patient from coplanar arcs (the study's two 360-degree arcs as static
    /// beams) with a uniform fluence over the beamlets that pass through the target, scaled
    /// so the prescription covers the prescribed volume; write it and draw isodose lines.
    Dose {
        /// Patient directory (holds patient.toml).
        #[arg(long)]
        patient: PathBuf,
        /// Protocol with the prescription (target, dose, volume).
        #[arg(long)]
        protocol: PathBuf,
        /// Fluence: `uniform` (every selected beamlet equally weighted).
        #[arg(long, default_value = "uniform")]
        fluence: String,
        #[command(flatten)]
        machine: MachineArgs,
        /// Dose grid spacing, mm (2 to 5).
        #[arg(long, default_value_t = 3.0)]
        grid_mm: f64,
        /// Number of full arcs.
        #[arg(long, default_value_t = 2)]
        arcs: usize,
        /// Static beams per arc (the arcs interleave: 2 x 18 gives one beam every 10 degrees).
        #[arg(long, default_value_t = 18)]
        beams_per_arc: usize,
        /// Beamlet size at the isocentre, mm.
        #[arg(long, default_value_t = 5.0)]
        bixel_mm: f64,
        /// Write the dose (on the CT grid, cGy) as NRRD.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Directory for isodose slices through the target.
        #[arg(long)]
        png: Option<PathBuf>,
    },
    /// Optimize a plan with the protocol's objectives (initial goals, no adjustments): print
    /// the iteration report, normalize to the prescription, write the dose and isodose slices.
    Optimize {
        /// Patient directory (holds patient.toml).
        #[arg(long)]
        patient: PathBuf,
        /// Protocol with prescription, objectives and rings.
        #[arg(long)]
        protocol: PathBuf,
        #[command(flatten)]
        machine: MachineArgs,
        /// Set a goal before optimizing, `ID=CGY` (repeatable).
        #[arg(long = "goal", value_name = "ID=CGY")]
        goals: Vec<String>,
        #[command(flatten)]
        beams: BeamArgs,
        /// Weight of the smoothing penalty on neighbouring beamlets, per MU^2 (fewer MU when
        /// larger).
        #[arg(long, default_value_t = 1e-8)]
        smoothing: f64,
        /// Output directory for the dose (NRRD), isodose slices and the report.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Plan every test patient of a cohort once with the protocol's initial goals (no
    /// adjustments), evaluate the protocol's metrics and tabulate them beside a published
    /// reference column. Resumes where an earlier run stopped.
    Calibrate {
        /// Cohort definition.
        #[arg(long)]
        cohort: PathBuf,
        /// Protocol with prescription, objectives, rings and metrics.
        #[arg(long)]
        protocol: PathBuf,
        #[command(flatten)]
        machine: MachineArgs,
        /// Reference values (mean and std per metric).
        #[arg(long, default_value = "configs/reference/wei2025-table3-manual.toml")]
        reference: PathBuf,
        /// Patients, e.g. `6-35`, `7,9`, `test` or `training`; default: the cohort's test patients.
        #[arg(long)]
        patients: Option<String>,
        /// Output directory (metrics.csv, calibration.md).
        #[arg(long)]
        out: PathBuf,
    },
    /// Plan a patient with the virtual-physicist loop: optimize, report, ask the advisor,
    /// guard its answer, re-optimize, until the protocol's criteria hold; then normalize and
    /// write the dose, the transcript, the metric table and pictures.
    Plan {
        /// Cohort definition (with --patient).
        #[arg(long)]
        cohort: Option<PathBuf>,
        /// Patient number in the cohort.
        #[arg(long)]
        patient: Option<usize>,
        /// A saved patient directory instead of a cohort patient.
        #[arg(long, conflicts_with_all = ["cohort", "patient"])]
        patient_dir: Option<PathBuf>,
        /// Protocol with prescription, objectives, rings, planning limits and metrics.
        #[arg(long)]
        protocol: PathBuf,
        /// Provider file choosing the advisor (default: the rule-based physicist).
        #[arg(long)]
        provider: Option<PathBuf>,
        #[command(flatten)]
        machine: MachineArgs,
        /// What the guard does with a bad change: fallback (to the rule), reject, clamp.
        #[arg(long, default_value = "fallback")]
        guard: String,
        #[command(flatten)]
        beams: BeamArgs,
        /// Few-shot example pool (JSON, from `autoplan examples`) for LLM advisors.
        #[arg(long)]
        examples: Option<PathBuf>,
        /// How many examples each prompt shows.
        #[arg(long, default_value_t = 3)]
        n_examples: usize,
        /// Which examples: fixed (spread over the pool) or nearest (most similar iterations).
        #[arg(long, default_value = "fixed")]
        selection: String,
        /// Plan several cohort patients instead of one (`6-35`, `7,9`, `test` or `training`):
        /// each into OUT/pNN, a row each in OUT/plans.csv as it ends (a rerun resumes), and
        /// OUT/study.md with criteria met, iterations, times and the metrics beside
        /// --reference.
        #[arg(long, conflicts_with_all = ["patient", "patient_dir"])]
        patients: Option<String>,
        /// Reference values (mean and std per metric) to set beside the study's metrics, e.g.
        /// configs/reference/wei2025-table3-manual.toml for the cervix protocol.
        #[arg(long)]
        reference: Option<PathBuf>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Plan the cohort's training patients with the rule-based physicist and collect every
    /// goal-changing iteration as a few-shot example pool for LLM advisors.
    Examples {
        /// Cohort definition.
        #[arg(long)]
        cohort: PathBuf,
        /// Protocol.
        #[arg(long)]
        protocol: PathBuf,
        /// Patients, e.g. `1-5`, `7,9` or `training`; default: the cohort's training patients.
        #[arg(long)]
        patients: Option<String>,
        #[command(flatten)]
        machine: MachineArgs,
        #[command(flatten)]
        beams: BeamArgs,
        /// Pool file to write (JSON); the plans go next to it in `<name>.plans/`.
        #[arg(long)]
        out: PathBuf,
    },
    /// Measure how sensible an advisor's decisions are: ask it about every report of a
    /// few-shot example pool (from `autoplan examples`) and compare its move per OAR objective
    /// (tighten, relax, keep) with the rule-based physicist's; count the guard's verdicts.
    Agreement {
        /// Provider file of the advisor to measure.
        #[arg(long)]
        provider: PathBuf,
        /// Example pool (JSON, from `autoplan examples`): the reports to ask about.
        #[arg(long)]
        examples: PathBuf,
        /// Protocol the pool was planned with.
        #[arg(long)]
        protocol: PathBuf,
        /// Few-shot examples per prompt (from other patients than the report's).
        #[arg(long, default_value_t = 0)]
        n_examples: usize,
        /// Which examples: fixed or nearest.
        #[arg(long, default_value = "nearest")]
        selection: String,
        /// Ask about the first N reports only.
        #[arg(long)]
        limit: Option<usize>,
        /// CSV with one row per report and OAR objective.
        #[arg(long)]
        out: PathBuf,
    },
    /// Load a saved patient directory, check it, print its structures, optionally render.
    Inspect {
        /// Patient directory (holds patient.toml).
        dir: PathBuf,
        /// Protocol whose auxiliary structures (rings) to add.
        #[arg(long)]
        protocol: Option<PathBuf>,
        /// Directory for slice PNGs.
        #[arg(long)]
        png: Option<PathBuf>,
    },
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Phantom {
            cohort,
            patient,
            protocol,
            png,
            save,
        } => {
            let spec = CohortSpec::load(&cohort)?;
            let t = Instant::now();
            let mut p = spec.generate(patient)?;
            tracing::info!("generated {} in {:.2?}", p.id, t.elapsed());
            add_auxiliary(&mut p, protocol.as_deref())?;
            out!(
                "{} ({} set{})",
                p.id,
                spec.split(patient),
                if spec.inguinal.contains(&patient) {
                    ", inguinal nodes"
                } else {
                    ""
                }
            );
            outn!("{}", structure_table(&p));
            finish_patient(
                &p,
                png.as_deref(),
                save.as_deref(),
                &format!("p{patient:02}"),
            )
        }
        Command::Inspect { dir, protocol, png } => {
            let mut p = patient_files::load(&dir)?;
            add_auxiliary(&mut p, protocol.as_deref())?;
            out!("{} (loaded from {})", p.id, dir.display());
            outn!("{}", structure_table(&p));
            finish_patient(&p, png.as_deref(), None, "patient")
        }
        Command::Cohort {
            cohort,
            out,
            table,
            png,
        } => run_cohort(&cohort, out.as_deref(), table.as_deref(), png.as_deref()),
        Command::Eval {
            patient,
            dose,
            protocol,
            mu,
            png,
            csv,
        } => run_eval(
            &patient,
            &dose,
            &protocol,
            mu,
            png.as_deref(),
            csv.as_deref(),
        ),
        Command::Dose {
            patient,
            protocol,
            fluence,
            machine,
            grid_mm,
            arcs,
            beams_per_arc,
            bixel_mm,
            out,
            png,
        } => {
            if fluence != "uniform" {
                bail!(
                    "--fluence {fluence:?}: only `uniform` is available (optimized fluences come from `autoplan optimize`)"
                );
            }
            let setup = tps_core::dose::plan::BeamSetup {
                arcs,
                beams_per_arc,
                bixel_mm,
                ..Default::default()
            };
            run_dose(
                &patient,
                &protocol,
                &machine,
                grid_mm,
                &setup,
                out.as_deref(),
                png.as_deref(),
            )
        }
        Command::Optimize {
            patient,
            protocol,
            machine,
            goals,
            beams,
            smoothing,
            out,
        } => {
            if !(smoothing.is_finite() && smoothing >= 0.0) {
                bail!("--smoothing {smoothing}: must be finite and non-negative");
            }
            let settings = tps_core::native::NativeSettings {
                smoothing,
                ..beams.settings()
            };
            run_optimize(
                &patient,
                &protocol,
                &machine,
                &goals,
                settings,
                out.as_deref(),
            )
        }
        Command::Plan {
            cohort,
            patient,
            patient_dir,
            protocol,
            provider,
            machine,
            guard,
            beams,
            examples,
            n_examples,
            selection,
            patients,
            reference,
            out,
        } => crate::plan_cmd::run(&crate::plan_cmd::PlanArgs {
            cohort,
            patient,
            patient_dir,
            protocol,
            provider,
            machine,
            guard,
            settings: beams.settings(),
            examples,
            n_examples,
            selection,
            patients,
            reference,
            out,
        }),
        Command::Examples {
            cohort,
            protocol,
            patients,
            machine,
            beams,
            out,
        } => crate::plan_cmd::run_examples(
            &crate::plan_cmd::PlanArgs {
                cohort: Some(cohort),
                patient: None,
                patient_dir: None,
                protocol,
                provider: None,
                machine,
                guard: "fallback".into(),
                settings: beams.settings(),
                examples: None,
                n_examples: 0,
                selection: "fixed".into(),
                patients: None,
                reference: None,
                out: out.clone(),
            },
            patients.as_deref(),
            &out,
        ),
        Command::Agreement {
            provider,
            examples,
            protocol,
            n_examples,
            selection,
            limit,
            out,
        } => crate::agreement::run(&crate::agreement::AgreementArgs {
            provider,
            examples,
            protocol,
            n_examples,
            selection,
            limit,
            out,
        }),
        Command::Calibrate {
            cohort,
            protocol,
            machine,
            reference,
            patients,
            out,
        } => crate::calibrate::run(&crate::calibrate::CalibrateArgs {
            cohort,
            protocol,
            machine,
            reference,
            patients,
            out,
        }),
        Command::SyntheticDose {
            patient,
            protocol,
            out,
            falloff_mm,
            hot,
            seed,
        } => {
            let p = patient_files::load(&patient)?;
            let proto = Protocol::load(&protocol)?;
            let params = tps_core::synthetic_dose::ConformalDose {
                prescription_cgy: proto.prescription.dose_cgy,
                hot,
                ripple: 0.04,
                falloff_mm,
                seed,
            };
            let dose =
                tps_core::synthetic_dose::conformal(&p, &proto.prescription.target, &params)?;
            tps_core::nrrd::write_f32(&out, p.grid(), &dose)?;
            out!(
                "wrote {} (synthetic dose, not a dose calculation)",
                out.display()
            );
            Ok(())
        }
    }
}

fn add_auxiliary(p: &mut Patient, protocol: Option<&Path>) -> Result<()> {
    if let Some(path) = protocol {
        let proto = Protocol::load(path)?;
        proto.build_auxiliary(p)?;
        tracing::info!(
            "added {} auxiliary structures from {}",
            proto.auxiliary.len(),
            path.display()
        );
    }
    Ok(())
}

fn finish_patient(p: &Patient, png: Option<&Path>, save: Option<&Path>, stem: &str) -> Result<()> {
    if let Some(dir) = png {
        let centre = ptv_centre(p)?;
        let overlays = render::structure_overlays(p);
        for f in render::write_orthogonal_pngs(p, &overlays, centre, dir, stem)? {
            out!("wrote {}", f.display());
        }
    }
    if let Some(dir) = save {
        patient_files::save(p, dir)?;
        out!("saved {}", dir.display());
    }
    Ok(())
}

/// Metric values as an aligned text table.
pub(crate) fn metrics_text(values: &[evaluation::MetricValue]) -> String {
    let mut s = format!("{:<24} {:>12}  {}\n", "metric", "value", "unit");
    for v in values {
        let text = v.value.map_or("n/a".to_string(), |x| format!("{x:.4}"));
        s += &format!(
            "{:<24} {:>12}  {}\n",
            v.metric.to_string(),
            text,
            v.unit.label()
        );
    }
    s
}

/// Metric values as CSV (`metric,value,unit`).
pub(crate) fn metrics_csv(values: &[evaluation::MetricValue]) -> String {
    let mut w = String::from("metric,value,unit\n");
    for v in values {
        let text = v.value.map_or("n/a".to_string(), |x| format!("{x:.4}"));
        w += &format!("{},{text},{}\n", v.metric, v.unit.label());
    }
    w
}

/// Rescales a plan's dose on the patient grid so that the prescription target's
/// D<volume-percent>, measured there as the evaluation measures it, equals the prescription;
/// returns the factor (MU scale by it too).
///
/// The TPS normalizes on its dose-grid points inside the target; the evaluation interpolates
/// the dose to the CT grid, where the target's edge voxels sit partly in the fall-off, so its
/// D95 comes out 0.5-1 % lower. The study normalized its plans as evaluated ("all plans were
/// normalized to ensure that 95% of PTV coverage met the prescription dose"), and so do we.
pub(crate) fn normalize_on_grid(p: &Patient, protocol: &Protocol, dose: &mut [f32]) -> Result<f64> {
    let pr = &protocol.prescription;
    let target = p.require(&pr.target, "normalization", "prescription.target")?;
    let d = evaluation::dvh::Dvh::new(&pr.target, dose, &target.mask)?.d_percent(pr.volume_percent);
    if !(d.is_finite() && d > 0.0) {
        bail!(
            "normalization: {} receives no dose (D{} = {d} cGy)",
            pr.target,
            pr.volume_percent
        );
    }
    let f = pr.dose_cgy / d;
    dose.iter_mut().for_each(|v| *v *= f as f32);
    Ok(f)
}

/// DVH figure (`dvh.png`, `dvh.svg` in `dir`) of every structure `ev`'s metrics name.
pub(crate) fn write_dvh(
    p: &Patient,
    dose: &[f32],
    ev: &evaluation::ProtocolEvaluator,
    label: &str,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    let mut names: Vec<String> = Vec::new();
    for m in ev.metrics() {
        if let evaluation::Metric::Structure { name, .. } = m {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    let dvhs = names
        .iter()
        .map(|n| {
            let s = p.require(n, "DVH", "metrics")?;
            Ok(evaluation::dvh::Dvh::new(n, dose, &s.mask)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let fig = evaluation::figures::DvhComparison {
        title: format!("DVH, {}", p.id),
        plans: (label.to_string(), None),
        curves: dvhs.iter().map(|d| (d, None)).collect(),
    };
    Ok(evaluation::figures::save(
        &fig,
        &dir.join("dvh"),
        (1000, 700),
    )?)
}

/// Isodose lines (fractions of `rx_cgy`) with the target's outline on the three planes through
/// the target, written as `<stem>-<plane>.png` into `dir`.
pub(crate) fn isodose_pngs(
    p: &Patient,
    dose: &[f32],
    rx_cgy: f64,
    fractions: &[f64],
    target: &str,
    dir: &Path,
    stem: &str,
) -> Result<Vec<PathBuf>> {
    let levels: Vec<f64> = fractions.iter().map(|f| f * rx_cgy).collect();
    let iso = render::isodose_masks(p.grid(), dose, &levels, Some(rx_cgy));
    let t = p.require(target, "isodose picture", "target")?;
    let mut overlays = vec![render::Overlay {
        label: t.name.clone(),
        color: [255, 255, 255],
        mask: &t.mask,
    }];
    overlays.extend(iso.iter().map(|(label, color, mask)| render::Overlay {
        label: label.clone(),
        color: *color,
        mask,
    }));
    Ok(render::write_orthogonal_pngs(
        p,
        &overlays,
        ptv_centre(p)?,
        dir,
        stem,
    )?)
}

fn ptv_centre(p: &Patient) -> Result<[f64; 3]> {
    let target = p
        .structure("PTV")
        .or_else(|| p.first_with_role(tps_core::Role::Target))
        .context("patient has no target structure to centre the slices on")?;
    target
        .mask
        .centroid_mm()
        .with_context(|| format!("structure {} is empty", target.name))
}

/// One line per structure: role, volume, centroid and extent.
fn structure_table(p: &Patient) -> String {
    let mut s = format!(
        "{:<14} {:<9} {:>10}  {:>24}  {:>22}\n",
        "structure", "role", "volume_cc", "centroid_mm (x, y, z)", "extent_mm (x, y, z)"
    );
    for st in p.structure_stats() {
        let c = st.centroid_mm.map_or("-".into(), |c| {
            format!("{:.1}, {:.1}, {:.1}", c[0], c[1], c[2])
        });
        let e = st.bounding_box.map_or("-".into(), |b| {
            let d: Vec<String> = (0..3)
                .map(|a| format!("{:.0}", b.max_mm[a] - b.min_mm[a]))
                .collect();
            d.join(" x ")
        });
        s += &format!(
            "{:<14} {:<9} {:>10.1}  {:>24}  {:>22}\n",
            st.name,
            st.role.to_string(),
            st.volume_cc,
            c,
            e
        );
    }
    s
}

/// Columns of the cohort volume table.
const COHORT_COLUMNS: [&str; 9] = [
    "PTV",
    "CTV",
    "Bladder",
    "Rectum",
    "Bag_Bowel",
    "SpinalCord",
    "BoneMarrow",
    "Femur_Head_L",
    "Femur_Head_R",
];

struct Row {
    id: usize,
    split: String,
    inguinal: bool,
    volumes: Vec<Option<f64>>,
}

fn run_cohort(
    cohort: &Path,
    out: Option<&Path>,
    table: Option<&Path>,
    png: Option<&Path>,
) -> Result<()> {
    let spec = CohortSpec::load(cohort)?;
    let bar = ProgressBar::new(spec.patients as u64).with_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} patients, {elapsed} elapsed, eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(spec.name.clone());
    let t = Instant::now();
    let ids: Vec<usize> = spec.ids().collect();
    let rows: Vec<Row> = ids
        .par_iter()
        .map(|&id| -> Result<Row> {
            let p = spec.generate(id).with_context(|| format!("patient {id}"))?;
            let row = Row {
                id,
                split: spec.split(id).to_string(),
                inguinal: spec.inguinal.contains(&id),
                volumes: COHORT_COLUMNS
                    .iter()
                    .map(|n| p.structure(n).map(|s| s.mask.volume_cc()))
                    .collect(),
            };
            if let Some(dir) = out {
                patient_files::save(&p, &dir.join(format!("p{id:02}")))?;
            }
            if let Some(dir) = png {
                let overlays = render::structure_overlays(&p);
                render::write_orthogonal_pngs(
                    &p,
                    &overlays,
                    ptv_centre(&p)?,
                    dir,
                    &format!("p{id:02}"),
                )?;
            }
            bar.inc(1);
            Ok(row)
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    let elapsed = t.elapsed();
    let md = cohort_markdown(&spec, &rows);
    outn!("{md}");
    out!(
        "generated {} patients in {:.1} s",
        rows.len(),
        elapsed.as_secs_f64()
    );
    if let Some(path) = table {
        std::fs::write(path, &md).with_context(|| format!("writing {}", path.display()))?;
        out!("wrote {}", path.display());
    }
    if rows.len() != spec.patients {
        bail!("generated {} of {} patients", rows.len(), spec.patients);
    }
    Ok(())
}

fn cohort_markdown(spec: &CohortSpec, rows: &[Row]) -> String {
    let mut s = format!(
        "# Structure volumes of cohort `{}`\n\nVolumes in cc; {} patients, seed {}, voxels {} x {} x {} mm. \
         Regenerate with `autoplan cohort --cohort {} --table <file>`.\n\n",
        spec.name,
        spec.patients,
        spec.seed,
        spec.voxel_mm[0],
        spec.voxel_mm[1],
        spec.voxel_mm[2],
        spec.origin.display()
    );
    s += "| patient | set | ";
    s += &COHORT_COLUMNS.join(" | ");
    s += " |\n|---|---|";
    s += &"---:|".repeat(COHORT_COLUMNS.len());
    s += "\n";
    for r in rows {
        let tag = if r.inguinal { " (inguinal)" } else { "" };
        s += &format!("| p{:02} | {}{} |", r.id, r.split, tag);
        for v in &r.volumes {
            s += &v.map_or(" - |".into(), |v| format!(" {v:.0} |"));
        }
        s += "\n";
    }
    for (label, f) in [("min", 0), ("mean", 1), ("max", 2)] {
        s += &format!("| **{label}** | |");
        for c in 0..COHORT_COLUMNS.len() {
            let vals: Vec<f64> = rows.iter().filter_map(|r| r.volumes[c]).collect();
            let v = match f {
                0 => vals.iter().cloned().fold(f64::INFINITY, f64::min),
                1 => vals.iter().sum::<f64>() / vals.len().max(1) as f64,
                _ => vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            };
            s += &format!(" {v:.0} |");
        }
        s += "\n";
    }
    s
}

fn run_eval(
    patient: &Path,
    dose_path: &Path,
    protocol: &Path,
    mu: Option<f64>,
    png: Option<&Path>,
    csv_path: Option<&Path>,
) -> Result<()> {
    use evaluation::{Evaluator, PlanDose, ProtocolEvaluator};
    let mut p = patient_files::load(patient)?;
    let proto = Protocol::load(protocol)?;
    proto.build_missing_auxiliary(&mut p)?;
    let (grid, voxels) = tps_core::nrrd::read(dose_path)?;
    let tps_core::nrrd::Voxels::F32(dose) = voxels else {
        bail!("{}: dose must be a float NRRD in cGy", dose_path.display());
    };
    if &grid != p.grid() {
        bail!(
            "{}: dose grid {:?} differs from the patient's CT grid {:?}",
            dose_path.display(),
            grid,
            p.grid()
        );
    }
    let ev = ProtocolEvaluator::from_protocol(&proto)?;
    let values = ev.evaluate(&PlanDose {
        patient: &p,
        dose_cgy: &dose,
        mu_per_fraction: mu,
    })?;
    out!("{} with {} ({})", p.id, dose_path.display(), proto.site);
    outn!("{}", metrics_text(&values));
    if let Some(path) = csv_path {
        std::fs::write(path, metrics_csv(&values))
            .with_context(|| format!("writing {}", path.display()))?;
        out!("wrote {}", path.display());
    }
    if let Some(dir) = png {
        let files = isodose_pngs(
            &p,
            &dose,
            proto.prescription.dose_cgy,
            &[1.05, 1.0, 0.95, 0.8, 0.5, 0.3],
            &proto.prescription.target,
            dir,
            "isodose",
        )?;
        for f in files {
            out!("wrote {}", f.display());
        }
        let label = dose_path
            .file_name()
            .map_or("dose".into(), |f| f.to_string_lossy().into_owned());
        for f in write_dvh(&p, &dose, &ev, &label, dir)? {
            out!("wrote {}", f.display());
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_dose(
    patient: &Path,
    protocol: &Path,
    machine: &MachineArgs,
    grid_mm: f64,
    setup: &tps_core::dose::plan::BeamSetup,
    out_path: Option<&Path>,
    png: Option<&Path>,
) -> Result<()> {
    use tps_core::dose::{engine::DoseEngine, plan};
    let p = patient_files::load(patient)?;
    let proto = Protocol::load(protocol)?;
    let (model, curve) = machine.load()?;
    let origin = proto.origin.display().to_string();
    let target = p.require(&proto.prescription.target, &origin, "prescription.target")?;
    let body = p.require(&proto.body, &origin, "evaluation.body")?;
    let t0 = Instant::now();
    let fields = plan::setup_fields(&p, &target.name, setup)?;
    let beamlets: usize = fields
        .iter()
        .map(|f| f.weights.iter().filter(|&&w| w > 0.0).count())
        .sum();
    let dose_grid = plan::dose_grid_around(&body.mask, grid_mm)?;
    let inside = plan::resample_mask(&body.mask, &dose_grid);
    out!(
        "{}: {} beams, {} beamlets of {} mm through {} + {} mm; dose grid {:?} at {} mm",
        p.id,
        fields.len(),
        beamlets,
        setup.bixel_mm,
        target.name,
        setup.target_margin_mm,
        dose_grid.dims,
        grid_mm
    );
    let engine = DoseEngine::new(&model, *p.grid(), curve.densities(p.ct_hu()));
    let bar = ProgressBar::new(fields.len() as u64).with_style(
        ProgressStyle::with_template("dose [{bar:30}] {pos}/{len} beams, {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let dose = engine.dose_on_grid_with_progress(&fields, &dose_grid, Some(&inside), |n| {
        bar.set_position(n as u64)
    });
    bar.finish_and_clear();
    let on_ct = plan::resample_dose(&dose, &dose_grid, p.grid());
    // Scale so the prescription covers the prescribed volume of the target.
    let dvh = evaluation::dvh::Dvh::new(&target.name, &on_ct, &target.mask)?;
    let rx = proto.prescription.dose_cgy;
    let vol = proto.prescription.volume_percent;
    let d_rx = dvh.d_percent(vol);
    if d_rx.is_nan() || d_rx <= 0.0 {
        bail!("the target receives no dose; check the beam setup");
    }
    let mu_per_beamlet = rx / d_rx;
    let scaled: Vec<f32> = on_ct
        .iter()
        .map(|&d| (d as f64 * mu_per_beamlet) as f32)
        .collect();
    // A uniform fluence is an open (conformal) field: each beam delivers its fluence level in
    // MU, whatever the number of beamlets.
    let open_beams = fields
        .iter()
        .filter(|f| f.weights.iter().any(|&w| w > 0.0))
        .count();
    let total_mu = mu_per_beamlet * open_beams as f64;
    out!(
        "computed in {:.1} s; a uniform fluence of {:.3} MU per beam gives D{} = {} cGy ({:.0} MU over the plan, {:.1} MU per fraction)",
        t0.elapsed().as_secs_f64(),
        mu_per_beamlet,
        vol,
        rx,
        total_mu,
        total_mu / proto.prescription.fractions as f64
    );
    let tdvh = evaluation::dvh::Dvh::new(&target.name, &scaled, &target.mask)?;
    out!(
        "{}: Dmax {:.0} cGy, D2 {:.0}, D50 {:.0}, D98 {:.0} cGy",
        target.name,
        tdvh.max(),
        tdvh.d_percent(2.0),
        tdvh.d_percent(50.0),
        tdvh.d_percent(98.0)
    );
    if let Some(path) = out_path {
        tps_core::nrrd::write_f32(path, p.grid(), &scaled)?;
        out!("wrote {}", path.display());
    }
    if let Some(dir) = png {
        let fractions = [1.05, 1.0, 0.9, 0.7, 0.5, 0.3, 0.1];
        for f in isodose_pngs(&p, &scaled, rx, &fractions, &target.name, dir, "dose")? {
            out!("wrote {}", f.display());
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_optimize(
    patient: &Path,
    protocol: &Path,
    machine: &MachineArgs,
    goals: &[String],
    settings: tps_core::native::NativeSettings,
    out_dir: Option<&Path>,
) -> Result<()> {
    use tps_core::native::NativeTps;
    use tps_core::{GoalChange, Tps};
    let changes = goals
        .iter()
        .map(|g| {
            let (id, v) = g
                .split_once('=')
                .with_context(|| format!("--goal {g:?}: expected ID=CGY"))?;
            let goal_cgy: f64 = v
                .trim()
                .parse()
                .with_context(|| format!("--goal {g:?}: {v:?} is not a number"))?;
            Ok(GoalChange {
                id: id.trim().to_string(),
                goal_cgy,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let p = patient_files::load(patient)?;
    let proto = Protocol::load(protocol)?;
    // Refuse unknown objective ids before the (long) case opening.
    for c in &changes {
        if !proto.objectives.iter().any(|o| o.id == c.id) {
            let ids: Vec<&str> = proto.objectives.iter().map(|o| o.id.as_str()).collect();
            bail!(
                "--goal {}={}: no objective has this id in {} (ids: {})",
                c.id,
                c.goal_cgy,
                proto.origin.display(),
                ids.join(", ")
            );
        }
    }
    let (model, curve) = machine.load()?;
    let t = Instant::now();
    out!(
        "opening {} with {} (influence matrix, {} beams)...",
        p.id,
        proto.origin.display(),
        settings.setup.arcs * settings.setup.beams_per_arc
    );
    let mut tps = NativeTps::open(p, proto.clone(), &model, &curve, settings)?;
    let m = tps.matrix();
    out!(
        "matrix: {} voxels x {} beamlets, {} entries, {:.1} s",
        m.n_rows(),
        m.n_cols(),
        m.nnz(),
        t.elapsed().as_secs_f64()
    );
    let report = tps.optimize(&changes)?;
    let table = report_table(&report);
    outn!("{table}");
    let factor = tps.normalize()?;
    let plan = tps.plan();
    out!(
        "normalized by {:.4} to D{} = {} cGy; {:.1} MU per fraction (sliding window)",
        factor,
        proto.prescription.volume_percent,
        proto.prescription.dose_cgy,
        plan.mu_per_fraction
    );
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("report.md"), &table)
            .with_context(|| format!("writing {}", dir.join("report.md").display()))?;
        let dose = tps.dose()?;
        let p = tps.patient();
        tps_core::nrrd::write_f32(&dir.join("dose.nrrd"), p.grid(), &dose)?;
        isodose_pngs(
            p,
            &dose,
            proto.prescription.dose_cgy,
            &[1.05, 1.0, 0.9, 0.7, 0.5, 0.3],
            &proto.prescription.target,
            dir,
            "optimized",
        )?;
        out!(
            "wrote {}: report.md, dose.nrrd, optimized-*.png",
            dir.display()
        );
    }
    out!("total {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

/// The iteration report as a Markdown table.
pub(crate) fn report_table(r: &tps_core::IterationReport) -> String {
    let mut s = format!(
        "iteration {}: PTV D95 {:.0} cGy (Rx {:.0}), objective {:.4e}, {} solver iterations, {:.1} s\n\n",
        r.iteration,
        r.coverage_cgy,
        r.prescription_cgy,
        r.total_objective,
        r.solver_iterations,
        r.wall_s
    );
    s += "| id | structure | type | weight | goal cGy | current cGy | value | ideal range | status |\n";
    s += "|---|---|---|---:|---:|---:|---:|---|---|\n";
    for o in &r.objectives {
        s += &format!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.2e} | {:.0e}..{:.0e} | {:?} |\n",
            o.id,
            o.structure,
            o.kind,
            o.weight,
            o.goal_cgy,
            o.current_cgy,
            o.value,
            o.ideal_range[0],
            o.ideal_range[1],
            o.status
        );
    }
    s += &format!("\ntermination criteria met: {}\n", r.criteria_met());
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
