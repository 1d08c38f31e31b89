"""bench/gpu.sh's measurements on one adapter, each part under a time budget, into one JSON file.

    python bench/gpu_bench.py [--quick] [--budget 450] [--out FILE | --out-dir bench/results]

Parts, in this order; a part (or the rest of one) that would overrun the budget is skipped and the
reason recorded under "skipped", so the run ends in time and the JSON says what is missing:
1. adapter: wgpu-py's adapter info, features and limits, the kernel family wgllm picks for it, and
   nvidia-smi's view of the GPU where that tool exists.
2. copy: shaders/copy.wgsl's bandwidth (bytes read + written, wgllm.bench.copy_bandwidth) on 64 MiB
   (what `wgllm bench` uses) and on 1 GiB (far past any GPU's L2 cache).
3. dispatch: 0, 1, 100 and 1000 launches of a trivial kernel (copy.wgsl on 16 bytes, one
   workgroup) in one compute pass of one submission: host time to record them, and time from submit
   until the queue has drained; the cost of a launch is the slope from 1 to 1000.
4. sweep: decode matvec (n = 1) of each weight type on each (n_out, k) shape, both kernel families
   on the same uploaded weights: GB/s = the repacked weight bytes one matvec reads / its time.
   Launches are timed many to one pass (as wgllm.bench.timed does, after a warm-up), cycling over
   enough copies of the weight that they exceed the GPU's L2 cache (--rotate-mib), so each matvec
   reads its weight from memory as a model's layers do. Both families' outputs are compared (their
   largest difference relative to the largest output), so a fast kernel that computes something
   else shows. gpu/cpu is the families' speed ratio.
5. models: `wgllm bench` (wgllm.bench.bench_model: load, prefill and decode tok/s, decode weight rate
   against the copy bandwidth) for each model and family, each run in a child process with a time
   limit. The models are written on this machine by bench/synth_model.py, in the background from the
   start of the run: Llama-shape presets of 1.5B and 7B parameters (Q4_0 layers, Q6_K output), and
   SmolLM2-135M Q4_1 and Gemma-3-270M Q4_K_M rebuilt from their real headers (bench/gpu_prepare.sh's
   skeletons) with random weights. Every model here has random weights: speeds, not text, are measured.

Nothing asserts a speed; the targets of issue 10 are evaluated and printed as met / not met.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import synth_model  # noqa: E402

FAMILIES = ("gpu", "cpu")
SWEEP_TYPES = ("Q4_0", "Q8_0", "Q4_K", "Q6_K", "F16")
SHAPES = ((4096, 4096), (4096, 14336), (14336, 4096), (151936, 2048))  # (n_out, k)
QUICK_SHAPES = ((256, 256), (256, 1024), (1024, 256), (4096, 256))
SKELETONS = ROOT / "build" / "gpu-carry" / "skeletons"
# label -> (how synth_model.py writes it, what it is)
MODELS = {
    "llama-1.5b-q4_0": (["--preset", "llama-1.5b", "--type", "Q4_0"], "Llama architecture with Qwen2.5-1.5B's dimensions, 151936 tokens (tied, Q6_K); Q4_0 layers; synthetic vocabulary; random weights"),
    "llama-7b-q4_0": (["--preset", "llama-7b", "--type", "Q4_0"], "Llama architecture with Mistral-7B's dimensions, 32000 tokens; Q4_0 layers, Q6_K output; synthetic vocabulary; random weights"),
    "smollm2-135m-q4_1": (["--skeleton", str(SKELETONS / "smollm2-135m-q4_1")], "the real SmolLM2-135M-Instruct Q4_1 file's header (metadata, tokenizer, tensor types and shapes) with random weights"),
    "gemma3-270m-q4_k_m": (["--skeleton", str(SKELETONS / "gemma3-270m-q4_k_m")], "the real Gemma-3-270M Q4_K_M file's header (metadata, tokenizer, tensor types and shapes) with random weights"),
}
QUICK_MODELS = {
    "llama-tiny-q4_0": (["--preset", "tiny", "--type", "Q4_0"], "tiny Llama-shape preset (2 layers, 4096 tokens); random weights"),
    "smollm2-135m-q4_1": MODELS["smollm2-135m-q4_1"],
}
# (name, model label, result key, threshold). Decode is held against the large copy: `wgllm bench`'s
# own copy of 64 MiB (decode_bandwidth_fraction, kept beside it) fits half in an H100/H200's 50-60 MB L2.
TARGETS = (
    ("gpu-family decode >= 0.6 of copy on 7B", "llama-7b-q4_0", "decode_fraction_of_large_copy", 0.6),
    ("gpu-family decode >= 0.4 of copy on 1.5B", "llama-1.5b-q4_0", "decode_fraction_of_large_copy", 0.4),
    ("gpu-family prefill >= 20x decode on 1.5B", "llama-1.5b-q4_0", "prefill_over_decode", 20.0),
)


def log(text: str = "") -> None:
    print(text, flush=True)


def python_cmd() -> list[str]:
    """This interpreter, with -S when it runs without site-packages (gpu.sh's hermetic run)."""
    return [sys.executable, *(["-S"] if sys.flags.no_site else [])]


class Budget:
    def __init__(self, seconds: float):
        self.start, self.seconds = time.monotonic(), seconds

    @property
    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    @property
    def used(self) -> float:
        return time.monotonic() - self.start


# -- 1. adapter ----------------------------------------------------------------------------------------


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return sorted(_plain(v) for v in value) if isinstance(value, (set, frozenset)) else [_plain(v) for v in value]
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def adapter_part(ctx) -> dict:
    import wgpu

    info = dict(ctx.adapter.info)
    out = {
        "name": ctx.adapter_name,
        "info": _plain(info),
        "features": _plain(set(ctx.adapter.features)),
        "limits": _plain(dict(ctx.adapter.limits)),
        "device_features": sorted(ctx.features),
        "cpu_adapter": ctx.cpu_adapter,
        "default_kernels": ctx.kernels(),
        "wgpu_py": wgpu.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "env": {k: os.environ[k] for k in ("WGPU_BACKEND_TYPE", "VK_DRIVER_FILES", "VK_ICD_FILENAMES", "WGLLM_GPU_LOADER") if k in os.environ},
    }
    smi = shutil.which("nvidia-smi")
    if smi:
        query = "name,driver_version,memory.total,clocks.max.sm,clocks.max.memory,pcie.link.gen.max"
        try:
            done = subprocess.run([smi, f"--query-gpu={query}", "--format=csv"], capture_output=True, text=True, timeout=20)
            out["nvidia_smi"] = done.stdout.strip() or done.stderr.strip()
        except (OSError, subprocess.SubprocessError) as e:
            out["nvidia_smi"] = f"failed: {e}"
    return out


# -- 2. copy ---------------------------------------------------------------------------------------------


def copy_part(ctx, quick: bool) -> dict:
    from wgllm.bench import copy_bandwidth

    sizes = (16 << 20, 64 << 20) if quick else (64 << 20, 1 << 30)
    out = {}
    for nbytes in sizes:
        moved = min(nbytes, ctx.max_binding) // 16 * 16
        first = copy_bandwidth(ctx, moved, reps=1)
        reps = max(1, min(20, int(0.3 / (2 * moved / (first * 1e9)))))  # ~0.3 s a sample on any adapter
        samples = [copy_bandwidth(ctx, moved, reps=reps) for _ in range(3)]
        out[f"{moved >> 20}MiB"] = {"bytes": moved, "gb_s": statistics.median(samples), "samples_gb_s": samples, "reps": reps}
    out["large_gb_s"] = out[f"{min(sizes[-1], ctx.max_binding) // 16 * 16 >> 20}MiB"]["gb_s"]
    return out


# -- 3. dispatch cost --------------------------------------------------------------------------------------


def dispatch_part(ctx, repeats: int = 7) -> dict:
    pipeline = ctx.pipeline("copy.wgsl")
    params = ctx.buffer(struct.pack("<I", 1), uniform=True, label="dispatch probe params")
    group = ctx.bind_group(pipeline, [params, ctx.buffer(size=16), ctx.buffer(size=16)])
    done = ctx.buffer(size=4, label="dispatch probe read-back")

    def once(count: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        enc = ctx.device.create_command_encoder()
        cpass = enc.begin_compute_pass()
        for _ in range(count):
            ctx.dispatch(cpass, pipeline, group, (1, 1, 1))
        cpass.end()
        commands = enc.finish()
        t1 = time.perf_counter()
        ctx.device.queue.submit([commands])
        ctx.device.queue.read_buffer(done)  # returns once the queue has drained
        return t1 - t0, time.perf_counter() - t1

    once(10)  # warm-up
    rows = {}
    for count in (0, 1, 100, 1000):
        runs = [once(count) for _ in range(repeats)]
        rows[str(count)] = {"record_s": statistics.median(r[0] for r in runs), "submit_to_drained_s": statistics.median(r[1] for r in runs)}
    slope = lambda key: (rows["1000"][key] - rows["1"][key]) / 999 * 1e6  # noqa: E731
    return {
        "kernel": "copy.wgsl, 16 bytes, 1 workgroup",
        "repeats": repeats,
        "counts": rows,
        "gpu_us_per_dispatch": slope("submit_to_drained_s"),
        "record_us_per_dispatch": slope("record_s"),
    }


# -- 4. matvec sweep -----------------------------------------------------------------------------------------


def _time_matvecs(ctx, copies: list, x, y, family: str, target_s: float, max_reps: int) -> tuple[float, int]:
    from wgllm.bench import timed
    from wgllm.gpu import weights

    def record(cpass) -> None:
        for w in copies:
            weights.matmul(ctx, cpass, w, x, y, 1, kernels=family)

    once = timed(ctx, record, 1)
    reps = max(1, min(max_reps, math.ceil(target_s / max(once, 1e-7))))
    return timed(ctx, record, reps) / len(copies), reps


def sweep_part(ctx, shapes, budget: Budget, stop_at: float, quick: bool, rotate_bytes: int, skipped: list) -> list[dict]:
    from gguf import GGMLQuantizationType as T

    from wgllm.gpu import weights

    rows = []
    points = [(s, t) for s in shapes for t in SWEEP_TYPES]
    for i, ((n_out, k), tname) in enumerate(points):
        if budget.used > stop_at:
            skipped.append({"part": "sweep", "what": [f"{n}x{kk} {t}" for (n, kk), t in points[i:]],
                            "reason": f"the sweep's share of the budget ({stop_at:.0f} s) was spent after {i} of {len(points)} points"})
            break
        t = T[tname]
        started = time.monotonic()
        raw = synth_model.random_rows(t, n_out, k, seed=i)
        repacked = weights.repack(raw, t, (n_out, k), name=f"sweep {tname} {n_out}x{k}")
        nbytes = sum(a.nbytes for a in repacked.arrays)
        n_copies = max(1, min(64, -(-rotate_bytes // nbytes)))
        copies = [weights.upload(ctx, repacked, label=f"sweep {tname}") for _ in range(n_copies)]
        del raw, repacked
        rng = np.random.default_rng(i)
        x = ctx.buffer(rng.standard_normal(k).astype(np.float32), label="sweep x")
        y = ctx.buffer(size=n_out * 4, label="sweep y")
        row = {"n_out": n_out, "k": k, "type": tname, "weight_bytes": nbytes, "copies": n_copies}
        outputs = {}
        for family in FAMILIES:
            ctx.write(y, np.full(n_out, np.nan, np.float32))
            # ~0.1 s of launches, at most ~20000 of them (recording costs the host ~10-30 us each)
            sec, reps = _time_matvecs(ctx, copies, x, y, family, 0.03 if quick else 0.1, max(1, (200 if quick else 20000) // n_copies))
            outputs[family] = ctx.read(y, np.float32, (n_out,))
            row[family] = {"s": sec, "gb_s": nbytes / sec / 1e9, "reps": reps}
        scale = float(np.max(np.abs(outputs["cpu"])))
        row["families_max_rel_diff"] = float(np.max(np.abs(outputs["gpu"] - outputs["cpu"]))) / scale if scale > 0 else float("nan")
        row["gpu_over_cpu"] = row["gpu"]["gb_s"] / row["cpu"]["gb_s"]
        row["wall_s"] = time.monotonic() - started
        rows.append(row)
        log(f"  {n_out:>6}x{k:<6} {tname:5} {nbytes / 1e6:8.1f} MB x{n_copies:<3} gpu {row['gpu']['gb_s']:8.1f} GB/s  "
            f"cpu {row['cpu']['gb_s']:8.1f} GB/s  gpu/cpu {row['gpu_over_cpu']:6.2f}  diff {row['families_max_rel_diff']:.1e}")
        del copies, x, y
    return rows


# -- 5. models -------------------------------------------------------------------------------------------------


def start_generators(models: dict, folder: Path, quick: bool) -> dict:
    """Popen per model of bench/synth_model.py, all at once, sharing the CPUs."""
    folder.mkdir(parents=True, exist_ok=True)
    workers = max(1, (os.cpu_count() or 1) // len(models))
    procs = {}
    for label, (args, _) in models.items():
        path = folder / f"{label}.gguf"
        path.unlink(missing_ok=True)
        logf = open(folder / f"{label}.log", "w")
        cmd = [*python_cmd(), str(HERE / "synth_model.py"), *args, "--out", str(path), "--workers", str(workers)]
        procs[label] = (subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT), path, logf, time.monotonic())
    return procs


def wait_generator(label: str, procs: dict, budget: Budget, reserve: float) -> tuple[Path | None, str]:
    """(model path, synth_model.py's last line) once written, or (None, why not)."""
    proc, path, logf, _ = procs[label]
    try:
        proc.wait(timeout=max(0.1, budget.left - reserve))
    except subprocess.TimeoutExpired:
        return None, f"still being written when {budget.left:.0f} s of the budget were left"
    logf.close()
    lines = Path(logf.name).read_text().strip().splitlines() or [""]
    if proc.returncode != 0 or not path.is_file():
        return None, f"synth_model.py exited {proc.returncode}: {' | '.join(lines[-3:])}"
    return path, lines[-1]


def run_model(path: Path, family: str, prompt_tokens: int, gen_tokens: int, timeout: float, scratch: Path) -> dict:
    out = scratch / f".{path.stem}-{family}.json"
    out.unlink(missing_ok=True)
    cmd = [*python_cmd(), str(Path(__file__).resolve()), "--bench-one", str(path), "--kernels", family,
           "--prompt-tokens", str(prompt_tokens), "--gen-tokens", str(gen_tokens), "--json", str(out)]
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return {"error": f"timed out after {timeout:.0f} s", "output_tail": text[-800:]}
    wall = time.monotonic() - started
    for line in done.stdout.splitlines():
        log(f"    {line}")
    if done.returncode != 0 or not out.is_file():
        return {"error": f"exit {done.returncode}", "output_tail": (done.stdout + done.stderr)[-1500:], "wall_s": wall}
    result = json.loads(out.read_text())
    out.unlink()
    result["wall_s"] = wall
    return result


def bench_one(args) -> None:
    """Child mode: one `wgllm bench` run, its table on stdout and its result as JSON."""
    from wgllm import bench

    result = bench.bench_model(args.bench_one, args.prompt_tokens, args.gen_tokens, kernels=args.kernels)
    print(bench.format_table(result))
    bench.write_json(result, args.json)


# -- report -------------------------------------------------------------------------------------------------------


def evaluate_targets(result: dict) -> list[dict]:
    out = []
    runs = {(m["label"], m.get("kernels_requested")): m for m in result.get("models", [])}
    for name, label, key, threshold in TARGETS:
        run = runs.get((label, "gpu"))
        value = run.get(key) if run else None
        entry = {"target": name, "value": value, "threshold": threshold, "met": None if value is None else value >= threshold}
        if run and key == "decode_fraction_of_large_copy":
            entry["against_bench_copy"] = run.get("decode_bandwidth_fraction")
        out.append(entry)
    sweep = result.get("sweep") or []
    if sweep:
        worst = min(sweep, key=lambda r: r["gpu_over_cpu"])
        below = [f"{r['n_out']}x{r['k']} {r['type']}: {r['gpu_over_cpu']:.2f}" for r in sweep if r["gpu_over_cpu"] < 5]
        full = not any(s.get("part") == "sweep" for s in result.get("skipped", [])) and not result.get("quick")
        out.append({"target": "gpu family >= 5x cpu family on every sweep shape", "value": worst["gpu_over_cpu"], "threshold": 5.0,
                    "met": (not below) if full else (False if below else None), "below": below,
                    "note": "" if full else "the sweep is not the full one (quick run or points skipped)"})
    return out


def print_report(result: dict) -> None:
    a = result.get("adapter", {})
    log(f"\nadapter: {a.get('name')} (default kernels {a.get('default_kernels')}, features {', '.join(a.get('device_features', []))})")
    c = result.get("copy")
    if c:
        log("copy:    " + ", ".join(f"{k} {v['gb_s']:.1f} GB/s" for k, v in c.items() if isinstance(v, dict)))
    d = result.get("dispatch")
    if d:
        log(f"dispatch: {d['gpu_us_per_dispatch']:.2f} us a launch on the queue, {d['record_us_per_dispatch']:.2f} us to record; "
            + ", ".join(f"{n}: {r['submit_to_drained_s'] * 1e3:.3f} ms" for n, r in d["counts"].items()))
    if result.get("sweep"):
        copy = (c or {}).get("large_gb_s")
        log(f"\n{'shape':>14} {'type':5} {'MB':>8} {'gpu GB/s':>9} {'cpu GB/s':>9} {'gpu/cpu':>8} {'gpu/copy':>8}")
        for r in result["sweep"]:
            frac = f"{r['gpu']['gb_s'] / copy:8.3f}" if copy else "       -"
            log(f"{r['n_out']:>7}x{r['k']:<6} {r['type']:5} {r['weight_bytes'] / 1e6:8.1f} {r['gpu']['gb_s']:9.1f} {r['cpu']['gb_s']:9.1f} {r['gpu_over_cpu']:8.2f} {frac}")
    if result.get("models"):
        log(f"\n{'model':20} {'kernels':7} {'load s':>7} {'prefill':>9} {'decode':>8} {'dec/copy':>8} {'dec/large':>9} {'pf/dec':>7} {'launches':>8}")
        for m in result["models"]:
            if "error" in m:
                log(f"{m['label']:20} {m.get('kernels_requested', ''):7} {m['error']}")
                continue
            log(f"{m['label']:20} {m['kernels']:7} {m['load_s']:7.2f} {m['prefill_tok_s']:9.1f} {m['decode_tok_s']:8.2f} "
                f"{m['decode_bandwidth_fraction']:8.3f} {m.get('decode_fraction_of_large_copy', float('nan')):9.3f} "
                f"{m['prefill_over_decode']:7.1f} {m['dispatches_per_decode_step']:8d}")
    for t in result.get("targets", []):
        state = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        value = "-" if t["value"] is None else f"{t['value']:.3f}"
        log(f"target: {t['target']}: {value} -> {state}{' (' + t['note'] + ')' if t.get('note') else ''}")
    for s in result.get("skipped", []):
        what = s.get("what")
        what = f" ({', '.join(what) if isinstance(what, list) else what})" if what else ""
        log(f"skipped: {s['part']}{what}: {s['reason']}")


def write_result(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(result, indent=1, allow_nan=True) + "\n")
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--quick", action="store_true", help="small shapes, a tiny preset model and SmolLM2, few tokens: a check of the script on a CPU adapter")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for the whole run (default 450)")
    ap.add_argument("--sweep-share", type=float, default=0.3, help="fraction of the budget after which the sweep stops (default 0.3)")
    ap.add_argument("--rotate-mib", type=int, default=None, help="matvec weights cycled per timing (default 512; --quick: 0)")
    ap.add_argument("--out", type=Path, help="the JSON file to write")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results", help="folder for DATE-ADAPTER-gpu-bench.json when --out is not given")
    ap.add_argument("--model-dir", type=Path, default=Path("/tmp/wgllm-gpu-models"))
    ap.add_argument("--models", default=None, help="comma-separated labels to run (default: all of the run's models)")
    ap.add_argument("--bench-one", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--kernels", choices=FAMILIES, help=argparse.SUPPRESS)
    ap.add_argument("--prompt-tokens", type=int, default=None)
    ap.add_argument("--gen-tokens", type=int, default=None)
    ap.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bench_one:
        return bench_one(args)

    budget = Budget(args.budget)
    quick = args.quick
    prompt_tokens = args.prompt_tokens or (8 if quick else 128)
    gen_tokens = args.gen_tokens or (4 if quick else 128)
    models = dict(QUICK_MODELS if quick else MODELS)
    if args.models:
        wanted = args.models.split(",")
        unknown = [m for m in wanted if m not in models]
        if unknown:
            ap.error(f"--models: unknown {', '.join(unknown)} (this run's models: {', '.join(models)})")
        models = {k: v for k, v in models.items() if k in wanted}
    procs = start_generators(models, args.model_dir, quick)

    from wgllm.gpu.runtime import get_context

    result: dict = {"schema": 1, "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "quick": quick,
                    "budget_s": args.budget, "skipped": []}
    try:
        ctx = get_context()
    except Exception as e:  # no adapter: say so in the JSON too, where the device tool brings it back
        result["adapter"] = {"error": f"{type(e).__name__}: {e}"}
        write_result(result, args.out or args.out_dir / f"{datetime.date.today().isoformat()}-no-adapter-gpu-bench.json")
        for proc, *_ in procs.values():
            proc.kill()
        sys.exit(f"gpu_bench.py: no adapter: {e}")
    result["adapter"] = adapter_part(ctx)
    slug = re.sub(r"[^a-z0-9]+", "-", str(result["adapter"]["info"].get("device", "adapter")).lower()).strip("-")[:40] or "adapter"
    out = args.out or args.out_dir / f"{datetime.date.today().isoformat()}-{slug}-gpu-bench{'-quick' if quick else ''}.json"
    log(f"adapter: {result['adapter']['name']}; writing {out}")
    write_result(result, out)

    result["copy"] = copy_part(ctx, quick)
    write_result(result, out)
    result["dispatch"] = dispatch_part(ctx)
    print_report(result)
    write_result(result, out)

    log("\nmatvec sweep:")
    rotate = (args.rotate_mib if args.rotate_mib is not None else (0 if quick else 512)) << 20
    result["sweep_settings"] = {"rotate_bytes": rotate, "types": list(SWEEP_TYPES)}
    result["sweep"] = []
    try:
        result["sweep"] = sweep_part(ctx, QUICK_SHAPES if quick else SHAPES, budget, args.budget * args.sweep_share, quick, rotate, result["skipped"])
    except Exception as e:  # a kernel or upload failing must not lose the rest of the run
        result["skipped"].append({"part": "sweep", "reason": f"failed: {type(e).__name__}: {e}"})
        log(f"sweep failed: {e}")
    write_result(result, out)

    log("\nmodels:")
    result["models"] = []
    result["model_settings"] = {"prompt_tokens": prompt_tokens, "gen_tokens": gen_tokens}
    cap = 120.0 if quick else 150.0
    paths = {}
    for family in FAMILIES:
        for label, (_, what) in models.items():
            if label not in paths:
                paths[label] = wait_generator(label, procs, budget, reserve=15)
                log(f"  {label}: {paths[label][1]}")
            path, why = paths[label]
            if path is None:
                result["skipped"].append({"part": "models", "what": f"{label} {family}", "reason": why})
                continue
            timeout = min(cap, budget.left - 5)
            if timeout < 20:
                result["skipped"].append({"part": "models", "what": f"{label} {family}", "reason": f"{budget.left:.0f} s of the budget left"})
                continue
            log(f"  {label}, {family} family (limit {timeout:.0f} s):")
            run = run_model(path, family, prompt_tokens, gen_tokens, timeout, args.model_dir)
            run.update({"label": label, "kernels_requested": family, "synthetic": what, "file_bytes": path.stat().st_size, "written_by": why})
            if "decode_tok_s" in run and result["copy"].get("large_gb_s"):
                run["decode_fraction_of_large_copy"] = run["weight_bytes_per_token"] * run["decode_tok_s"] / 1e9 / result["copy"]["large_gb_s"]
            result["models"].append(run)
            write_result(result, out)
    for proc, path, logf, _ in procs.values():
        if proc.poll() is None:
            proc.kill()
        logf.close()
        path.unlink(missing_ok=True)

    result["targets"] = evaluate_targets(result)
    result["elapsed_s"] = budget.used
    write_result(result, out)
    print_report(result)
    log(f"\n{out} written in {budget.used:.0f} s")


if __name__ == "__main__":
    main()
