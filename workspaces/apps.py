from django.apps import AppConfig


class WorkspacesConfig(AppConfig):
    name = "workspaces"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported for their side effects: the system checks and the OpenAPI Bearer key scheme.
        from workspaces import checks, openapi  # noqa: F401
