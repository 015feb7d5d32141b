"""The embedded chat provider: a GGUF model run in-process by llama.cpp (llama-cpp-python).

The model loads once. A llama context holds one sequence at a time, so each generation is one turn at
the model (`turns.py`): requests from different requesters take turns in round robin, and a turn is
bounded by the context window (the prompt and the tokens generated after it together fit `n_ctx`).
Generation runs on a worker thread so the event loop stays free; when the caller goes away (a client
disconnects, a timeout), generation stops at the next token and the model passes to the next turn.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from keel.errors import ServiceUnavailableError
from keel.gateway.protocol import FinishReason, Usage
from keel.gateway.providers.base import (
    ContextWindowExceeded,
    Generation,
    GenerationRequest,
    StreamEnd,
    StreamEvent,
    TextDelta,
)
from keel.gateway.providers.turns import ModelTurns
from keel.logs import get_logger

log = get_logger(__name__)

DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
# Small models loop easily; a mild repeat penalty keeps them from it.
REPEAT_PENALTY = 1.1
# The early context-window check tokenizes a long text in slices of this many characters.
_SLICE_CHARS = 8192


def _finish_reason(raw: str | None) -> FinishReason:
    return "length" if raw == "length" else "stop"


class LocalChatProvider:
    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int,
        n_threads: int | None,
        default_max_tokens: int,
        turns: ModelTurns | None = None,
    ) -> None:
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, len(os.sched_getaffinity(0)))
        self.default_max_tokens = default_max_tokens
        self.turns = turns or ModelTurns()
        self._llama: Any = None
        self._formatter: Any = None
        self._token_bytes: int | None = None
        self._load_lock = threading.Lock()

    @property
    def is_ready(self) -> bool:
        return self._llama is not None

    def warm_up(self) -> None:
        """Load the model (idempotent; safe to call from several threads)."""
        with self._load_lock:
            if self._llama is not None:
                return
            if not self.model_path.is_file():
                raise ServiceUnavailableError(f"Chat model file not found: {self.model_path}")
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            llama = Llama(
                model_path=str(self.model_path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                verbose=False,
            )
            template = llama.metadata.get("tokenizer.chat_template")
            if not template:
                raise ServiceUnavailableError(
                    f"{self.model_path.name} has no chat template; use an instruction-tuned GGUF."
                )
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=llama.detokenize([llama.token_eos()], special=True).decode(errors="ignore"),
                bos_token=llama.detokenize([llama.token_bos()], special=True).decode(errors="ignore"),
            )
            self._llama = llama
            log.info("chat_model_loaded", model=self.model_path.name, n_ctx=self.n_ctx)

    def count_tokens(self, text: str) -> int:
        self.warm_up()
        return len(self._llama.tokenize(text.encode(), add_bos=False, special=False))

    @property
    def context_window(self) -> int:
        return self.n_ctx

    def count_tokens_up_to(self, text: str, limit: int) -> int:
        """A lower bound on the text's tokens, exact for a text of up to `_SLICE_CHARS`, that stops as
        soon as it reaches `limit`: the gateway's early context-window check costs at most the window's
        worth of tokenizing, however long the text (llama.cpp tokenizes ~150 KB/s here)."""
        self.warm_up()
        size = len(text.encode())
        # A text far longer than the window is judged by its bytes alone (the vocabulary is read once).
        if size > 16 * limit and (floor := size // self._longest_token_bytes()) >= limit:
            return floor
        counted = cuts = 0
        for start in range(0, len(text), _SLICE_CHARS):
            counted += len(self._llama.tokenize(text[start : start + _SLICE_CHARS].encode(), add_bos=False))
            # A cut may split what would be one token into two: one token per cut is taken off.
            cuts += 1 if start else 0
            if counted - cuts >= limit:
                break
        return max(0, counted - cuts)

    def _longest_token_bytes(self) -> int:
        """The longest token of the vocabulary, in bytes: no token covers more text than this."""
        if self._token_bytes is None:
            vocabulary = range(self._llama.n_vocab())
            self._token_bytes = max(1, *(len(self._llama.detokenize([token])) for token in vocabulary))
        return self._token_bytes

    async def complete(self, request: GenerationRequest) -> Generation:
        if self._llama is None:
            await asyncio.to_thread(self.warm_up)
        return await self.turns.run(partial(self._complete_sync, request))

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        if self._llama is None:
            await asyncio.to_thread(self.warm_up)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[StreamEvent | BaseException | None] = asyncio.Queue()
        cancelled = threading.Event()

        def publish(item: StreamEvent | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed: nobody is listening any more
                cancelled.set()

        def produce(stop: threading.Event) -> None:
            try:
                for event in self._stream_sync(request, stop):
                    publish(event)
            except BaseException as exc:
                publish(exc)
            finally:
                publish(None)

        worker = asyncio.ensure_future(self.turns.run(produce, cancelled))
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # The client may have gone: leave the queue, or stop generating at the next token (the
            # model passes to the next turn when the worker thread returns).
            cancelled.set()
            worker.cancel()

    # -- blocking work, on a worker thread -------------------------------------------------------

    def _prepare(self, request: GenerationRequest) -> tuple[list[int], dict[str, Any]]:
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in request.messages
        ]
        formatted = self._formatter(messages=messages)
        prompt_tokens: list[int] = self._llama.tokenize(
            formatted.prompt.encode(), add_bos=not formatted.added_special, special=True
        )
        if len(prompt_tokens) >= self.n_ctx:
            raise ContextWindowExceeded(
                f"The prompt has {len(prompt_tokens)} tokens; this model's context window is {self.n_ctx}."
            )
        grammar = None
        if request.json_schema is not None:
            grammar = LlamaGrammar.from_json_schema(json.dumps(request.json_schema), verbose=False)
        elif request.json_mode:
            grammar = LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        options: dict[str, Any] = {
            # Never past the context window: it bounds how long one request holds the model.
            "max_tokens": min(request.max_tokens or self.default_max_tokens, self.n_ctx - len(prompt_tokens)),
            "temperature": DEFAULT_TEMPERATURE if request.temperature is None else request.temperature,
            "top_p": DEFAULT_TOP_P if request.top_p is None else request.top_p,
            "stop": [*request.stop, *formatted.stop],
            "seed": request.seed,
            "presence_penalty": request.presence_penalty or 0.0,
            "frequency_penalty": request.frequency_penalty or 0.0,
            "repeat_penalty": REPEAT_PENALTY,
            "grammar": grammar,
        }
        return prompt_tokens, options

    def _complete_sync(self, request: GenerationRequest, cancelled: threading.Event) -> Generation:
        from llama_cpp import StoppingCriteriaList

        prompt_tokens, options = self._prepare(request)
        # Checked after every token: a caller that went away stops the generation there.
        stop = StoppingCriteriaList([lambda _tokens, _logits: cancelled.is_set()])
        result = self._llama.create_completion(
            prompt=prompt_tokens, stream=False, stopping_criteria=stop, **options
        )
        choice = result["choices"][0]
        usage = result["usage"]
        return Generation(
            text=choice["text"],
            finish_reason=_finish_reason(choice["finish_reason"]),
            usage=Usage.of(usage["prompt_tokens"], usage["completion_tokens"]),
        )

    def _stream_sync(self, request: GenerationRequest, cancelled: threading.Event) -> Iterator[StreamEvent]:
        prompt_tokens, options = self._prepare(request)
        pieces: list[str] = []
        finish: str | None = None
        chunks = self._llama.create_completion(prompt=prompt_tokens, stream=True, **options)
        try:
            for chunk in chunks:
                if cancelled.is_set():
                    return
                choice = chunk["choices"][0]
                if choice["text"]:
                    pieces.append(choice["text"])
                    yield TextDelta(choice["text"])
                finish = choice["finish_reason"] or finish
        finally:
            chunks.close()
        # llama.cpp reports no usage when streaming: the prompt was counted above, and the
        # completion is counted by the same tokenizer.
        completion_tokens = len(self._llama.tokenize("".join(pieces).encode(), add_bos=False, special=False))
        yield StreamEnd(_finish_reason(finish), Usage.of(len(prompt_tokens), completion_tokens))
