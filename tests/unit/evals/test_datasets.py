"""Versioned datasets and their files over a real SQLite file, and the migration of old examples."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from keel.errors import InvalidRequestError, NotFoundError
from keel.evals.datasets import EvalDatasets
from keel.evals.formats import parse_csv, parse_jsonl, to_csv, to_jsonl
from keel.evals.items import DatasetItem
from keel.store.engine import Database
from keel.store.migrate import alembic_config

CONVERSATION = [
    {"role": "user", "content": "My bike will not start."},
    {"role": "assistant", "content": "Which error code shows?"},
    {"role": "user", "content": "E3, what does it mean?"},
]


@pytest.fixture
def datasets(tmp_path: Path) -> EvalDatasets:
    database = Database(f"sqlite:///{tmp_path / 'evals.db'}")
    database.migrate()
    return EvalDatasets(database)


def test_versions_change_only_with_content(datasets: EvalDatasets) -> None:
    # A keyed item keeps its key through an edit; a keyless one is named by its content.
    first = [
        DatasetItem(key="a", input="a?", reference_answer="A"),
        DatasetItem(input=CONVERSATION, answerability="ANSWERABLE"),
    ]
    assert datasets.write("acme", "faq", first).version == 1
    assert datasets.write("acme", "faq", first).version == 1
    edited = [first[0].model_copy(update={"reference_answer": "A, better"}), first[1]]
    v2 = datasets.write("acme", "faq", edited)
    assert (v2.version, v2.item_count, [v.version for v in v2.versions]) == (2, 2, [1, 2])
    v3 = datasets.write("acme", "faq", [DatasetItem(input="c?")], mode="append")
    assert (v3.version, v3.item_count) == (3, 3)
    # Every version reads back exactly as it was.
    _, one = datasets.items("acme", "faq", 1)
    assert [s.item.reference_answer for s in one] == ["A", None]
    _, two = datasets.items("acme", "faq", 2)
    assert two[0].item.reference_answer == "A, better" and two[0].item.key == one[0].item.key
    assert two[1].item.question == "E3, what does it mean?" and two[1].item.answerability == "answerable"
    with pytest.raises(NotFoundError):
        datasets.items("acme", "faq", 4)
    with pytest.raises(NotFoundError):
        datasets.items("other-tenant", "faq")


def test_duplicate_keys_are_refused_and_repeats_kept(datasets: EvalDatasets) -> None:
    with pytest.raises(InvalidRequestError, match="more than one"):
        datasets.write("acme", "d", [DatasetItem(key="k", input="a"), DatasetItem(key="k", input="b")])
    twice = datasets.write("acme", "d", [DatasetItem(input="same"), DatasetItem(input="same")])
    assert twice.item_count == 2


def test_files_round_trip_and_errors_name_the_line() -> None:
    items = [
        DatasetItem(
            input="How long do refunds take?",
            reference_answer="14 days",
            expected_sources=["refunds.md"],
            tags=["billing", "a|b"],
            metadata={"n": 1},
        ),
        DatasetItem.model_validate({"input": CONVERSATION, "answerability": "unanswerable"}),
        DatasetItem(input="[urgent] is this a conversation?"),
    ]
    assert parse_jsonl(to_jsonl(items)) == items
    assert parse_csv(to_csv(items)) == items
    plain = parse_csv("question,expected_sources,tags\nWhere is my order?,a.md|b.md,x\n")
    assert plain[0].expected_sources == ["a.md", "b.md"] and plain[0].tags == ["x"]
    with pytest.raises(InvalidRequestError, match="line 2"):
        parse_jsonl('{"input": "fine"}\n{"input": [{"role": "assistant", "content": "no question"}]}\n')
    with pytest.raises(InvalidRequestError, match="line 1: not JSON"):
        parse_jsonl("{nope\n")
    with pytest.raises(InvalidRequestError, match="Unknown CSV columns"):
        parse_csv("input,colour\nx,red\n")


def test_old_examples_become_version_one(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'old.db'}")
    config = alembic_config(database.engine)
    command.upgrade(config, "0008")
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO eval_examples (id, tenant, dataset, question, reference_answer,"
                " expected_sources, origin, created_at) VALUES ('ex_1', 'acme', 'handoffs',"
                " 'Can I talk to a human?', 'Yes, today.', '[\"faq.md\"]', 'review:rev_1',"
                " '2026-01-01 00:00:00')"
            )
        )
    command.upgrade(config, "head")
    info, stored = EvalDatasets(database).items("acme", "handoffs")
    assert info.version == 1
    (item,) = [s.item for s in stored]
    assert (item.key, item.question, item.reference_answer, item.expected_sources) == (
        "ex_1",
        "Can I talk to a human?",
        "Yes, today.",
        ["faq.md"],
    )
    assert "eval_examples" not in sa.inspect(database.engine).get_table_names()
