"""wgllm as a wheel, installed off the repository.

The wheel is built from this checkout (`pip wheel . --no-deps`) and installed with its dependencies
into a fresh venv in the system's temp folder: no editable install, the repository not on sys.path,
every command run from a folder outside it. There `wgllm generate --backend gpu` answers on SmolLM2
as the checkout does, `wgllm bench` runs, and `serve-models` serves the demo page, the bundle and the
default model to a real Chromium (tests/browser/demo_chat.mjs), which loads the model and answers as
Python's LlmInference does. The sdist holds only what the wheel needs, a wheel build without a
(current) browser bundle is refused, and the version is web/package.json's everywhere.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from email.message import Message
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSION = json.loads((REPO / "web" / "package.json").read_text())["version"]
QUESTION = "What is the capital of France?"
PAGE_MAX_TOKENS = 48  # the page's maxTokens: SmolLM2's chat-formatted question (37 tokens) and the answer
# what the sdist may hold (setup.py copies the data part into the wheel's wgllm/_data)
SDIST_FILES = ["PKG-INFO", "setup.cfg", "setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "py/wgllm/*.py",
               "py/wgllm/*/*.py", "py/wgllm.egg-info/*", "shaders/*.wgsl", "web/package.json", "web/dist/*.mjs", "web/demo/*"]


def outside_env() -> dict[str, str]:
    """The environment minus what could lead a command back into the checkout or its .venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "WGLLM_SHADER_DIR")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(REPO)))
    return env


def run(cmd: list, cwd: Path, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=outside_env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def repo_data_files() -> dict[str, bytes]:
    """wgllm/_data/<path> -> contents, as setup.py is meant to package them from the checkout."""
    files = {f"shaders/{p.name}": p for p in (REPO / "shaders").glob("*.wgsl")}
    files.update({f"web/dist/{p.name}": p for p in (REPO / "web" / "dist").glob("*.mjs")})
    files.update({f"web/demo/{p.relative_to(REPO / 'web' / 'demo')}": p for p in (REPO / "web" / "demo").rglob("*") if p.is_file()})
    return {f"wgllm/_data/{name}": path.read_bytes() for name, path in files.items()}


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("outside-the-repo")
    assert REPO not in folder.resolve().parents, f"{folder} is inside the repository"
    return folder


@pytest.fixture(scope="module")
def wheel(outside) -> Path:
    out = outside / "dist"
    t0 = time.perf_counter()
    run([sys.executable, "-m", "pip", "wheel", REPO, "--no-deps", "-w", out], cwd=outside)
    (built,) = out.glob("wgllm-*.whl")
    print(f"wheel built in {time.perf_counter() - t0:.1f} s: {built.name}, {built.stat().st_size / 2**20:.2f} MiB")
    return built


@pytest.fixture(scope="module")
def venv(wheel, outside) -> Path:
    """A fresh venv with the wheel and its dependencies (from the package index), nothing else."""
    root = outside / "venv"
    t0 = time.perf_counter()
    run([sys.executable, "-m", "venv", "--without-pip", root], cwd=outside)
    # pip of this interpreter installs into the new venv (--python): the venv needs no pip of its own
    run([sys.executable, "-m", "pip", "--python", root / "bin" / "python", "install", "--no-input", wheel], cwd=outside)
    print(f"fresh venv with the wheel and its dependencies in {time.perf_counter() - t0:.1f} s")
    return root


def test_wheel_holds_the_package_the_shaders_the_bundle_and_the_demo(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if not n.startswith(f"wgllm-{VERSION}.dist-info/")]
        data = {n: z.read(n) for n in names if n.startswith("wgllm/_data/")}
    modules = sorted(n for n in names if not n.startswith("wgllm/_data/"))
    assert modules == sorted(str(p.relative_to(REPO / "py")) for p in (REPO / "py" / "wgllm").rglob("*.py")), "the wheel's modules are the checkout's"
    expected = repo_data_files()
    assert sorted(data) == sorted(expected)
    assert {"wgllm/_data/web/dist/genai_bundle.mjs", "wgllm/_data/web/dist/genai_worker.mjs", "wgllm/_data/web/demo/index.html"} <= set(data)
    assert sum(1 for n in data if n.endswith(".wgsl")) == len(list((REPO / "shaders").glob("*.wgsl"))) > 10
    changed = [n for n in data if data[n] != expected[n]]
    assert not changed, f"the wheel's copies differ from the checkout's: {changed}"
    assert wheel.stat().st_size < 2 * 2**20, f"{wheel.name} is {wheel.stat().st_size} bytes: something big got in"


def test_sdist_holds_only_what_the_wheel_needs_and_builds_the_same_wheel(wheel, tmp_path):
    code = f"from setuptools import build_meta; print(build_meta.build_sdist({str(tmp_path)!r}))"
    name = run([sys.executable, "-c", code], cwd=REPO).stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / name) as tar:
        members = [m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()]
        tar.extractall(tmp_path, filter="data")
    stray = [m for m in members if not any(fnmatch.fnmatch(m, pattern) for pattern in SDIST_FILES)]
    assert not stray, f"the sdist holds files the wheel does not need: {stray}"
    assert {"setup.py", "web/package.json", "web/dist/genai_bundle.mjs", "web/demo/index.html", "shaders/rms_norm.wgsl"} <= set(members)
    # as `python -m build` does: the wheel from the unpacked sdist (this venv's setuptools: no download)
    run([sys.executable, "-m", "pip", "wheel", tmp_path / name.removesuffix(".tar.gz"), "--no-deps", "--no-build-isolation",
         "-w", tmp_path / "from-sdist"], cwd=tmp_path)
    (again,) = (tmp_path / "from-sdist").glob("*.whl")
    with zipfile.ZipFile(wheel) as a, zipfile.ZipFile(again) as b:
        assert sorted(a.namelist()) == sorted(b.namelist())


def test_wheel_build_refuses_a_missing_or_stale_bundle(tmp_path):
    tree = tmp_path / "checkout"
    for name in ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, tree / name)
    shutil.copytree(REPO / "py", tree / "py", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(REPO / "shaders", tree / "shaders")
    shutil.copytree(REPO / "web" / "demo", tree / "web" / "demo")
    shutil.copy2(REPO / "web" / "package.json", tree / "web" / "package.json")
    build = [sys.executable, "-m", "pip", "wheel", tree, "--no-deps", "--no-build-isolation", "-w", tmp_path / "out"]

    missing = run(build, cwd=tmp_path, check=False)
    assert missing.returncode != 0
    assert "the browser bundle is not built (web/dist/genai_bundle.mjs, web/dist/genai_worker.mjs missing)" in missing.stderr + missing.stdout
    assert "npm run build" in missing.stderr + missing.stdout

    (tree / "web" / "dist").mkdir()
    for name in ("genai_bundle.mjs", "genai_worker.mjs"):
        shutil.copy2(REPO / "web" / "dist" / name, tree / "web" / "dist" / name)
    built = time.time() - 3600
    for path in [*(tree / "shaders").iterdir(), tree / "web" / "package.json", *(tree / "web" / "dist").iterdir()]:
        stamp = built - 60 if path.parent.name != "dist" else built
        os.utime(path, (stamp, stamp))  # sources first, then the bundle built from them
    os.utime(tree / "shaders" / "rms_norm.wgsl", (built + 60, built + 60))  # then a shader edited
    stale = run(build, cwd=tmp_path, check=False)
    assert stale.returncode != 0
    assert "web/dist is older than shaders/rms_norm.wgsl" in stale.stderr + stale.stdout
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.whl"))


def test_one_version_for_the_wheel_the_npm_package_and_the_checkout(wheel, venv, outside):
    assert wheel.name.startswith(f"wgllm-{VERSION}-")
    assert run([venv / "bin" / "wgllm", "--version"], cwd=outside).stdout.strip() == f"wgllm {VERSION}"
    import wgllm  # the checkout's editable install reads web/package.json itself

    assert wgllm.__version__ == VERSION  # the bundle's VERSION export: checked in the browser below and in npm_package.spec.ts


def test_installed_package_runs_off_its_own_files(venv, outside):
    code = ("import json, wgllm, wgllm.gpu.runtime as r, wgllm.server as s; "
            "print(json.dumps([wgllm.__file__, str(r.SHADER_DIR), str(s.WEB_DIR)]))")
    module, shaders, web = json.loads(run([venv / "bin" / "python", "-c", code], cwd=outside).stdout)
    site = Path(module).parent
    assert site.is_relative_to(venv) and Path(shaders) == site / "_data" / "shaders" and Path(web) == site / "_data" / "web"
    assert not any(Path(p).is_relative_to(REPO) for p in (module, shaders, web))


@pytest.fixture(scope="module")
def python_answer(outside) -> dict:
    """The checkout's LlmInference (WebGPU, f32 KV cache as in the browser) on SmolLM2's chat-formatted
    QUESTION with the page's options: {model, prompt, answer} (tests/browser/demo_fixtures.py)."""
    out = outside / "demo-expected.json"
    run([sys.executable, REPO / "tests" / "browser" / "demo_fixtures.py", out, QUESTION, PAGE_MAX_TOKENS], cwd=REPO)
    expected = json.loads(out.read_text())
    assert expected["answer"].strip(), "Python's answer is empty: nothing to compare"
    return expected


def test_generate_on_the_gpu_answers_as_the_checkout_does(venv, outside, smollm2_path, python_answer):
    # the CLI's sampling defaults are LlmInference's (top-k 40, temperature 0.8, seed 0), as the page's are
    got = run([venv / "bin" / "wgllm", "generate", "--backend", "gpu", "--force-f32", "--model", smollm2_path,
               "--prompt", python_answer["prompt"], "--max-tokens", PAGE_MAX_TOKENS], cwd=outside).stdout
    assert got == python_answer["answer"] + "\n"


def test_bench_runs(venv, outside, smollm2_path):
    out = outside / "bench.json"
    table = run([venv / "bin" / "wgllm", "bench", "--model", smollm2_path, "--prompt-tokens", 8, "--gen-tokens", 4, "--json", out], cwd=outside).stdout
    result = json.loads(out.read_text())
    assert result["prompt_tokens"] == 8 and result["gen_tokens"] == 4 and result["kv_cache_type"] in ("f16", "f32")
    assert result["load_s"] > 0 and result["prefill_tok_s"] > 0 and result["decode_tok_s"] > 0
    assert "decode" in table and "prefill" in table


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, headers: dict | None = None) -> tuple[int, Message, bytes]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as r:
        return r.status, r.headers, r.read()


def test_serve_models_serves_the_demo_to_a_browser(venv, wheel, outside, smollm2_path, python_answer):
    from wgllm.assets import DEFAULT_MODEL_NAME

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (outside / "serve-models.log").open("w")
    # no --model: the default model, found in the cache the tests share (tests/py/assets.py)
    server = subprocess.Popen([venv / "bin" / "serve-models", "--port", str(port)], cwd=outside, env=outside_env(),
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            try:
                status, _, body = get(f"{base}/api/models")
                break
            except OSError:
                assert server.poll() is None, f"serve-models exited {server.returncode}: {(outside / 'serve-models.log').read_text()}"
                time.sleep(0.1)
        else:
            raise AssertionError(f"serve-models did not answer: {(outside / 'serve-models.log').read_text()}")
        assert [m["name"] for m in json.loads(body)] == [DEFAULT_MODEL_NAME]
        with zipfile.ZipFile(wheel) as z:
            for url, packaged in (("/", "web/demo/index.html"), ("/app.js", "web/demo/app.js"),
                                  ("/dist/genai_bundle.mjs", "web/dist/genai_bundle.mjs"), ("/dist/genai_worker.mjs", "web/dist/genai_worker.mjs")):
                status, _, body = get(base + url)
                assert (status, body) == (200, z.read(f"wgllm/_data/{packaged}")), url
        status, headers, body = get(f"{base}/models/{DEFAULT_MODEL_NAME}", {"Range": "bytes=0-3"})
        assert (status, body) == (206, b"GGUF")
        assert headers["Content-Range"] == f"bytes 0-3/{smollm2_path.stat().st_size}"

        page = run(["node", REPO / "tests" / "browser" / "demo_chat.mjs", f"{base}/?maxTokens={PAGE_MAX_TOKENS}", QUESTION], cwd=outside)
        got = json.loads(page.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert got["error"] is None and got["pageErrors"] == []
    assert got["models"][0].startswith(DEFAULT_MODEL_NAME)
    assert got["version"] == VERSION
    assert got["answer"] == python_answer["answer"]
