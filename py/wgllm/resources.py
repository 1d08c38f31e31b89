"""Where wgllm's files that are not Python live, and its version.

An installed wheel carries the WGSL shaders, the built browser bundle and the demo page in
wgllm/_data/ (setup.py copies them there); a checkout (and its editable install) has them at the
repository's shaders/, web/dist/ and web/demo/. The packaged copy wins where both exist.
The version is web/package.json's: read from it in a checkout, from the installed metadata otherwise.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

PACKAGE_DATA = Path(__file__).resolve().parent / "_data"
CHECKOUT = Path(__file__).resolve().parents[2]  # the repository root when this file is its py/wgllm/


def data_dir(name: str) -> Path:
    """`shaders` or `web` (which holds dist/ and demo/): the packaged folder, else the checkout's."""
    packaged = PACKAGE_DATA / name
    return packaged if packaged.is_dir() else CHECKOUT / name


def version() -> str:
    package_json = CHECKOUT / "web" / "package.json"
    if (CHECKOUT / "py" / "wgllm").resolve() == Path(__file__).resolve().parent and package_json.is_file():
        return json.loads(package_json.read_text())["version"]
    return metadata.version("wgllm")
