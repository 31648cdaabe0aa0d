"""Uploaded files: the upload endpoint's service and view, and the sweep of never-attached files.

An upload is bounded (settings.TENEX_MAX_UPLOAD_BYTES → 413) and allow-listed (415): text/plain,
text/markdown, text/csv, application/json and application/pdf. The declared content type, the
file name's extension and the bytes must agree: a generic declared type (application/octet-stream)
takes the extension's type, text/plain may name a more specific text type by extension, and
anything else that disagrees is refused. Text is extracted once, at upload, and stored with the
file; the bytes go through Django's storage API.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.db import close_old_connections, connections, transaction
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from chat.models import File
from chat.schemas import FileSchema
from tenex.database_breaker import breaker
from workspaces.errors import ApiError, PayloadTooLarge
from workspaces.models import Workspace
from workspaces.schemas import ExactCharField, StrictSerializer
from workspaces.tenancy import Scope, tenant_context
from workspaces.viewsets import ScopedGenericViewSet

logger = logging.getLogger(__name__)

ALLOWED_TYPES = {
    "text/plain": ".txt",
    "text/markdown": ".md",
    "text/csv": ".csv",
    "application/json": ".json",
    "application/pdf": ".pdf",
}
EXTENSION_TYPES = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".csv": "text/csv",
    ".json": "application/json",
    ".pdf": "application/pdf",
}
TYPE_ALIASES = {
    "text/x-markdown": "text/markdown",
    "text/x-csv": "text/csv",
    "text/comma-separated-values": "text/csv",
    "text/json": "application/json",
    "application/x-pdf": "application/pdf",
}
GENERIC_TYPES = {"", "application/octet-stream"}
PDF = "application/pdf"
PDF_MAX_PAGES = 500
TEXT_MAX_CHARS = 1_000_000
FILENAME_MAX = 255
UNATTACHED_FILE_TTL = timedelta(hours=24)
ALLOWED_LIST = "plain text (.txt), Markdown (.md), CSV (.csv), JSON (.json) or PDF (.pdf)"


def unsupported(message: str) -> ApiError:
    return ApiError(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"Files are limited to {limit} bytes.")


# --- type checks and text extraction -----------------------------------------------------------
def clean_filename(name: str) -> str:
    """The base name only, printable characters, at most 255 characters (extension kept)."""
    base = os.path.basename((name or "").replace("\\", "/"))
    base = "".join(ch for ch in base if ch.isprintable()).strip() or "upload"
    if len(base) > FILENAME_MAX:
        stem, ext = os.path.splitext(base)
        ext = ext if len(ext) <= 16 else ""
        base = stem[: FILENAME_MAX - len(ext)] + ext
    return base


def _looks_like_pdf(data: bytes) -> bool:
    return b"%PDF-" in data[:1024]


def detect_content_type(*, filename: str, declared: str, data: bytes) -> str:
    """The allowed content type of an upload, or a 415 when it is not allowed or types disagree."""
    declared = declared.split(";")[0].strip().lower()
    declared = TYPE_ALIASES.get(declared, declared)
    by_extension = EXTENSION_TYPES.get(os.path.splitext(filename)[1].lower())
    if declared in GENERIC_TYPES:
        if by_extension is None:
            raise unsupported(f"Unsupported file type. Upload {ALLOWED_LIST}.")
        declared = by_extension
    if declared not in ALLOWED_TYPES:
        raise unsupported(f"Unsupported file type {declared[:100]!r}. Upload {ALLOWED_LIST}.")
    content_type = declared
    if by_extension is not None and by_extension != declared:
        if declared == "text/plain" and by_extension != PDF:
            content_type = by_extension  # text/plain is the generic text type
        else:
            raise unsupported(f"The file name says {by_extension} but the declared type is {declared}.")
    if content_type == PDF and not _looks_like_pdf(data):
        raise unsupported("The file is declared as PDF but its content is not a PDF.")
    if content_type != PDF and data.lstrip()[:5] == b"%PDF-":
        raise unsupported(f"The file's content is a PDF but it is declared as {content_type}.")
    return content_type


def _text_of(data: bytes, content_type: str) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise unsupported(f"A {content_type} file must be UTF-8 text.") from None
    if "\x00" in text:
        raise unsupported(f"A {content_type} file must not contain NUL bytes.")
    if content_type == "application/json":
        try:
            json.loads(text)
        except (ValueError, RecursionError):
            raise unsupported("The file is declared as JSON but is not valid JSON.") from None
    return text


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise unsupported("The PDF is encrypted with a password.")
        parts: list[str] = []
        total = 0
        for number in range(min(len(reader.pages), PDF_MAX_PAGES)):
            page_text = reader.pages[number].extract_text() or ""
            parts.append(page_text)
            total += len(page_text)
            if total >= TEXT_MAX_CHARS:
                break
    except ApiError:
        raise
    except Exception as exc:  # pypdf raises many kinds of errors on damaged or hostile files
        logger.info("unreadable PDF upload: %r", exc)
        raise unsupported("The PDF could not be read.") from None
    # PostgreSQL text cannot hold NUL; PDFs sometimes produce it.
    return "\n\n".join(parts).replace("\x00", "")


def extract_text(*, content_type: str, data: bytes) -> str:
    """The text an assistant reads from the file, bounded to TEXT_MAX_CHARS."""
    text = _pdf_text(data) if content_type == PDF else _text_of(data, content_type)
    return text[:TEXT_MAX_CHARS]


# --- the service --------------------------------------------------------------------------------
@transaction.atomic
def file_upload(*, scope: Scope, user_id: str, upload: UploadedFile) -> File:
    """Check, extract and store one upload for `user_id`; it stays theirs until attached."""
    limit = settings.TENEX_MAX_UPLOAD_BYTES
    if upload.size is not None and upload.size > limit:
        raise too_large(limit)
    upload.seek(0)
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise too_large(limit)
    filename = clean_filename(upload.name or "")
    content_type = detect_content_type(filename=filename, declared=upload.content_type or "", data=data)
    file = File(
        workspace_id=scope.workspace_id,
        user_id=user_id,
        filename=filename,
        content_type=content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        text=extract_text(content_type=content_type, data=data),
        created_at=timezone.now(),
    )
    # Stored under the file's id, never the client's name.
    file.blob.save(f"{file.pk}{ALLOWED_TYPES[content_type]}", ContentFile(data), save=False)
    try:
        file.save(force_insert=True)
    except Exception:
        file.blob.storage.delete(file.blob.name)
        raise
    return file


def _delete_blobs(names: list[str]) -> None:
    storage = File._meta.get_field("blob").storage
    for name in names:
        try:
            storage.delete(name)
        except OSError:
            logger.warning("could not delete stored file %s", name, exc_info=True)


def files_cleanup(*, older_than: timedelta = UNATTACHED_FILE_TTL, batch_size: int = 500) -> int:
    """Remove files never attached to a message after `older_than`, blobs too; returns how many.

    Row-level security shows one workspace at a time, so this walks the workspaces. Rows are locked
    (skipping ones a send is attaching right now) before they go; blobs go after the commit.
    """
    cutoff = timezone.now() - older_than
    removed = 0
    for workspace_id in list(Workspace.objects.order_by("pk").values_list("pk", flat=True)):
        while True:
            with tenant_context(workspace_id):
                stale = list(
                    File.objects.for_workspace(workspace_id)
                    .filter(thread__isnull=True, attached_at__isnull=True, created_at__lt=cutoff)
                    .select_for_update(skip_locked=True)
                    .order_by("pk")
                    .values_list("pk", "blob")[:batch_size]
                )
                if stale:
                    File.objects.for_workspace(workspace_id).filter(pk__in=[pk for pk, _ in stale]).delete()
                    names = [blob for _, blob in stale if blob]
                    transaction.on_commit(lambda names=names: _delete_blobs(names))
            removed += len(stale)
            if len(stale) < batch_size:
                break
    return removed


FILES_CLEANUP_SECONDS = 3600.0


def start_periodic_files_cleanup(every: float = FILES_CLEANUP_SECONDS) -> threading.Event:
    """Run `files_cleanup` now and then every `every` seconds on a daemon thread of its own, for the
    life of a server process, until the returned event is set (`manage.py cleanup_files` does the
    same once, for an outside scheduler)."""
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            close_old_connections()
            try:
                breaker.call(files_cleanup)  # refused at once while PostgreSQL is known down
            except Exception:  # noqa: BLE001 - tried again next time
                logger.warning("the cleanup of unattached uploads failed", exc_info=True)
            finally:
                connections["default"].close()  # held for the cleanup only
            stop.wait(every)

    threading.Thread(target=run, name="tenex-files-cleanup", daemon=True).start()
    return stop


# --- the endpoint -------------------------------------------------------------------------------
class UploadLimitHandler(FileUploadHandler):
    """Stops reading a multipart upload as soon as a file passes the limit, rather than spooling it."""

    def __init__(self, request=None, *, limit: int):
        super().__init__(request)
        self.limit = limit

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > self.limit:
            raise too_large(self.limit)
        return raw_data

    def file_complete(self, file_size):
        return None


class FileUploadSchema(StrictSerializer):
    file = serializers.FileField(help_text=f"The file: {ALLOWED_LIST}.")
    user_id = ExactCharField(
        required=False, allow_blank=True, max_length=64,
        help_text="Service keys: the member the file is for (empty, as a form sends it, is none).",
    )


class FileUploadView(ScopedGenericViewSet):
    model = File
    scope_family = "chat"
    parser_classes = [MultiPartParser]
    serializer_class = FileSchema

    def initialize_request(self, request, *args, **kwargs):
        request.upload_handlers.insert(0, UploadLimitHandler(request, limit=settings.TENEX_MAX_UPLOAD_BYTES))
        return super().initialize_request(request, *args, **kwargs)

    @extend_schema(
        summary="Upload a file to attach to a message",
        description=(
            f"Multipart field `file`: {ALLOWED_LIST}, at most TENEX_MAX_UPLOAD_BYTES (default 10 MB; "
            "413 above). The declared type, the extension and the content must agree (415 otherwise). "
            "A file not attached to a message within 24 hours is removed."
        ),
        request={"multipart/form-data": FileUploadSchema},
        responses={201: FileSchema},
    )
    def create(self, request):
        if len(request.FILES.getlist("file")) > 1:
            raise exceptions.ValidationError({"file": ["Send one file per upload."]})
        body = FileUploadSchema(data=request.data)
        body.is_valid(raise_exception=True)
        user_id = self.acting_user_id(body.validated_data.get("user_id") or None, required=True)
        file = file_upload(scope=self.scope, user_id=user_id, upload=body.validated_data["file"])
        return Response(FileSchema(file).data, status=status.HTTP_201_CREATED)
