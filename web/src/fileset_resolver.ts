// FilesetResolver as in @mediapipe/tasks-genai. MediaPipe's tasks load a wasm runtime from
// `basePath`; wgllm needs none, so the paths are only recorded and nothing is fetched — a page
// that passes MediaPipe's CDN path keeps working offline.

export interface WasmFileset {
  wasmLoaderPath: string;
  wasmBinaryPath: string;
  assetLoaderPath?: string;
  assetBinaryPath?: string;
}

export class FilesetResolver {
  /** Always true: WebGPU compute needs no wasm SIMD here. */
  static async isSimdSupported(): Promise<boolean> {
    return true;
  }

  static async forGenAiTasks(basePath = "", useModule = false): Promise<WasmFileset> {
    const base = basePath.replace(/\/+$/, "");
    const loader = useModule ? "genai_wasm_module_internal" : "genai_wasm_internal";
    return { wasmLoaderPath: `${base}/${loader}.js`, wasmBinaryPath: `${base}/${loader}.wasm` };
  }
}
