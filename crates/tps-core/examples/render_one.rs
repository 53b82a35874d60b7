use std::path::Path;
use tps_core::cohort::CohortSpec;
fn main() {
    let spec = CohortSpec::load(Path::new(&std::env::args().nth(1).unwrap())).unwrap();
    let id: usize = std::env::args().nth(2).unwrap().parse().unwrap();
    let t = std::time::Instant::now();
    let p = spec.generate(id).unwrap();
    eprintln!("generated in {:?}, grid {:?}", t.elapsed(), p.grid().dims);
    for s in p.structure_stats() {
        eprintln!(
            "{:14} {:9.1} cc {:?}",
            s.name,
            s.volume_cc,
            s.centroid_mm.map(|c| c.map(|v| v.round()))
        );
    }
    let c = p.structure("PTV").unwrap().mask.centroid_mm().unwrap();
    let ov = tps_core::render::structure_overlays(&p);
    tps_core::render::write_orthogonal_pngs(
        &p,
        &ov,
        c,
        Path::new("/tmp/render"),
        &format!("p{id:02}"),
    )
    .unwrap();
}
