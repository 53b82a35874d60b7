//! The fault-injection suite: bad inputs, damaged files, misbehaving LLM servers and
//! interrupted or competing runs, each run through the `autoplan` binary as a user would.
//!
//! Every case says what a trustworthy program does: refuse with a clear error that names what
//! to fix (exit 1, the named tokens in the message, no panic), or finish with its outputs
//! written. Each outcome is classed as *clear error*, *finished*, *panic*, *silently wrong*
//! (exit 0 where a refusal was due, or a secret shown) or *data lost* (an output missing). The
//! suite fails on any panic, silently wrong or lost case, and prints its table; with
//! `AUTOPLAN_FAULTS_MD=<file>` it also writes the table there (docs/reliability.md quotes it).
//!
//! The LLM server is `tps_utps_bridge::testing::serve`, a scripted HTTP/1.1 server on
//! 127.0.0.1, one scripted answer per request,
//! speaking either the OpenAI chat completions wire format (the `chat.completion` object, the
//! API's error body) or Ollama's `/api/chat` (its non-streaming chat response, `{"error": ...}`
//! bodies).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tps_utps_bridge::testing::{Answer, serve};

use common::{
    autoplan, capped_protocol, hold_lock, plan_command, root, save_phantom, small_beams, text,
};

/// A key the suite hands to the program; it must never come back out.
const KEY: &str = "sk-fault-suite-0123456789abcdef";

/// Ollama's non-streaming `/api/chat` response, with `content` as the model's reply.
fn ollama_chat(content: &str) -> String {
    serde_json::json!({
        "model": "m", "created_at": "2026-12-03T09:00:00.000000Z",
        "message": {"role": "assistant", "content": content},
        "done_reason": "stop", "done": true,
        "total_duration": 2416542416u64, "load_duration": 28095125,
        "prompt_eval_count": 900, "prompt_eval_duration": 1010000000,
        "eval_count": 30, "eval_duration": 1300000000u64
    })
    .to_string()
}

/// The `chat.completion` object the API returns, with `content` as the model's reply.
fn completion(content: &str) -> String {
    serde_json::json!({
        "id": "chatcmpl-fault", "object": "chat.completion", "created": 1733184000,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 900, "completion_tokens": 30, "total_tokens": 930}
    })
    .to_string()
}

/// The API's error body.
fn api_error(message: &str, code: &str) -> String {
    serde_json::json!({"error": {"message": message, "type": "invalid_request_error",
                                  "param": null, "code": code}})
    .to_string()
}

/// What a case expects.
enum Expect {
    /// Exit 1 (2 for a command-line usage error) with every token in the output.
    Refuse(Vec<String>),
    /// Exit 0 with these files in the output directory.
    Finish(Vec<&'static str>),
}

/// How a case came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    ClearError,
    Finished,
    Panic,
    SilentlyWrong,
    DataLost,
}

struct Case {
    name: &'static str,
    output: Output,
    out_dir: Option<PathBuf>,
    expect: Expect,
}

fn classify(c: &Case) -> (Outcome, String) {
    let t = text(&c.output);
    if t.contains("panicked") {
        return (Outcome::Panic, t);
    }
    if t.contains(KEY) {
        return (Outcome::SilentlyWrong, format!("the key was shown: {t}"));
    }
    if let Some(dir) = &c.out_dir {
        for f in walk(dir) {
            let content = std::fs::read(&f).unwrap_or_default();
            if String::from_utf8_lossy(&content).contains(KEY) {
                return (
                    Outcome::SilentlyWrong,
                    format!("the key is in {}", f.display()),
                );
            }
        }
    }
    match &c.expect {
        Expect::Refuse(tokens) => {
            if c.output.status.success() {
                (Outcome::SilentlyWrong, t)
            } else if matches!(c.output.status.code(), Some(1) | Some(2))
                && tokens.iter().all(|k| t.contains(k.as_str()))
            {
                (Outcome::ClearError, t)
            } else {
                // Refused, but without saying what to fix: counted as unclear (not clear).
                (Outcome::SilentlyWrong, format!("unclear refusal: {t}"))
            }
        }
        Expect::Finish(files) => {
            let dir = c
                .out_dir
                .as_ref()
                .expect("a finishing case has an output directory");
            let missing: Vec<_> = files.iter().filter(|f| !dir.join(f).is_file()).collect();
            if !missing.is_empty() {
                (Outcome::DataLost, format!("missing {missing:?}: {t}"))
            } else if !c.output.status.success() {
                (Outcome::SilentlyWrong, format!("did not finish: {t}"))
            } else {
                (Outcome::Finished, t)
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p
                .extension()
                .is_some_and(|x| x == "jsonl" || x == "md" || x == "csv")
            {
                out.push(p);
            }
        }
    }
    out
}

fn refuse(tokens: &[&str]) -> Expect {
    Expect::Refuse(tokens.iter().map(|s| s.to_string()).collect())
}

/// The wire format a fake server speaks.
#[derive(Clone, Copy)]
enum Wire {
    OpenAi,
    Ollama,
}

/// A provider file for the fake server at `url` (an OpenAI-compatible one takes its key from
/// the environment).
fn provider(dir: &Path, name: &str, wire: Wire, url: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let head = match wire {
        Wire::OpenAi => format!(
            "kind = \"openai-compatible\"\nmodel = \"m\"\nendpoint = \"{url}/v1\"\n\
             api-key-env = \"AUTOPLAN_FAULT_KEY\"\nresponse-format = \"json-object\"\n"
        ),
        Wire::Ollama => format!("kind = \"ollama\"\nmodel = \"m\"\nendpoint = \"{url}\"\n"),
    };
    std::fs::write(&path, head + extra).unwrap();
    path
}

/// `autoplan plan` on the saved patient with a provider, the key in the environment.
fn plan_with(patient: &Path, protocol: &Path, provider: &Path, out: &Path) -> Output {
    plan_command(
        patient,
        protocol,
        out,
        &["--provider", provider.to_str().unwrap()],
    )
    .env("AUTOPLAN_FAULT_KEY", KEY)
    .output()
    .unwrap()
}

#[test]
fn fault_injection_suite() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let patient = t.join("p04");
    save_phantom(4, &patient);
    let protocol = capped_protocol(t, "cervix", 2);
    let cervix = std::fs::read_to_string(root().join("configs/protocols/cervix.toml")).unwrap();
    let write = |name: &str, text: &str| -> PathBuf {
        let p = t.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let mut cases: Vec<Case> = Vec::new();
    let mut run = |name: &'static str, args: Vec<String>, out_dir: Option<PathBuf>, expect| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cases.push(Case {
            name,
            output: autoplan(&args),
            out_dir,
            expect,
        });
    };
    let plan_args = |patient: &str, protocol: &str, out: &Path| -> Vec<String> {
        let out = s(out);
        small_beams(&[
            "plan",
            "--patient-dir",
            patient,
            "--protocol",
            protocol,
            "--out",
            &out,
        ])
        .into_iter()
        .map(String::from)
        .collect()
    };

    // ---- Damaged or wrong input files --------------------------------------------------
    run(
        "missing patient directory",
        plan_args(&s(&t.join("p99")), &s(&protocol), &t.join("o1")),
        None,
        refuse(&["p99", "does not exist"]),
    );
    let damaged = t.join("damaged");
    save_phantom(4, &damaged);
    let ct = damaged.join("ct.nrrd");
    let bytes = std::fs::read(&ct).unwrap();
    std::fs::write(&ct, &bytes[..bytes.len() / 2]).unwrap();
    run(
        "truncated CT",
        plan_args(&s(&damaged), &s(&protocol), &t.join("o2")),
        None,
        refuse(&["ct.nrrd", "corrupt"]),
    );
    let p = write(
        "broken.toml",
        &cervix.replace("[prescription]", "[prescription"),
    );
    run(
        "malformed protocol TOML",
        plan_args(&s(&patient), &s(&p), &t.join("o3")),
        None,
        refuse(&["broken.toml"]),
    );
    let p = write(
        "kidney.toml",
        &cervix.replacen("structure = \"Bladder\"", "structure = \"Kidney\"", 1),
    );
    run(
        "objective on an unknown structure",
        plan_args(&s(&patient), &s(&p), &t.join("o4")),
        None,
        refuse(&["kidney.toml", "Kidney"]),
    );
    let zero: String = cervix
        .lines()
        .map(|l| {
            if l.starts_with("weight = ") {
                "weight = 0.0".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let p = write("zero.toml", &zero);
    run(
        "every objective weight 0",
        plan_args(&s(&patient), &s(&p), &t.join("o5")),
        None,
        refuse(&["zero.toml", "positive weight"]),
    );
    let p = write(
        "huge.toml",
        &cervix.replace("max-iterations = 20", "max-iterations = 4000000000"),
    );
    run(
        "runaway iteration cap",
        plan_args(&s(&patient), &s(&p), &t.join("o6")),
        None,
        refuse(&["huge.toml", "max-iterations"]),
    );
    let p = write(
        "typo.toml",
        &cervix.replace("\"Bladder: D50\"", "\"Bladdr: D50\""),
    );
    run(
        "metric on an unknown structure",
        plan_args(&s(&patient), &s(&p), &t.join("o7")),
        Some(t.join("o7")),
        refuse(&["typo.toml", "Bladdr"]),
    );
    let beams: Vec<String> = [
        "plan",
        "--patient-dir",
        &s(&patient),
        "--protocol",
        &s(&protocol),
        "--arcs",
        "100000",
        "--beams-per-arc",
        "100000",
        "--out",
        &s(&t.join("o8")),
    ]
    .map(String::from)
    .to_vec();
    run(
        "absurd beam count",
        beams,
        None,
        refuse(&["100000 x 100000", "at most"]),
    );
    // Beamlets 1 m wide once aborted on a 93 GB allocation.
    let bixel: Vec<String> = [
        "dose",
        "--patient",
        &s(&patient),
        "--protocol",
        &s(&protocol),
        "--bixel-mm",
        "1e6",
    ]
    .map(String::from)
    .to_vec();
    run(
        "1 m beamlets",
        bixel,
        None,
        refuse(&["bixel-mm", "2 to 20 mm"]),
    );
    let machine = std::fs::read_to_string(root().join("configs/machines/generic-6mv.toml"))
        .unwrap()
        .replace("energy-mv = 6.0", "energy-mv = 6e6");
    let m = t.join("machine-6e6.toml");
    std::fs::write(&m, machine).unwrap();
    let mut args = plan_args(&s(&patient), &s(&protocol), &t.join("o10"));
    args.extend(["--machine".to_string(), s(&m)]);
    run(
        "machine energy of 6 TeV",
        args,
        Some(t.join("o10")),
        refuse(&["machine-6e6.toml", "energy-mv", "1 to 25"]),
    );

    // ---- Doses ----------------------------------------------------------------------------
    let dose = t.join("dose.nrrd");
    let o = autoplan(&[
        "synthetic-dose",
        "--patient",
        &s(&patient),
        "--protocol",
        "configs/protocols/cervix.toml",
        "--out",
        &s(&dose),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // The same dose with one voxel made negative, written by the project's NRRD writer.
    let (grid, voxels) = patient_model::nrrd::read(&dose).unwrap();
    let patient_model::nrrd::Voxels::F32(mut cgy) = voxels else {
        panic!("a float dose")
    };
    cgy[0] = -5000.0;
    let neg = t.join("negative.nrrd");
    patient_model::nrrd::write_f32(&neg, &grid, &cgy).unwrap();
    let eval = |dose: &Path, mu: &str| -> Vec<String> {
        [
            "eval",
            "--patient",
            &s(&patient),
            "--dose",
            &s(dose),
            "--protocol",
            "configs/protocols/cervix.toml",
            mu,
        ]
        .map(String::from)
        .to_vec()
    };
    run(
        "dose with a negative voxel",
        eval(&neg, "--mu=500"),
        None,
        refuse(&["negative.nrrd", "voxel 0"]),
    );
    run(
        "negative MU",
        eval(&dose, "--mu=-5"),
        None,
        refuse(&["--mu", "positive"]),
    );

    // ---- Secrets ----------------------------------------------------------------------------
    let p = write(
        "keyed.toml",
        &format!("kind = \"openai-compatible\"\nmodel = \"m\"\napi-key = \"{KEY}\"\n"),
    );
    let mut args = plan_args(&s(&patient), &s(&protocol), &t.join("o9"));
    args.extend(["--provider".to_string(), s(&p)]);
    run(
        "a key written into the provider file",
        args,
        None,
        refuse(&["keyed.toml", "api-key-env"]),
    );
    let p = write(
        "key-as-name.toml",
        &format!(
            "kind = \"openai-compatible\"\nmodel = \"m\"\nendpoint = \"http://127.0.0.1:9/v1\"\n\
             api-key-env = \"{KEY}\"\n"
        ),
    );
    let mut args = plan_args(&s(&patient), &s(&protocol), &t.join("o10"));
    args.extend(["--provider".to_string(), s(&p)]);
    run(
        "the key given as the variable's name",
        args,
        None,
        refuse(&["key-as-name.toml", "api-key-env"]),
    );

    // ---- LLM server faults --------------------------------------------------------------
    let keep = completion("{\"rationale\": \"keep the goals\", \"adjustments\": []}");
    let server_case = |name: &'static str, script: Vec<Answer>, extra: &str, expect: Expect| {
        let wire = if name.starts_with("ollama") {
            Wire::Ollama
        } else {
            Wire::OpenAi
        };
        let url = serve(script);
        let file = name.replace(' ', "-").replace(['(', ')'], "");
        let prov = provider(t, &file, wire, &url, extra);
        let out = t.join(name.replace(' ', "-"));
        Case {
            name,
            output: plan_with(&patient, &protocol, &prov, &out),
            out_dir: Some(out),
            expect,
        }
    };
    let planned = vec!["transcript.jsonl", "report.md", "metrics.csv", "dose.nrrd"];
    cases.push(server_case(
        "overloaded (503) then answering",
        vec![
            Answer::json(503, api_error("The server is overloaded", "overloaded")),
            Answer::json(200, keep.clone()),
        ],
        "retries = 2\nbackoff-s = 0.05\n",
        Expect::Finish(planned.clone()),
    ));
    cases.push(server_case(
        "wrong key (401 echoing it)",
        vec![Answer::json(
            401,
            api_error(
                &format!("Incorrect API key provided: {KEY}. Authorization: Bearer {KEY}"),
                "invalid_api_key",
            ),
        )],
        "retries = 0\n",
        refuse(&["not the advisor's", "--allow-fallback"]),
    ));
    cases.push(server_case(
        "prose instead of JSON",
        vec![Answer::json(
            200,
            completion("I would lower the bladder goal a little."),
        )],
        "retries = 0\n",
        refuse(&["not the advisor's"]),
    ));
    cases.push(server_case(
        "body cut short",
        vec![Answer::cut(keep.clone(), 40)],
        "retries = 0\n",
        refuse(&["not the advisor's"]),
    ));
    cases.push(server_case(
        "slower than the timeout",
        vec![Answer::json(200, keep.clone()).after(Duration::from_secs(3))],
        "retries = 0\ntimeout-s = 1\n",
        refuse(&["not the advisor's"]),
    ));
    let ollama_keep = ollama_chat("{\"rationale\": \"keep the goals\", \"adjustments\": []}");
    cases.push(server_case(
        "ollama busy (503) then answering",
        vec![
            Answer::json(
                503,
                serde_json::json!({"error": "server busy, please try again.  maximum pending \
                                             requests exceeded"})
                .to_string(),
            ),
            Answer::json(200, ollama_keep),
        ],
        "retries = 2\nbackoff-s = 0.05\n",
        Expect::Finish(planned.clone()),
    ));
    cases.push(server_case(
        "ollama model not pulled (404)",
        vec![Answer::json(
            404,
            serde_json::json!({"error": "model \"m\" not found, try pulling it first"}).to_string(),
        )],
        "retries = 3\n",
        refuse(&["not the advisor's", "HTTP 404", "try pulling it first"]),
    ));
    cases.push(server_case(
        "ollama behind a proxy answering with its page",
        vec![Answer::raw(
            200,
            "text/html",
            "<html><body>Proxy sign-in required</body></html>",
        )],
        "retries = 0\n",
        refuse(&["not the advisor's", "not JSON", "Proxy sign-in required"]),
    ));

    // ---- Runs that compete or are cut short ------------------------------------------------
    let locked = t.join("locked");
    hold_lock(&locked);
    let mut run2 = |name: &'static str, output: Output, out_dir: Option<PathBuf>, expect| {
        cases.push(Case {
            name,
            output,
            out_dir,
            expect,
        })
    };
    let args = plan_args(&s(&patient), &s(&protocol), &locked);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run2(
        "second run into a locked directory",
        autoplan(&args),
        None,
        refuse(&["in use by autoplan PID"]),
    );
    // A run killed mid-plan, then run again into the same directory.
    let killed = t.join("killed");
    let args = plan_args(&s(&patient), &s(&capped_protocol(t, "cervix", 20)), &killed);
    let mut child = Command::new(env!("CARGO_BIN_EXE_autoplan"))
        .args(&args)
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed once its transcript exists (the plan is under way), or after 60 s at most.
    for _ in 0..1200 {
        if killed.join("transcript.jsonl").is_file() || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait().unwrap();
    let args = plan_args(&s(&patient), &s(&protocol), &killed);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run2(
        "rerun after a killed run",
        autoplan(&args),
        Some(killed.clone()),
        Expect::Finish(planned.clone()),
    );
    let closed = t.join("closed");
    let args = plan_args(&s(&patient), &s(&protocol), &closed);
    let mut child = Command::new(env!("CARGO_BIN_EXE_autoplan"))
        .args(&args)
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    run2(
        "stdout closed (| head)",
        child.wait_with_output().unwrap(),
        Some(closed),
        Expect::Finish(planned),
    );

    // ---- The table -----------------------------------------------------------------------
    let mut md = String::from("| case | outcome |\n|---|---|\n");
    let mut counts = std::collections::BTreeMap::new();
    let mut bad = Vec::new();
    for c in &cases {
        let (outcome, detail) = classify(c);
        *counts.entry(outcome).or_insert(0) += 1;
        md += &format!("| {} | {outcome:?} |\n", c.name);
        if !matches!(outcome, Outcome::ClearError | Outcome::Finished) {
            bad.push(format!("{}: {outcome:?}: {detail}", c.name));
        }
    }
    let n = |o| counts.get(&o).copied().unwrap_or(0);
    md += &format!(
        "\n{} cases: {} clear errors, {} finished with their outputs, {} panics, {} silently \
         wrong, {} with data lost\n",
        cases.len(),
        n(Outcome::ClearError),
        n(Outcome::Finished),
        n(Outcome::Panic),
        n(Outcome::SilentlyWrong),
        n(Outcome::DataLost)
    );
    println!("{md}");
    if let Ok(path) = std::env::var("AUTOPLAN_FAULTS_MD") {
        std::fs::write(path, &md).unwrap();
    }
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}
