"""The embedded chat provider: a GGUF model run in-process by llama.cpp (llama-cpp-python).

The model loads once, with `parallel` llama contexts (a context holds one sequence at a time). Each
generation takes a context, and the generations in progress take turns at the model step by step (a
prompt chunk or one token: `llama_steps.py`), round robin across requesters (`turns.py`): a small request
that arrives during a long one is served alongside it, not after it. Beyond `parallel` generations,
requests wait for a context, round robin across requesters. A generation is bounded by the context window
(the prompt and the tokens generated after it fit `n_ctx`). It runs on a worker thread so the event loop
stays free; when the caller goes away (a client disconnects, a timeout), it stops at the next step.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
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
    ToolCallPart,
)
from keel.gateway.providers.cpu_priority import low_priority_workers
from keel.gateway.providers.llama_prefixes import PrefixStates
from keel.gateway.providers.llama_steps import Prefilled, generate_in_steps
from keel.gateway.providers.local_tools import (
    ToolPlan,
    parse_calls,
    plan,
    template_messages,
    template_tools,
)
from keel.gateway.providers.local_tools import grammar as tool_grammar
from keel.gateway.providers.turns import ModelTurns
from keel.gateway.tools import collected
from keel.logs import get_logger

log = get_logger(__name__)

DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
# Small models loop easily; a mild repeat penalty keeps them from it.
REPEAT_PENALTY = 1.1


def _finish_reason(raw: str | None, calls: bool) -> FinishReason:
    if raw == "length":
        return "length"
    return "tool_calls" if calls else "stop"


class LocalChatProvider:
    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int,
        n_threads: int | None,
        default_max_tokens: int,
        parallel: int = 1,
        nice: int = 0,
        prefix_cache_mb: int = 0,
        on_wait: Callable[[str, float], None] | None = None,
    ) -> None:
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, len(os.sched_getaffinity(0)))
        self.default_max_tokens = default_max_tokens
        self.parallel = parallel
        # Turns for a context (one per generation, round robin across requesters when all are busy) and
        # turns for a step on the model (a prompt chunk or a token), which the contexts share.
        self.contexts = ModelTurns(parallel, on_wait=partial(on_wait, "generation") if on_wait else None)
        self.steps = ModelTurns(1, on_wait=partial(on_wait, "step") if on_wait else None)
        # Generations run on threads of their own, at nice value `nice` (`cpu_priority.py`).
        self._workers = low_priority_workers("keel-generation", nice, parallel)
        self._idle: list[Any] = []
        # Per context (by id): the prompt prefix it holds in whole aligned chunks (`llama_steps.py`).
        self._prefilled: dict[int, Prefilled] = {}
        # Prompt prefixes' states, shared by the contexts, for a context that last ran another prompt.
        self.prefixes = PrefixStates(prefix_cache_mb * 2**20) if prefix_cache_mb > 0 else None
        self._idle_lock = threading.Lock()
        self._llama: Any = None
        self._formatter: Any = None
        # Whether the GGUF's chat template renders tools itself (`local_tools.py`).
        self._template_knows_tools = False
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

            # One context per generation in progress, each mapping the same weights file.
            contexts = [
                Llama(
                    model_path=str(self.model_path), n_ctx=self.n_ctx, n_threads=self.n_threads, verbose=False
                )
                for _ in range(self.parallel)
            ]
            llama = contexts[0]
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
            self._template_knows_tools = "tools" in template
            self._idle = contexts
            self._prefilled = {id(context): Prefilled() for context in contexts}
            self._llama = llama  # tokenizes and counts; generations run on any of the contexts
            log.info(
                "chat_model_loaded", model=self.model_path.name, n_ctx=self.n_ctx, parallel=self.parallel
            )

    def count_tokens(self, text: str) -> int:
        self.warm_up()
        return len(self._llama.tokenize(text.encode(), add_bos=False, special=False))

    @property
    def context_window(self) -> int:
        return self.n_ctx

    def count_tokens_up_to(self, text: str, limit: int) -> int:
        """The text's tokens, exactly, unless its bytes alone show it has at least `limit` (no token is
        longer than the vocabulary's longest): then that floor. So the gateway's early context-window
        check tokenizes at most `limit` x the longest token's bytes, however long the text."""
        self.warm_up()
        size = len(text.encode())
        # The vocabulary is read once, and only for a text that may be far past the window.
        if size > 16 * limit and (floor := size // self._longest_token_bytes()) >= limit:
            return floor
        return self.count_tokens(text)

    def _longest_token_bytes(self) -> int:
        """The longest token of the vocabulary, in bytes: no token covers more text than this."""
        if self._token_bytes is None:
            vocabulary = range(self._llama.n_vocab())
            self._token_bytes = max(1, *(len(self._llama.detokenize([token])) for token in vocabulary))
        return self._token_bytes

    async def complete(self, request: GenerationRequest) -> Generation:
        return await collected(self.stream(request))

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
                for event in self._generate(request, stop):
                    publish(event)
            except BaseException as exc:
                publish(exc)
            finally:
                publish(None)

        worker = asyncio.ensure_future(self.contexts.run(produce, cancelled, executor=self._workers))
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # The caller may have gone (a client that disconnected, a timeout): leave the queue, or stop
            # at the next step; the context goes to the next request when the worker thread returns.
            cancelled.set()
            worker.cancel()

    # -- blocking work, on a worker thread -------------------------------------------------------

    def _prepare(self, request: GenerationRequest) -> tuple[list[int], dict[str, Any], ToolPlan | None]:
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        messages = template_messages(request, self._template_knows_tools)
        tools = template_tools(request) if self._template_knows_tools else None
        formatted = self._formatter(messages=messages, tools=tools)
        prompt_tokens: list[int] = self._llama.tokenize(
            formatted.prompt.encode(), add_bos=not formatted.added_special, special=True
        )
        if len(prompt_tokens) >= self.n_ctx:
            raise ContextWindowExceeded(
                f"The prompt has {len(prompt_tokens)} tokens; this model's context window is {self.n_ctx}."
            )
        grammar = None
        tool_plan = plan(request)
        if tool_plan is not None:
            grammar = LlamaGrammar.from_string(tool_grammar(tool_plan), verbose=False)
        elif request.json_schema is not None:
            grammar = LlamaGrammar.from_json_schema(json.dumps(request.json_schema), verbose=False)
        elif request.json_mode:
            grammar = LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        options: dict[str, Any] = {
            # Never past the context window: with it, the prompt bounds the steps of one request.
            "max_tokens": min(request.max_tokens or self.default_max_tokens, self.n_ctx - len(prompt_tokens)),
            "temperature": DEFAULT_TEMPERATURE if request.temperature is None else request.temperature,
            "top_p": DEFAULT_TOP_P if request.top_p is None else request.top_p,
            "stop": [*request.stop, *formatted.stop],
            # llama.cpp's sampler takes a 32-bit seed, and reads 0xFFFFFFFF as "random": fold into the rest.
            "seed": None if request.seed is None else request.seed % 0xFFFFFFFF,
            "presence_penalty": request.presence_penalty or 0.0,
            "frequency_penalty": request.frequency_penalty or 0.0,
            "repeat_penalty": REPEAT_PENALTY,
            "grammar": grammar,
        }
        return prompt_tokens, options, tool_plan

    def _generate(self, request: GenerationRequest, cancelled: threading.Event) -> Iterator[StreamEvent]:
        """On one of the contexts (this thread holds a context turn), in steps (`llama_steps.py`)."""
        prompt_tokens, options, tool_plan = self._prepare(request)
        with self._idle_lock:
            llama = self._idle.pop()
        pieces: list[str] = []
        finish: str | None = None
        try:
            prefilled = self._prefilled.setdefault(id(llama), Prefilled())
            chunks = generate_in_steps(
                llama, prompt_tokens, options, self.steps, cancelled, prefilled, self.prefixes
            )
            for chunk in chunks:
                choice = chunk["choices"][0]
                if choice["text"]:
                    pieces.append(choice["text"])
                    if tool_plan is None:
                        yield TextDelta(choice["text"])
                finish = choice["finish_reason"] or finish
        finally:
            with self._idle_lock:
                self._idle.append(llama)
        if cancelled.is_set():
            return
        # llama.cpp reports no usage when streaming: the prompt was counted above; a cut completion has
        # max_tokens tokens, any other is counted by the same tokenizer.
        if finish == "length":
            completion_tokens = options["max_tokens"]
        else:
            completion_tokens = len(
                self._llama.tokenize("".join(pieces).encode(), add_bos=False, special=False)
            )
        if tool_plan is not None and finish != "length":
            # The grammar holds a call's shape only once it is whole: it is parsed, then sent in one piece.
            for index, call in enumerate(parse_calls("".join(pieces))):
                yield ToolCallPart(index, call.function.arguments, id=call.id, name=call.function.name)
        elif tool_plan is not None:
            yield TextDelta("".join(pieces))  # cut at max_tokens: what there is, with finish "length"
        calls = tool_plan is not None and finish != "length"
        yield StreamEnd(_finish_reason(finish, calls), Usage.of(len(prompt_tokens), completion_tokens))
