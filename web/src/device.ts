// The WebGPU device: the adapter's own limits, so large weights fit in as few bindings as the
// hardware allows. Shared by LlmInference.createWebGpuDevice() and the worker.

import { WebGpuUnavailableError } from "./errors";

/** Limits raised from WebGPU's defaults to what the adapter offers. */
const RAISED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupsPerDimension",
] as const;

/** Optional features used when present (the engine has paths without them): shader-f16 stores the
 * KV cache as f16 (EngineOptions.forceF32 keeps it f32). */
const OPTIONAL_FEATURES = ["shader-f16", "subgroups"] as const;

export async function requestWebGpuDevice(): Promise<GPUDevice> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) throw new WebGpuUnavailableError("no-navigator-gpu");
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (e) {
    throw new WebGpuUnavailableError("no-adapter", e instanceof Error ? e.message : String(e));
  }
  if (!adapter) throw new WebGpuUnavailableError("no-adapter");
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) {
    const value = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof value === "number") requiredLimits[name] = value;
  }
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  try {
    return await adapter.requestDevice({ requiredLimits, requiredFeatures, label: "wgllm" });
  } catch (e) {
    throw new WebGpuUnavailableError("no-device", e instanceof Error ? e.message : String(e));
  }
}
