"""Every write to agents. Keyword-only, atomic; every change raises the version and keeps a copy."""

from __future__ import annotations

import re
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify
from rest_framework.exceptions import ValidationError

from agents.models import VERSIONED_FIELDS, Agent, AgentVersion
from workspaces.tenancy import Scope, lock_or_not_found


def slug_from_name(name: str) -> str:
    """`Lead Qualifier v2` → `lead-qualifier-v2`; a name with no latin letters or digits → `agent`."""
    slug = re.sub(r"[-_]{2,}", "-", slugify(name))
    return slug[: Agent._meta.get_field("slug").max_length].strip("-_") or "agent"


def _slug_taken(slug: str, *, derived: bool) -> ValidationError:
    hint = " Send a different `slug`." if derived else ""
    return ValidationError({"slug": [f"An agent with the slug {slug!r} already exists in this workspace.{hint}"]})


def _save(agent: Agent, *, derived_slug: bool) -> None:
    """Save, turning a slug clash (checked first, enforced by the unique constraint) into a 400."""
    clash = Agent.objects.for_workspace(agent.workspace_id).filter(slug=agent.slug).exclude(pk=agent.pk)
    if clash.exists():
        raise _slug_taken(agent.slug, derived=derived_slug)
    try:
        with transaction.atomic():
            agent.save()
    except IntegrityError:  # a concurrent writer took the slug between the check and the save
        raise _slug_taken(agent.slug, derived=derived_slug) from None


def _version_record(agent: Agent) -> AgentVersion:
    return AgentVersion.objects.create(
        workspace_id=agent.workspace_id,
        agent=agent,
        version=agent.version,
        created_at=agent.updated_at,
        **{name: getattr(agent, name) for name in VERSIONED_FIELDS},
    )


@transaction.atomic
def agent_create(
    *,
    scope: Scope,
    name: str,
    instructions: str,
    slug: str | None = None,
    description: str = "",
    input_schema: dict | None = None,
    tools: list[str] | None = None,
) -> Agent:
    now = timezone.now()
    agent = Agent(
        workspace_id=scope.workspace_id,
        name=name,
        slug=slug or slug_from_name(name),
        description=description,
        instructions=instructions,
        input_schema=input_schema or {},
        tools=list(tools or []),
        version=1,
        created_at=now,
        updated_at=now,
    )
    _save(agent, derived_slug=slug is None)
    _version_record(agent)
    return agent


@transaction.atomic
def agent_update(*, scope: Scope, agent: Agent, changes: dict[str, Any]) -> Agent:
    """Apply the given fields; if any value differs, the version rises and the new one is kept."""
    # The row lock serialises writers, so each version number is used once.
    locked = lock_or_not_found(Agent.objects.for_scope(scope), agent.pk)  # deleted since it was read: 404
    changed = [name for name in VERSIONED_FIELDS if name in changes and getattr(locked, name) != changes[name]]
    if not changed:
        return locked
    for name in changed:
        setattr(locked, name, changes[name])
    locked.version += 1
    locked.updated_at = timezone.now()
    _save(locked, derived_slug=False)
    _version_record(locked)
    return locked


@transaction.atomic
def agent_delete(*, scope: Scope, agent: Agent) -> None:
    """Delete an agent and its versions; threads bound to it keep their context snapshot."""
    # Locked before its versions are collected: an update adding one either lands first or finds no agent.
    lock_or_not_found(Agent.objects.for_scope(scope), agent.pk)
    Agent.objects.for_scope(scope).filter(pk=agent.pk).delete()
