//! Renders one cohort patient through a chosen point: `render_one COHORT ID OUTDIR [x y z]`
//! (defaults to the PTV centroid). A development aid for looking at the phantom.
use std::path::Path;

use patient_model::MaskOps;
use phantoms::cohort::CohortSpec;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let spec = CohortSpec::load(Path::new(&args[1]))?;
    let id: usize = args[2].parse()?;
    let p = spec.generate(id)?;
    let centre = if args.len() >= 7 {
        [args[4].parse()?, args[5].parse()?, args[6].parse()?]
    } else {
        p.structure("PTV")
            .and_then(|s| s.mask.centroid_mm())
            .ok_or("no PTV")?
    };
    let overlays = patient_model::render::structure_overlays(&p);
    patient_model::render::write_orthogonal_pngs(
        &p,
        &overlays,
        centre,
        Path::new(&args[3]),
        &format!("p{id:02}"),
    )?;
    Ok(())
}
