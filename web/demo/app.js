// The wgllm demo chat. Served by `serve-models` at "/" (the bundle at ./dist/, models listed by
// ./api/models, LoRA adapters by ./api/loras with live updates from ./api/loras/events), or from
// any static host laid out the same way (then the LoRA list does not update live).
import { FilesetResolver, LlmChat, LlmInference } from "./dist/genai_bundle.mjs";

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"), model: $("model"), lora: $("lora"), load: $("load"), progress: $("progress"),
  progressText: $("progressText"), newChat: $("newChat"), messages: $("messages"), composer: $("composer"),
  prompt: $("prompt"), send: $("send"), stop: $("stop"), stats: $("stats"),
  maxTokens: $("maxTokens"), topK: $("topK"), temperature: $("temperature"), randomSeed: $("randomSeed"),
  useWorker: $("useWorker"), cacheModel: $("cacheModel"),
};
// Read by the browser test (tests/browser/demo.spec.ts) and handy in the console.
const state = (window.wgllmDemo = {
  llm: null, chat: null, loras: new Map(), loraList: [], loraRanks: [], ready: false, busy: false, turns: 0, error: null, statusLog: [],
});

function status(text, error = false) {
  ui.status.textContent = text;
  state.statusLog.push(text);
  ui.status.classList.toggle("error", error);
  if (error) state.error = text;
}

function mib(n) {
  return `${(n / 2 ** 20).toFixed(1)} MiB`;
}

function setBusy(busy) {
  state.busy = busy;
  ui.send.disabled = busy || !state.ready;
  ui.prompt.disabled = !state.ready;
  ui.stop.disabled = !busy;
  ui.load.disabled = busy;
}

function options() {
  return {
    maxTokens: Number(ui.maxTokens.value),
    topK: Number(ui.topK.value),
    temperature: Number(ui.temperature.value),
    randomSeed: Number(ui.randomSeed.value),
  };
}

async function listModels() {
  const query = new URLSearchParams(location.search).get("model");
  let models = [];
  try {
    const r = await fetch("./api/models");
    if (r.ok) models = await r.json();
  } catch {
    /* no model list: a ?model=URL is needed */
  }
  if (query) models.unshift({ name: query.split("/").pop(), url: query, size: 0, architecture: "?" });
  ui.model.replaceChildren(
    ...models.map((m) => new Option(`${m.name} (${m.architecture}${m.size ? `, ${mib(m.size)}` : ""})`, m.url)),
  );
  return models;
}

function showLoras(loras) {
  const keep = ui.lora.value;
  ui.lora.replaceChildren(
    new Option("none", ""),
    ...loras.map((l) => new Option(`${l.name} (rank ${l.rank}${l.base_model ? `, for ${l.base_model}` : ""})`, l.url)),
  );
  if ([...ui.lora.options].some((o) => o.value === keep)) ui.lora.value = keep;
  state.lorasListed = loras.map((l) => l.name);
  state.loraList = loras;
}

/** The ranks of every adapter listed now, plus those already declared (ascending). */
function listedRanks() {
  return [...new Set([...state.loraRanks, ...state.loraList.map((l) => l.rank)])].sort((a, b) => a - b);
}

async function watchLoras() {
  try {
    const r = await fetch("./api/loras");
    if (r.ok) showLoras(await r.json());
  } catch {
    return;
  }
  if (typeof EventSource === "undefined") return;
  const events = new EventSource("./api/loras/events");
  events.onmessage = (e) => showLoras(JSON.parse(e.data));
  events.onerror = () => {
    if (events.readyState === EventSource.CLOSED) events.close(); // static hosting: no live updates
  };
}

async function loadModel() {
  const url = ui.model.value;
  if (!url) return status("No model to load: start serve-models, or open this page with ?model=URL", true);
  state.ready = false;
  setBusy(true);
  state.llm?.close();
  state.llm = null;
  state.loras.clear();
  ui.progress.hidden = false;
  ui.progress.value = 0;
  status(`Loading ${url}…`);
  const t0 = performance.now();
  try {
    const fileset = await FilesetResolver.forGenAiTasks("https://cdn.jsdelivr.net/npm/@mediapipe/tasks-genai/wasm");
    state.loraRanks = []; // a new model declares the ranks of the adapters listed now
    const loraRanks = listedRanks();
    state.llm = await LlmInference.createFromOptions(fileset, {
      baseOptions: { modelAssetPath: url },
      ...options(),
      loraRanks,
      useWorker: ui.useWorker.checked,
      cacheModel: ui.cacheModel.checked,
      onLoadProgress: (loaded, total, stage) => {
        ui.progress.value = total ? loaded / total : 0;
        ui.progressText.textContent = `${stage === "download" ? "downloading" : "loading"} ${mib(loaded)}${total ? ` of ${mib(total)}` : ""}`;
      },
    });
    state.maxTokens = options().maxTokens;
    state.loraRanks = loraRanks;
    newChat();
    state.ready = true;
    status(`Ready: ${state.llm.modelInfo.architecture} model loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } catch (e) {
    status(`Could not load the model: ${e.message}`, true);
  } finally {
    ui.progress.hidden = true;
    ui.progressText.textContent = "";
    setBusy(false);
  }
}

function newChat() {
  ui.messages.replaceChildren();
  ui.stats.textContent = "";
  if (!state.llm) return;
  try {
    state.chat = new LlmChat(state.llm);
  } catch {
    state.chat = null; // no chat template: prompts go to the model as written
  }
}

function bubble(role, text) {
  const li = document.createElement("li");
  li.className = role;
  li.textContent = text;
  ui.messages.append(li);
  li.scrollIntoView({ block: "end" });
  return li;
}

async function adapter() {
  const url = ui.lora.value;
  if (!url) return undefined;
  if (!state.loras.has(url)) {
    // LoRA ranks are declared when the model is created (as in MediaPipe): an adapter that arrived
    // later with a new rank reloads the model with the ranks of every listed adapter.
    const info = state.loraList.find((l) => l.url === url);
    if (info && !state.loraRanks.includes(info.rank)) {
      const ranks = listedRanks();
      status(`Reloading the model to declare LoRA ranks ${ranks.join(", ")} (${info.name} has rank ${info.rank})…`);
      await state.llm.setOptions({ loraRanks: ranks });
      state.loraRanks = ranks;
    }
    state.loras.set(url, await state.llm.loadLoraModel(url));
  }
  return state.loras.get(url);
}

async function send(text) {
  const llm = state.llm;
  if (!llm || state.busy || !text.trim()) return;
  setBusy(true);
  bubble("user", text);
  const answer = bubble("assistant streaming", "");
  const listener = (partial, done) => {
    answer.textContent += partial;
    if (done) answer.classList.remove("streaming");
    answer.scrollIntoView({ block: "end" });
  };
  try {
    const opts = options();
    if (opts.maxTokens !== state.maxTokens) status("Reloading the model for the new maxTokens…");
    await llm.setOptions(opts); // maxTokens sizes the KV cache: a change reloads the model
    state.maxTokens = opts.maxTokens;
    const lora = await adapter();
    if (state.chat) {
      state.chat.lora = lora;
      await state.chat.send(text, listener);
    } else if (lora) {
      await llm.generateResponse(text, lora, listener);
    } else {
      await llm.generateResponse(text, listener);
    }
    ui.stats.textContent = statsLine(llm.lastStats);
    state.turns += 1;
    status("Ready");
  } catch (e) {
    answer.classList.remove("streaming");
    status(`Generation failed: ${e.message}`, true);
  } finally {
    setBusy(false);
  }
}

/** What the user waited for: the first token (the prompt's prefill), then the decode rate. */
function statsLine(s) {
  const rate = (tokens, seconds) => (seconds > 0 ? (tokens / seconds).toFixed(1) : "–");
  const decode = s.decodeTokens
    ? `then ${s.decodeTokens} tokens at ${rate(s.decodeTokens, s.decodeSeconds)} tokens/s (decode)`
    : "no decode steps";
  return (
    `First token after ${s.firstTokenSeconds.toFixed(2)} s (prefill of ${s.prefillTokens} prompt tokens at ` +
    `${rate(s.prefillTokens, s.prefillSeconds)} tokens/s, ${s.reusedPromptTokens} reused from the previous turn), ${decode}` +
    ` — ${s.generatedTokens} tokens in ${s.seconds.toFixed(1)} s`
  );
}

ui.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = ui.prompt.value;
  ui.prompt.value = "";
  void send(text);
});
ui.prompt.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    ui.composer.requestSubmit();
  }
});
ui.stop.addEventListener("click", () => state.llm?.cancelProcessing());
ui.newChat.addEventListener("click", newChat);
ui.load.addEventListener("click", () => void loadModel());
ui.model.addEventListener("change", () => void loadModel());

// Options may come in the URL too: ?maxTokens=128&topK=1&temperature=0&randomSeed=3&useWorker=0
for (const [key, value] of new URLSearchParams(location.search)) {
  const input = ui[key];
  if (!(input instanceof HTMLInputElement)) continue;
  if (input.type === "checkbox") input.checked = value !== "0" && value !== "false";
  else input.value = value;
}

if (!navigator.gpu) {
  status("This browser has no WebGPU: use a recent Chrome or Edge (on Linux start it with --enable-unsafe-webgpu)", true);
} else {
  await Promise.all([listModels(), watchLoras()]);
  await loadModel();
}
