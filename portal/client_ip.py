"""The client's address, as the lockout (django-axes) and the audit log see it.

Directly exposed, it is REMOTE_ADDR. Behind BEHIND_PROXY=1 and PROXY_COUNT trusted proxies, each proxy appends
the address it received the request from to X-Forwarded-For, so the client is the PROXY_COUNT-th entry from the
right; anything further left was written by the client and is not trusted.
"""
from django.conf import settings


def client_ip(request) -> str | None:
    remote = request.META.get("REMOTE_ADDR")
    if not getattr(settings, "BEHIND_PROXY", False):
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    count = max(1, getattr(settings, "PROXY_COUNT", 1))
    return forwarded[-count] if len(forwarded) >= count else remote
