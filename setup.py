"""Build hooks for the wheel: the version and the package data that live outside py/.

pyproject.toml holds the metadata; this file adds what a declarative config cannot:
- the version, read from web/package.json, so the wheel and the npm package carry one version;
- wgllm/_data/ in the built package: the WGSL shaders (shaders/*.wgsl), the browser bundle
  (web/dist/*.mjs, built by `npm run build` in web/) and the demo page (web/demo/). The checkout
  keeps them where development uses them; wgllm.resources looks in _data first, then the checkout.
An editable install (`pip install -e .`) copies nothing: it runs off the checkout's folders.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
BUNDLE = ("genai_bundle.mjs", "genai_worker.mjs")  # what the demo page loads from dist/
# what the bundle is built from: a bundle older than any of these is stale
BUNDLE_SOURCES = ("shaders/*.wgsl", "web/src/**/*.ts", "web/build.mjs", "web/package.json")


def package_version() -> str:
    path = ROOT / "web" / "package.json"
    try:
        return json.loads(path.read_text())["version"]
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"wgllm: cannot read the version from {path} ({e}); it is the one source of the version") from e


def data_files() -> dict[str, list[Path]]:
    """Destination folder below wgllm/_data -> the checkout's files that go there."""
    shaders = sorted((ROOT / "shaders").glob("*.wgsl"))
    dist = sorted((ROOT / "web" / "dist").glob("*.mjs"))
    demo = sorted(p for p in (ROOT / "web" / "demo").rglob("*") if p.is_file() and not p.name.startswith("."))
    if not shaders:
        raise SystemExit(f"wgllm: no WGSL shaders in {ROOT / 'shaders'}")
    missing = [name for name in BUNDLE if not (ROOT / "web" / "dist" / name).is_file()]
    if missing:
        raise SystemExit(f"wgllm: the browser bundle is not built (web/dist/{', web/dist/'.join(missing)} missing): "
                         "run `npm ci && npm run build` in web/ before building the wheel")
    if not demo:
        raise SystemExit(f"wgllm: the demo page is missing ({ROOT / 'web' / 'demo'} has no files)")
    built = min((ROOT / "web" / "dist" / name).stat().st_mtime for name in BUNDLE)
    sources = [p for pattern in BUNDLE_SOURCES for p in ROOT.glob(pattern) if p.is_file()]
    newer = sorted(str(p.relative_to(ROOT)) for p in sources if p.stat().st_mtime > built)
    if newer:
        raise SystemExit(f"wgllm: web/dist is older than {', '.join(newer[:5])}{' ...' if len(newer) > 5 else ''}: "
                         "run `npm run build` in web/ so the wheel's bundle matches its shaders")
    return {"shaders": shaders, "web/dist": dist, "web/demo": demo}


class BuildPyWithData(build_py):
    def run(self) -> None:
        if self.editable_mode:
            super().run()
            return
        files = data_files()  # first: a wheel without its bundle is refused before any work
        # setuptools reuses build/lib between builds: a module or shader deleted from the checkout
        # would live on in the next wheel, so the package is copied afresh
        shutil.rmtree(Path(self.build_lib) / "wgllm", ignore_errors=True)
        super().run()
        target = Path(self.build_lib) / "wgllm" / "_data"
        for folder, paths in files.items():
            for src in paths:
                dst = target / folder / src.relative_to(ROOT / folder)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)


class SdistChecked(sdist):
    """An sdist without the built bundle could not make a working wheel: refuse it here too."""

    def run(self) -> None:
        data_files()
        super().run()


setup(version=package_version(), cmdclass={"build_py": BuildPyWithData, "sdist": SdistChecked})
