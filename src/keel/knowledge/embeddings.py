"""What knowledge needs of an embedding model: unit vectors for a tenant's texts.

The tenant is part of the call because embedding is metered work: the runtime passes the gateway's
metered embeddings (usage rows, the tenant's token limit), and knowledge never imports the gateway.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt


class TenantEmbeddings(Protocol):
    @property
    def model_id(self) -> str:
        """Names the model's weights: cached vectors are keyed by it."""
        ...

    @property
    def dimensions(self) -> int: ...

    def embed(self, tenant: str, texts: list[str]) -> npt.NDArray[np.float32]:
        """Unit-length vectors, one row per text, made for `tenant`."""
        ...

    async def aembed(self, tenant: str, texts: list[str]) -> npt.NDArray[np.float32]: ...
