//! What the workspace's end-to-end tests share: running the `autoplan` binary on the shipped
//! configuration files, and small fast cases to run it on.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn autoplan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autoplan"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run autoplan")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `args` with one 7-beam arc on a 5 mm grid, which keeps a planning test short.
pub fn small_beams<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend(["--arcs", "1", "--beams-per-arc", "7", "--grid-mm", "5"]);
    v
}

/// A copy of `configs/protocols/<site>.toml` in `dir` with the iteration cap lowered to
/// `iterations`, to keep a planning test short.
pub fn capped_protocol(dir: &Path, site: &str, iterations: u32) -> PathBuf {
    let text =
        std::fs::read_to_string(root().join(format!("configs/protocols/{site}.toml"))).unwrap();
    assert!(
        text.contains("max-iterations = 20"),
        "{site}: the cap moved"
    );
    let path = dir.join(format!("{site}-{iterations}.toml"));
    std::fs::write(
        &path,
        text.replace(
            "max-iterations = 20",
            &format!("max-iterations = {iterations}"),
        ),
    )
    .unwrap();
    path
}

/// A study file in `dir` on cohort cervix-35 with the cervix protocol capped at 2 iterations
/// and the rule-based arm as the reference: `[study]` named `name` on `patients`, then `rest`
/// (more `[study]` keys, then the arms; `CONFIGS` in it stands for the shipped `configs/`).
pub fn study_file(dir: &Path, name: &str, patients: &str, rest: &str) -> PathBuf {
    let protocol = capped_protocol(dir, "cervix", 2);
    let configs = root().join("configs");
    let path = dir.join("study.toml");
    std::fs::write(
        &path,
        format!(
            "[study]\nname = \"{name}\"\ncohort = \"{c}/cohorts/cervix-35.toml\"\n\
             protocol = \"{p}\"\npatients = \"{patients}\"\nreference-arm = \"rule-based\"\n{rest}",
            c = configs.display(),
            p = protocol.display(),
            rest = rest.replace("CONFIGS", &configs.display().to_string()),
        ),
    )
    .unwrap();
    path
}

/// Generates cohort patient `id` and saves it into `dir`.
pub fn save_phantom(id: usize, dir: &Path) {
    let o = autoplan(&[
        "phantom",
        "--cohort",
        "configs/cohorts/cervix-35.toml",
        "--patient",
        &id.to_string(),
        "--save",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

/// Writes into `dir` the lock file of a run that is alive (this test process, on this host),
/// as `autoplan` writes it.
pub fn hold_lock(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    std::fs::write(
        dir.join(".autoplan.lock"),
        format!(
            "pid = {}\nhost = \"{}\"\ncommand = \"autoplan plan\"\n",
            std::process::id(),
            host.trim()
        ),
    )
    .unwrap();
}

/// `autoplan plan` on the saved patient `patient` with `protocol` into `out`, with `extra`
/// arguments and the small beams of [`small_beams`] (not with `--tps`: a remote TPS plans the
/// protocol's beams), run from the workspace root; not started.
pub fn plan_command(patient: &Path, protocol: &Path, out: &Path, extra: &[&str]) -> Command {
    let (p, pr, o) = (
        patient.to_str().unwrap(),
        protocol.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let mut args = vec!["plan", "--patient-dir", p, "--protocol", pr, "--out", o];
    args.extend_from_slice(extra);
    let mut c = Command::new(env!("CARGO_BIN_EXE_autoplan"));
    // A remote TPS takes its beams from the protocol (and its server's options), never from
    // the client's command line.
    if extra.contains(&"--tps") {
        c.args(&args);
    } else {
        c.args(small_beams(&args));
    }
    c.current_dir(root());
    c
}
