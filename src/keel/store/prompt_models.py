"""ORM models of prompt management: prompts with immutable versions, movable labels and their history,
experiments, canary releases, and the per-tenant epoch that tells every replica its cache is stale.

A version is never updated after it is written; a label is one row that points at a version and moves;
every move is also a row of `prompt_label_moves` (and an entry of the audit log).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from keel.store.models import Base, new_id, utcnow


class Prompt(Base):
    """A named prompt of one tenant; `latest` is its newest version number (0 before the first)."""

    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("tenant", "name", name="uq_prompts_tenant_name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("pmt"))
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    latest: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64), default="")


class PromptVersion(Base):
    """One immutable version: the template and everything that shapes the call (`spec`), who made it
    and why. `content_hash` covers the spec only, so pushing the same content again makes no version."""

    __tablename__ = "prompt_versions"
    __table_args__ = (UniqueConstraint("prompt_id", "version", name="uq_prompt_versions"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("pmv"))
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    # messages, variables (JSON schema), model, params, output_schema, overflow: keel.prompts.spec.
    spec: Mapped[dict[str, Any]] = mapped_column()
    content_hash: Mapped[str] = mapped_column(String(64))
    author: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptLabel(Base):
    """A movable name for one version of a prompt (`production`, `staging`, any name)."""

    __tablename__ = "prompt_labels"

    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(64), default="")


class PromptLabelMove(Base):
    """One move of a label, kept for its history and for rollback (`from_version` None: it was new)."""

    __tablename__ = "prompt_label_moves"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(64))
    from_version: Mapped[int | None] = mapped_column(Integer, default=None)
    to_version: Mapped[int] = mapped_column(Integer)
    # "move", "rollback", "canary_promote" or "push" (for `latest`, which moves by itself).
    kind: Mapped[str] = mapped_column(String(24), default="move")
    actor: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptEpoch(Base):
    """Bumped in the same transaction as any change of what a tenant's labels serve (a label move, an
    experiment or canary started, advanced or ended): a replica's cached resolution is good while the
    epoch it was read under is still the current one."""

    __tablename__ = "prompt_epochs"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)


class PromptExperiment(Base):
    """Traffic of one prompt label split between arms (versions or model aliases) by weight, sticky per
    end user. `arms`: [{"name", "weight", "version"?, "model"?}]."""

    __tablename__ = "prompt_experiments"
    __table_args__ = (UniqueConstraint("tenant", "name", name="uq_prompt_experiments_tenant_name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("exp"))
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(64))
    arms: Mapped[list[Any]] = mapped_column()
    # running → stopped
    status: Mapped[str] = mapped_column(String(16), default="running")
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)


class PromptCanary(Base):
    """A label moving to a new version through rising traffic steps, judged at each step against the
    version it replaces on the same window. The label keeps pointing at `stable_version` until the
    canary passes every step; a regression ends the canary at once and all traffic is stable again."""

    __tablename__ = "prompt_canaries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("cny"))
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(64))
    stable_version: Mapped[int] = mapped_column(Integer)
    canary_version: Mapped[int] = mapped_column(Integer)
    # Percent of the label's traffic at each step, rising; passing the last one promotes (100 %).
    steps: Mapped[list[Any]] = mapped_column()
    step: Mapped[int] = mapped_column(Integer, default=0)
    step_started_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The rule it is judged by (min requests, min duration, alpha, metrics): fixed when it starts.
    rule: Mapped[dict[str, Any]] = mapped_column()
    # running → promoted | rolled_back | aborted
    status: Mapped[str] = mapped_column(String(16), default="running", index=True)
    # Each step's judgement, in order: what was compared and what was decided.
    judgements: Mapped[list[Any]] = mapped_column(default=list)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
