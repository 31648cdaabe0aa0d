"""File uploads: limits (413), allowed types (415), text extraction, ownership, and the 24 h sweep."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import time

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone

from chat.files import clean_filename, file_upload, files_cleanup, start_periodic_files_cleanup
from chat.models import File
from tests.factories import ThreadFactory
from tests.helpers import assert_error
from workspaces.tenancy import Scope, tenant_context

URL = "/api/v1/chat/files"
pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.chat.files_urls")]


def make_pdf(text: str) -> bytes:
    """A minimal one-page PDF showing `text` in Helvetica."""
    content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def upload(client, name: str, data: bytes, content_type: str = "text/plain", **fields):
    file = SimpleUploadedFile(name, data, content_type=content_type)
    return client.post(URL, {"file": file, **fields}, format="multipart")


def stored_files(workspace) -> list[File]:
    with tenant_context(workspace.pk):
        return list(File.objects.for_workspace(workspace.pk).order_by("created_at"))


def test_upload_answers_201_with_the_file_object(alice, workspace):
    data = "Quarterly notes — café ☕\n".encode()
    response = upload(alice.client, "notes.txt", data)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("file_") and body["object"] == "file"
    assert (body["filename"], body["content_type"], body["size"]) == ("notes.txt", "text/plain", len(data))
    assert body["created_at"].endswith("Z")
    [file] = stored_files(workspace)
    assert file.pk == body["id"] and file.user_id == alice.id and file.thread_id is None
    assert file.sha256 == hashlib.sha256(data).hexdigest()
    assert file.text == data.decode()
    assert default_storage.open(file.blob.name).read() == data
    assert body["filename"] not in file.blob.name  # stored under its id, not the client's name


@pytest.mark.parametrize(
    "name,declared,data,expected_type,expected_text",
    [
        ("readme.md", "text/markdown", b"# Title\n\nBody", "text/markdown", "# Title\n\nBody"),
        ("readme.md", "text/plain", b"# Title", "text/markdown", "# Title"),
        ("leads.csv", "text/csv; charset=utf-8", b"name,company\nAnn,Inc\n", "text/csv", "name,company\nAnn,Inc\n"),
        ("leads.csv", "application/octet-stream", b"a,b\n", "text/csv", "a,b\n"),
        ("data.json", "application/json", b'{"plan": "pro"}', "application/json", '{"plan": "pro"}'),
        ("bom.txt", "text/plain", b"\xef\xbb\xbfhello", "text/plain", "hello"),
        ("notes", "text/plain", b"no extension", "text/plain", "no extension"),
        ("empty-ish.txt", "text/plain", b" ", "text/plain", " "),
    ],
)
def test_allowed_types_and_extracted_text(alice, workspace, name, declared, data, expected_type, expected_text):
    response = upload(alice.client, name, data, declared)
    assert response.status_code == 201, response.content
    assert response.json()["content_type"] == expected_type
    assert stored_files(workspace)[0].text == expected_text


def test_pdf_text_is_extracted(alice, workspace):
    data = make_pdf("Enterprise pricing is 20 dollars a seat")
    response = upload(alice.client, "pricing.pdf", data, "application/pdf")
    assert response.status_code == 201, response.content
    [file] = stored_files(workspace)
    assert file.content_type == "application/pdf" and "Enterprise pricing is 20 dollars a seat" in file.text
    assert file.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "name,declared,data",
    [
        ("photo.png", "image/png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20),
        ("tool.exe", "application/octet-stream", b"MZ\x90\x00"),
        ("page.html", "text/html", b"<html></html>"),
        ("report.pdf", "text/plain", make_pdf("x")),  # extension and declared type disagree
        ("notes.txt", "application/pdf", make_pdf("x")),  # declared PDF, named .txt
        ("notes.txt", "text/plain", make_pdf("hidden")),  # PDF bytes declared as text
        ("fake.pdf", "application/pdf", b"just text, not a PDF"),
        ("broken.pdf", "application/pdf", b"%PDF-1.4\ngarbage garbage"),
        ("data.json", "application/json", b"{not json"),
        ("data.csv", "application/json", b"{}"),
        ("latin1.txt", "text/plain", "café".encode("latin-1")),
        ("nul.txt", "text/plain", b"a\x00b"),
        ("unknown", "application/octet-stream", b"hello"),
    ],
)
def test_unsupported_or_mismatched_files_are_415_and_store_nothing(alice, workspace, media_root, name, declared, data):
    assert_error(upload(alice.client, name, data, declared), 415, "unsupported_media_type")
    assert stored_files(workspace) == []
    assert not media_root.exists() or not any(p.is_file() for p in media_root.rglob("*"))


def test_files_over_the_limit_are_413_and_store_nothing(alice, workspace, settings, media_root):
    settings.TENEX_MAX_UPLOAD_BYTES = 1024
    assert upload(alice.client, "ok.txt", b"x" * 1024).status_code == 201
    error = assert_error(upload(alice.client, "big.txt", b"x" * 1025), 413, "payload_too_large")
    assert "1024" in error["message"]
    big = assert_error(upload(alice.client, "huge.txt", b"y" * 200_000), 413, "payload_too_large")
    assert big["fields"] is None
    assert [f.filename for f in stored_files(workspace)] == ["ok.txt"]
    assert len([p for p in media_root.rglob("*") if p.is_file()]) == 1


def test_the_service_enforces_the_limit_too(alice, workspace, settings):
    settings.TENEX_MAX_UPLOAD_BYTES = 10
    scope = Scope(workspace_id=workspace.pk, user_id=alice.id)
    with tenant_context(workspace.pk), pytest.raises(Exception) as raised:
        file_upload(scope=scope, user_id=alice.id, upload=SimpleUploadedFile("a.txt", b"x" * 11, "text/plain"))
    assert raised.value.status_code == 413


@pytest.mark.parametrize(
    "payload,field",
    [
        ({}, "file"),
        ({"file": "just a string"}, "file"),
        ({"file": SimpleUploadedFile("empty.txt", b"", "text/plain")}, "file"),
        ({"file": SimpleUploadedFile("a.txt", b"x", "text/plain"), "colour": "red"}, "colour"),
        ({"file": SimpleUploadedFile("a.txt", b"x", "text/plain"), "user_id": "usr_nobody000000000000000"}, "user_id"),
    ],
)
def test_bad_multipart_bodies_are_400(alice, payload, field):
    error = assert_error(alice.client.post(URL, payload, format="multipart"), 400, "invalid_request")
    assert field in error["fields"], error


def test_two_files_in_one_upload_are_400(alice, workspace):
    files = [SimpleUploadedFile("a.txt", b"a", "text/plain"), SimpleUploadedFile("b.txt", b"b", "text/plain")]
    error = assert_error(alice.client.post(URL, {"file": files}, format="multipart"), 400)
    assert "file" in error["fields"]
    assert stored_files(workspace) == []


def test_json_bodies_are_415(alice):
    assert_error(alice.client.post(URL, {"file": "x"}, format="json"), 415, "unsupported_media_type")


def test_read_only_key_cannot_upload(read_only_client, workspace):
    assert_error(upload(read_only_client, "a.txt", b"x"), 403, "forbidden")
    assert stored_files(workspace) == []


def test_unauthenticated_upload_is_401(anon_client):
    assert_error(upload(anon_client, "a.txt", b"x"), 401, "unauthorized")


def test_service_key_must_name_the_member(service_client, bob, workspace, outsider):
    error = assert_error(upload(service_client, "a.txt", b"x"), 400)
    assert "user_id" in error["fields"]
    assert_error(upload(service_client, "a.txt", b"x", user_id=outsider.id), 400)
    assert upload(service_client, "a.txt", b"x", user_id=bob.id).status_code == 201
    assert [f.user_id for f in stored_files(workspace)] == [bob.id]


def test_personal_key_uploads_only_as_itself(alice, bob):
    error = assert_error(upload(alice.client, "a.txt", b"x", user_id=bob.id), 400)
    assert "user_id" in error["fields"]


def test_filenames_are_cleaned(alice):
    response = upload(alice.client, "a\u0007b" + "n" * 300 + ".txt", b"x")
    assert response.status_code == 201, response.content
    name = response.json()["filename"]
    assert len(name) <= 255 and name.startswith("abnnn") and name.endswith(".txt") and "\u0007" not in name



def test_clean_filename_keeps_the_base_name_and_extension():
    assert clean_filename("a" * 400 + ".txt") == "a" * 251 + ".txt"
    assert clean_filename("../../etc/passwd") == "passwd"
    assert clean_filename("C:\\Users\\ann\\q3.pdf") == "q3.pdf"
    assert clean_filename("\x00\x01") == "upload"


# --- the sweep of never-attached files --------------------------------------------------------
def test_cleanup_removes_only_old_unattached_files_in_every_workspace(
    alice, outsider, workspace, other_workspace, media_root, django_capture_on_commit_callbacks
):
    for client, name in ((alice.client, "old.txt"), (alice.client, "attached.txt"), (outsider.client, "theirs.txt")):
        assert upload(client, name, name.encode()).status_code == 201
    thread = ThreadFactory(workspace=workspace, user=alice.user)
    day_ago = timezone.now() - dt.timedelta(hours=25)
    with tenant_context(workspace.pk):
        File.objects.for_workspace(workspace.pk).update(created_at=day_ago)
        File.objects.for_workspace(workspace.pk).filter(filename="attached.txt").update(
            thread=thread, attached_at=timezone.now()
        )
    with tenant_context(other_workspace.pk):
        File.objects.for_workspace(other_workspace.pk).update(created_at=day_ago)
    assert upload(alice.client, "fresh.txt", b"fresh").status_code == 201

    old_blobs = [f.blob.name for f in stored_files(workspace) + stored_files(other_workspace)
                 if f.filename in {"old.txt", "theirs.txt"}]
    with django_capture_on_commit_callbacks(execute=True):
        assert files_cleanup(older_than=dt.timedelta(hours=24)) == 2
    assert sorted(f.filename for f in stored_files(workspace)) == ["attached.txt", "fresh.txt"]
    assert stored_files(other_workspace) == []
    assert all(not default_storage.exists(name) for name in old_blobs)
    assert all(default_storage.exists(f.blob.name) for f in stored_files(workspace))


@pytest.mark.django_db(transaction=True)
def test_server_processes_clean_up_on_a_thread_of_their_own(alice, workspace, media_root):
    assert upload(alice.client, "old.txt", b"x").status_code == 201
    with tenant_context(workspace.pk):
        File.objects.for_workspace(workspace.pk).update(created_at=timezone.now() - dt.timedelta(hours=25))
    stop = start_periodic_files_cleanup(every=0.1)
    try:
        deadline = time.monotonic() + 30
        while stored_files(workspace) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
    assert stored_files(workspace) == []


def test_cleanup_command_prints_how_many_it_removed(alice, workspace, django_capture_on_commit_callbacks):
    assert upload(alice.client, "old.txt", b"x").status_code == 201
    with tenant_context(workspace.pk):
        File.objects.for_workspace(workspace.pk).update(created_at=timezone.now() - dt.timedelta(hours=2))
    out = io.StringIO()
    call_command("cleanup_files", stdout=out)
    assert out.getvalue().strip().splitlines()[-1] == "0"
    with django_capture_on_commit_callbacks(execute=True):
        call_command("cleanup_files", "--hours", "1", stdout=out)
    assert out.getvalue().strip().splitlines()[-1] == "1"
    assert stored_files(workspace) == []


def test_upload_response_is_json(alice):
    response = upload(alice.client, "a.json", json.dumps({"a": 1}).encode(), "application/json")
    assert response["Content-Type"].startswith("application/json")
