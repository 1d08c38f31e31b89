// Typed errors of the browser side. Each message says what went wrong and what to do about it, so
// an application can show it as is; `name` is set so errors stay recognisable after crossing a
// worker or a bundle boundary (where `instanceof` may not hold).

/** Base class of every error this library throws on purpose. */
export class WgllmError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The browser exposes no WebGPU (`navigator.gpu` missing) or returned no adapter. */
export class WebGpuUnavailableError extends WgllmError {
  readonly reason: "no-navigator-gpu" | "no-adapter" | "no-device";

  constructor(reason: WebGpuUnavailableError["reason"], detail = "") {
    const what = {
      "no-navigator-gpu": "this browser exposes no WebGPU (navigator.gpu is undefined)",
      "no-adapter": "WebGPU is present but navigator.gpu.requestAdapter() returned no adapter",
      "no-device": "the WebGPU adapter refused to create a device",
    }[reason];
    super(
      `${what}${detail ? ` (${detail})` : ""}. WebGPU needs a secure context (https:// or http://localhost) ` +
        "and a browser with it enabled: Chrome/Edge 113+ on Windows, macOS and ChromeOS have it on by default; " +
        "on Linux start Chrome with --enable-unsafe-webgpu --enable-features=Vulkan (or enable " +
        "chrome://flags/#enable-unsafe-webgpu); Firefox 141+ on Windows, Safari 26+; " +
        "check chrome://gpu for 'WebGPU: Hardware accelerated' and that the GPU is not blocklisted.",
    );
    this.reason = reason;
  }
}

/** The adapter's limits are too small for the model (checked before any work starts). */
export class DeviceLimitError extends WgllmError {
  readonly limit: string;
  readonly required: number;
  readonly available: number;

  constructor(limit: string, required: number, available: number, what = "") {
    super(
      `${what ? `${what} ` : ""}needs ${limit} >= ${required}, adapter has ${available}. ` +
        "Use a smaller or more strongly quantised model, or a GPU/browser with a larger limit.",
    );
    this.limit = limit;
    this.required = required;
    this.available = available;
  }
}

/** A call arrived while a generation or the model load was still running (MediaPipe's rule). */
export class BusyError extends WgllmError {
  constructor() {
    super("Previous invocation or loading is still ongoing.");
  }
}

/** The prompt's tokens (plus room to generate) do not fit the configured context. */
export class PromptTooLongError extends WgllmError {
  readonly promptTokens: number;
  readonly maxTokens: number;

  constructor(promptTokens: number, maxTokens: number) {
    super(
      `The prompt has ${promptTokens} tokens but maxTokens is ${maxTokens} (prompt and response together); ` +
        "shorten the prompt or raise maxTokens in the options.",
    );
    this.promptTokens = promptTokens;
    this.maxTokens = maxTokens;
  }
}

/** The model URL could not be fetched: network failure or an HTTP error status. */
export class ModelFetchError extends WgllmError {
  readonly url: string;
  readonly status: number | undefined;

  constructor(url: string, status?: number, statusText = "", options?: { cause?: unknown }) {
    const how =
      status === undefined
        ? `failed before any response (network error, CORS or a blocked URL${
            options?.cause instanceof Error ? `: ${options.cause.message}` : ""
          })`
        : `answered HTTP ${status}${statusText ? ` ${statusText}` : ""}`;
    super(`Fetching the model ${url} ${how}; check the URL and that the server allows this origin.`, options);
    this.url = url;
    this.status = status;
  }
}

/**
 * The model file cannot be used as it is: not a GGUF file, truncated, an unsupported
 * architecture or tensor type. The message names the file and the key or tensor.
 */
export class ModelFormatError extends WgllmError {}

/** The GPU device was lost (driver reset, tab backgrounded for too long, out of memory). */
export class DeviceLostError extends WgllmError {
  readonly reason: string;

  constructor(reason: string, message: string) {
    super(
      `The WebGPU device was lost (${reason}${message ? `: ${message}` : ""}); ` +
        "create the LlmInference again to reload the model.",
    );
    this.reason = reason;
  }
}
