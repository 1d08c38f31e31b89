// The Web Worker side of worker mode (built as dist/genai_worker.mjs): a LocalRunner that owns
// the WebGPU device and the model, driven by messages from WorkerRunner (worker_client.ts).
// Generation runs here, so the page's thread never blocks on loading or decoding.

import { LocalRunner } from "./runner";
import { serializeError, type Reply, type Request } from "./worker_protocol";

const scope = globalThis as unknown as { onmessage: ((e: MessageEvent<Request>) => void) | null; postMessage(m: Reply): void };
const runner = new LocalRunner();

scope.onmessage = async (event: MessageEvent<Request>) => {
  const msg = event.data;
  const post = (reply: Reply) => scope.postMessage(reply);
  try {
    let value: unknown;
    switch (msg.op) {
      case "load":
        value = await runner.load(msg.args, (loaded, total, stage) => post({ id: msg.id, kind: "progress", loaded, total, stage }));
        break;
      case "loadLora":
        value = await runner.loadLora(msg.args.asset);
        break;
      case "run":
        value = await runner.run(msg.args, (piece) => post({ id: msg.id, kind: "piece", piece }));
        break;
      case "cancel":
        runner.cancel();
        break;
      case "close":
        runner.close();
        break;
    }
    post({ id: msg.id, kind: "done", value });
  } catch (e) {
    post({ id: msg.id, kind: "error", error: serializeError(e) });
  }
};
