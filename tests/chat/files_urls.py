"""The project's URLs plus `POST /api/v1/chat/files`, for testing the upload view before it is wired."""

from django.urls import path

from chat.files import FileUploadView
from tenex.urls import handler400, handler403, handler404, handler500  # noqa: F401  (the JSON error pages)
from tenex.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    path("api/v1/chat/files", FileUploadView.as_view({"post": "create"}), name="file-upload-test"),
    *project_urlpatterns,
]
