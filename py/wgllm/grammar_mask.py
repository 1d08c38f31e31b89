"""The grammar of wgllm.grammar as a mask over a vocabulary: which tokens may come next.

A token is allowed when the matcher accepts all of its bytes from the current state (a token may
end in the middle of a string, an escape or a UTF-8 character); end-of-generation tokens only when
the state is accepting. Control and unknown tokens and tokens without bytes are never allowed.

The mask walks a trie of the vocabulary's byte strings with the matcher's stacks, dropping a
subtree at its first rejected byte, so a state that allows little costs little. Inside a string
nearly every token is allowed; there the "plain" tokens (no '"', '\\' or control byte: their
bytes can only go on with the string) are taken from tables computed once per vocabulary (the
UTF-8 state each leaves the string in, and its character count for maxLength), and only the
other tokens are walked. Masks are cached per stack.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Sequence

import numpy as np
from gguf import TokenType

from wgllm.grammar import K, LEX, NORMAL, S, UTF8_LEX, GrammarState, JsonGrammar

_TEXT_TYPES = (TokenType.NORMAL, TokenType.BYTE, TokenType.USER_DEFINED)


class _Trie:
    """children[node]: {byte: child}; ends[node]: the token ids whose bytes end at node."""

    def __init__(self, entries: Iterable[tuple[int, bytes]]):
        self.children: list[dict[int, int]] = [{}]
        ends: list[list[int]] = [[]]
        for tid, data in entries:
            node = 0
            for b in data:
                nxt = self.children[node].get(b)
                if nxt is None:
                    nxt = len(self.children)
                    self.children[node][b] = nxt
                    self.children.append({})
                    ends.append([])
                node = nxt
            ends[node].append(tid)
        self.ends = [np.array(e, dtype=np.int64) if e else None for e in ends]


class GrammarVocabulary:
    """A vocabulary's token bytes, prepared for token_mask. `token_bytes[i]` is token i's bytes
    (b"" or an id in `excluded` for tokens that are never text); `eos_ids` end the generation."""

    def __init__(self, token_bytes: Sequence[bytes], eos_ids: Iterable[int], excluded: Iterable[int] = (), cache_size: int = 256):
        self.size = len(token_bytes)
        self.eos_ids = np.array(sorted(set(eos_ids)), dtype=np.int64)
        if self.eos_ids.size and not (0 <= self.eos_ids[0] and self.eos_ids[-1] < self.size):
            raise ValueError(f"end-of-generation ids {self.eos_ids.tolist()} fall outside the vocabulary of {self.size} tokens")
        skip = set(excluded) | set(self.eos_ids.tolist())
        text = [(i, bytes(t)) for i, t in enumerate(token_bytes) if t and i not in skip]
        plain = [(i, t) for i, t in text if not any(b == 0x22 or b == 0x5C or b < 0x20 for b in t)]
        self.full = _Trie(text)
        self.special = _Trie((i, t) for i, t in text if any(b == 0x22 or b == 0x5C or b < 0x20 for b in t))
        self.plain_ids = np.array([i for i, _ in plain], dtype=np.int64)
        # per UTF-8 lexer state s: the state each plain token leaves the string lexer in (-1: rejected)
        width = max((len(t) for _, t in plain), default=1)
        data = np.full((len(plain), width), 256, dtype=np.int64)  # 256: past the token's end
        for row, (_, t) in enumerate(plain):
            data[row, : len(t)] = np.frombuffer(t, dtype=np.uint8)
        table = np.full((15, 257), 14, dtype=np.int64)  # state 14: rejected for good
        table[:14, :256] = np.where(np.array(LEX) < 0, 14, np.array(LEX))
        table[:, 256] = np.arange(15)
        self.plain_end = {}
        for s in UTF8_LEX:
            state = np.full(len(plain), s, dtype=np.int64)
            for col in range(width):
                state = table[state, data[:, col]]
            self.plain_end[s] = np.where(state == 14, -1, state)
        self.plain_chars = ((data < 0x80) | ((data >= 0xC0) & (data < 256))).sum(axis=1)  # lead bytes
        self.cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.cache_size = cache_size

    @classmethod
    def from_tokenizer(cls, tokenizer, **options) -> "GrammarVocabulary":
        """From a wgllm.tokenizer.Tokenizer: its normal, byte and user-defined tokens are text;
        its end-of-generation ids end the document."""
        excluded = [i for i, t in enumerate(tokenizer.types) if t not in _TEXT_TYPES]
        return cls([tokenizer.token_bytes(i) for i in range(tokenizer.vocab_size)], tokenizer.eog_ids, excluded, **options)

    def stack_mask(self, grammar: JsonGrammar, stack: tuple) -> np.ndarray:
        key = (grammar, stack)  # the grammar itself: an id could be reused once it is freed
        hit = self.cache.get(key)
        if hit is not None:
            self.cache.move_to_end(key)
            return hit
        mask = np.zeros(self.size, dtype=bool)
        top = stack[-1]
        if top[0] in (S, K) and top[2] in self.plain_end:  # within a free string: the tables, then the rest
            ok = self.plain_end[top[2]] >= 0
            if top[0] == S and grammar.nodes[top[1]].max >= 0:
                ok &= self.plain_chars <= grammar.nodes[top[1]].max - top[3]
            mask[self.plain_ids[ok]] = True
            self._walk(grammar, self.special, stack, mask)
        else:
            self._walk(grammar, self.full, stack, mask)
        self.cache[key] = mask
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return mask

    @staticmethod
    def _walk(grammar: JsonGrammar, trie: _Trie, stack: tuple, mask: np.ndarray) -> None:
        children, ends, step = trie.children, trie.ends, grammar.step
        hits, todo = [], [(0, (stack,))]
        while todo:
            node, stacks = todo.pop()
            for b, child in children[node].items():
                if len(stacks) == 1:
                    nxt = step(stacks[0], b)
                else:
                    nxt = [t for s in stacks for t in step(s, b)]
                if not nxt:
                    continue
                if ends[child] is not None:
                    hits.append(ends[child])
                if children[child]:
                    todo.append((child, tuple(set(nxt)) if len(nxt) > 1 else nxt))
        if hits:
            mask[np.concatenate(hits)] = True


def token_mask(state: GrammarState, vocab: GrammarVocabulary) -> np.ndarray:
    """bool (vocab.size,): the tokens that may come next in `state`."""
    stacks = iter(state.stacks)
    mask = vocab.stack_mask(state.grammar, next(stacks)).copy()
    for s in stacks:
        mask |= vocab.stack_mask(state.grammar, s)
    if state.is_accepting():
        mask[vocab.eos_ids] = True
    return mask


def apply_mask(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`logits` (..., vocab) with the tokens the mask leaves out set to -inf (a new array)."""
    logits = np.asarray(logits)
    if logits.shape[-1] != mask.shape[0]:
        raise ValueError(f"logits have {logits.shape[-1]} entries, the mask {mask.shape[0]}: not the same vocabulary")
    return np.where(mask, logits, np.array(-np.inf, dtype=logits.dtype))
