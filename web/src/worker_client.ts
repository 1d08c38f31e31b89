// Worker mode, page side: the Runner interface forwarded to dist/genai_worker.mjs.

import type { RunRequest, RunResult } from "./generator";
import { readerStream, type LoadProgressCallback } from "./model_source";
import type { LoadRequest, LoraAsset, ModelInfo, Runner } from "./runner";
import { deserializeError, type Reply, type Request } from "./worker_protocol";

type Pending = {
  resolve: (v: any) => void;
  reject: (e: Error) => void;
  progress?: LoadProgressCallback;
  piece?: (p: string) => void;
};

type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;

export class WorkerRunner implements Runner {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private failure?: Error;

  constructor(url: string | URL) {
    this.worker = new Worker(url, { type: "module", name: "wgllm" });
    this.worker.onmessage = (e: MessageEvent<Reply>) => this.receive(e.data);
    this.worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.fail(new Error(`the wgllm worker ${String(url)} failed: ${e.message || "it could not be loaded (check workerUrl)"}`));
    };
  }

  private fail(error: Error): void {
    this.failure = error;
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
  }

  private receive(m: Reply): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.kind === "progress") p.progress?.(m.loaded, m.total, m.stage);
    else if (m.kind === "piece") p.piece?.(m.piece);
    else {
      this.pending.delete(m.id);
      if (m.kind === "done") p.resolve(m.value);
      else p.reject(deserializeError(m.error));
    }
  }

  private call<T>(msg: WithoutId<Request>, extra: Omit<Pending, "resolve" | "reject"> = {}, transfer: Transferable[] = []): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, ...extra });
      this.worker.postMessage({ ...msg, id }, transfer);
    });
  }

  load(req: LoadRequest, progress?: LoadProgressCallback): Promise<ModelInfo> {
    let asset = req.asset;
    const transfer: Transferable[] = [];
    if (asset instanceof URL) asset = asset.href;
    if (typeof asset === "string") {
      asset = new URL(asset, location.href).href; // the worker resolves against its own URL otherwise
    } else if (!(asset instanceof Uint8Array)) {
      // A reader cannot cross to a worker; a ReadableStream can (transferable streams).
      const source = asset instanceof ReadableStream ? asset : readerStream(asset);
      transfer.push(source as unknown as Transferable);
      asset = source;
    }
    return this.call<ModelInfo>({ op: "load", args: { ...req, asset } }, { progress }, transfer);
  }

  /** A URL is made absolute (the worker would resolve it against its own URL); bytes are copied
   * (the caller keeps them), a Blob crosses as a handle to the same data. */
  loadLora(asset: LoraAsset): Promise<number> {
    const sent = typeof asset === "string" || asset instanceof URL ? new URL(String(asset), location.href).href : asset;
    return this.call<number>({ op: "loadLora", args: { asset: sent } });
  }

  run(req: RunRequest, onPiece: (piece: string) => void): Promise<RunResult> {
    return this.call<RunResult>({ op: "run", args: req }, { piece: onPiece });
  }

  cancel(): void {
    if (!this.failure) void this.call({ op: "cancel" }).catch(() => undefined);
  }

  close(): void {
    if (this.failure) return;
    void this.call({ op: "close" })
      .catch(() => undefined)
      .finally(() => this.worker.terminate());
    this.failure = new Error("this LlmInference is closed");
  }
}
