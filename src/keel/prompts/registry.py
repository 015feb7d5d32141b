"""The prompt registry: prompts with immutable versions and movable labels, per tenant.

A push makes a version only when the content changed (its hash differs from the newest version's) and
moves `latest` with it. Labels move by hand, by rollback or by a canary's promotion; protected labels
(`prompts.protected_labels`, default `production`) only by administrators. Every push and move is in
the audit log with who and why, and in the label's own history, which rollback reads.
"""

from __future__ import annotations

import difflib
import json
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keel.errors import ConflictError, InvalidRequestError, NotFoundError, PermissionDeniedError
from keel.governance.audit import AuditLog
from keel.prompts import epochs
from keel.prompts.spec import LATEST, PromptSpec, check_label, check_name
from keel.prompts.templates import compile_prompt
from keel.prompts.views import (
    Actor,
    LabelMoveView,
    PromptSummary,
    PushResult,
    VersionView,
    move_view,
)
from keel.store.engine import Database
from keel.store.prompt_models import (
    Prompt,
    PromptCanary,
    PromptExperiment,
    PromptLabel,
    PromptLabelMove,
    PromptVersion,
)

# The views are used with the registry everywhere: importable from here too.
__all__ = ["Actor", "LabelMoveView", "PromptRegistry", "PromptSummary", "PushResult", "VersionView"]


class PromptRegistry:
    def __init__(
        self,
        database: Database,
        audit: AuditLog,
        protected_labels: frozenset[str] = frozenset({"production"}),
        max_rendered_chars: int = 1_000_000,
    ) -> None:
        self._database = database
        self._audit = audit
        self.protected_labels = protected_labels
        self.max_rendered_chars = max_rendered_chars

    # -- versions ------------------------------------------------------------------------------------

    def push(
        self,
        tenant: str,
        name: str,
        spec: PromptSpec,
        actor: Actor,
        message: str = "",
        description: str | None = None,
    ) -> PushResult:
        check_name(name)
        # Compiling checks every template's syntax now, not on the first request that uses it.
        compile_prompt(name, spec, self.max_rendered_chars)
        content_hash = spec.content_hash()
        with self._database.session() as session:
            prompt = self._locked_prompt(session, tenant, name, actor)
            if description is not None:
                prompt.description = description
            if prompt.latest:
                newest = session.scalar(
                    select(PromptVersion.content_hash).where(
                        PromptVersion.prompt_id == prompt.id, PromptVersion.version == prompt.latest
                    )
                )
                if newest == content_hash:
                    return PushResult(name=name, version=prompt.latest, created=False, content_hash=newest)
            version = prompt.latest + 1
            session.add(
                PromptVersion(
                    prompt_id=prompt.id,
                    version=version,
                    spec=spec.canonical(),
                    content_hash=content_hash,
                    author=actor.id,
                    message=message,
                )
            )
            prompt.latest = version
            self.point(session, prompt, LATEST, version, actor, "push", message)
            epochs.bump(session, tenant)
        self._audit.append(
            tenant, actor.id, "prompt.push", f"{name}@{version}", {"hash": content_hash, "message": message}
        )
        return PushResult(name=name, version=version, created=True, content_hash=content_hash)

    def _locked_prompt(self, session: Session, tenant: str, name: str, actor: Actor) -> Prompt:
        """The prompt's row, created if new, and locked until the transaction ends, so concurrent pushes
        number their versions one after the other and never both miss an identical newest version."""
        key = (Prompt.tenant == tenant, Prompt.name == name)
        if not session.execute(update(Prompt).where(*key).values(latest=Prompt.latest)).rowcount:  # type: ignore[attr-defined]
            try:
                with session.begin_nested():
                    session.add(Prompt(tenant=tenant, name=name, created_by=actor.id))
            except IntegrityError:
                session.execute(update(Prompt).where(*key).values(latest=Prompt.latest))
        return session.scalars(select(Prompt).where(*key)).one()

    def prompts(self, tenant: str) -> list[PromptSummary]:
        with self._database.reading() as session:
            rows = list(session.scalars(select(Prompt).where(Prompt.tenant == tenant).order_by(Prompt.name)))
            labels = self._labels(session, [p.id for p in rows])
        return [self._summary(p, labels.get(p.id, {})) for p in rows]

    def prompt(self, tenant: str, name: str) -> PromptSummary:
        with self._database.reading() as session:
            prompt = self._prompt(session, tenant, name)
            return self._summary(prompt, self._labels(session, [prompt.id]).get(prompt.id, {}))

    @staticmethod
    def _summary(prompt: Prompt, labels: dict[str, int]) -> PromptSummary:
        return PromptSummary(
            name=prompt.name,
            description=prompt.description,
            latest=prompt.latest,
            labels=labels,
            created_at=prompt.created_at,
        )

    @staticmethod
    def _labels(session: Session, prompt_ids: list[str]) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {}
        rows = session.scalars(select(PromptLabel).where(PromptLabel.prompt_id.in_(prompt_ids)))
        for row in rows:
            found.setdefault(row.prompt_id, {})[row.label] = row.version
        return {key: dict(sorted(value.items())) for key, value in found.items()}

    def version(
        self, tenant: str, name: str, *, version: int | None = None, label: str | None = None
    ) -> VersionView:
        """A version by number, or the one a label points at (`production` when neither is given)."""
        with self._database.reading() as session:
            prompt = self._prompt(session, tenant, name)
            number = version if version is not None else self.label_version(session, prompt, label)
            row = session.scalar(
                select(PromptVersion).where(
                    PromptVersion.prompt_id == prompt.id, PromptVersion.version == number
                )
            )
            if row is None:
                raise NotFoundError(
                    f"Prompt '{name}' has no version {number}.", code="prompt_version_not_found"
                )
            labels = self._labels(session, [prompt.id]).get(prompt.id, {})
            return self._view(name, row, [lbl for lbl, v in labels.items() if v == row.version])

    def versions(self, tenant: str, name: str) -> list[VersionView]:
        with self._database.reading() as session:
            prompt = self._prompt(session, tenant, name)
            labels = self._labels(session, [prompt.id]).get(prompt.id, {})
            rows = session.scalars(
                select(PromptVersion)
                .where(PromptVersion.prompt_id == prompt.id)
                .order_by(PromptVersion.version.desc())
            )
            return [self._view(name, r, [lbl for lbl, v in labels.items() if v == r.version]) for r in rows]

    @staticmethod
    def _view(name: str, row: PromptVersion, labels: list[str]) -> VersionView:
        return VersionView(
            name=name,
            version=row.version,
            spec=PromptSpec.model_validate(row.spec),
            content_hash=row.content_hash,
            author=row.author,
            message=row.message,
            created_at=row.created_at,
            labels=labels,
        )

    def diff(self, tenant: str, name: str, old: int, new: int) -> str:
        """A unified diff of two versions' content, in the form a prompt file takes."""
        before, after = self.version(tenant, name, version=old), self.version(tenant, name, version=new)

        def lines(view: VersionView) -> list[str]:
            text = json.dumps(view.spec.canonical(), indent=2, sort_keys=True, ensure_ascii=False)
            return text.splitlines(keepends=True)

        return "".join(
            difflib.unified_diff(lines(before), lines(after), f"{name}@{old}", f"{name}@{new}", n=3)
        )

    # -- labels --------------------------------------------------------------------------------------

    def move_label(
        self,
        tenant: str,
        name: str,
        label: str,
        version: int,
        actor: Actor,
        reason: str = "",
        *,
        kind: str = "move",
        during_canary: bool = False,
    ) -> LabelMoveView:
        check_label(label)
        if label == LATEST:
            raise InvalidRequestError(
                "The 'latest' label moves by itself with every new version.",
                code="label_moves_by_itself",
                param="label",
            )
        self.require_may_move(label, actor)
        with self._database.session() as session:
            prompt = self._prompt(session, tenant, name)
            # The prompt's row lock puts concurrent moves of its labels in line.
            session.execute(update(Prompt).where(Prompt.id == prompt.id).values(latest=Prompt.latest))
            if not during_canary:
                self.require_no_rollout(session, prompt, label)
            exists = session.scalar(
                select(PromptVersion.id).where(
                    PromptVersion.prompt_id == prompt.id, PromptVersion.version == version
                )
            )
            if exists is None:
                raise NotFoundError(
                    f"Prompt '{name}' has no version {version}.", code="prompt_version_not_found"
                )
            move = self.point(session, prompt, label, version, actor, kind, reason)
            epochs.bump(session, tenant)
            view = move_view(move)
        action = "prompt.label.rollback" if kind == "rollback" else "prompt.label.move"
        self._audit.append(
            tenant,
            actor.id,
            action,
            f"{name}:{label}",
            {"from": view.from_version, "to": view.to_version, "kind": kind, "reason": reason},
        )
        return view

    def rollback(
        self,
        tenant: str,
        name: str,
        label: str,
        actor: Actor,
        reason: str = "",
        to_version: int | None = None,
    ) -> LabelMoveView:
        """Moves the label back to where its last move took it from (or to `to_version`)."""
        self.require_may_move(label, actor)
        if to_version is None:
            with self._database.reading() as session:
                prompt = self._prompt(session, tenant, name)
                last = session.scalar(
                    select(PromptLabelMove)
                    .where(PromptLabelMove.prompt_id == prompt.id, PromptLabelMove.label == label)
                    .order_by(PromptLabelMove.id.desc())
                    .limit(1)
                )
            if last is None or last.from_version is None:
                raise InvalidRequestError(
                    f"The label '{label}' of prompt '{name}' has no earlier version to go back to.",
                    code="nothing_to_roll_back",
                    param="label",
                )
            to_version = last.from_version
        return self.move_label(tenant, name, label, to_version, actor, reason or "rollback", kind="rollback")

    def delete_label(self, tenant: str, name: str, label: str, actor: Actor, reason: str = "") -> None:
        if label == LATEST:
            raise InvalidRequestError(
                "The 'latest' label cannot be removed.", code="label_moves_by_itself", param="label"
            )
        self.require_may_move(label, actor)
        with self._database.session() as session:
            prompt = self._prompt(session, tenant, name)
            self.require_no_rollout(session, prompt, label)
            removed = session.execute(
                delete(PromptLabel).where(PromptLabel.prompt_id == prompt.id, PromptLabel.label == label)
            ).rowcount  # type: ignore[attr-defined]
            if not removed:
                raise NotFoundError(f"Prompt '{name}' has no label '{label}'.", code="label_not_found")
            epochs.bump(session, tenant)
        self._audit.append(tenant, actor.id, "prompt.label.delete", f"{name}:{label}", {"reason": reason})

    def history(
        self, tenant: str, name: str, label: str | None = None, limit: int = 100
    ) -> list[LabelMoveView]:
        with self._database.reading() as session:
            prompt = self._prompt(session, tenant, name)
            query = (
                select(PromptLabelMove)
                .where(PromptLabelMove.prompt_id == prompt.id)
                .order_by(PromptLabelMove.id.desc())
                .limit(limit)
            )
            if label is not None:
                query = query.where(PromptLabelMove.label == label)
            return [move_view(m) for m in session.scalars(query)]

    def delete_prompt(self, tenant: str, name: str, actor: Actor) -> None:
        """Removes a prompt with all its versions and labels: administrators only."""
        if not actor.admin:
            raise PermissionDeniedError("Only administrators may delete a prompt.", code="insufficient_role")
        with self._database.session() as session:
            prompt = self._prompt(session, tenant, name)
            for label in session.scalars(select(PromptLabel.label).where(PromptLabel.prompt_id == prompt.id)):
                self.require_no_rollout(session, prompt, label)
            session.delete(prompt)
            epochs.bump(session, tenant)
        self._audit.append(tenant, actor.id, "prompt.delete", name, {})

    def require_may_move(self, label: str, actor: Actor) -> None:
        if label in self.protected_labels and not actor.admin:
            raise PermissionDeniedError(
                f"The label '{label}' is protected: only administrators may move it.",
                code="protected_label",
                param="label",
            )

    # -- shared steps --------------------------------------------------------------------------------

    @staticmethod
    def _prompt(session: Session, tenant: str, name: str) -> Prompt:
        prompt = session.scalar(select(Prompt).where(Prompt.tenant == tenant, Prompt.name == name))
        if prompt is None:
            raise NotFoundError(f"No prompt '{name}'.", code="prompt_not_found", param="name")
        return prompt

    @staticmethod
    def label_version(session: Session, prompt: Prompt, label: str | None) -> int:
        label = label or "production"
        version = session.scalar(
            select(PromptLabel.version).where(PromptLabel.prompt_id == prompt.id, PromptLabel.label == label)
        )
        if version is None:
            raise NotFoundError(
                f"Prompt '{prompt.name}' has no label '{label}'.", code="label_not_found", param="label"
            )
        return version

    @staticmethod
    def require_no_rollout(session: Session, prompt: Prompt, label: str) -> None:
        canary = session.scalar(
            select(PromptCanary.id).where(
                PromptCanary.prompt_id == prompt.id,
                PromptCanary.label == label,
                PromptCanary.status == "running",
            )
        )
        experiment = session.scalar(
            select(PromptExperiment.name).where(
                PromptExperiment.prompt_id == prompt.id,
                PromptExperiment.label == label,
                PromptExperiment.status == "running",
            )
        )
        if canary or experiment:
            what = f"canary {canary}" if canary else f"experiment '{experiment}'"
            raise ConflictError(
                f"The label '{label}' of prompt '{prompt.name}' is in a running {what}: end it first.",
                code="label_in_rollout",
                param="label",
            )

    @staticmethod
    def point(
        session: Session, prompt: Prompt, label: str, version: int, actor: Actor, kind: str, reason: str
    ) -> PromptLabelMove:
        row = session.get(PromptLabel, (prompt.id, label))
        previous = row.version if row is not None else None
        now = datetime.now(UTC)
        if row is None:
            session.add(
                PromptLabel(
                    prompt_id=prompt.id, label=label, version=version, updated_at=now, updated_by=actor.id
                )
            )
        else:
            row.version, row.updated_at, row.updated_by = version, now, actor.id
        move = PromptLabelMove(
            prompt_id=prompt.id,
            label=label,
            from_version=previous,
            to_version=version,
            kind=kind,
            actor=actor.id,
            reason=reason,
            created_at=now,
        )
        session.add(move)
        session.flush()
        return move
