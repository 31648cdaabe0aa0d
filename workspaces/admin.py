"""Admin for support staff: workspaces, members, users, API keys (never a secret or its hash).

Row-level security and the admin
--------------------------------
Tenant tables have row-level security forced, and their policy shows no row unless
`tenex.workspace_id` is set. The admin gets no bypass (no extra role, policy or connection): it
reads tenant data one workspace at a time, exactly as the API does. `TenantModelAdmin` resolves
the workspace a staff member chose (the "workspace" list filter, carried to object pages in
`_changelist_filters`, remembered in the session) and runs the whole view, template rendering
included, inside `tenant_context(workspace)`. Without a chosen workspace a tenant list is empty
and asks for one. An object's own page needs no choice: its workspace is found from its id
(`workspaces.locate`), so direct links and the header's "Find" box (any public id, a key or an
email) land on the object whatever the workspace. Because nothing about the database's policies
changes, the tenant API stays exactly as isolated as before.

Staff opening a conversation (a thread's or a message's page) leaves a `ConversationRead`, which
superusers list read-only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm
from django.contrib.auth.forms import UserChangeForm as DjangoUserChangeForm
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from workspaces.ids import looks_like_id
from workspaces.locate import object_workspace_id
from workspaces.models import ApiKey, ConversationRead, Membership, User, Workspace
from workspaces.rls import tenant_tables
from workspaces.services import api_key_revoke
from workspaces.tenancy import tenant_context

WORKSPACE_PARAM = "workspace"
SESSION_WORKSPACE_KEY = "tenex_admin_workspace_id"
WORKSPACE_FILTER_CHOICES = 200


# --- tenant data: one chosen workspace per request ----------------------------------------------
def chosen_workspace(request: HttpRequest) -> Workspace | None:
    """The workspace this admin request reads: from the query, the preserved filters, or the session."""
    candidates = [request.GET.get(WORKSPACE_PARAM)]
    preserved = request.GET.get("_changelist_filters")
    if preserved:
        candidates.append(QueryDict(preserved).get(WORKSPACE_PARAM))
    candidates.append(request.session.get(SESSION_WORKSPACE_KEY))
    for candidate in candidates:
        if not looks_like_id(candidate, "ws"):
            continue
        workspace = Workspace.objects.filter(pk=candidate).first()
        if workspace is not None:
            if request.session.get(SESSION_WORKSPACE_KEY) != workspace.pk:
                request.session[SESSION_WORKSPACE_KEY] = workspace.pk
            return workspace
    return None


def tenant_changelist_url(model: type, workspace: Workspace) -> str:
    opts = model._meta
    return f"{reverse(f'admin:{opts.app_label}_{opts.model_name}_changelist')}?{WORKSPACE_PARAM}={workspace.pk}"


class WorkspaceFilter(admin.SimpleListFilter):
    """Picks the one workspace a tenant list shows; there is deliberately no "All"."""

    title = "workspace"
    parameter_name = WORKSPACE_PARAM

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        workspaces = Workspace.objects.order_by("slug")
        choices = [(w.pk, w.slug) for w in workspaces[:WORKSPACE_FILTER_CHOICES]]
        chosen = getattr(request, "tenex_workspace", None)
        if chosen is not None and chosen.pk not in {pk for pk, _ in choices}:
            choices.insert(0, (chosen.pk, chosen.slug))
        return choices

    def choices(self, changelist):
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == str(lookup),
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        return queryset  # TenantModelAdmin.get_queryset scopes every query, lists and object pages alike


class TenantModelAdmin(admin.ModelAdmin):
    """Base for admins of tenant models: every view runs in the chosen workspace's RLS context.

    The workspace filter is always in the sidebar, whatever `list_filter` a subclass sets.
    """

    show_full_result_count = False  # a second count(*) over a large workspace buys staff nothing

    def get_list_filter(self, request: HttpRequest) -> tuple[Any, ...]:
        filters = tuple(super().get_list_filter(request))
        return filters if WorkspaceFilter in filters else (WorkspaceFilter, *filters)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        workspace = getattr(request, "tenex_workspace", None)
        if workspace is None:
            return queryset.none()
        # RLS already limits rows to this workspace on PostgreSQL; the filter keeps SQLite the same.
        return queryset.filter(workspace_id=workspace.pk)

    def _in_workspace(
        self, request: HttpRequest, view: Callable[..., HttpResponse], *args, object_id: str | None = None, **kwargs
    ) -> HttpResponse:
        # An object's page reads in the object's own workspace; a list (or an unknown id) in the chosen one.
        workspace = located_workspace(request, self.model, unquote(object_id)) if object_id else None
        workspace = request.tenex_workspace = workspace or chosen_workspace(request)
        if workspace is None:
            return view(request, *args, **kwargs)
        with tenant_context(workspace.pk):
            response = view(request, *args, **kwargs)
            # Templates evaluate querysets lazily: render while the RLS setting is still in force.
            if hasattr(response, "render") and not response.is_rendered:
                response.render()
        return response

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        workspace = chosen_workspace(request)
        if workspace is not None and request.method == "GET" and request.GET.get(WORKSPACE_PARAM) != workspace.pk:
            # Make the remembered choice visible (and linkable) in the URL and the filter.
            params = request.GET.copy()
            params[WORKSPACE_PARAM] = workspace.pk
            return HttpResponseRedirect(f"{request.path}?{params.urlencode()}")
        plural = self.model._meta.verbose_name_plural
        title = (
            f"{plural.capitalize()} in workspace {workspace.slug}"
            if workspace is not None
            else f"Choose a workspace (filter on the right) to see its {plural}"
        )
        context = {"title": title, **(extra_context or {})}
        return self._in_workspace(request, super().changelist_view, extra_context=context)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        view = super().changeform_view
        return self._in_workspace(request, view, object_id, form_url, extra_context, object_id=object_id)

    def delete_view(self, request, object_id, extra_context=None):
        return self._in_workspace(request, super().delete_view, object_id, extra_context, object_id=object_id)

    def history_view(self, request, object_id, extra_context=None):
        return self._in_workspace(request, super().history_view, object_id, extra_context, object_id=object_id)


def located_workspace(request: HttpRequest, model: type, pk: str) -> Workspace | None:
    """The workspace that holds `model` row `pk`, remembered as the session's choice; None if none does."""
    remembered = request.session.get(SESSION_WORKSPACE_KEY)
    workspace_id = object_workspace_id(model, pk, hint=remembered if looks_like_id(remembered, "ws") else None)
    workspace = Workspace.objects.filter(pk=workspace_id).first() if workspace_id else None
    if workspace is not None:
        request.session[SESSION_WORKSPACE_KEY] = workspace.pk
    return workspace


class RecordsConversationReads:
    """For admins whose object page shows a conversation: each view of it is recorded (who, thread, when)."""

    def conversation_of(self, obj) -> tuple[str, str]:
        """(thread id, thread title) of the conversation `obj`'s page shows."""
        raise NotImplementedError

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        shown = getattr(response, "context_data", None) or {}
        obj = shown.get("original")
        if request.method == "GET" and response.status_code == 200 and obj is not None:
            thread_id, title = self.conversation_of(obj)
            workspace = request.tenex_workspace
            ConversationRead.objects.create(
                staff=request.user, staff_email=request.user.email, tenant=workspace, tenant_slug=workspace.slug,
                thread_id=thread_id, thread_title=title[:200], via=f"{obj._meta.verbose_name} {obj.pk}"[:100],
            )
        return response


class ReadOnlyAdminMixin:
    """History is evidence: staff may look, never add, change or delete."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# --- identity tables ----------------------------------------------------------------------------
class NoDeleteMixin:
    """Deleting a workspace or a user would cascade into tenant rows that RLS hides from this
    request, so Django's collector would miss them; deactivate a user, revoke a key instead."""

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    readonly_fields = ("created_at",)
    autocomplete_fields = ("workspace", "user")

    def get_fields(self, request, obj=None) -> list[str]:
        other = "user" if self.parent_model is Workspace else "workspace"
        return [other, "role", "created_at"]


class ApiKeyInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ApiKey
    extra = 0
    show_change_link = True
    fields = readonly_fields = (
        "prefix", "name", "scopes", "user", "created_at", "last_used_at", "expires_at", "revoked_at",
    )


@admin.register(Workspace)
class WorkspaceAdmin(NoDeleteMixin, admin.ModelAdmin):
    list_display = ("slug", "name", "id", "created_at")
    search_fields = ("slug", "name", "=id")
    readonly_fields = ("id", "created_at", "tenant_data")
    fields = ("id", "slug", "name", "created_at", "tenant_data")
    inlines = (MembershipInline, ApiKeyInline)

    @admin.display(description="Workspace data")
    def tenant_data(self, workspace: Workspace) -> str:
        if workspace.pk is None:
            return "-"
        tables = set(tenant_tables())
        models = [
            m for m in apps.get_models()
            if m._meta.db_table in tables and self.admin_site.is_registered(m)
        ]
        return format_html_join(
            " · ", '<a href="{}">{}</a>',
            ((tenant_changelist_url(m, workspace), m._meta.verbose_name_plural.capitalize()) for m in models),
        ) or "-"


class ApiKeyStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked"), ("expired", "Expired")]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset


class ApiKeyKindFilter(admin.SimpleListFilter):
    title = "kind"
    parameter_name = "kind"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        return [("personal", "Personal"), ("service", "Service")]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() in {"personal", "service"}:
            return queryset.filter(user__isnull=self.value() == "service")
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(NoDeleteMixin, admin.ModelAdmin):
    """Keys by prefix. Issued with `manage.py create_api_key` (shown once), so no add form; revoked, never deleted."""

    list_display = ("prefix", "name", "workspace", "user", "scopes", "last_used_at", "expires_at", "revoked_at")
    list_filter = (ApiKeyStateFilter, ApiKeyKindFilter, ("workspace", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("workspace", "user")
    search_fields = ("prefix", "name", "=id", "workspace__slug", "user__email")
    ordering = ("-created_at", "id")
    # secret_hash is deliberately absent from every list here.
    fields = (
        "id", "prefix", "name", "workspace", "user", "scopes", "created_at", "last_used_at", "expires_at", "revoked_at",
    )
    readonly_fields = ("id", "prefix", "workspace", "user", "scopes", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke_selected",)

    def has_add_permission(self, request) -> bool:
        return False

    def lookup_allowed(self, lookup: str, value: str, request=None) -> bool:
        # A `?secret_hash__startswith=` filter would be an oracle for the hash, one character at a time.
        return not lookup.startswith("secret_hash") and super().lookup_allowed(lookup, value, request)

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} key(s); they answer 401 from now on.", messages.SUCCESS)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "workspace", "role", "created_at")
    list_filter = ("role",)
    list_select_related = ("user", "workspace")
    search_fields = ("user__email", "workspace__slug", "workspace__name")
    autocomplete_fields = ("workspace", "user")
    readonly_fields = ("created_at",)


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "name")

    def clean_email(self) -> str:
        email = User.objects.normalize_email(self.cleaned_data["email"]).lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("A user with this email already exists.")
        return email


class UserChangeForm(DjangoUserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(NoDeleteMixin, DjangoUserAdmin):
    """People sign in with their email; a user belongs to workspaces through memberships."""

    form = UserChangeForm
    add_form = UserCreationForm
    list_display = ("email", "name", "is_staff", "is_active", "date_joined")
    list_filter = ("is_staff", "is_superuser", "is_active")
    search_fields = ("email", "name", "=id")
    ordering = ("email",)
    readonly_fields = ("id", "last_login", "date_joined")
    fieldsets = (
        (None, {"fields": ("id", "email", "password")}),
        ("Personal info", {"fields": ("name",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "name", "usable_password", "password1", "password2")}),
    )
    inlines = (MembershipInline,)


@admin.register(ConversationRead)
class ConversationReadAdmin(admin.ModelAdmin):
    """Who of the staff opened which conversation, when: superusers only, and never editable."""

    list_display = ("read_at", "staff_email", "tenant_slug", "thread_link", "thread_title", "via")
    list_filter = ("read_at", ("tenant", admin.RelatedOnlyFieldListFilter), ("staff", admin.RelatedOnlyFieldListFilter))
    search_fields = ("=thread_id", "staff_email", "tenant_slug", "thread_title")
    date_hierarchy = "read_at"
    ordering = ("-read_at", "-id")
    fields = readonly_fields = (
        "read_at", "staff", "staff_email", "tenant", "tenant_slug", "thread_id", "thread_title", "via",
    )

    @admin.display(description="thread", ordering="thread_id")
    def thread_link(self, read: ConversationRead) -> str:
        try:
            url = reverse("admin:chat_thread_change", args=[quote(read.thread_id)])
        except NoReverseMatch:
            return read.thread_id
        return format_html('<a href="{}">{}</a>', url, read.thread_id)

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


__all__ = [
    "ReadOnlyAdminMixin", "RecordsConversationReads", "TenantModelAdmin", "WorkspaceAdmin", "WorkspaceFilter",
    "chosen_workspace",
]
