"""Writes for workspaces, members and API keys."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from workspaces.keys import PREFIX_LENGTH, generate_key, hash_key, parse_key
from workspaces.models import ApiKey, Membership, User, Workspace
from workspaces.tenancy import ALL_SCOPES


class UnknownScope(ValueError):
    pass


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str  # shown once, never stored


@transaction.atomic
def workspace_create(*, slug: str, name: str | None = None) -> Workspace:
    workspace, created = Workspace.objects.get_or_create(slug=slug, defaults={"name": name or slug})
    if not created and name and workspace.name != name:
        workspace.name = name
        workspace.save(update_fields=["name"])
    return workspace


@transaction.atomic
def member_ensure(*, workspace: Workspace, email: str, name: str = "", role: str = Membership.Role.MEMBER) -> User:
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        user = User.objects.create_user(email=email, name=name or email.split("@")[0])
    membership, created = Membership.objects.get_or_create(workspace=workspace, user=user, defaults={"role": role})
    if not created and role == Membership.Role.OWNER and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    return user


def normalize_scopes(scopes: list[str] | None) -> list[str]:
    if scopes is None:
        return list(ALL_SCOPES)
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise UnknownScope(f"unknown scope(s): {', '.join(unknown)}; known: {', '.join(ALL_SCOPES)}")
    return [s for s in ALL_SCOPES if s in scopes]


@transaction.atomic
def api_key_create(
    *, workspace: Workspace, user: User | None = None, name: str = "", scopes: list[str] | None = None, expires_at=None
) -> IssuedKey:
    scope_list = normalize_scopes(scopes)
    for _ in range(5):
        secret = generate_key()
        try:
            with transaction.atomic():
                api_key = ApiKey.objects.create(
                    workspace=workspace,
                    user=user,
                    name=name,
                    prefix=secret[:PREFIX_LENGTH],
                    secret_hash=hash_key(secret),
                    scopes=scope_list,
                    expires_at=expires_at,
                )
        except IntegrityError:  # a prefix collision: astronomically rare, but never fatal
            continue
        return IssuedKey(api_key=api_key, secret=secret)
    raise RuntimeError("could not allocate a unique key prefix")


def api_key_find(key_or_prefix: str) -> ApiKey | None:
    parsed = parse_key(key_or_prefix)
    prefix = parsed.prefix if parsed else key_or_prefix.rstrip(".…")
    if len(prefix) != PREFIX_LENGTH:
        return None
    return ApiKey.objects.filter(prefix=prefix).first()


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key
