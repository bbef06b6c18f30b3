"""The second step of a browser log-in (accounts.two_factor): a session whose user has an authenticator but has not
given a code yet reaches only the code page (and log-out); one whose user must set one up (MFA_REQUIRED) reaches
only the set-up page. API calls on such a session get 403 with the reason; calls with an API token are not
sessions (the token was given with a code)."""
from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import reverse

from . import two_factor

ALWAYS_OPEN = ("/healthz/", "/favicon.ico")


class TwoFactorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not user.is_verified():
            step = self._step(user)
            request.two_factor_step = step  # the navigation bar stays empty until it is done
            if step is not None and not self._open(request.path, step):
                if request.path.startswith("/api/"):
                    words = ("give the code from your authenticator app" if step == "accounts:two_factor_verify"
                             else "set up two-factor authentication (MFA_REQUIRED)")
                    return JsonResponse({"detail": f"This session must first {words} in the browser, at "
                                                   f"{reverse(step)}."}, status=403)
                query = urlencode({"next": request.get_full_path()}) if request.method == "GET" else ""
                return redirect(reverse(step) + (f"?{query}" if query else ""))
        return self.get_response(request)

    @staticmethod
    def _step(user) -> str | None:
        if two_factor.enabled_for(user):
            return "accounts:two_factor_verify"
        if two_factor.required_for(user):
            return "accounts:two_factor"
        return None

    @staticmethod
    def _open(path: str, step: str) -> bool:
        static = settings.STATIC_URL if settings.STATIC_URL.startswith("/") else f"/{settings.STATIC_URL}"
        return (path in (reverse(step), reverse("accounts:logout"), reverse("accounts:login"), *ALWAYS_OPEN)
                or path.startswith(static))
