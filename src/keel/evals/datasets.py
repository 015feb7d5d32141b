"""Versioned evaluation datasets: every change makes a new version; old versions stay readable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keel.errors import InvalidRequestError, NotFoundError
from keel.evals.items import DatasetItem, assign_keys
from keel.store.engine import Database
from keel.store.eval_models import EvalDataset, EvalDatasetVersion, EvalItem

WriteMode = Literal["replace", "append"]
# One import or one API call; larger sets are split by the caller into appends.
MAX_ITEMS = 50_000


@dataclass(frozen=True)
class VersionInfo:
    version: int
    item_count: int
    origin: str
    note: str
    created_at: datetime


@dataclass(frozen=True)
class DatasetInfo:
    id: str
    name: str
    description: str
    version: int
    item_count: int
    versions: list[VersionInfo]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StoredItem:
    """An item as one version holds it; `id` is the row, `item.key` names it across versions."""

    id: str
    ordinal: int
    origin: str
    item: DatasetItem


def _in_version(version: int):  # type: ignore[no-untyped-def]
    return (EvalItem.added_version <= version) & or_(
        EvalItem.removed_version.is_(None), EvalItem.removed_version > version
    )


def _to_item(row: EvalItem) -> DatasetItem:
    return DatasetItem.from_stored(
        row.key, row.input, row.reference_answer, row.expected_sources, row.answerability, row.tags, row.meta
    )


class EvalDatasets:
    def __init__(self, database: Database) -> None:
        self._database = database

    def write(
        self,
        tenant: str,
        name: str,
        items: list[DatasetItem],
        *,
        mode: WriteMode = "replace",
        origin: str = "import",
        note: str = "",
        description: str | None = None,
        created_by: str | None = None,
    ) -> DatasetInfo:
        """`replace`: the new version holds exactly `items`; `append`: adds them (a known key is replaced).

        Unchanged items keep their rows; when nothing changes no version is made, so importing the same
        file twice leaves the dataset as it was.
        """
        if not name.strip() or len(name) > 200:
            raise InvalidRequestError("A dataset name is 1 to 200 characters.", param="name")
        if len(items) > MAX_ITEMS:
            raise InvalidRequestError(f"At most {MAX_ITEMS} items per call; append the rest.")
        if not items and mode == "append":
            raise InvalidRequestError("Nothing to append: no items given.")
        try:
            keyed = assign_keys(items)
        except ValueError as exc:
            raise InvalidRequestError(f"Dataset items: {exc}.") from exc
        try:
            return self._write(tenant, name, keyed, mode, origin, note, description, created_by)
        except IntegrityError:
            # Another writer created the same new dataset first: its row now exists, so lock it and go on.
            return self._write(tenant, name, keyed, mode, origin, note, description, created_by)

    def _write(
        self,
        tenant: str,
        name: str,
        keyed: list[DatasetItem],
        mode: WriteMode,
        origin: str,
        note: str,
        description: str | None,
        created_by: str | None,
    ) -> DatasetInfo:
        with self._database.session() as session:
            dataset = session.scalar(
                select(EvalDataset)
                .where(EvalDataset.tenant == tenant, EvalDataset.name == name)
                .with_for_update()
            )
            if dataset is None:
                dataset = EvalDataset(tenant=tenant, name=name, description=description or "", version=0)
                session.add(dataset)
                session.flush()
            elif description is not None:
                dataset.description = description
            changed = self._apply(session, dataset, keyed, mode, origin)
            if changed or dataset.version == 0:
                dataset.version += 1
                count = self._count(session, dataset.id, dataset.version)
                session.add(
                    EvalDatasetVersion(
                        dataset_id=dataset.id,
                        version=dataset.version,
                        item_count=count,
                        origin=origin[:64],
                        note=note,
                        created_by=created_by,
                    )
                )
            session.flush()
            return self._info(session, dataset)

    def _apply(
        self, session: Session, dataset: EvalDataset, items: list[DatasetItem], mode: WriteMode, origin: str
    ) -> bool:
        new_version = dataset.version + 1
        current = {
            row.key: row
            for row in session.scalars(
                select(EvalItem).where(EvalItem.dataset_id == dataset.id, EvalItem.removed_version.is_(None))
            )
        }
        changed = False
        incoming = {item.key: item for item in items}
        if mode == "replace":
            for key, row in current.items():
                if key not in incoming:
                    row.removed_version = new_version
                    changed = True
        next_ordinal = 0 if mode == "replace" else max((r.ordinal for r in current.values()), default=-1) + 1
        for ordinal, item in enumerate(items):
            assert item.key is not None
            existing = current.get(item.key)
            if existing is not None and _to_item(existing) == item:
                continue
            if existing is not None:
                existing.removed_version = new_version
            session.add(
                EvalItem(
                    dataset_id=dataset.id,
                    tenant=dataset.tenant,
                    key=item.key,
                    ordinal=ordinal if mode == "replace" else next_ordinal + ordinal,
                    added_version=new_version,
                    input=item.stored_input(),
                    reference_answer=item.reference_answer,
                    expected_sources=item.expected_sources,
                    answerability=item.answerability,
                    tags=item.tags,
                    meta=item.metadata,
                    origin=origin[:64],
                )
            )
            changed = True
        session.flush()
        return changed

    @staticmethod
    def _count(session: Session, dataset_id: str, version: int) -> int:
        return len(
            session.scalars(
                select(EvalItem.id).where(EvalItem.dataset_id == dataset_id, _in_version(version))
            ).all()
        )

    def _info(self, session: Session, dataset: EvalDataset) -> DatasetInfo:
        versions = [
            VersionInfo(v.version, v.item_count, v.origin, v.note, v.created_at)
            for v in session.scalars(
                select(EvalDatasetVersion)
                .where(EvalDatasetVersion.dataset_id == dataset.id)
                .order_by(EvalDatasetVersion.version)
            )
        ]
        return DatasetInfo(
            id=dataset.id,
            name=dataset.name,
            description=dataset.description,
            version=dataset.version,
            item_count=versions[-1].item_count if versions else 0,
            versions=versions,
            created_at=dataset.created_at,
            updated_at=dataset.updated_at,
        )

    def _find(self, session: Session, tenant: str, name_or_id: str) -> EvalDataset:
        dataset = session.scalar(
            select(EvalDataset).where(
                EvalDataset.tenant == tenant,
                or_(EvalDataset.name == name_or_id, EvalDataset.id == name_or_id),
            )
        )
        if dataset is None:
            raise NotFoundError(f"No dataset '{name_or_id}'.", code="dataset_not_found")
        return dataset

    def get(self, tenant: str, name_or_id: str) -> DatasetInfo:
        with self._database.reading() as session:
            return self._info(session, self._find(session, tenant, name_or_id))

    def list_all(self, tenant: str) -> list[DatasetInfo]:
        with self._database.reading() as session:
            rows = session.scalars(
                select(EvalDataset).where(EvalDataset.tenant == tenant).order_by(EvalDataset.name)
            ).all()
            return [self._info(session, d) for d in rows]

    def items(
        self, tenant: str, name_or_id: str, version: int | None = None
    ) -> tuple[DatasetInfo, list[StoredItem]]:
        """The dataset and the items of `version` (the latest when None), in their order."""
        with self._database.reading() as session:
            dataset = self._find(session, tenant, name_or_id)
            info = self._info(session, dataset)
            wanted = info.version if version is None else version
            if not 1 <= wanted <= info.version:
                raise NotFoundError(
                    f"Dataset '{info.name}' has versions 1 to {info.version}, not {wanted}.",
                    code="dataset_version_not_found",
                )
            rows = session.scalars(
                select(EvalItem)
                .where(EvalItem.dataset_id == dataset.id, _in_version(wanted))
                .order_by(EvalItem.ordinal, EvalItem.added_version)
            ).all()
            return info, [StoredItem(r.id, r.ordinal, r.origin, _to_item(r)) for r in rows]
