"""wgllm: quantised transformer LLMs on WebGPU, in the browser and from Python."""

from wgllm.errors import ModelFormatError
from wgllm.resources import version as _version

__all__ = ["ModelFormatError"]
__version__ = _version()  # web/package.json's: one version for the wheel and the npm package
