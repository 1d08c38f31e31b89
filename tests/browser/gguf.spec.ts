// The streaming GGUF reader (web/src/gguf.ts, through the built bundle) against Python's
// wgllm.gguf_io.GGUFFile on the same files: metadata values and kinds, the tensor table and a
// CRC-32 of every tensor's bytes (zlib's on the Python side, the page's own on this side), for
// fixtures written by llama.cpp's gguf package, hand-built layouts and the real SmolLM2 and
// Gemma-3 models.
// Corrupt files must reject with ModelFormatError naming the key or tensor, whether the reader
// knows the file size (Content-Length) or sees only a stream, and however the stream is chunked.
// The test server never honours Range, so every read here is one front-to-back 200 response.

import { expect, test, type Page } from "@playwright/test";
import { DATA_URL, pythonSummary } from "./paths";

type Mode = { knownSize: boolean; chunk?: number };

const MODES: Mode[] = [
  { knownSize: true },
  { knownSize: false },
  ...[1, 7, 4099].flatMap((chunk) => [{ knownSize: true, chunk }, { knownSize: false, chunk }]),
];

const summary = pythonSummary();

async function read(page: Page, file: string, mode: Mode): Promise<any> {
  return page.evaluate(
    async ({ url, mode }) => (await import("/tests/browser/gguf_page.mjs")).summarize(url, mode),
    { url: `${DATA_URL}/${file}`, mode },
  );
}

function sortedByOffset(tensors: { name: string; offset: number }[]): string[] {
  return [...tensors].sort((a, b) => a.offset - b.offset).map((t) => t.name);
}

test.beforeEach(async ({ page }) => {
  await page.goto("/");
});

test("type tables match the gguf package's", async ({ page }) => {
  const tables = await page.evaluate(async () => (await import("/tests/browser/gguf_page.mjs")).tables);
  const names = Object.fromEntries(Object.entries(summary.ggml_types).map(([name, id]) => [String(id), name]));
  expect(tables.ggmlTypeNames).toEqual(names);
  expect(tables.supportedTypes).toEqual(summary.supported_types);
  expect(tables.valueTypes).toEqual(summary.value_types);
});

for (const file of ["tiny.gguf", "tiny_align64.gguf", "tiny_v2.gguf", "hand_built.gguf"]) {
  test(`${file} reads as Python reads it, however it streams`, async ({ page }) => {
    const expected = summary.files[file];
    expect(expected.error, "Python's reader").toBeUndefined();
    const { size, ...pythonView } = expected;
    for (const mode of MODES) {
      const got = await read(page, file, mode);
      expect(got.error, JSON.stringify(mode)).toBeUndefined();
      expect(got.file, JSON.stringify(mode)).toEqual(pythonView);
      expect(got.problems, JSON.stringify(mode)).toEqual([]);
      expect(got.order, "tensors arrive in file order").toEqual(sortedByOffset(pythonView.tensors));
    }
  });
}

for (const [file, architecture] of [["smollm2.gguf", "llama"], ["gemma3.gguf", "gemma3"]]) {
  test(`the real ${file} streams with the metadata and tensor bytes Python reads`, async ({ page, request }) => {
    test.setTimeout(120_000);
    const { size, ...pythonView } = summary.files[file];
    expect(pythonView.error, "Python's reader").toBeUndefined();

    // the server ignores Range: a ranged request still gets the whole file, so the reader cannot lean on it
    const ranged = await request.head(`${DATA_URL}/${file}`, { headers: { Range: "bytes=0-3" } });
    expect(ranged.status()).toBe(200);
    expect(Number(ranged.headers()["content-length"])).toBe(size);

    const got = await read(page, file, { knownSize: true });
    expect(got.error).toBeUndefined();
    expect(got.architecture).toBe(architecture);
    expect(got.file.version).toBe(pythonView.version);
    expect(got.file.metadata).toEqual(pythonView.metadata);
    expect(got.file.tensors).toEqual(pythonView.tensors);
    expect(got.problems).toEqual([]);
    expect(got.order).toEqual(sortedByOffset(pythonView.tensors));
    // never the whole file in one buffer: every chunk is a view of a buffer far smaller than the file
    expect(got.chunks).toBeGreaterThan(pythonView.tensors.length);
    expect(got.maxChunkBuffer).toBeLessThan(32 * 1024 * 1024);
    expect(got.maxChunkBuffer).toBeLessThan(size / 3);
  });
}

test("corrupt files reject with ModelFormatError naming the key or tensor", async ({ page }) => {
  const words: Record<string, string> = summary.expect_in_error;
  expect(Object.keys(words).length).toBeGreaterThan(10);
  for (const [file, word] of Object.entries(words)) {
    const python = summary.files[file].error;
    expect(python, `${file}: Python's reader`).toContain(word);
    for (const mode of [{ knownSize: true }, { knownSize: false }, { knownSize: false, chunk: 5 }] as Mode[]) {
      const got = await read(page, file, mode);
      const where = `${file} ${JSON.stringify(mode)}`;
      expect(got.error, where).toBeDefined();
      expect(got.error.name, `${where}: ${got.error.message}`).toBe("ModelFormatError");
      expect(got.error.isModelFormatError, where).toBe(true);
      expect(got.error.message, where).toContain(word);
      expect(got.error.message, `${where} names the file`).toContain(`${DATA_URL}/${file}`);
    }
  }
});

test("a forged length fails before the rest of the stream is read", async ({ page }) => {
  // The stream announces a 2^61-element array and then never ends: the reader must refuse from the
  // count alone, both with a known size and against its header cap.
  const result = await page.evaluate(async () => {
    const wgllm = await import("/web/dist/genai_bundle.mjs");
    const head = new Uint8Array(4 + 4 + 8 + 8 + 8 + 4 + 4 + 4 + 8);
    const v = new DataView(head.buffer);
    let p = 0;
    head.set([0x47, 0x47, 0x55, 0x46], 0); // GGUF
    v.setUint32((p += 4), 3, true);
    v.setBigUint64((p += 4), 0n, true); // tensors
    v.setBigUint64((p += 8), 1n, true); // keys
    v.setBigUint64((p += 8), 4n, true); // key length
    head.set([0x62, 0x69, 0x67, 0x21], (p += 8)); // "big!"
    v.setUint32((p += 4), 9, true); // ARRAY
    v.setUint32((p += 4), 6, true); // of FLOAT32
    v.setBigUint64((p += 4), 1n << 61n, true);
    const out: string[] = [];
    for (const size of [undefined, 1 << 30]) {
      let pulls = 0;
      const endless = new ReadableStream<Uint8Array>({
        pull(c) {
          pulls += 1;
          c.enqueue(pulls === 1 ? head : new Uint8Array(1 << 16));
        },
      });
      try {
        await wgllm.readGGUF(endless, { source: "endless", size });
        out.push("accepted");
      } catch (e) {
        out.push(`${(e as Error).name}: ${(e as Error).message} after ${pulls} pulls`);
      }
    }
    return out;
  });
  for (const line of result) {
    expect(line).toMatch(/^ModelFormatError: .*array big!/);
    expect(Number(line.match(/after (\d+) pulls/)![1])).toBeLessThan(4);
  }
});

test("an HTTP error rejects with ModelFetchError naming the URL and status", async ({ page }) => {
  const got = await page.evaluate(async () => {
    const wgllm = await import("/web/dist/genai_bundle.mjs");
    try {
      await wgllm.fetchGGUF("/build/browser-test-data/no-such-model.gguf");
      return null;
    } catch (e: any) {
      return { name: e.name, message: e.message, status: e.status, url: e.url };
    }
  });
  expect(got).not.toBeNull();
  expect(got!.name).toBe("ModelFetchError");
  expect(got!.status).toBe(404);
  expect(got!.message).toContain("/build/browser-test-data/no-such-model.gguf");
  expect(got!.message).toContain("HTTP 404");
});
