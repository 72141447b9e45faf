"""The common test application, written for Django: ``asgi_app`` and ``wsgi_app``."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator

import django
from django.conf import settings
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path

from . import CHUNKS, DOWNLOAD, OPENED, SECRET, TrackedFile, chunk

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        SECRET_KEY="test-only",
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        DATA_UPLOAD_MAX_MEMORY_SIZE=None,
        LOGGING_CONFIG=None,
    )
    django.setup()


def item(request: HttpRequest, name: str) -> JsonResponse:
    return JsonResponse(
        {
            "path": request.path,
            "name": name,
            "q": request.GET.get("q", ""),
            "http": request.META["SERVER_PROTOCOL"].removeprefix("HTTP/")
            if "SERVER_PROTOCOL" in request.META
            else request.scope["http_version"],  # type: ignore[attr-defined]
        }
    )


def upload(request: HttpRequest) -> JsonResponse:
    digest = hashlib.sha256()
    size = 0
    while part := request.read(65536):
        digest.update(part)
        size += len(part)
    return JsonResponse({"sha256": digest.hexdigest(), "size": size})


def stream(request: HttpRequest) -> StreamingHttpResponse:
    if hasattr(request, "scope"):

        async def achunks() -> AsyncIterator[bytes]:
            for i in range(CHUNKS):
                yield chunk(i)

        return StreamingHttpResponse(achunks(), content_type="text/plain")

    def chunks() -> Iterator[bytes]:
        for i in range(CHUNKS):
            yield chunk(i)

    return StreamingHttpResponse(chunks(), content_type="text/plain")


def cookies(request: HttpRequest) -> JsonResponse:
    response = JsonResponse({"ok": "yes"})
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return response


def download(request: HttpRequest) -> FileResponse:
    # Under WSGI, Django hands the file to wsgi.file_wrapper; under ASGI it streams it.
    handle = TrackedFile(DOWNLOAD["path"])
    OPENED.append(handle)
    return FileResponse(handle, content_type="application/octet-stream")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError(SECRET)


urlpatterns = [
    path("items/<str:name>", item),
    path("upload", upload),
    path("stream", stream),
    path("cookies", cookies),
    path("file", download),
    path("boom", boom),
]

from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

asgi_app = get_asgi_application()
wsgi_app = get_wsgi_application()
