"""The composition root: builds Keel's services from Settings, once per process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial

import redis
from huey import Huey
from opentelemetry.trace import Tracer

from keel.config import AliasSettings, Settings
from keel.copilot.grounding import GroundingChecker
from keel.copilot.intents import IntentClassifier
from keel.copilot.memory import ConversationMemory
from keel.copilot.pipeline import Copilot
from keel.copilot.prompt import SHIPPED_PROMPT
from keel.copilot.tools.base import ToolBox
from keel.copilot.tools.registry import copilot_tools
from keel.copilot.vectors import SentenceVectors
from keel.errors import InvalidRequestError
from keel.evals.monitoring import Monitoring, build_monitoring
from keel.evals.service import Evaluation, build_evaluation
from keel.gateway.budgets import BudgetLedger
from keel.gateway.cache import MemoryResponseCache
from keel.gateway.cache_redis import RedisResponseCache
from keel.gateway.deployments import build_deployments, default_local_deployments
from keel.gateway.dispatch import Dispatcher
from keel.gateway.judge_ask import gateway_ask
from keel.gateway.ledger import UsageLedger
from keel.gateway.limits import RateLimiter
from keel.gateway.metered_embeddings import MeteredEmbeddings
from keel.gateway.providers.embedding import EmbeddingModel, build_embedding_model
from keel.gateway.providers.local import LocalChatProvider
from keel.gateway.service import Gateway
from keel.governance.audit import AuditLog
from keel.governance.retention import Retention, scheduled_purge
from keel.governance.subjects import SubjectRequests
from keel.guard.chunk_screening import screen_unscreened
from keel.guard.inbound import InboundGuard
from keel.guard.injection import InjectionDetector, InjectionSettings
from keel.guard.judge import make_judge
from keel.guard.output import OutputPolicy
from keel.guard.pii import PiiDetector
from keel.guard.pii_policy import ContentRedactor, install_payment_masking
from keel.guard.verdict_store import PassageVerdictStore
from keel.jobs.ingestion_jobs import IngestionJobs
from keel.jobs.maintenance import register_maintenance
from keel.jobs.queue import build_queue
from keel.keys import KeyStore
from keel.knowledge.catalog import DocumentCatalog
from keel.knowledge.embedding_cache import CachedEmbedder
from keel.knowledge.index.base import KnowledgeIndex
from keel.knowledge.index.postgres import PostgresIndex
from keel.knowledge.index.sqlite import SqliteIndex
from keel.knowledge.ingestion import Ingestion
from keel.knowledge.loaders.base import ChunkingOptions
from keel.knowledge.loaders.registry import default_registry
from keel.knowledge.rerank import CrossEncoderReranker
from keel.knowledge.retrieval import Retriever
from keel.observe.dashboard import Dashboard
from keel.observe.feedback import FeedbackStore
from keel.observe.metrics import KeelMetrics
from keel.observe.tracing import Tracing
from keel.observe.usage import UsageReports
from keel.prompts.service import Prompts, build_prompts
from keel.review.queue import ReviewQueue
from keel.review.webhooks import WebhookSender
from keel.store.engine import Database


def build_gateway(
    settings: Settings,
    database: Database,
    chat_model: LocalChatProvider,
    embedding_model: EmbeddingModel,
    tracer: Tracer,
    metrics: KeelMetrics,
    limiter: RateLimiter,
    guard: InboundGuard | None = None,
) -> Gateway:
    config = settings.gateway
    configured = config.deployments or default_local_deployments(settings)
    aliases = config.aliases or {settings.chat.alias: AliasSettings(deployments=list(configured))}
    for name, alias in aliases.items():
        missing = [d for d in alias.deployments if d not in configured] + [
            f for f in alias.fallbacks if f not in aliases
        ]
        if missing:
            raise InvalidRequestError(f"Model alias '{name}' names unknown deployments or aliases: {missing}")
    return Gateway(
        config,
        Dispatcher(
            aliases, build_deployments(configured, chat_model, config.breaker), config.retry, tracer, guard
        ),
        {settings.embedding.alias: embedding_model},
        limiter,
        BudgetLedger(database, config),
        RedisResponseCache(config.cache, redis.Redis.from_url(settings.redis_url))
        if settings.redis_url
        else MemoryResponseCache(config.cache),
        UsageLedger(database),
        default_completion_tokens=settings.chat.default_max_tokens,
        tracer=tracer,
        capture_content=settings.observe.capture_content,
        on_call=metrics.observe_call,
    )


def _screens_at_ingestion(settings: Settings) -> bool:
    return settings.guard.injection_sources_at_ingestion and settings.guard.injection_in_sources != "off"


@dataclass
class Runtime:
    settings: Settings
    database: Database
    keys: KeyStore
    chat_model: LocalChatProvider
    embedding_model: EmbeddingModel
    gateway: Gateway
    index: KnowledgeIndex
    ingestion: Ingestion
    documents: DocumentCatalog
    queue: Huey
    jobs: IngestionJobs
    retriever: Retriever
    copilot: Copilot
    reviews: ReviewQueue
    tracing: Tracing
    metrics: KeelMetrics
    audit: AuditLog
    subjects: SubjectRequests
    retention: Retention
    guard: InboundGuard
    evals: Evaluation
    prompts: Prompts
    monitoring: Monitoring
    feedback: FeedbackStore
    usage: UsageReports
    dashboard: Dashboard
    # Set once `warm_up` finished: every model loaded and every classifier fitted, so the copilot can
    # answer at once (a request before that waits behind the fitting).
    warmed_up: bool = False

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        database = Database(settings.sqlalchemy_url)
        metrics = KeelMetrics()
        chat_model = LocalChatProvider(
            settings.chat.resolved_model_path(),
            n_ctx=settings.chat.n_ctx,
            n_threads=settings.chat.n_threads,
            default_max_tokens=settings.chat.default_max_tokens,
            parallel=settings.chat.parallel,
            nice=settings.chat.nice,
            prefix_cache_mb=settings.chat.prefix_cache_mb,
            on_wait=metrics.queue_observer(settings.chat.alias),
        )
        embedding_model = build_embedding_model(
            settings.embedding, metrics.queue_observer(settings.embedding.alias)
        )
        pii = PiiDetector(ner=settings.guard.pii_names)
        # The personal-data policy (docs/guardrails.md): no full card number or IBAN in any row, and
        # stored spans scanned by the guard's own detector.
        install_payment_masking(database)
        tracing = Tracing(settings.observe, database, ContentRedactor(pii).attributes_many)
        tracer = tracing.tracer
        verdicts = PassageVerdictStore(database)
        injection = InjectionDetector(
            embedding_model,
            cache_dir=settings.data_dir / "models",
            settings=InjectionSettings(
                threshold=settings.guard.injection_threshold,
                passage_threshold=settings.guard.injection_passage_score,
                passage_cache_size=settings.guard.injection_passage_cache,
                prescreen=settings.guard.injection_prescreen,
            ),
            stored=verdicts,
        )
        guard = InboundGuard(settings.guard, injection, pii)
        # One limiter for the API's calls and Keel's own embeddings: a tenant's tokens are counted once.
        limiter = RateLimiter(settings.gateway, settings.redis_url or "memory://")
        gateway = build_gateway(
            settings, database, chat_model, embedding_model, tracer, metrics, limiter, guard
        )
        if settings.guard.injection_judge:
            injection.use_judge(make_judge(gateway_ask(gateway, settings.guard.injection_judge)))
        index: KnowledgeIndex = (
            SqliteIndex(database)
            if database.is_sqlite
            else PostgresIndex(database, embedding_model.declared_dimensions())
        )
        chunking = {
            doc_type: ChunkingOptions(max_chars=options.max_chars, overlap_chars=options.overlap_chars)
            for doc_type, options in settings.knowledge.chunking.items()
        }
        ingestion = Ingestion(
            database,
            index,
            CachedEmbedder(
                database,
                MeteredEmbeddings(
                    embedding_model,
                    settings.embedding.alias,
                    limiter,
                    UsageLedger(database),
                    feature="ingestion",
                    on_limit="wait",
                ),
                batch_size=settings.embedding.batch_size,
            ),
            default_registry(),
            chunking,
            settings.knowledge.max_document_bytes,
            screen=injection.keep_passage_verdicts if _screens_at_ingestion(settings) else None,
        )
        ingestion.on_change.append(gateway.cache.invalidate_tenant)
        queue = build_queue(settings.data_dir, settings.redis_url)
        audit = AuditLog(database)
        subjects = SubjectRequests(database, audit)
        subjects.on_erase.append(gateway.cache.invalidate_tenant)
        prompts = build_prompts(settings, database, audit, gateway, SHIPPED_PROMPT, queue, metrics.registry)
        jobs = IngestionJobs(
            database,
            ingestion.ingest_sources,
            queue,
            stale_after_s=settings.job_stale_after_s,
            queued_data=ingestion.queued_data,
        )
        register_maintenance(
            queue,
            jobs.requeue_stale,
            partial(scheduled_purge, database, settings.retention, audit),
            verdicts.prune,
            partial(screen_unscreened, injection, verdicts) if _screens_at_ingestion(settings) else None,
        )
        metrics.watch(
            lambda: {name: d.breaker.state.value for name, d in gateway.dispatcher.deployments.items()},
            lambda: len(queue),
        )
        retrieval = settings.knowledge.retrieval
        retriever = Retriever(
            database,
            index,
            MeteredEmbeddings(
                embedding_model,
                settings.embedding.alias,
                limiter,
                UsageLedger(database),
                feature="search",
                on_limit="refuse",
            ),
            retrieval,
            chat_model.count_tokens,
            reranker=CrossEncoderReranker(retrieval.reranker_path) if retrieval.reranker_path else None,
            tracer=tracer,
        )
        copilot_settings = settings.copilot
        secret = (
            os.environ.get(copilot_settings.webhook_secret_env)
            if copilot_settings.webhook_secret_env
            else None
        )
        reviews = ReviewQueue(
            database,
            WebhookSender(copilot_settings.webhook_url, secret),
            audit,
            claim_ttl_s=settings.review.claim_ttl_s,
        )
        monitoring = build_monitoring(settings, database, queue, embedding_model, gateway, metrics)
        copilot = Copilot(
            copilot_settings,
            settings.chat.alias,
            database,
            gateway,
            retriever,
            IntentClassifier(embedding_model, settings.data_dir / "models", settings.copilot.intent_examples),
            ToolBox(copilot_tools(database), settings.redis_url or "memory://", tracer),
            GroundingChecker(SentenceVectors(embedding_model)),
            ConversationMemory(database),
            reviews,
            tracer,
            on_reply=metrics.observe_reply,
            guard=guard,
            output=OutputPolicy(settings.guard.blocked_terms, pii),
            prompts=prompts.copilot,
            on_stored=monitoring.online.submit,
        )
        return cls(
            settings=settings,
            database=database,
            keys=KeyStore(database, audit),
            chat_model=chat_model,
            embedding_model=embedding_model,
            gateway=gateway,
            index=index,
            ingestion=ingestion,
            documents=DocumentCatalog(database, ingestion, audit),
            queue=queue,
            jobs=jobs,
            retriever=retriever,
            copilot=copilot,
            reviews=reviews,
            tracing=tracing,
            metrics=metrics,
            audit=audit,
            subjects=subjects,
            retention=Retention(database, settings.retention, audit),
            prompts=prompts,
            guard=guard,
            evals=build_evaluation(
                settings, database, queue, tracer, gateway, copilot, retriever, embedding_model, reviews
            ),
            monitoring=monitoring,
            feedback=FeedbackStore(database, settle=gateway.settle_usage),
            usage=UsageReports(database, settle=gateway.settle_usage),
            dashboard=Dashboard(database, settle=gateway.settle_usage),
        )

    def prepare(self) -> None:
        """Bring the database to the current schema, index tables included (idempotent)."""
        # PostgreSQL's vector index is sized for the embedding model; SQLite's vectors need no size.
        self.database.migrate(None if self.database.is_sqlite else self.embedding_model.declared_dimensions())
        self.index.ensure_schema()

    def warm_up(self) -> None:
        """Load both models, fit the intent and injection classifiers (blocking; fitted on first start, then
        loaded from the data directory) and run the copilot's first embedding passes."""
        self.chat_model.warm_up()
        self.embedding_model.warm_up()
        self.copilot.warm_up()
        self.guard.injection.warm_up()
        if self.settings.guard.pii_names:
            self.guard.pii.warm_up()
        self.warmed_up = True

    def readiness(self) -> dict[str, bool]:
        """Each readiness check by name (blocking: it asks the database)."""
        try:
            self.database.ping()
            database = True
        except Exception:
            database = False
        return {
            "database": database,
            "chat_model": self.chat_model.is_ready,
            "embedding_model": self.embedding_model.is_ready,
            # Ready means the copilot can answer: the intent and injection classifiers are fitted and the
            # first embedding passes ran, not merely that the model files are loaded.
            "copilot": self.copilot.is_ready and self.warmed_up,
        }

    def close(self) -> None:
        self.gateway.close()
        self.tracing.shutdown()
        self.queue.storage.close()
        self.database.dispose()
