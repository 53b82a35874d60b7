"""The TPS protocol v1 (docs/tps-protocol.md) served over pyRadPlan, an open photon planning
toolkit in Python that this project did not write.

    adapter.py export-tg119 DIR     write pyRadPlan's TG-119 phantom as an autoplan patient
    adapter.py serve [--addr HOST:PORT] [--token-env VAR] [--beams N] [--grid-mm MM]

--beams and --grid-mm apply to protocols without a [beams] section; a protocol's [beams]
sets the gantry angles, bixel width and dose grid (collimator 0, isocentre at the target's
centre of mass, 6 MV: anything else is refused).

The adapter plans pyRadPlan's TG-119 phantom (the C-shaped target round a core) with its
photon pencil-beam engine: N equispaced coplanar beams, dose influence on a cubic grid of
`--grid-mm`, pyRadPlan's fluence optimization. Our objective kinds map onto pyRadPlan's:
max-dose -> SquaredOverdosing(d_max = goal), min-dose -> SquaredUnderdosing(d_min = goal),
each with priority = weight; mean-dose and DVH objectives are refused (pyRadPlan's mean-dose
objective is two-sided, ours is an upper limit). The constraint target values are computed
here from the dose on the CT grid, the way the protocol defines them (crates/tps-api/src/
objectives.rs): the mean over the structure's voxels of the squared relative excess past the
goal. pyRadPlan has no MU: the plan summary gives each beam's sum of bixel weights, in
pyRadPlan's units. Re-optimizations start from zero fluence (pyRadPlan has no warm start).
"""

import argparse
import base64
import gzip
import hmac
import io
import json
import os
import sys
import threading
import time
import tomllib
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import SimpleITK as sitk

PATIENT_ID = "pyradplan/tg119"


def nrrd_bytes(array_zyx, kind, image):
    """A gzip NRRD in the layout autoplan writes (LPS, x fastest)."""
    nx, ny, nz = image.GetSize()
    sx, sy, sz = image.GetSpacing()
    ox, oy, oz = image.GetOrigin()
    header = (
        "NRRD0004\n# written by the pyRadPlan adapter\n"
        f"type: {kind}\ndimension: 3\nspace: left-posterior-superior\n"
        f"sizes: {nx} {ny} {nz}\n"
        f"space directions: ({sx},0,0) (0,{sy},0) (0,0,{sz})\n"
        "kinds: domain domain domain\nendian: little\nencoding: gzip\n"
        f"space origin: ({ox},{oy},{oz})\n\n"
    )
    dtype = {"int16": "<i2", "uint8": "u1"}[kind]
    return header.encode() + gzip.compress(np.ascontiguousarray(array_zyx, dtype=dtype).tobytes())


def load_phantom():
    from pyRadPlan import load_tg119

    return load_tg119()


def voi_mask(voi, ct):
    """A VOI's mask as a [z, y, x] boolean array on the CT grid."""
    m = sitk.GetArrayFromImage(voi.mask).astype(bool)
    assert m.shape == tuple(reversed(ct.cube_hu.GetSize())), (m.shape, ct.cube_hu.GetSize())
    return m


def role_of(voi):
    if voi.name.upper() in ("BODY", "EXTERNAL"):
        return "external"
    return "target" if voi.voi_type.upper() == "TARGET" else "oar"


def export_tg119(out):
    ct, cst = load_phantom()
    img = ct.cube_hu
    os.makedirs(os.path.join(out, "structures"), exist_ok=True)
    hu = np.clip(np.rint(sitk.GetArrayFromImage(img)), -1024, 32767).astype(np.int16)
    with open(os.path.join(out, "ct.nrrd"), "wb") as f:
        f.write(nrrd_bytes(hu, "int16", img))
    nx, ny, nz = img.GetSize()
    lines = [
        'format = "autoplan-patient"', "version = 1", f'id = "{PATIENT_ID}"', 'ct = "ct.nrrd"', "",
        "[grid]", f"dims = [{nx}, {ny}, {nz}]",
        f"spacing-mm = [{', '.join(repr(float(v)) for v in img.GetSpacing())}]",
        f"origin-mm = [{', '.join(repr(float(v)) for v in img.GetOrigin())}]",
    ]
    for voi in cst.vois:
        m = voi_mask(voi, ct)
        with open(os.path.join(out, "structures", f"{voi.name}.nrrd"), "wb") as f:
            f.write(nrrd_bytes(m.astype(np.uint8), "uint8", img))
        lines += ["", "[[structures]]", f'name = "{voi.name}"', f'role = "{role_of(voi)}"',
                  f'file = "structures/{voi.name}.nrrd"', f"voxels = {int(m.sum())}"]
    with open(os.path.join(out, "patient.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}: TG-119 from pyRadPlan, {nx} x {ny} x {nz} voxels")


class ApiError(Exception):
    def __init__(self, status, code, message, temporary=False):
        super().__init__(message)
        self.status, self.code, self.message, self.temporary = status, code, message, temporary


def dose_at_fraction(hottest_first, fraction):
    """The shared DVH convention (crates/tps-api/src/dose_volume.rs)."""
    n = len(hottest_first)
    if n == 0:
        return 0.0
    pos = min(max(fraction, 0.0), 1.0) * n
    if pos <= 1.0:
        return float(hottest_first[0])
    if pos >= n:
        return float(hottest_first[-1])
    k = int(np.floor(pos))
    t = pos - k
    lo, hi = float(hottest_first[k - 1]), float(hottest_first[k])
    return lo + t * (hi - lo)


def beam_setup(proto, protocol_name, beams, grid_mm):
    """Gantry angles, bixel width and dose grid of the protocol's [beams] (the server's
    --beams equispaced beams and --grid-mm when the protocol has no such section). Arcs become
    their static beams as docs/protocols.md defines them; what this adapter cannot realize is
    refused, naming the field."""
    b = proto.get("beams")
    if b is None:
        return list(np.linspace(0, 360, beams, endpoint=False)), 5.0, grid_mm

    def refuse(field, value, why):
        raise ApiError(400, "invalid", f"{protocol_name}: field `beams.{field}` = {value!r}: {why}")

    if float(b.get("collimator-deg", 0.0)) != 0.0:
        refuse("collimator-deg", b["collimator-deg"], "this adapter plans collimator 0 only")
    if b.get("isocentre", "target-centroid") != "target-centroid" or "isocentre-mm" in b \
            or "isocentre-structure" in b:
        refuse("isocentre", b.get("isocentre"), "this adapter uses pyRadPlan's isocentre, the "
               "target's centre of mass (\"target-centroid\")")
    if "energy-mv" in b and float(b["energy-mv"]) != 6.0:
        refuse("energy-mv", b["energy-mv"], "pyRadPlan's Generic machine is 6 MV")
    technique = b.get("technique", "arcs")
    if technique == "static":
        angles = [float(g) for g in b.get("angles-deg", [])]
        if not angles:
            refuse("angles-deg", [], "list the gantry angles")
    elif technique == "arcs":
        count, per_arc = int(b.get("arcs", 2)), int(b.get("beams-per-arc", 18))
        start = float(b.get("start-deg", 0.0))
        stop = float(b.get("stop-deg", start))
        full = abs(stop - start) < 0.01
        span = 360.0 if full else (stop - start) % 360.0
        step = span / per_arc
        angles = []
        for a in range(count):
            offset = a / count if full else (a + 0.5) / count
            angles += [(start + (k + offset) * step) % 360.0 for k in range(per_arc)]
    else:
        refuse("technique", technique, "expected \"arcs\" or \"static\"")
    return angles, float(b.get("bixel-mm", 5.0)), float(b.get("dose-grid-mm", 3.0))


class Case:
    """One open case: pyRadPlan's plan of TG-119 with our objectives."""

    def __init__(self, protocol_text, protocol_name, beams, grid_mm):
        from pyRadPlan import PhotonPlan, calc_dose_influence, generate_stf

        try:
            proto = tomllib.loads(protocol_text)
        except tomllib.TOMLDecodeError as e:
            raise ApiError(400, "invalid", f"{protocol_name}: {e}")
        self.ct, self.cst = load_phantom()
        self.masks = {v.name: voi_mask(v, self.ct).ravel() for v in self.cst.vois}
        self.vois = {v.name: v for v in self.cst.vois}
        rx = proto.get("prescription", {})
        self.target = rx.get("target")
        if self.target not in self.vois:
            raise ApiError(400, "unknown-structure",
                           f"{protocol_name}: field `prescription.target` = {self.target!r}: "
                           f"no such structure (available: {', '.join(self.vois)})")
        self.prescription = float(rx.get("dose-cgy", 0))
        self.volume = float(rx.get("volume-percent", 95.0))
        self.fractions = int(rx.get("fractions", 1))
        self.objectives = []
        for n, o in enumerate(proto.get("objectives", [])):
            field = f"objectives[{n}]"
            if o.get("structure") not in self.vois:
                raise ApiError(400, "unknown-structure",
                               f"{protocol_name}: field `{field}.structure` = {o.get('structure')!r}: "
                               f"no such structure (available: {', '.join(self.vois)})")
            if o.get("type") not in ("max-dose", "min-dose"):
                raise ApiError(400, "invalid",
                               f"{protocol_name}: field `{field}.type` = {o.get('type')!r}: this "
                               "adapter maps max-dose and min-dose onto pyRadPlan; mean-dose and "
                               "DVH objectives have no one-sided pyRadPlan form")
            self.objectives.append({
                "id": o["id"], "structure": o["structure"],
                "kind": {"type": o["type"]}, "weight": float(o["weight"]),
                "goal_cgy": float(o["goal-cgy"]), "ideal_range": [float(v) for v in o["ideal-range"]],
            })
        if not self.objectives:
            raise ApiError(400, "invalid", f"{protocol_name}: field `objectives` = []: "
                           "a protocol used for planning needs objectives")
        angles, bixel_mm, grid_mm = beam_setup(proto, protocol_name, beams, grid_mm)
        # What the client's report shows: the beams as planned here (arcs as their beams).
        self.beams = {"arrangement": {"technique": "static",
                                      "angles_deg": [float(g) for g in angles]},
                      "collimator_deg": 0.0, "energy_mv": 6.0, "bixel_mm": float(bixel_mm),
                      "dose_grid_mm": float(grid_mm), "isocentre": "target-centroid"}
        self.pln = PhotonPlan(machine="Generic")
        self.pln.prop_stf = {"gantry_angles": np.asarray(angles),
                             "couch_angles": np.zeros(len(angles)),
                             "bixel_width": bixel_mm}
        self.pln.prop_dose_calc = {"dose_grid": {"resolution": {"x": grid_mm, "y": grid_mm,
                                                                "z": grid_mm}}}
        self.stf = generate_stf(self.ct, self.cst, self.pln)
        self.dij = calc_dose_influence(self.ct, self.cst, self.stf, self.pln)
        self.x = np.zeros(self.dij.total_num_of_bixels)
        self.dose = np.zeros(len(self.masks[self.target]), dtype=np.float64)
        self.iteration, self.solver_iterations, self.wall_s = 0, 0, 0.0
        self.lock = threading.Lock()
        self.busy = False
        self.jobs, self.normalized = {}, {}

    def apply(self, changes):
        goals = {o["id"]: o["goal_cgy"] for o in self.objectives}
        for n, c in enumerate(changes):
            if c.get("id") not in goals:
                raise ApiError(400, "invalid", f"goal changes: field `[{n}].id` = {c.get('id')}: "
                               "no objective has this id")
            g = c.get("goal_cgy")
            if not isinstance(g, (int, float)) or not (0 < g <= 20000):
                raise ApiError(400, "invalid", f"goal changes: field `[{n}].goal-cgy` = {g}: "
                               "goals must be positive doses in cGy")
            goals[c["id"]] = float(g)
        for o in self.objectives:
            o["goal_cgy"] = goals[o["id"]]

    def optimize(self, changes):
        from pyRadPlan import fluence_optimization
        from pyRadPlan.optimization.objectives import SquaredOverdosing, SquaredUnderdosing

        self.apply(changes)
        for voi in self.cst.vois:
            voi.objectives = []
        for o in self.objectives:
            gy = o["goal_cgy"] / 100.0
            obj = (SquaredOverdosing(priority=o["weight"], d_max=gy) if o["kind"]["type"] == "max-dose"
                   else SquaredUnderdosing(priority=o["weight"], d_min=gy))
            self.vois[o["structure"]].objectives.append(obj)
        t = time.time()
        info = {}
        self.x = np.asarray(fluence_optimization(self.ct, self.cst, self.stf, self.dij, self.pln,
                                                 opt_info=info), dtype=np.float64)
        self.wall_s = time.time() - t
        self.solver_iterations = int(info.get("num_iter", 0))
        self.dose = self.dose_of(self.x)
        self.iteration += 1
        return self.report()

    def dose_of(self, x):
        result = self.dij.compute_result_ct_grid(x)["physical_dose"]
        return sitk.GetArrayFromImage(result).astype(np.float64).ravel() * 100.0

    def coverage(self):
        d = np.sort(self.dose[self.masks[self.target]])[::-1]
        return dose_at_fraction(d, self.volume / 100.0)

    def report(self):
        rows, total = [], 0.0
        for o in self.objectives:
            d = self.dose[self.masks[o["structure"]]]
            g = o["goal_cgy"]
            if o["kind"]["type"] == "max-dose":
                value, current = float(np.mean(np.maximum(0.0, d - g) ** 2) / g**2), float(d.max())
            else:
                value, current = float(np.mean(np.maximum(0.0, g - d) ** 2) / g**2), float(d.min())
            lo, hi = o["ideal_range"]
            status = "below" if value < lo else "above" if value > hi else "inside"
            role = role_of(self.vois[o["structure"]])
            total += o["weight"] * value
            rows.append({"id": o["id"], "structure": o["structure"], "role": role,
                         "kind": o["kind"]["type"].replace("-", " "), "weight": o["weight"],
                         "goal_cgy": g, "current_cgy": current, "value": value,
                         "ideal_range": o["ideal_range"], "status": status})
        return {"iteration": self.iteration, "objectives": rows, "coverage_cgy": self.coverage(),
                "prescription_cgy": self.prescription, "total_objective": total,
                "solver_iterations": self.solver_iterations, "wall_s": self.wall_s}

    def normalize(self):
        c = self.coverage()
        if c <= 0:
            raise ApiError(400, "invalid", "the target receives no dose: optimize first")
        factor = self.prescription / c
        self.x *= factor
        self.dose *= factor
        return factor

    def plan(self):
        beams = np.asarray(self.dij.beam_num).astype(int).ravel()
        mu = [float(self.x[beams == b].sum()) for b in range(self.dij.num_of_beams)]
        return {"beam_mu": mu, "mu_per_fraction": float(sum(mu)) / self.fractions,
                "fractions": self.fractions}

    def dose_body(self):
        img = self.ct.cube_hu
        nx, ny, nz = img.GetSize()
        header = json.dumps({"grid": {"dims": [nx, ny, nz], "spacing-mm": list(img.GetSpacing()),
                                      "origin-mm": list(img.GetOrigin())},
                             "unit": "cGy", "count": nx * ny * nz}).encode()
        return (len(header).to_bytes(4, "little") + header
                + np.asarray(self.dose, dtype="<f4").tobytes())


class Server:
    def __init__(self, token, beams, grid_mm):
        self.token, self.beams, self.grid_mm = token, beams, grid_mm
        self.cases, self.jobs = {}, {}
        self.lock = threading.Lock()

    def case(self, cid):
        c = self.cases.get(cid)
        if c is None:
            raise ApiError(404, "unknown-case", f"no case {cid} (closed, or never opened here)")
        return c

    def open_case(self, body):
        source = body.get("patient", {})
        if source.get("kind") != "upload":
            raise ApiError(400, "path-not-served", "this adapter reads no patient paths; upload")
        manifest = next((f for f in source.get("files", []) if f.get("path") == "patient.toml"), None)
        text = base64.b64decode(manifest["base64"]).decode() if manifest else ""
        if f'id = "{PATIENT_ID}"' not in text:
            raise ApiError(400, "invalid", "this adapter plans pyRadPlan's TG-119 phantom only: "
                           "export it with `adapter.py export-tg119 DIR` and plan that directory")
        case = Case(body.get("protocol_toml", ""), body.get("protocol_name") or "protocol.toml",
                    self.beams, self.grid_mm)
        cid = "case-" + uuid.uuid4().hex
        self.cases[cid] = case
        return 201, {"case": cid, "tps": "pyRadPlan (TG-119)", "idle_limit_s": 86400.0,
                     "beams": case.beams}

    def start_job(self, cid, body):
        case = self.case(cid)
        key = body.get("idempotency_key", "")
        with self.lock:
            if key in case.jobs:
                return 200, self.jobs[case.jobs[key]]
            if case.busy:
                raise ApiError(409, "busy", "the case is optimizing; wait for its job", True)
            case.busy = True
            jid = "job-" + uuid.uuid4().hex
            job = {"job": jid, "case": cid, "state": "running"}
            self.jobs[jid] = job
            case.jobs[key] = jid

        def run():
            try:
                with case.lock:
                    report = case.optimize(body.get("changes", []))
                job.update(state="done", report=report)
            except ApiError as e:
                job.update(state="failed", error={"code": e.code, "message": e.message,
                                                  "temporary": e.temporary})
            except Exception as e:  # a pyRadPlan failure: the previous plan stays
                job.update(state="failed", error={"code": "pyradplan", "message": repr(e),
                                                  "temporary": False})
            finally:
                case.busy = False

        threading.Thread(target=run, daemon=True).start()
        return 202, dict(job)

    def job(self, jid, wait_s):
        job = self.jobs.get(jid)
        if job is None:
            raise ApiError(404, "unknown-job", f"no job {jid}")
        end = time.time() + min(max(wait_s, 0.0), 60.0)
        while job["state"] == "running" and time.time() < end:
            time.sleep(0.05)
        return 200, dict(job)

    def quick(self, cid, fn):
        case = self.case(cid)
        if case.busy:
            raise ApiError(409, "busy", "the case is optimizing; ask again when its job ends", True)
        with case.lock:
            return fn(case)


def handler_for(server):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # requests are not logged (they carry the token)
            pass

        def send(self, status, body, kind="application/json"):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def handle_any(self, method):
            try:
                if server.token is not None:
                    given = self.headers.get("Authorization", "")
                    if not hmac.compare_digest(given.encode(), f"Bearer {server.token}".encode()):
                        raise ApiError(401, "unauthorized", "the bearer token is not this server's")
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except json.JSONDecodeError as e:
                    raise ApiError(400, "bad-request", f"request body: {e}")
                if not parts or parts[0] != "v1":
                    raise ApiError(404, "unsupported-version",
                                   f"no route {url.path}: this server speaks protocol version 1")
                route = (method, *parts[1:2], *(["*"] if len(parts) > 2 else []), *parts[3:4])
                if route == ("GET", "hello"):
                    out = (200, {"protocol": "autoplan-tps", "versions": [1],
                                 "server": "pyRadPlan adapter", "tps": "pyRadPlan (TG-119)"})
                elif route == ("POST", "cases"):
                    out = server.open_case(body)
                elif route == ("DELETE", "cases", "*"):
                    server.case(parts[2])
                    server.cases.pop(parts[2], None)
                    self.send_response(204)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                elif route == ("POST", "cases", "*", "optimize"):
                    out = server.start_job(parts[2], body)
                elif route == ("GET", "jobs", "*"):
                    wait = float(parse_qs(url.query).get("wait_s", ["0"])[0])
                    out = server.job(parts[2], wait)
                elif route == ("GET", "cases", "*", "objectives"):
                    out = (200, server.quick(parts[2], lambda c: {"objectives": c.objectives}))
                elif route == ("POST", "cases", "*", "normalize"):
                    def norm(c):
                        key = body.get("idempotency_key", "")
                        if key not in c.normalized:
                            c.normalized[key] = c.normalize()
                        return {"factor": c.normalized[key]}
                    out = (200, server.quick(parts[2], norm))
                elif route == ("GET", "cases", "*", "report"):
                    out = (200, server.quick(parts[2], lambda c: c.report()))
                elif route == ("GET", "cases", "*", "plan"):
                    out = (200, server.quick(parts[2], lambda c: c.plan()))
                elif route == ("GET", "cases", "*", "dose"):
                    self.send(200, server.quick(parts[2], lambda c: c.dose_body()),
                              "application/vnd.autoplan.dose")
                    return
                else:
                    raise ApiError(404, "not-found", f"no route {method} {url.path}")
                self.send(*out)
            except ApiError as e:
                self.send(e.status, {"error": {"code": e.code, "message": e.message,
                                               "temporary": e.temporary}})

        def do_GET(self):
            self.handle_any("GET")

        def do_POST(self):
            self.handle_any("POST")

        def do_DELETE(self):
            self.handle_any("DELETE")

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export-tg119")
    e.add_argument("dir")
    s = sub.add_parser("serve")
    s.add_argument("--addr", default="127.0.0.1:8788")
    s.add_argument("--token-env", default="AUTOPLAN_TPS_TOKEN")
    s.add_argument("--beams", type=int, default=5)
    s.add_argument("--grid-mm", type=float, default=5.0)
    a = p.parse_args()
    if a.cmd == "export-tg119":
        export_tg119(a.dir)
        return
    token = os.environ.get(a.token_env, "").strip() or None
    host, port = a.addr.rsplit(":", 1)
    if token is None and host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"{a.token_env} is not set: set it to serve a non-loopback address")
    httpd = ThreadingHTTPServer((host, int(port)), handler_for(Server(token, a.beams, a.grid_mm)))
    print(f"serving pyRadPlan (TG-119) on http://{host}:{httpd.server_address[1]} (protocol v1)",
          flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
