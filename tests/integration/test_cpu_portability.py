"""The local chat model's llama.cpp build runs on every CPU of the machines Keel targets.

The Makefile builds llama.cpp for AVX2 (GGML_NATIVE off) because a native build on an AVX-512/AMX
machine dies on an AVX2-only one. Here the installed build generates under qemu-user emulating an AMD
EPYC-Rome (AVX2, no AVX-512), whatever this machine has.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

QEMU = shutil.which("qemu-x86_64")
AVX2_ONLY_CPU = "EPYC-Rome"
_GENERATE = """
from llama_cpp import Llama
from keel.config import packaged_chat_model
llm = Llama(model_path=str(packaged_chat_model()), n_ctx=256, n_threads=1, verbose=False)
out = llm.create_chat_completion([{"role": "user", "content": "Say hi"}], max_tokens=4, temperature=0)
print("generated:", out["usage"]["completion_tokens"])
"""


def test_llama_cpp_build_generates_on_an_avx2_only_cpu() -> None:
    if QEMU is None:
        pytest.fail("qemu-user is missing: apt-get install qemu-user (.ci/run installs it).", pytrace=False)
    command = [QEMU, "-cpu", AVX2_ONLY_CPU, sys.executable, "-c", _GENERATE]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=900, env=os.environ | {"HF_HUB_OFFLINE": "1"}
    )
    # An instruction the CPU lacks ends the process with SIGILL (-4), before anything is printed.
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stderr[-2000:]}"
    assert "generated: " in done.stdout
    assert int(done.stdout.split("generated: ")[1].split()[0]) >= 1
