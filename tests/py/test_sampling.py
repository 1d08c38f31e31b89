"""The sampler chain (wgllm.sampling, reference.sample, shaders/sample.wgsl): the reference's plain
functions against straight float64 definitions written here, the GPU shader and the GPU engine
against the reference per option and in combination (tiny model and SmolLM2), stop strings across
token boundaries, and the errors for bad options."""

from __future__ import annotations

import codecs
import math

import numpy as np
import pytest
from tiny_models import convert_tiny

from wgllm import reference
from wgllm.generation import ReferenceSession, run_generation
from wgllm.gpu.engine import GpuEngine
from wgllm.gpu.runtime import get_context
from wgllm.inference import LlmInference
from wgllm.model import load_model
from wgllm.sampling import MAX_STOP, SamplingParams, StopFilter, mask_words

# -- straight definitions (float64, written from the documented semantics, not from reference.py) --


def straight_adjusted(logits, bias, history, last_n, rp, fp, pp) -> np.ndarray:
    x = logits.astype(np.float64)
    for i, b in bias.items():
        x[i] += b
    window = [] if last_n == 0 else history if last_n == -1 else history[-last_n:]
    for t in set(window):
        c = window.count(t)
        x[t] = x[t] / rp if x[t] > 0 else x[t] * rp
        x[t] -= c * fp + (1 if c > 0 else 0) * pp
    return x


def straight_distribution(x, top_k, top_p, min_p, temperature) -> dict[int, float]:
    """{id: probability} of the chain's draw on adjusted logits x."""
    order = sorted(range(len(x)), key=lambda i: (-x[i], i))[:top_k]
    v = np.array([x[i] for i in order])
    p = np.exp(v - v[0]) / np.exp(v - v[0]).sum()
    keep = len(v)
    cum = 0.0
    for i, q in enumerate(p):
        cum += q
        if cum >= top_p:
            keep = i + 1
            break
    keep = min(keep, max(1, int(np.sum(p / p[0] >= min_p))))
    w = np.exp((v[:keep] - v[0]) / temperature)
    return {order[i]: w[i] / w.sum() for i in range(keep)}


def straight_log_softmax(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x - np.log(np.sum(np.exp(x - x.max()))) - x.max()


@pytest.fixture(scope="module")
def ctx():
    return get_context()


@pytest.fixture(scope="module")
def logits_and_history():
    rng = np.random.default_rng(2024)
    logits = (rng.standard_normal(1000) * 2.0 + 1.0).astype(np.float32)
    logits[rng.choice(1000, 30, replace=False)] -= 6.0  # some negative ones in play
    top = list(np.argsort(-logits)[:12])
    history = [int(t) for t in rng.choice(top + [5, 6, 7], 80)]  # the best ids repeat in the window
    return logits, history


def test_penalties_and_bias_as_straight_definition(logits_and_history):
    logits, history = logits_and_history
    bias = {3: 4.5, int(np.argmax(logits)): -100.0, 999: 0.25}
    for last_n, rp, fp, pp in [(64, 1.3, 0.0, 0.0), (-1, 1.0, 0.8, 0.0), (16, 1.0, 0.0, -1.2), (64, 0.7, -0.5, 1.5), (0, 2.0, 1.0, 1.0)]:
        p = SamplingParams(repetition_penalty=rp, frequency_penalty=fp, presence_penalty=pp, penalty_last_n=last_n, logit_bias=bias)
        got = reference.apply_penalties(reference.apply_logit_bias(logits, bias), p.counts(history), rp, fp, pp)
        want = straight_adjusted(logits, bias, history, last_n, rp, fp, pp)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)
        if last_n != 0:
            assert not np.allclose(got, reference.apply_logit_bias(logits, bias)), "the penalty changed nothing"
        short = history[:10]  # a window longer than the history: all of it
        got = reference.apply_penalties(logits, p.counts(short), rp, fp, pp)
        np.testing.assert_allclose(got, straight_adjusted(logits, {}, short, last_n, rp, fp, pp), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    "top_k,top_p,min_p,temperature",
    [(40, 1.0, 0.0, 1.0), (64, 0.6, 0.0, 1.0), (64, 1.0, 0.2, 0.8), (20, 0.9, 0.05, 1.7), (64, 0.3, 0.5, 0.5)],
)
def test_draw_follows_the_straight_distribution(logits_and_history, top_k, top_p, min_p, temperature):
    """Over a grid of u, the reference picks each id as often as the float64 distribution says."""
    logits, _ = logits_and_history
    want = straight_distribution(logits.astype(np.float64), top_k, top_p, min_p, temperature)
    n = 4000
    picks: dict[int, int] = {}
    for j in range(n):
        t = reference.sample(logits, top_k=top_k, temperature=temperature, u=(j + 0.5) / n, top_p=top_p, min_p=min_p).token
        picks[t] = picks.get(t, 0) + 1
    assert set(picks) <= set(want)
    for t, prob in want.items():
        assert abs(picks.get(t, 0) / n - prob) <= 1.5 / n, f"id {t}: {picks.get(t, 0) / n} vs {prob}"
    if top_p < 1.0 or min_p > 0.0:
        assert len(want) < top_k, "truncation cut nothing: not a test of it"


def test_logprobs_are_log_softmax_of_adjusted_logits(logits_and_history):
    logits, history = logits_and_history
    bias = {7: 3.0}
    p = SamplingParams(top_k=40, temperature=0.7, repetition_penalty=1.4, logit_bias=bias, logprobs=True, top_logprobs=20)
    s = p.sample_reference(logits, 3, history)
    lp = straight_log_softmax(straight_adjusted(logits, bias, history, 64, 1.4, 0.0, 0.0))
    order = sorted(range(len(lp)), key=lambda i: (-lp[i], i))[:20]
    assert [i for i, _ in s.top] == order
    np.testing.assert_allclose([v for _, v in s.top], lp[order], atol=1e-5)
    assert s.logprob == pytest.approx(lp[s.token], abs=1e-5)
    greedy = SamplingParams(top_k=1, temperature=0.0, logit_bias={11: 100.0}, logprobs=True).sample_reference(logits, 0, history)
    assert greedy.token == 11 and greedy.top == []
    assert greedy.logprob == pytest.approx(straight_log_softmax(straight_adjusted(logits, {11: 100.0}, [], 0, 1, 0, 0))[11], abs=1e-5)


# -- the shader against the reference -----------------------------------------------------------


def gpu_sample(ctx, logits: np.ndarray, p: SamplingParams, step: int, history, wg_size: int | None = None, mask=None) -> reference.Sampled:
    """One sample.wgsl launch, as GpuEngine.sample_with makes it (the row at an offset: row 1 of 2);
    wg_size: its workgroup (None: the shader's default, the cpu family's); mask: a grammar's (bool)."""
    vocab = logits.shape[0]
    rows = ctx.buffer(np.stack([logits[::-1], logits]).astype(np.float32))
    entries = p.adjust_entries(history)
    adjust = ctx.buffer(entries if len(entries) else np.zeros((1, 4), np.uint32))
    out = ctx.buffer(np.array([0xFFFFFFFF], np.uint32))
    lp = ctx.buffer(np.full(42, 0x7FC00000, np.uint32))
    n_top = p.top_logprobs if p.logprobs else 0
    uni = np.zeros(13, np.uint32)
    uni[:] = [vocab, vocab, p.top_k, 0, p.seed & 0xFFFFFFFF, step, 0, 0, 0, len(entries), n_top, int(p.logprobs), int(mask is not None)]
    uni.view(np.float32)[[3, 6, 7, 8]] = [p.temperature, p.top_p, p.min_p, p.repetition_penalty]
    bits = ctx.buffer(mask_words(mask) if mask is not None else np.zeros(4, np.uint32))
    ctx.run("sample.wgsl", [ctx.buffer(uni, uniform=True), adjust, rows, out, lp, bits], (1, 1, 1), constants={"WG_SIZE": wg_size} if wg_size else None)
    s = reference.Sampled(int(ctx.read(out, np.uint32)[0]))
    if p.logprobs:
        raw = ctx.read(lp, np.uint32)
        assert raw[1] == n_top
        s.logprob = float(raw[:1].view(np.float32)[0])
        s.top = [(int(raw[2 + 2 * j]), float(raw[3 + 2 * j : 4 + 2 * j].view(np.float32)[0])) for j in range(n_top)]
    return s


def pick_at(p: SamplingParams, logits, history, u: float) -> int:
    return reference.sample(
        logits, top_k=p.top_k, temperature=p.temperature, u=u, top_p=p.top_p, min_p=p.min_p, logit_bias=p.logit_bias,
        counts=p.counts(history), repetition_penalty=p.repetition_penalty, frequency_penalty=p.frequency_penalty,
        presence_penalty=p.presence_penalty,
    ).token


OPTIONS = {
    "top_p": dict(top_k=64, top_p=0.5),
    "min_p": dict(top_k=64, min_p=0.25),
    "repetition_penalty": dict(repetition_penalty=1.8),
    "frequency_penalty": dict(frequency_penalty=1.2, penalty_last_n=-1),
    "presence_penalty": dict(presence_penalty=1.5, penalty_last_n=16),
    "logit_bias": dict(logit_bias={5: 4.0, 6: 3.0, 900: 6.0}),
    "combined": dict(
        top_k=64, top_p=0.8, min_p=0.05, temperature=0.7, repetition_penalty=1.3, frequency_penalty=0.4,
        presence_penalty=0.3, penalty_last_n=32, logit_bias={5: 2.0, 17: -100.0},
    ),
    "greedy_penalized": dict(top_k=1, temperature=0.0, repetition_penalty=1.5, logit_bias={900: 3.0}),
}


@pytest.mark.parametrize("wg_size", [None, 256])  # the cpu family's default workgroup, the gpu family's
@pytest.mark.parametrize("name", list(OPTIONS))
def test_shader_gives_reference_tokens_and_logprobs(ctx, logits_and_history, name, wg_size):
    logits, history = logits_and_history
    base = dict(top_k=40, temperature=1.0)
    opts = {**base, **OPTIONS[name]}
    got, want, plain, ambiguous = [], [], [], 0
    for seed in (0, 7, 2**32 - 1):
        for step in range(6):
            p = SamplingParams(**opts, seed=seed, logprobs=step % 2 == 1, top_logprobs=20 if step % 2 else 0).checked(len(logits))
            g = gpu_sample(ctx, logits, p, step, history, wg_size)
            w = p.sample_reference(logits, step, history)
            if g.token != w.token:  # allowed only where u lies within exp's rounding of a boundary
                u = reference.random_uniform(seed, step)
                near = {pick_at(p, logits, history, min(max(u + du, 0.0), 1 - 2**-24)) for du in (-1e-5, 1e-5)}
                assert g.token in near, f"{name} seed {seed} step {step}: GPU {g.token}, reference {w.token}"
                ambiguous += 1
            if p.logprobs:
                assert [i for i, _ in g.top] == [i for i, _ in w.top]
                np.testing.assert_allclose([v for _, v in g.top], [v for _, v in w.top], atol=2e-5)
                assert g.logprob == pytest.approx(w.logprob, abs=2e-5)
            got.append(g.token)
            want.append(w.token)
            plain.append(SamplingParams(**base, seed=seed).sample_reference(logits, step, history).token)
    assert ambiguous <= 1
    assert got != plain, f"{name} changed no token: not a test of it"


def test_mask_words_bit_order():
    mask = np.zeros(70, bool)
    mask[[0, 31, 32, 69]] = True
    assert mask_words(mask).tolist() == [1 | 1 << 31, 1, 1 << 5]


@pytest.mark.parametrize("wg_size", [None, 256])
@pytest.mark.parametrize("allowed", [1, 3, 40, 700])  # fewer allowed ids than top_k, and more
def test_shader_applies_the_grammar_mask_as_the_reference(ctx, logits_and_history, allowed, wg_size):
    """A grammar's mask: the GPU draws only allowed ids and the reference's token for the same u,
    greedy or sampled, with penalties, top-p and logprobs (a masked id's logprob is MASKED's)."""
    logits, history = logits_and_history
    rng = np.random.default_rng(allowed)
    mask = np.zeros(len(logits), bool)
    mask[rng.choice(len(logits), allowed, replace=False)] = True
    mask[np.argsort(-logits)[:2]] = False  # the best ids left out: the unmasked picks differ
    if allowed < 3:
        mask[:] = False
        mask[[999, 3][:allowed]] = True
    moved = 0
    for opts in (dict(top_k=1, temperature=0.0), dict(top_k=40, temperature=1.5), dict(top_k=64, top_p=0.9, repetition_penalty=1.3, temperature=0.4)):
        for step in range(5):
            p = SamplingParams(**opts, seed=11, logprobs=step % 2 == 0, top_logprobs=5 if step % 2 == 0 else 0).checked(len(logits))
            g = gpu_sample(ctx, logits, p, step, history, wg_size, mask)
            w = p.sample_reference(logits, step, history, mask)
            assert mask[g.token] and g.token == w.token, f"{opts} step {step}: GPU {g.token}, reference {w.token}"
            if p.logprobs:
                assert [i for i, _ in g.top] == [i for i, _ in w.top]
                np.testing.assert_allclose([v for _, v in g.top], [v for _, v in w.top], rtol=1e-6, atol=2e-5)
                assert g.logprob == pytest.approx(w.logprob, abs=2e-5)
            moved += w.token != p.sample_reference(logits, step, history).token
    assert moved >= 10, "the mask changed few picks: not a test of it"


# -- the engines on models ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny Phi-2: unlike the other tiny models, whose greedy and sampled answers repeat one token,
    its answers vary, so every option has something to change."""
    return load_model(convert_tiny("phi2", 32, tmp_path_factory.mktemp("sampling") / "phi2-32.gguf"))


def run_both(model, engine, prompt, n, **opts):
    gpu = engine.session(**opts)
    ref = ReferenceSession(model, **opts)
    a, b = [gpu.prefill(prompt)], [ref.prefill(prompt)]
    while len(a) < n:
        a.append(gpu.decode(a[-1]))
        b.append(ref.decode(b[-1]))
    return gpu, ref, a, b


ENGINE_OPTIONS = {
    "top_p": dict(top_k=64, top_p=0.6),
    "min_p": dict(top_k=64, min_p=0.3),
    "repetition_penalty": dict(repetition_penalty=2.0),
    "frequency_penalty": dict(frequency_penalty=1.5, penalty_last_n=-1),
    "presence_penalty": dict(presence_penalty=2.0),
    "logit_bias": dict(logit_bias={40: 5.0, 41: 5.0, 42: 5.0}),
    "logprobs": dict(logprobs=True, top_logprobs=20),
    "combined": dict(
        top_k=64, top_p=0.9, min_p=0.02, temperature=1.2, repetition_penalty=1.3, frequency_penalty=0.5,
        presence_penalty=0.5, penalty_last_n=8, logit_bias={40: 2.0}, logprobs=True, top_logprobs=5,
    ),
}


def test_gpu_engine_gives_reference_tokens_per_option(tiny):
    """Each option alone and all together: the GPU engine's tokens (and logprobs) are the reference's,
    and differ from plain top-k sampling with the same seed."""
    engine = GpuEngine(tiny, max_tokens=40, force_f32=True)
    prompt = [5, 17, 42, 7, 5, 17]
    base = dict(top_k=40, temperature=1.0, seed=11)
    _, _, plain, plain_ref = run_both(tiny, engine, prompt, 20, **base)
    assert plain == plain_ref
    for name, extra in ENGINE_OPTIONS.items():
        gpu, ref, a, b = run_both(tiny, engine, prompt, 20, **{**base, **extra})
        assert a == b, name
        if extra.get("logprobs"):
            for g, r in zip(gpu.sampled, ref.sampled):
                assert [i for i, _ in g.top] == [i for i, _ in r.top]
                np.testing.assert_allclose([v for _, v in g.top], [v for _, v in r.top], atol=1e-4)
                assert g.logprob == pytest.approx(r.logprob, abs=1e-4) and g.logprob <= 0
        else:
            assert a != plain, f"{name} changed no token: not a test of it"
    engine.close()


def test_smollm2_gpu_engine_gives_reference_tokens_combined(smollm2_path):
    model = load_model(smollm2_path)
    prompt = model.tokenizer.encode("The capital of France is", add_special=True)
    engine = GpuEngine(model, max_tokens=40, force_f32=True)
    opts = dict(
        top_k=64, temperature=0.9, seed=3, top_p=0.9, min_p=0.02, repetition_penalty=1.3, frequency_penalty=0.4,
        presence_penalty=0.2, logit_bias={model.tokenizer.encode(" Paris")[0]: -100.0}, logprobs=True, top_logprobs=5,
    )
    gpu, ref, a, b = run_both(model, engine, prompt, 12, **opts)
    engine.close()
    assert a == b
    for g, r in zip(gpu.sampled, ref.sampled):
        assert [i for i, _ in g.top][:3] == [i for i, _ in r.top][:3]
        assert g.logprob == pytest.approx(r.logprob, abs=2e-3)
    assert opts["logit_bias"].keys().isdisjoint(a)


# -- stop strings -------------------------------------------------------------------------------


def test_stop_filter_holds_back_possible_starts():
    f = StopFilter(["</end>", "xyz"])
    assert f.push("hello <") == "hello "
    assert f.push("/en") == ""
    assert f.push("x and more") == "</enx and more"  # not a stop string after all
    assert f.push(" x") == " "
    assert f.push("yz tail") == "" and f.stopped == "xyz"
    g = StopFilter(["ab"])
    assert g.push("a") == "" and g.flush() == "a"  # the end releases what was held


def test_stop_string_across_token_boundary(tiny):
    """A stop string made of the end of one token's text and the start of the next one's ends the
    answer before it; the listener never receives any of it."""
    ids = [5, 17, 42, 7]
    pieces: list[str] = []
    full = run_generation(tiny, ReferenceSession(tiny, top_k=1, temperature=0.0, seed=0), ids, 40, lambda p, done: pieces.append(p))
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    texts = [utf8.decode(tiny.tokenizer.token_bytes(t)) for t in full.tokens]  # each token's piece, as the loop decodes them
    readable = [bool(t) and t.isprintable() and "\ufffd" not in t for t in texts]
    j = next(j for j in range(len(texts) - 1) if readable[j] and readable[j + 1] and len(texts[j] + texts[j + 1]) >= 3)
    stop = texts[j][-2:] + texts[j + 1][:2]
    at = full.text.find(stop)
    assert 0 <= at < len("".join(texts[: j + 1]))
    for make in (lambda: ReferenceSession(tiny, top_k=1, temperature=0.0, seed=0), lambda: GpuEngine(tiny, max_tokens=40).session(top_k=1, temperature=0.0, seed=0)):
        heard: list[str] = []
        cut = run_generation(tiny, make(), ids, 40, lambda p, done: heard.append(p), stop=["never there", stop])
        assert cut.text == full.text[:at] == "".join(heard)
        assert cut.finish_reason == "stop" and cut.stop == stop
        assert len(cut.tokens) <= j + 2 and cut.tokens == full.tokens[: len(cut.tokens)]
    assert "".join(pieces) == full.text


def test_llm_inference_options_on_both_backends(tiny):
    """The extras are LlmInference options; both backends give the same answers, logprobs and
    num_responses (OpenAI's n) answers."""
    opts = dict(max_tokens=30, top_k=64, temperature=1.0, random_seed=5, top_p=0.9, repetition_penalty=1.5, num_responses=2, logprobs=True, top_logprobs=3)
    got = {}
    for backend in ("reference", "gpu"):
        with LlmInference.create_from_options(tiny.path, backend=backend, **opts) as llm:
            got[backend] = (llm.generate_responses("The quick brown"), [g.tokens for g in llm.last_generations], llm.last_generations)
    assert got["reference"][:2] == got["gpu"][:2]
    texts, tokens, gens = got["gpu"]
    assert len(texts) == 2 and tokens[0] != tokens[1]
    assert all(len(s.top) == 3 and s.logprob <= 0 for g in gens for s in g.sampled)


# -- bad options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(top_p=0.0), r"top_p must be a number in \(0, 1\], got 0.0"),
        (dict(top_p=1.5), r"top_p must be"),
        (dict(min_p=-0.1), r"min_p must be a number in \[0, 1\]"),
        (dict(repetition_penalty=0), r"repetition_penalty must be a number > 0"),
        (dict(frequency_penalty=3), r"frequency_penalty must be a number in \[-2, 2\]"),
        (dict(presence_penalty=math.nan), r"presence_penalty must be"),
        (dict(penalty_last_n=-2), r"penalty_last_n must be an integer >= -1"),
        (dict(top_logprobs=21, logprobs=True), r"top_logprobs must be an integer in \[0, 20\], got 21"),
        (dict(top_logprobs=2), r"top_logprobs = 2 needs logprobs = True"),
        (dict(logprobs="yes"), r"logprobs must be true or false"),
        (dict(logit_bias={100000: 1.0}), r"logit_bias: token id 100000 is outside the vocabulary \(expected 0\.\.\d+\)"),
        (dict(logit_bias={"-1": 1.0}), r"logit_bias: token id '-1' is outside the vocabulary"),
        (dict(logit_bias={3: 200}), r"logit_bias\[3\] must be a number in \[-100, 100\], got 200"),
        (dict(stop=["a"] * (MAX_STOP + 1)), rf"stop has {MAX_STOP + 1} strings, at most {MAX_STOP} are allowed"),
        (dict(stop=[""]), r"stop strings must be non-empty"),
        (dict(stop=5), r"stop must be a string or a list of strings"),
    ],
)
def test_bad_options_are_refused_by_name(tiny, options, message):
    with pytest.raises(ValueError, match=message):
        LlmInference.create_from_options(tiny.path, backend="reference", **options)


def test_unknown_option_is_refused(tiny):
    with pytest.raises(TypeError, match="unknown LlmInference option"):
        LlmInference.create_from_options(tiny.path, backend="reference", top_q=0.5)
