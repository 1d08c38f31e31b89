"""Where runs of one model part ways (`wgllm diff`): the named checkpoints of the numpy reference
(reference.forward(checkpoints=)), the Python GPU engine (GpuEngine.checkpoints) and the browser
engine (Engine.checkpoints, run in Node on Dawn by tests/browser/dawn_engine.mjs), compared in
program order for a prefill of the same ids.

Each pair of runs gets, per checkpoint, the largest absolute difference, that relative to the
checkpoint's scale (its largest |value| in the first run) and whether the two are bit-identical;
the report names the first checkpoint where a pair passes the tolerance and the first where it is
not bit-identical. A wrong kernel shows up at the first checkpoint after its launch, not in the
logits at the end.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TOL = 1e-3  # relative to the checkpoint's scale (the reference keeps the engine's KV type: f16 rounding is on both sides)


class BrowserUnavailable(RuntimeError):
    """The browser engine cannot run here (no checkout with the bundle, Node, Dawn or its lavapipe)."""


def compare(runs: dict[str, dict[str, np.ndarray]], tol: float = DEFAULT_TOL) -> dict:
    """runs: {run name: {checkpoint: array}}, the first run's checkpoints in program order. Returns
    {tol, runs, rows: [{name, shape, scale, pairs: {"a~b": {max_abs, rel, identical}}}],
    first_beyond_tol: {"a~b": name or None}, first_not_identical: {...}}; a checkpoint missing
    from a run counts as beyond the tolerance there (rel None)."""
    names = list(runs)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    first = {f"{a}~{b}": None for a, b in pairs}
    inexact = dict(first)
    rows = []
    for cp in runs[names[0]]:
        base = np.asarray(runs[names[0]][cp], np.float32)
        scale = float(np.abs(base).max()) if base.size else 0.0
        row = {"name": cp, "shape": list(base.shape), "scale": scale, "pairs": {}}
        for a, b in pairs:
            key = f"{a}~{b}"
            x, y = runs[a].get(cp), runs[b].get(cp)
            if x is None or y is None or np.shape(x) != np.shape(y):
                row["pairs"][key] = {"max_abs": None, "rel": None, "identical": False, "note": f"missing or of another shape in {b if x is not None else a}"}
                first[key] = first[key] or cp
                inexact[key] = inexact[key] or cp
                continue
            x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
            d = float(np.abs(x - y).max()) if x.size else 0.0
            finite = bool(np.isfinite(x).all() and np.isfinite(y).all())
            rel = d / scale if scale > 0 else (0.0 if d == 0 else float("inf"))
            rel = rel if finite else float("inf")
            same = bool(np.array_equal(x.view(np.uint32), y.view(np.uint32)))
            row["pairs"][key] = {"max_abs": d, "rel": rel, "identical": same}
            if rel > tol and first[key] is None:
                first[key] = cp
            if not same and inexact[key] is None:
                inexact[key] = cp
        rows.append(row)
    return {"tol": tol, "runs": names, "rows": rows, "first_beyond_tol": first, "first_not_identical": inexact}


def summary(report: dict) -> list[str]:
    """One line per pair: where it first passes the tolerance (with the numbers), or its worst checkpoint."""
    lines = []
    by_name = {r["name"]: r for r in report["rows"]}
    for key, cp in report["first_beyond_tol"].items():
        a, b = key.split("~")
        if cp is not None:
            p = by_name[cp]["pairs"][key]
            how = p.get("note") or f"max |diff| {p['max_abs']:.3g} = {p['rel']:.3g} of its scale {by_name[cp]['scale']:.3g}"
            lines.append(f"{a} vs {b}: first beyond {report['tol']:g} at {cp} ({how})")
            continue
        worst = max(report["rows"], key=lambda r: r["pairs"][key]["rel"])
        exact = report["first_not_identical"][key]
        same = "bit-identical at every checkpoint" if exact is None else f"first not bit-identical at {exact}"
        lines.append(f"{a} vs {b}: within {report['tol']:g} at every checkpoint (worst {worst['pairs'][key]['rel']:.3g} at {worst['name']}); {same}")
    return lines


def format_report(report: dict) -> str:
    keys = list(report["first_beyond_tol"])
    head = f"{'checkpoint':<24} {'shape':<12} {'scale':>9}  " + "  ".join(f"{k.replace('~', ' vs '):>22}" for k in keys)
    lines = [head]
    for r in report["rows"]:
        cells = []
        for k in keys:
            p = r["pairs"][k]
            cells.append(f"{'missing':>22}" if p["rel"] is None else f"{'identical' if p['identical'] else format(p['rel'], '.3g') + ' rel':>22}")
        lines.append(f"{r['name']:<24} {'x'.join(map(str, r['shape'])):<12} {r['scale']:>9.3g}  " + "  ".join(cells))
    return "\n".join(lines + [""] + summary(report))


def browser_checkpoints(model_path: str | os.PathLike, ids: list[int], options: dict, timeout: float = 600) -> dict[str, np.ndarray]:
    """The browser engine's checkpoints (Engine.checkpoints) for `ids`, run in Node on Dawn over the
    lavapipe that scripts/lavapipe-for-dawn.sh fetches; options: the engine's (maxTokens, kernels,
    forceF32, ...; allLogits is set). BrowserUnavailable says what is missing."""
    script, bundle = REPO / "tests" / "browser" / "dawn_engine.mjs", REPO / "web" / "dist" / "genai_bundle.mjs"
    icd, node = REPO / "build" / "lavapipe-dawn" / "lvp_icd.json", shutil.which("node")
    missing = [
        what
        for what, ok in (
            (f"{script} (a source checkout)", script.is_file()),
            (f"{bundle} (cd web && npm run build)", bundle.is_file()),
            (f"{REPO / 'web' / 'node_modules' / 'webgpu'} (cd web && npm ci)", (REPO / "web" / "node_modules" / "webgpu").is_dir()),
            (f"{icd} (bash scripts/lavapipe-for-dawn.sh build/lavapipe-dawn)", icd.is_file()),
            ("node on PATH", node is not None),
        )
        if not ok
    ]
    if missing:
        raise BrowserUnavailable("the browser engine needs " + ", ".join(missing))
    with tempfile.TemporaryDirectory(prefix="wgllm-diff-") as tmp:
        job, result = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job.write_text(json.dumps({"runs": [], "checkpoints": [{"file": str(Path(model_path).resolve()), "options": {**options, "allLogits": True}, "ids": ids}]}))
        env = {**os.environ, "VK_ICD_FILENAMES": str(icd), "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", tmp)}
        run = subprocess.run([node, str(script), str(job), str(result)], env=env, capture_output=True, text=True, timeout=timeout)
        if run.returncode != 0 or not result.is_file():
            raise BrowserUnavailable(f"the browser engine failed in Node (exit {run.returncode}): {run.stderr.strip()[-800:]}")
        got = json.loads(result.read_text())["checkpoints"][0]
    return {c["name"]: np.frombuffer(base64.b64decode(c["f32"]), np.float32).reshape(-1, c["width"]) for c in got}


def run_diff(
    model_path: str, ids: list[int], *, kernels: str | None = None, force_f32: bool = False, tol: float = DEFAULT_TOL, browser: bool = True
) -> tuple[dict, str | None]:
    """The reference, the Python GPU engine and (browser=True) the browser engine on a prefill of
    `ids`, all for a context of len(ids) tokens (which picks LongRoPE's factors) and the reference's
    KV cache of the engine's type (float16 with an f16 cache); returns (compare's report, why the
    browser run is absent or None)."""
    from wgllm import reference
    from wgllm.gpu.engine import GpuEngine
    from wgllm.model import load_model

    if len(ids) < 2:
        raise ValueError(f"--ids: give at least 2 token ids (got {len(ids)}): the checkpoints come from a prefill")
    model = load_model(model_path)
    engine = GpuEngine(model, max_tokens=len(ids), all_logits=True, kernels=kernels, force_f32=force_f32)
    try:
        got = engine.checkpoints(ids)
        family, kv_dtype = engine.kernels, np.float16 if engine.kv_f16 else None
    finally:
        engine.close()
    ref: dict = {}
    reference.forward(model, ids, cache=reference.KVCache(kv_dtype, n_ctx=len(ids)), checkpoints=ref)
    runs = {"reference": ref, "python": got}
    absent = None
    if browser:
        try:
            runs["browser"] = browser_checkpoints(model_path, ids, {"maxTokens": len(ids), "kernels": family, "forceF32": force_f32})
        except BrowserUnavailable as e:
            absent = str(e)
    return compare(runs, tol), absent


def explain(model, ids: list[int], kv_dtype=None, tol: float = DEFAULT_TOL, **engine_options) -> str:
    """For a test's failure message: where the Python GPU engine (GpuEngine(model, **engine_options),
    all_logits and max_tokens set here) first parts from the reference on a prefill of `ids`
    (kv_dtype: the reference's KV cache type, np.float16 for an engine with an f16 cache)."""
    from wgllm import reference
    from wgllm.gpu.engine import GpuEngine

    ref: dict = {}
    reference.forward(model, ids, cache=reference.KVCache(kv_dtype, n_ctx=len(ids)), checkpoints=ref)
    engine = GpuEngine(model, **{**engine_options, "max_tokens": len(ids), "all_logits": True})
    try:
        got = engine.checkpoints(ids)
    finally:
        engine.close()
    return "checkpoints: " + "; ".join(summary(compare({"reference": ref, "python": got}, tol)))
