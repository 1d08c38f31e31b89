"""wgllm: quantised transformer LLMs on WebGPU, in the browser and from Python."""

from wgllm.errors import ModelFormatError

__all__ = ["ModelFormatError"]
__version__ = "0.1.0"
