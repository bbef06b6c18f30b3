"""Refuse an oversized upload from its Content-Length, before Django reads the body.

Django parses a multipart body as soon as anything touches request.POST, and CsrfViewMiddleware (and DRF's
session authentication) do that before the view runs: without this, a 5 GB upload would be spooled to disk in
full and only then refused. Listed after the session, auth and CSRF middleware in settings.MIDDLEWARE: their
request phase has run (user known, CSRF cookie set), and this answers before any view-phase code reads the body.
"""
from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve

# Multipart framing around the files.
MULTIPART_SLACK_BYTES = 1024 * 1024
UPLOAD_URL_NAMES = {"scans:upload": "page", "api-scan-list": "api"}


def too_large_message() -> str:
    from scans.ingest import format_bytes

    return f"The upload is over the limit of {format_bytes(settings.UPLOAD_MAX_BYTES)}."


def body_too_large(request) -> bool:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    return length > settings.UPLOAD_MAX_BYTES + MULTIPART_SLACK_BYTES


class UploadSizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method == "POST" and body_too_large(request):
            try:
                match = resolve(request.path_info)
            except Resolver404:
                match = None
            surface = UPLOAD_URL_NAMES.get(match.view_name) if match else None
            if surface == "api":
                return JsonResponse({"error": too_large_message(), "detail": {"limit_bytes": settings.UPLOAD_MAX_BYTES}},
                                    status=400)
            if surface == "page" and request.user.is_authenticated:
                from scans.views import upload_context

                return render(request, "scans/upload.html",
                              upload_context(upload_error=too_large_message()), status=400)
        return self.get_response(request)
