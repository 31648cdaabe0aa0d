from django.urls import path

from chat import views
from chat.files import FileUploadView

thread_list = views.ThreadViewSet.as_view({"get": "list", "post": "create"})
thread_detail = views.ThreadViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"})
message_list = views.MessageViewSet.as_view({"get": "list", "post": "create"})
message_stream = views.MessageViewSet.as_view({"get": "stream"})
message_cancel = views.MessageViewSet.as_view({"post": "cancel"})

urlpatterns = [
    path("files", FileUploadView.as_view({"post": "create"}), name="file-upload"),
    path("threads", thread_list, name="thread-list"),
    path("threads/<str:pk>", thread_detail, name="thread-detail"),
    path("threads/<str:thread_id>/messages", message_list, name="message-list"),
    path("threads/<str:thread_id>/messages/<str:message_id>/stream", message_stream, name="message-stream"),
    path("threads/<str:thread_id>/messages/<str:message_id>/cancel", message_cancel, name="message-cancel"),
]
