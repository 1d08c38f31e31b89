// Where a model's bytes come from: a URL (fetched, optionally kept in the Cache Storage API), a
// Uint8Array, or a ReadableStream(DefaultReader). Whatever the source, the loader sees one
// ReadableStream read front to back, so a multi-gigabyte file is never held in one buffer and a
// server that ignores Range still works.

import { ModelFetchError } from "./errors";
import { readGGUF, type GGUFStream } from "./gguf";

/** `(loadedBytes, totalBytes, stage)`: totalBytes is undefined when the server did not say. */
export type LoadProgressCallback = (loaded: number, total: number | undefined, stage: "download" | "load") => void;

export type ModelAsset = string | URL | Uint8Array | ReadableStreamDefaultReader<Uint8Array> | ReadableStream<Uint8Array>;

/** The Cache Storage bucket used when `cacheModel` is true. */
export const MODEL_CACHE_NAME = "wgllm-models";

const CHUNK = 4 << 20; // a Uint8Array source is handed out in 4 MiB views (no copies)

function arrayStream(bytes: Uint8Array): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.subarray(at, Math.min(bytes.length, at + CHUNK)));
      at += CHUNK;
    },
  });
}

/** A ReadableStream pulling from `reader` (a reader cannot be transferred to a worker; a stream can). */
export function readerStream(reader: ReadableStreamDefaultReader<Uint8Array>): ReadableStream<Uint8Array> {
  return new ReadableStream({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

/** Counts bytes as they pass. */
function counted(stream: ReadableStream<Uint8Array>, total: number | undefined, stage: "download" | "load", progress?: LoadProgressCallback) {
  if (!progress) return stream;
  let loaded = 0;
  progress(0, total, stage);
  return stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        loaded += chunk.length;
        progress(loaded, total, stage);
        controller.enqueue(chunk);
      },
    }),
  );
}

function sizeOf(response: Response): number | undefined {
  // Content-Length counts encoded bytes: it is the file size only when no encoding was applied.
  const length = response.headers.get("Content-Length");
  const encoded = (response.headers.get("Content-Encoding") ?? "identity") !== "identity";
  return length !== null && !encoded && /^\d+$/.test(length) ? Number(length) : undefined;
}

async function fetchModel(url: string): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new ModelFetchError(url, undefined, "", { cause: e });
  }
  if (!response.ok || !response.body) throw new ModelFetchError(url, response.status, response.statusText);
  return response;
}

/** Absolute URL of `path`, resolved against the page (or worker) location. */
export function absoluteUrl(path: string | URL): string {
  const base = (globalThis as { location?: { href: string } }).location?.href;
  return base ? new URL(String(path), base).href : String(path);
}

/**
 * The model at `url`. With `cache`, a copy in Cache Storage is used when present; otherwise the
 * download is first streamed into the cache (progress stage "download") and then read back from
 * it (stage "load"): memory stays bounded whatever the speed of the GPU upload.
 */
async function urlStream(url: string, cache: boolean, progress?: LoadProgressCallback) {
  if (cache && typeof caches !== "undefined") {
    const bucket = await caches.open(MODEL_CACHE_NAME);
    let hit = await bucket.match(url);
    if (!hit) {
      const response = await fetchModel(url);
      const size = sizeOf(response);
      const body = counted(response.body!, size, "download", progress);
      const headers = new Headers({ "Content-Type": "application/octet-stream" });
      if (size !== undefined) headers.set("Content-Length", String(size));
      await bucket.put(url, new Response(body, { headers }));
      hit = await bucket.match(url);
      if (!hit?.body) throw new ModelFetchError(url, undefined, "", { cause: new Error("the Cache Storage copy vanished after it was written") });
    }
    const size = sizeOf(hit);
    return { stream: counted(hit.body!, size, "load", progress), size };
  }
  const response = await fetchModel(url);
  const size = sizeOf(response);
  return { stream: counted(response.body!, size, "load", progress), size };
}

export interface OpenOptions {
  cache?: boolean;
  progress?: LoadProgressCallback;
}

/** Open `asset` and parse its GGUF header; iterate the result for the tensors' bytes. */
export async function openModel(asset: ModelAsset, options: OpenOptions = {}): Promise<GGUFStream> {
  if (typeof asset === "string" || asset instanceof URL) {
    const url = absoluteUrl(asset);
    const { stream, size } = await urlStream(url, !!options.cache, options.progress);
    return readGGUF(stream, { source: url, size });
  }
  if (asset instanceof Uint8Array) {
    return readGGUF(counted(arrayStream(asset), asset.length, "load", options.progress), { source: "modelAssetBuffer", size: asset.length });
  }
  if (typeof ReadableStream !== "undefined" && asset instanceof ReadableStream) {
    return readGGUF(counted(asset, undefined, "load", options.progress), { source: "modelAssetBuffer stream" });
  }
  if (asset && typeof (asset as ReadableStreamDefaultReader).read === "function") {
    const stream = readerStream(asset as ReadableStreamDefaultReader<Uint8Array>);
    return readGGUF(counted(stream, undefined, "load", options.progress), { source: "modelAssetBuffer stream" });
  }
  throw new TypeError(
    "the model asset must be a URL string (baseOptions.modelAssetPath), a Uint8Array or a ReadableStreamDefaultReader " +
      `(baseOptions.modelAssetBuffer); got ${Object.prototype.toString.call(asset)}`,
  );
}

/** Remove a model from the Cache Storage copy kept by `cacheModel` (all models when no URL). */
export async function deleteCachedModel(url?: string): Promise<boolean> {
  if (typeof caches === "undefined") return false;
  if (url === undefined) return caches.delete(MODEL_CACHE_NAME);
  const bucket = await caches.open(MODEL_CACHE_NAME);
  return bucket.delete(absoluteUrl(url));
}
