"""Prompt prefixes kept across requests and contexts: llama.cpp's state after a prompt's whole aligned
chunks (`llama_steps.py`), so a later prompt that starts the same way (the same system prompt, often the
same first sources) loads the state instead of evaluating those tokens again.

A context already reuses what it holds from its own previous prompt; these states serve the prompt whose
context last ran something else (another prompt, another tenant, the other of `parallel` contexts).
Only whole chunks evaluated from position 0 as prompt are kept, never generated tokens, so a prompt
evaluated from a loaded state gives the same logits bit for bit as on a fresh context.

llama-cpp-python's own `LlamaRAMCache` is not used: it saves the whole state after each generation
(generated tokens included, which breaks the equality above) together with a copy of the logits buffer
(n_batch x vocabulary floats: ~300 MB for a 150k-token vocabulary). A sequence's KV state alone is about
23 KB a token for SmolLM2-135M and 28 KB for Qwen2.5-1.5B. The states are bounded by `capacity_bytes`,
least recently used first out.
"""

from __future__ import annotations

import ctypes
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from keel.gateway.providers.llama_steps import PREFILL_CHUNK, cached_prefix

_SEQUENCE = 0


@dataclass
class PrefixStats:
    loads: int = 0
    saves: int = 0
    tokens_loaded: int = 0
    evictions: int = 0


@dataclass(frozen=True)
class _State:
    tokens: tuple[int, ...]  # whole aligned chunks, the prompt's first tokens
    data: Any  # a ctypes byte array: the sequence's state as llama.cpp wrote it
    length: int  # the bytes of `data` llama.cpp wrote

    @property
    def size(self) -> int:
        return ctypes.sizeof(self.data)


class PrefixStates:
    """Bounded states of prompt prefixes, shared by the contexts of one model (same model, same n_ctx).

    Called by the context's generation while it holds its turn at the model."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.stats = PrefixStats()
        self._states: OrderedDict[tuple[int, ...], _State] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def _best(self, tokens: Sequence[int]) -> tuple[int, _State | None]:
        best, found = 0, None
        for state in self._states.values():
            shared = cached_prefix(state.tokens, tokens)
            shared -= shared % PREFILL_CHUNK
            if shared > best:
                best, found = shared, state
        return best, found

    def load(self, llama: Any, tokens: Sequence[int], held: int) -> int:
        """Load the state sharing the most whole chunks with `tokens` into the context, when that is more
        than the `held` tokens the context can keep itself; returns the tokens the context now holds."""
        import llama_cpp

        with self._lock:
            shared, state = self._best(tokens)
            if state is None or shared <= held:
                return held
            self._states.move_to_end(state.tokens)
        # Empty first, so the state's cells are laid out from the start, as a fresh context lays them.
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llama.ctx), True)
        if llama_cpp.llama_state_seq_set_data(llama.ctx, state.data, state.length, _SEQUENCE) == 0:
            llama.n_tokens = 0
            return 0
        llama.input_ids[: len(state.tokens)] = state.tokens
        llama.n_tokens = shared  # the rest of the state is dropped by the next evaluation
        self.stats.loads += 1
        self.stats.tokens_loaded += shared
        return shared

    def save(self, llama: Any, tokens: Sequence[int]) -> None:
        """Keep the context's state for `tokens`, whole aligned chunks it evaluated as prompt from 0 (the
        context may hold a few tokens more: they are dropped when the state is loaded)."""
        import llama_cpp

        key = tuple(tokens)
        if not key or self.capacity_bytes <= 0:
            return
        with self._lock:
            if key in self._states:
                self._states.move_to_end(key)
                return
        size = llama_cpp.llama_state_seq_get_size(llama.ctx, _SEQUENCE)
        if size > self.capacity_bytes:
            return
        data = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(llama.ctx, data, size, _SEQUENCE)
        if written == 0 or written > size:
            return
        with self._lock:
            self._states[key] = _State(key, data, written)
            self._bytes += size
            self.stats.saves += 1
            while self._bytes > self.capacity_bytes:
                _, evicted = self._states.popitem(last=False)
                self._bytes -= evicted.size
                self.stats.evictions += 1
