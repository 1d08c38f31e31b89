"""`serve-models --export-static OUT_DIR`: the server's layout as plain files for static hosting.

    OUT_DIR/index.html, app.js, ...   web/demo/
    OUT_DIR/dist/...                  web/dist/ (the built bundle)
    OUT_DIR/models/<name>             the listed models
    OUT_DIR/loras/<name>              the listed LoRA adapters
    OUT_DIR/api/models, api/loras     the JSON lists the server answers at those paths
    OUT_DIR/_headers                  the cross-origin isolation headers, in the format of hosts
                                      that read such a file (Netlify, Cloudflare Pages)

The site is built in a temporary folder beside OUT_DIR (`.<OUT_DIR name>.<random>.export`), flushed
to the disk and renamed into place once complete, so a failed export (a full disk, an unreadable
file) leaves nothing behind and OUT_DIR as it was; a killed one leaves only that hidden folder.
OUT_DIR must be new or empty: an export never overwrites or merges into an existing site.
docs/static-hosting.md describes the layout for hosts.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from wgllm.gguf_io import fsync_path, not_written
from wgllm.server import ISOLATION_HEADERS, Catalog, inside, is_listable

HEADERS_FILE = "/*\n" + "".join(f"  {k.decode()}: {v.decode()}\n" for k, v in ISOLATION_HEADERS) + "  Cache-Control: no-cache\n"


def _copy_tree(src: Path, dst: Path) -> int:
    """Copy the regular files below `src` (no dotfiles, no links leading out of it); their count."""
    root = os.path.realpath(src)
    n = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if is_listable(d) and inside(root, os.path.join(folder, d))]
        for name in files:
            real = inside(root, os.path.join(folder, name))
            if not is_listable(name) or real is None or not os.path.isfile(real):
                continue
            target = dst / os.path.relpath(os.path.join(folder, name), root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(real, target)
            n += 1
    return n


def _copy_listed(catalog: Catalog, dst: Path) -> list[dict]:
    dst.mkdir(parents=True)
    entries = []
    for item in catalog.scan().values():
        shutil.copy2(item.path, dst / item.name)
        if (dst / item.name).stat().st_size != item.st.st_size:
            raise ValueError(f"{item.path} changed while being exported; export again")
        entries.append(item.entry(catalog.prefix))
    return entries


def export_static(out_dir: str | os.PathLike[str], *, web_dir: Path, models: Catalog, loras: Catalog) -> dict[str, int]:
    """Write the site to `out_dir` (absent or empty); the number of models and adapters written."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--export-static {out}: exists and is not an empty folder; give a new or empty one (nothing is overwritten)")
    demo, dist = Path(web_dir) / "demo", Path(web_dir) / "dist"
    if not demo.is_dir():
        raise ValueError(f"--export-static: {demo} is missing, so there is no demo page to export")
    if not dist.is_dir():
        raise ValueError(f"--export-static: {dist} is missing: run `npm run build` in web/ first")
    out_real = os.path.realpath(out)
    for served in (demo, dist, models.folder, loras.folder):
        if served is not None and inside(os.path.realpath(served), out_real):
            raise ValueError(f"--export-static {out}: lies inside the served folder {served}; choose a folder outside it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".export", dir=out.parent))
    try:
        _copy_tree(demo, tmp)
        _copy_tree(dist, tmp / "dist")
        listings = {"models": _copy_listed(models, tmp / "models"), "loras": _copy_listed(loras, tmp / "loras")}
        (tmp / "api").mkdir()
        for name, entries in listings.items():
            (tmp / "api" / name).write_text(json.dumps(entries, indent=1) + "\n", encoding="utf-8")
        (tmp / "_headers").write_text(HEADERS_FILE, encoding="utf-8")
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the site gets a normal folder's mode
        _fsync_tree(tmp)
        os.replace(tmp, out)  # POSIX: replaces an empty OUT_DIR in one step, refuses one filled meanwhile
    except OSError as e:
        again = not_written(out, e)
        if again is e:
            raise
        raise again from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    if os.name == "posix":
        fsync_path(out.parent)  # the rename itself
    return {name: len(entries) for name, entries in listings.items()}


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder below `root` to the disk, so the renamed site is whole after a crash."""
    for folder, _, files in os.walk(root):
        for name in files:
            fsync_path(Path(folder) / name)
        if os.name == "posix":
            fsync_path(Path(folder))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
