// The page's program, as MediaPipe's LLM Inference guide for the web writes it (FilesetResolver,
// LlmInference.createFromOptions, generateResponse with a progress listener), plus timestamps.
// The run's settings come from the query: model, maxTokens, prompt. window.peerResult resolves to
// what was measured; the runner (bench/mediapipe_peer.mjs) reads it.
import { FilesetResolver, LlmInference } from "@mediapipe/tasks-genai";

const query = new URLSearchParams(location.search);
const modelAssetPath = query.get("model");
const maxTokens = Number(query.get("maxTokens"));
const prompt = query.get("prompt");
const output = document.getElementById("output");

async function run() {
  const t0 = performance.now();
  const genai = await FilesetResolver.forGenAiTasks("/mediapipe/wasm"); // served locally
  const llm = await LlmInference.createFromOptions(genai, {
    baseOptions: { modelAssetPath },
    maxTokens,
    topK: 1,
    temperature: 0,
    randomSeed: 0,
  });
  const loadS = (performance.now() - t0) / 1000;
  const promptTokens = llm.sizeInTokens(prompt);
  const calls = []; // [ms since generateResponse, characters] per listener call
  const t1 = performance.now();
  const answer = await llm.generateResponse(prompt, (partial, done) => {
    calls.push([performance.now() - t1, partial.length, done]);
    output.textContent += partial;
  });
  const totalS = (performance.now() - t1) / 1000;
  const ids = llm.lastResults?.[0]?.tokens ?? null; // wgllm only: the ids it sampled
  const result = { loadS, promptTokens, answer, answerTokens: llm.sizeInTokens(answer), calls, totalS, tokens: ids?.length ?? null, ids };
  llm.close();
  return result;
}

window.peerResult = run().catch((e) => ({ error: `${e?.name}: ${e?.message ?? e}` }));
