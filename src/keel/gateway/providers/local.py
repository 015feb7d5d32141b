"""The embedded chat provider: a GGUF model run in-process by llama.cpp (llama-cpp-python).

The model loads once; one lock serialises access to the llama context, since a context holds one
sequence at a time. Generation runs on a worker thread so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator, Iterator
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
from keel.logs import get_logger

log = get_logger(__name__)

DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
# Small models loop easily; a mild repeat penalty keeps them from it.
REPEAT_PENALTY = 1.1


def _finish_reason(raw: str | None) -> FinishReason:
    return "length" if raw == "length" else "stop"


class LocalChatProvider:
    def __init__(
        self, model_path: Path, *, n_ctx: int, n_threads: int | None, default_max_tokens: int
    ) -> None:
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, len(os.sched_getaffinity(0)))
        self.default_max_tokens = default_max_tokens
        self._llama: Any = None
        self._formatter: Any = None
        self._lock = threading.Lock()
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

    async def complete(self, request: GenerationRequest) -> Generation:
        return await asyncio.to_thread(self._complete_sync, request)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[StreamEvent | BaseException | None] = asyncio.Queue()
        cancelled = threading.Event()

        def publish(item: StreamEvent | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed: nobody is listening any more
                cancelled.set()

        def produce() -> None:
            try:
                for event in self._stream_sync(request, cancelled):
                    publish(event)
            except BaseException as exc:
                publish(exc)
            finally:
                publish(None)

        worker = loop.run_in_executor(None, produce)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # The client may have gone: stop generating, and free the context for the next request.
            cancelled.set()
            await asyncio.shield(worker)

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
            "max_tokens": request.max_tokens or self.default_max_tokens,
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

    def _complete_sync(self, request: GenerationRequest) -> Generation:
        self.warm_up()
        with self._lock:
            prompt_tokens, options = self._prepare(request)
            result = self._llama.create_completion(prompt=prompt_tokens, stream=False, **options)
        choice = result["choices"][0]
        usage = result["usage"]
        return Generation(
            text=choice["text"],
            finish_reason=_finish_reason(choice["finish_reason"]),
            usage=Usage.of(usage["prompt_tokens"], usage["completion_tokens"]),
        )

    def _stream_sync(self, request: GenerationRequest, cancelled: threading.Event) -> Iterator[StreamEvent]:
        self.warm_up()
        with self._lock:
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
            completion_tokens = len(
                self._llama.tokenize("".join(pieces).encode(), add_bos=False, special=False)
            )
        yield StreamEnd(_finish_reason(finish), Usage.of(len(prompt_tokens), completion_tokens))
