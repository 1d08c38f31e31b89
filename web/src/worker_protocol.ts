// Messages between LlmInference (WorkerRunner) and the engine's Web Worker (worker.ts).
// Errors cross as {name, message, props} and are rebuilt as the same error classes.

import * as errors from "./errors";

export type Request =
  | { id: number; op: "load"; args: import("./runner").LoadRequest }
  | { id: number; op: "loadLora"; args: { asset: string | Uint8Array | Blob } }
  | { id: number; op: "run"; args: import("./generator").RunRequest }
  | { id: number; op: "cancel" }
  | { id: number; op: "close" };

export type Reply =
  | { id: number; kind: "done"; value: unknown }
  | { id: number; kind: "error"; error: SerializedError }
  | { id: number; kind: "progress"; loaded: number; total: number | undefined; stage: "download" | "load" }
  | { id: number; kind: "piece"; piece: string };

export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  props: Record<string, unknown>;
}

export function serializeError(e: unknown): SerializedError {
  if (e instanceof Error) {
    const props: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(e)) {
      if (v === null || ["string", "number", "boolean", "undefined"].includes(typeof v)) props[k] = v;
    }
    return { name: e.name, message: e.message, stack: e.stack, props };
  }
  return { name: "Error", message: String(e), props: {} };
}

const CLASSES: Record<string, ErrorConstructor> = {
  TypeError,
  RangeError,
  ...(Object.fromEntries(Object.entries(errors).filter(([, v]) => typeof v === "function")) as Record<string, ErrorConstructor>),
};

export function deserializeError(s: SerializedError): Error {
  const cls = CLASSES[s.name] ?? Error;
  const e = new Error(s.message);
  Object.setPrototypeOf(e, cls.prototype);
  Object.assign(e, s.props);
  e.name = s.name;
  if (s.stack) e.stack = s.stack;
  return e;
}
