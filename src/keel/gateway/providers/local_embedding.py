"""The embedded sentence-embedding model, run in-process by sentence-transformers on the CPU (through
a TorchScript-traced transformer when the model allows it: `traced_encoder.py`).

Loads once from a local folder (never a hub). Two lanes, each running one batch at a time: calls of a
few short texts (queries, request-path checks, a client's small request) take the small lane, on the
traced encoder, and every other call the bulk lane, on sentence-transformers; so a small call never
waits for a large call's batch, only, at most, for another small one. Within a lane, batches from
different requesters take turns (`turns.py`): a call of many texts runs as batches of at most
`batch_size` texts and about `batch_tokens` tokens (padding included), each a turn of its own. Each
lane keeps its own model object and tokenizer, so no object is used by two threads at once. Encoding
runs on worker threads: the small lane's on the event loop's (or the caller's), the bulk lane's on one
thread of its own at nice value `bulk_nice` (`cpu_priority.py`), so a small call computing beside a bulk
batch gets the cores.

A small batch computes on `small_threads` PyTorch threads (1 by default), a bulk batch on PyTorch's
default. A short text gains almost nothing from splitting its matrices across cores, and on a machine
whose cores are busy with anything else (the event loop, the name finder, another small call) OpenMP's
threads wait for each other by spinning: measured at load ~6, one short text took 132 ms of CPU on two
threads and 4.7 ms on one.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import os
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.errors import ServiceUnavailableError
from keel.gateway.providers.cpu_priority import low_priority_workers
from keel.gateway.providers.embedding import Embedded
from keel.gateway.providers.traced_encoder import TracedMeanPoolEncoder
from keel.gateway.providers.turns import ModelTurns
from keel.logs import get_logger

log = get_logger(__name__)
# Calls of up to this many texts and about this many tokens (request-path checks and queries) take the
# small lane; its batches stay short (~20 ms on two cores), so another small call waits little for one.
SMALL_CALL_TEXTS = 8
SMALL_CALL_TOKENS = 512
# The bulk lane's nice value: beside a small call it yields the CPU almost entirely, alone it has it all.
BULK_NICE = 19


class LocalEmbeddingProvider:
    def __init__(
        self,
        model_path: Path,
        *,
        batch_size: int,
        batch_tokens: int = 1024,
        bulk_nice: int = BULK_NICE,
        small_threads: int = 1,
        on_wait: Callable[[str, float], None] | None = None,
    ) -> None:
        self.model_path = model_path
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.small_threads = small_threads
        self.turns = ModelTurns(on_wait=partial(on_wait, "batch") if on_wait else None)
        self.small_turns = ModelTurns(on_wait=partial(on_wait, "small_batch") if on_wait else None)
        self._bulk_worker = low_priority_workers("keel-embed-bulk", bulk_nice)
        self._model: Any = None
        self._traced: TracedMeanPoolEncoder | None = None
        self._load_lock = threading.Lock()

    @property
    def is_ready(self) -> bool:
        return self._model is not None

    @property
    def model_id(self) -> str:
        return f"sentence-transformers:{self.model_path.parent.name}/{self.model_path.name}"

    def declared_dimensions(self) -> int:
        """The vector size from the model folder's pooling config, without loading the model."""
        pooling = self.model_path / "1_Pooling" / "config.json"
        if pooling.is_file():
            return int(json.loads(pooling.read_text())["word_embedding_dimension"])
        return self.dimensions

    @property
    def dimensions(self) -> int:
        self.warm_up()
        return int(self._model.get_embedding_dimension())

    def warm_up(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            if not self.model_path.is_dir():
                raise ServiceUnavailableError(f"Embedding model folder not found: {self.model_path}")
            # Never reach for a model hub: every file is on disk.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            _default_intra_op_threads()  # read before any batch sets a thread's own count
            model = SentenceTransformer(str(self.model_path), device="cpu", local_files_only=True)
            self._traced = TracedMeanPoolEncoder.build(model)
            self._model = model
            log.info("embedding_model_loaded", model=self.model_path.name, traced=self._traced is not None)

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Unit-length vectors, one row per text (cosine similarity is then a dot product)."""
        self.warm_up()
        traced, order, batches = self._batches(texts)
        lane = self.small_turns if traced else self.turns
        rows = []
        for batch in batches:
            with lane.acquire():
                if traced:
                    rows.append(self._encode(batch, traced))
                else:
                    work = partial(contextvars.copy_context().run, self._encode, batch, traced)
                    rows.append(self._bulk_worker.submit(work).result())
        return self._in_order(rows, order)

    async def aembed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """`embed` for event loops: the turns are awaited on the loop, each batch runs on a worker thread,
        and a cancelled call stops after the batch in hand."""
        if self._model is None:
            await asyncio.to_thread(self.warm_up)
        traced, order, batches = self._batches(texts)
        lane = self.small_turns if traced else self.turns
        rows = []
        executor = None if traced else self._bulk_worker
        for batch in batches:
            rows.append(await lane.run(partial(self._encode, batch, traced), executor=executor))
        return self._in_order(rows, order)

    def _batches(self, texts: list[str]) -> tuple[bool, list[int], list[list[str]]]:
        """Whether the call is small (the small lane and the traced path serve it), the texts' order
        (longest first, so a batch pads little), and the batches in that order.

        A batch is bounded by the tokens it is run on, padding included: every text in it is padded to
        its first (longest) text. So a passage's one long sentence is not run with thirty short ones
        padded to its length, while texts of one length still share a batch."""
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        window = int(self._model.max_seq_length)
        batches: list[list[str]] = []
        longest = total = 0
        for i in order:
            # About four characters a token, and the model reads no more than its window of a text.
            cost = min(window, len(texts[i]) // 4 + 2)
            full = len(batches[-1]) == self.batch_size if batches else True
            if full or (len(batches[-1]) + 1) * longest > self.batch_tokens:
                batches.append([])
                longest = cost
            batches[-1].append(texts[i])
            total += cost
        small = len(texts) <= SMALL_CALL_TEXTS and total <= SMALL_CALL_TOKENS
        return self._traced is not None and small, order, batches

    def _encode(
        self, batch: list[str], traced: bool, _cancelled: threading.Event | None = None
    ) -> npt.NDArray[np.float32]:
        """One batch, run while its turn is held (a batch is short: it never checks for cancellation)."""
        if traced and self._traced is not None:
            # Set for this batch only: the thread is a shared worker (the default executor, a caller's),
            # and PyTorch hands a thread's last setting to threads that start using it afterwards.
            previous = _use_intra_op_threads(self.small_threads)
            try:
                return self._traced.encode(batch, self.batch_size)
            finally:
                _use_intra_op_threads(previous)
        _use_intra_op_threads(_default_intra_op_threads())
        vectors = self._model.encode(
            batch,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def _in_order(self, rows: list[npt.NDArray[np.float32]], order: list[int]) -> npt.NDArray[np.float32]:
        if not rows:
            return np.empty((0, self.dimensions), dtype=np.float32)
        stacked = np.concatenate(rows)
        result = np.empty_like(stacked)
        result[order] = stacked
        return result

    def embed_with_usage(self, texts: list[str]) -> Embedded:
        return Embedded(self.embed(texts), self.count_tokens(texts))

    async def aembed_with_usage(self, texts: list[str]) -> Embedded:
        return Embedded(await self.aembed(texts), await self.acount_tokens(texts))

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the model reads, after its truncation to the maximum sequence length."""
        if not texts:
            return 0  # the tokenizer fails on an empty batch
        self.warm_up()
        limit = int(self._model.max_seq_length)
        encoded = self._model.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        return sum(min(len(ids), limit) for ids in encoded)

    async def acount_tokens(self, texts: list[str]) -> int:
        return await asyncio.to_thread(self.count_tokens, texts)

    def count_input_tokens(self, texts: list[str]) -> list[int]:
        """Each text's tokens before truncation: what the request limits are about."""
        if not texts:
            return []
        self.warm_up()
        encoded = self._model.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]

    async def acount_input_tokens(self, texts: list[str]) -> list[int]:
        return await asyncio.to_thread(self.count_input_tokens, texts)


@functools.cache
def _default_intra_op_threads() -> int:
    """PyTorch's own choice (one per core), read before any lane changed it."""
    import torch

    return int(torch.get_num_threads())


def _use_intra_op_threads(count: int) -> int:
    """Sets PyTorch's intra-op thread count on the calling thread (OpenMP keeps it per thread) and
    returns the count it had (a call costs well under a microsecond)."""
    import torch

    previous = int(torch.get_num_threads())
    if previous != count:
        torch.set_num_threads(count)
    return previous
