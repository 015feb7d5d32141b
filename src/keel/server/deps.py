"""Typed dependencies: the runtime, and the caller with the roles a route allows.

A route takes one of the `...Caller` aliases as a parameter; that both authenticates the key and checks
its role, so a route cannot forget either. `require_roles` records the roles on the dependency, so the
allowed roles of every route can be read back (the authorisation tests do).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry import trace

from keel.errors import AuthenticationError, PermissionDeniedError
from keel.keys import Principal, Role
from keel.observe import attributes
from keel.runtime import Runtime

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer keel_...`")


# The dependencies are coroutines: FastAPI would run a plain function on a worker thread, a hop per
# dependency per request.
async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def authenticate(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise AuthenticationError(
            "Missing API key: send it as 'Authorization: Bearer keel_...'.", code="missing_api_key"
        )
    # A key seen before is answered from memory; only a new one costs a database read, off the loop.
    principal = runtime.keys.verified(credentials.credentials)
    if principal is None:
        principal = await asyncio.to_thread(runtime.keys.authenticate, credentials.credentials)
    span = trace.get_current_span()
    span.set_attribute(attributes.TENANT, principal.tenant)
    span.set_attribute(attributes.ROLE, principal.role.value)
    span.set_attribute(attributes.KEY, principal.key_prefix)
    return principal


def require_roles(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    allowed = frozenset(roles)

    async def check_role(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role not in allowed:
            raise PermissionDeniedError(
                f"The role '{principal.role}' may not use this route.", code="insufficient_role"
            )
        return principal

    check_role.allowed_roles = allowed  # type: ignore[attr-defined]
    return check_role


# Model calls: applications and administrators.
ModelCaller = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.APP))]
# Read-only listings: every role.
AnyCaller = Annotated[Principal, Depends(require_roles(*Role))]
# Adding and deleting knowledge: applications and administrators.
KnowledgeWriter = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.APP))]
# Searching knowledge: applications, administrators and reviewers (who check answers against sources).
SearchCaller = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.APP, Role.REVIEWER))]
# The review queue: reviewers and administrators.
ReviewCaller = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.REVIEWER))]
# Reading a support reply: the application that asked, reviewers and administrators.
SupportReader = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.APP, Role.REVIEWER))]
# Reports on cost and usage: administrators.
AdminCaller = Annotated[Principal, Depends(require_roles(Role.ADMIN))]
# Online evaluation scores and drift monitors: administrators and viewers (dashboards, alerting).
MonitorReader = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.VIEWER))]
# Pushing prompt versions, moving labels, experiments and canaries: applications (CI pipelines) and
# administrators; a protected label (`prompts.protected_labels`) takes an administrator.
PromptWriter = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.APP))]
# Feedback on an answer: the application (for its end users), reviewers and administrators.
FeedbackCaller = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.APP, Role.REVIEWER))]
# Evaluation datasets, runs and comparisons, read: every role.
EvalReader = Annotated[Principal, Depends(require_roles(*Role))]
# Writing evaluation datasets (imports, reviewed answers, traces): applications, reviewers, administrators.
DatasetWriter = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.APP, Role.REVIEWER))]
# Starting evaluation runs, which spend model time: applications and administrators.
EvalRunner = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.APP))]
