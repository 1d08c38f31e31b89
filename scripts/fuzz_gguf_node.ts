// Node side of scripts/fuzz_gguf.py: feeds each fuzzed input to the bundle's streaming GGUF reader
// (readGGUF, then every tensor's bytes, then modelConfigFromHeader), one after another in this one
// process, and answers one JSON line per input with its outcome and the process's memory.
// Built for Node by esbuild (fuzz_gguf.py does it: web/node_modules/.bin/esbuild --bundle).
//
// stdin, little-endian frames:
//   'S' u32 id, u64 n, n bytes                      a seed
//   'I' u32 seq, i32 seed (-1: none), u32 chunk (0: one chunk), u8 known size, u32 n splices,
//       then per splice u64 at, u64 delete, u32 n, n bytes     an input: the seed with the splices applied in order
// stdout: {"seq", "outcome": accepted|rejected|crash|timeout, "stage", "message", "rss", "heap", "external"}

import { ModelFormatError } from "../web/src/errors";
import { readGGUF } from "../web/src/gguf";
import { modelConfigFromHeader } from "../web/src/model";

const DEADLINE_MS = Number(process.env.FUZZ_DEADLINE_MS ?? 5000);

const seeds = new Map<number, Uint8Array>();

/** The input: `seed` with each splice (at, delete, insert) applied in order. */
function build(seed: Uint8Array, splices: [number, number, Uint8Array][]): Uint8Array {
  let out = seed;
  for (const [at, del, ins] of splices) {
    const next = new Uint8Array(out.length - del + ins.length);
    next.set(out.subarray(0, at));
    next.set(ins, at);
    next.set(out.subarray(at + del), at + ins.length);
    out = next;
  }
  return out;
}

/** `bytes` in pieces of `chunk` bytes (fresh copies, as a network hands them out). */
function stream(bytes: Uint8Array, chunk: number): ReadableStream<Uint8Array> {
  const size = chunk > 0 ? chunk : Math.max(1, bytes.length);
  let pos = 0;
  return new ReadableStream({
    pull(controller) {
      if (pos >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(pos, pos + size));
      pos += size;
    },
  });
}

type Outcome = { outcome: string; stage: string; message: string };

async function parse(bytes: Uint8Array, chunk: number, knownSize: boolean, source: string): Promise<Outcome> {
  let stage = "header";
  try {
    const gguf = await readGGUF(stream(bytes, chunk), { source, size: knownSize ? bytes.length : undefined });
    stage = "data";
    let sum = 0;
    for await (const { bytes: piece } of gguf) sum += piece[0] + piece[piece.length - 1];
    stage = "config";
    if (gguf.header.metadata.has("general.architecture")) modelConfigFromHeader(gguf.header);
    return { outcome: sum >= 0 ? "accepted" : "crash", stage: "", message: "" };
  } catch (e) {
    const err = e as Error;
    const clear = err instanceof ModelFormatError && err.message.includes(source);
    return { outcome: clear ? "rejected" : "crash", stage, message: `${err?.name}: ${err?.message}`.slice(0, 300) };
  }
}

async function withDeadline(work: Promise<Outcome>): Promise<Outcome> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<Outcome>((resolve) => {
    timer = setTimeout(() => resolve({ outcome: "timeout", stage: "", message: `no answer within ${DEADLINE_MS} ms` }), DEADLINE_MS);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Reads stdin's frames: `exactly(n)` resolves with the next n bytes. */
class Input {
  private pending: Uint8Array[] = [];
  private have = 0;
  private wake: (() => void) | null = null;
  private ended = false;

  constructor() {
    process.stdin.on("data", (b: Buffer) => {
      this.pending.push(new Uint8Array(b.buffer, b.byteOffset, b.length));
      this.have += b.length;
      this.wake?.();
    });
    process.stdin.on("end", () => {
      this.ended = true;
      this.wake?.();
    });
  }

  async exactly(n: number): Promise<Uint8Array | null> {
    while (this.have < n) {
      if (this.ended) return null;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const head = this.pending[0];
      const k = Math.min(head.length, n - at);
      out.set(head.subarray(0, k), at);
      at += k;
      if (k === head.length) this.pending.shift();
      else this.pending[0] = head.subarray(k);
    }
    this.have -= n;
    return out;
  }
}

async function main(): Promise<void> {
  const input = new Input();
  const u32 = (b: Uint8Array, at = 0) => new DataView(b.buffer, b.byteOffset).getUint32(at, true);
  const u64 = (b: Uint8Array, at = 0) => Number(new DataView(b.buffer, b.byteOffset).getBigUint64(at, true));
  for (;;) {
    const tag = await input.exactly(1);
    if (!tag) return;
    if (tag[0] === 0x53) {
      const head = (await input.exactly(12))!;
      seeds.set(u32(head), (await input.exactly(u64(head, 4)))!);
      continue;
    }
    const head = (await input.exactly(17))!;
    const view = new DataView(head.buffer);
    const seq = view.getUint32(0, true);
    const seedId = view.getInt32(4, true);
    const chunk = view.getUint32(8, true);
    const knownSize = head[12] !== 0;
    const nSplices = view.getUint32(13, true);
    const splices: [number, number, Uint8Array][] = [];
    for (let i = 0; i < nSplices; i++) {
      const s = (await input.exactly(20))!;
      splices.push([u64(s), u64(s, 8), (await input.exactly(u32(s, 16)))!]);
    }
    const bytes = build(seedId < 0 ? new Uint8Array(0) : seeds.get(seedId)!, splices);
    const result = await withDeadline(parse(bytes, chunk, knownSize, `fuzz-input-${seq}.gguf`));
    const mem = process.memoryUsage();
    process.stdout.write(
      JSON.stringify({ seq, ...result, rss: mem.rss, heap: mem.heapUsed, external: mem.external }) + "\n",
    );
  }
}

main().catch((e) => {
  process.stderr.write(`fuzz driver failed: ${(e as Error).stack}\n`);
  process.exit(3);
});
