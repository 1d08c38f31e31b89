// Where a model's bytes come from: a URL (fetched, optionally kept in the Cache Storage API), a
// Uint8Array, or a ReadableStream(DefaultReader). Whatever the source, the loader sees one
// ReadableStream read front to back, so a multi-gigabyte file is never held in one buffer and a
// server that ignores Range still works.
//
// cacheModel keeps a model across reloads: in the cross-origin storage (COS) where the browser has
// it (navigator.crossOriginStorage: files shared between sites by their SHA-256, so a model another
// site stored is not downloaded again), else in this site's Cache Storage. A GGUF file carries no
// hash of itself, so the SHA-256 comes from the `modelSha256` option, or from a hash bookkeeping
// entry (MODEL_HASH_CACHE_NAME: URL -> SHA-256 and size) written when this site last downloaded the
// URL. The download is hashed only where COS exists or modelSha256 is given (a JS SHA-256 costs CPU).

import { ModelFetchError, ModelFormatError } from "./errors";
import { Sha256 } from "./sha256";
import { readGGUF, type GGUFStream } from "./gguf";

/** `(loadedBytes, totalBytes, stage)`: totalBytes is undefined when the server did not say. */
export type LoadProgressCallback = (loaded: number, total: number | undefined, stage: "download" | "load") => void;

export type ModelAsset = string | URL | Uint8Array | ReadableStreamDefaultReader<Uint8Array> | ReadableStream<Uint8Array>;

/** The Cache Storage bucket used when `cacheModel` is true. */
export const MODEL_CACHE_NAME = "wgllm-models";
/** The Cache Storage bucket of the hash bookkeeping: URL -> {"algorithm": "SHA-256", "value": hex, "size": bytes}. */
export const MODEL_HASH_CACHE_NAME = "wgllm-model-hashes";

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

// -- cross-origin storage -----------------------------------------------------------------------
// The API as its explainer gives it (github.com/WICG/cross-origin-storage README.md and
// cross-origin-storage.d.ts, March 2026): navigator.crossOriginStorage.requestFileHandles(hashes,
// { create }) with hashes [{ algorithm: "SHA-256", value: lowercase hex }] resolves to
// FileSystemFileHandles (create: write-only ones), or rejects with a NotFoundError DOMException when a
// file is not stored (NotAllowedError when the user refuses). The spec draft's IDL (webref,
// wicg.github.io/cross-origin-storage) names a one-file requestFileHandle(hash, options): used when
// that is the one present.
interface CosHash {
  algorithm: "SHA-256";
  value: string;
}
interface CrossOriginStorage {
  requestFileHandles?(hashes: CosHash[], options?: { create?: boolean }): Promise<FileSystemFileHandle[]>;
  requestFileHandle?(hash: CosHash, options?: { create?: boolean }): Promise<FileSystemFileHandle>;
}

function crossOriginStorage(): CrossOriginStorage | undefined {
  const cos = (globalThis.navigator as { crossOriginStorage?: CrossOriginStorage } | undefined)?.crossOriginStorage;
  return cos && (cos.requestFileHandles || cos.requestFileHandle) ? cos : undefined;
}

async function cosHandle(cos: CrossOriginStorage, value: string, create: boolean): Promise<FileSystemFileHandle> {
  const hash: CosHash = { algorithm: "SHA-256", value };
  if (cos.requestFileHandles) return (await cos.requestFileHandles([hash], { create }))[0];
  return cos.requestFileHandle!(hash, { create });
}

/** The stored file of `value`, or undefined when COS has none or may not be read. */
async function cosFile(cos: CrossOriginStorage, value: string): Promise<File | undefined> {
  try {
    return await (await cosHandle(cos, value, false)).getFile();
  } catch (e) {
    if (e instanceof DOMException && (e.name === "NotFoundError" || e.name === "NotAllowedError")) return undefined;
    throw e;
  }
}

/** Store `body` in COS under `value`; false when COS refuses (the caller keeps its own copy). */
async function cosStore(cos: CrossOriginStorage, value: string, body: ReadableStream<Uint8Array>): Promise<boolean> {
  try {
    const writable = await (await cosHandle(cos, value, true)).createWritable();
    await body.pipeTo(writable);
    return true;
  } catch (e) {
    await body.cancel().catch(() => undefined);
    if (e instanceof DOMException) return false; // NotAllowedError, QuotaExceededError, ...
    throw e;
  }
}

interface HashRecord {
  algorithm: "SHA-256";
  value: string;
  size: number;
}

/** The hash recorded for `url` by an earlier download (the hash bookkeeping). */
export async function recordedModelHash(url: string): Promise<HashRecord | undefined> {
  if (typeof caches === "undefined") return undefined;
  const hit = await (await caches.open(MODEL_HASH_CACHE_NAME)).match(absoluteUrl(url));
  return hit ? ((await hit.json()) as HashRecord) : undefined;
}

async function recordHash(url: string, record: HashRecord): Promise<void> {
  const body = JSON.stringify(record);
  await (await caches.open(MODEL_HASH_CACHE_NAME)).put(url, new Response(body, { headers: { "Content-Type": "application/json" } }));
}

/** `stream` hashed as it passes; `digest()` once it has ended. */
function hashing(stream: ReadableStream<Uint8Array>): { stream: ReadableStream<Uint8Array>; digest: () => string } {
  const sha = new Sha256();
  let digest: string | undefined;
  const out = stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        sha.update(chunk);
        controller.enqueue(chunk);
      },
      flush() {
        digest = sha.hex();
      },
    }),
  );
  return { stream: out, digest: () => digest! };
}

/**
 * The model at `url`. With `cache`: the COS copy of its SHA-256 when the hash is known (`sha256`, or
 * recorded for the URL) and COS has it; else the Cache Storage copy when present; otherwise the
 * download is first streamed into Cache Storage (progress stage "download"), hashed on the way when
 * COS exists or `sha256` is given (a mismatch with `sha256` is an error and nothing is kept), the
 * hash recorded, the file moved into COS where it exists (the Cache Storage copy is then dropped),
 * and read back from wherever it now is (stage "load"): memory stays bounded whatever the speed of
 * the GPU upload. Because the cache copy is made first, `beforeDownload` gets the header (from a
 * request cancelled after it) before the download starts, so a model too large for the device is
 * refused before it is downloaded, as without `cache` (there from the load's own header).
 */
async function urlStream(url: string, cache: boolean, progress?: LoadProgressCallback, sha256?: string, beforeDownload?: BeforeDownload) {
  if (cache && typeof caches !== "undefined") {
    const cos = crossOriginStorage();
    const known = sha256 ?? (await recordedModelHash(url))?.value;
    if (cos && known) {
      const file = await cosFile(cos, known);
      if (file) return { stream: counted(file.stream(), file.size, "load", progress), size: file.size };
    }
    const bucket = await caches.open(MODEL_CACHE_NAME);
    let hit = await bucket.match(url);
    if (!hit) {
      if (beforeDownload) {
        // the whole file goes into the cache before it is read: check its header first, from a
        // request cancelled once the header is parsed, so that a model the device cannot hold is
        // refused before it is downloaded (the header's bytes are fetched twice)
        const probe = await fetchModel(url);
        const head = await readGGUF(probe.body!, { source: url, size: sizeOf(probe) });
        await head.cancel();
        await beforeDownload(head.header);
      }
      const response = await fetchModel(url);
      const size = sizeOf(response);
      const hashed = cos || sha256 ? hashing(response.body!) : undefined;
      const body = counted(hashed?.stream ?? response.body!, size, "download", progress);
      const headers = new Headers({ "Content-Type": "application/octet-stream" });
      if (size !== undefined) headers.set("Content-Length", String(size));
      await bucket.put(url, new Response(body, { headers }));
      hit = await bucket.match(url);
      if (!hit?.body) throw new ModelFetchError(url, undefined, "", { cause: new Error("the Cache Storage copy vanished after it was written") });
      if (hashed) {
        const value = hashed.digest();
        if (sha256 && value !== sha256) {
          await bucket.delete(url);
          throw new ModelFormatError(`${url}: the download's SHA-256 is ${value}, but modelSha256 is ${sha256}; nothing was kept`);
        }
        const bytes = Number(hit.headers.get("Content-Length") ?? size);
        await recordHash(url, { algorithm: "SHA-256", value, size: bytes });
        if (cos && (await cosStore(cos, value, hit.body))) {
          const file = await cosFile(cos, value);
          if (file) {
            await bucket.delete(url);
            return { stream: counted(file.stream(), file.size, "load", progress), size: file.size };
          }
        }
        hit = (await bucket.match(url))!; // COS refused: this site's copy serves
      }
    }
    const size = sizeOf(hit);
    return { stream: counted(hit.body!, size, "load", progress), size };
  }
  const response = await fetchModel(url);
  const size = sizeOf(response);
  return { stream: counted(response.body!, size, "load", progress), size };
}

/** Called with a URL model's header before a `cache` download starts (where the file would be
 * downloaded whole before being read); a rejection stops the load there. */
export type BeforeDownload = (header: GGUFStream["header"]) => Promise<void> | void;

export interface OpenOptions {
  cache?: boolean;
  progress?: LoadProgressCallback;
  /** The file's SHA-256 (64 hex digits), for the cross-origin storage and to check a download. */
  sha256?: string;
  /** With `cache`, on a cache miss: the header is checked by this before the download (BeforeDownload). */
  beforeDownload?: BeforeDownload;
}

/** Open `asset` and parse its GGUF header; iterate the result for the tensors' bytes. */
export async function openModel(asset: ModelAsset, options: OpenOptions = {}): Promise<GGUFStream> {
  if (typeof asset === "string" || asset instanceof URL) {
    const url = absoluteUrl(asset);
    const sha256 = options.sha256?.toLowerCase();
    if (options.sha256 !== undefined && !/^[0-9a-f]{64}$/.test(sha256 ?? "")) {
      throw new RangeError(`modelSha256 = ${JSON.stringify(options.sha256)}: expected the model file's SHA-256 as 64 hex digits`);
    }
    const { stream, size } = await urlStream(url, !!options.cache, options.progress, sha256, options.beforeDownload);
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

/** Remove a model's Cache Storage copy kept by `cacheModel` and its recorded hash (all models when no
 * URL). A copy in the cross-origin storage stays: the browser, not a site, manages that. */
export async function deleteCachedModel(url?: string): Promise<boolean> {
  if (typeof caches === "undefined") return false;
  if (url === undefined) {
    const [copies, hashes] = await Promise.all([caches.delete(MODEL_CACHE_NAME), caches.delete(MODEL_HASH_CACHE_NAME)]);
    return copies || hashes;
  }
  const [copies, hashes] = await Promise.all([MODEL_CACHE_NAME, MODEL_HASH_CACHE_NAME].map(async (name) => (await caches.open(name)).delete(absoluteUrl(url))));
  return copies || hashes;
}
