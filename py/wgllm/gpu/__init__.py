"""The WebGPU side in Python: one device per process (wgpu-py), shaders from ../../shaders/."""

from wgllm.gpu.runtime import GpuContext, GpuError, get_context

__all__ = ["GpuContext", "GpuError", "get_context"]
