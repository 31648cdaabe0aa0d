"""Routes of the server-rendered pages (see chat.web)."""

from django.contrib.auth.views import LogoutView
from django.urls import path

from chat import web

urlpatterns = [
    path("", web.home, name="home"),
    path("chat", web.home),
    path("login", web.LoginPage.as_view(), name="login"),
    path("logout", LogoutView.as_view(next_page="login"), name="logout"),
    path("workspace/switch", web.switch_workspace, name="workspace-switch"),
    path("chat/", web.chat_index, name="chat-index"),
    path("chat/<str:thread_id>", web.thread_page, name="chat-thread"),
    path("static/<path:path>", web.static_file, name="static-file"),
]
