"""The navigation bar of base.html, built once per request.

An entry whose URL is not routed is left out, so a page that ships later does not break every other page.
Admin-only entries are shown to portal admins only (the views check again: the bar is a convenience, not the
permission). The active entry is the one whose URL is the longest prefix of the current path.
"""
from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse

# (label, URL name, admins only, further path prefixes that belong to the entry)
NAV = (
    ("Scans", "scans:list", False, ("/scans/",)),
    ("Upload", "scans:upload", False, ()),
    ("Dashboards", "reports:dashboard", False, ()),
    ("Model", "reports:model", False, ()),
    ("Audit log", "audit:list", True, ()),
    ("Users", "accounts:user_list", True, ()),
    ("API docs", "api-docs", False, ("/api/",)),
)


@dataclass(frozen=True)
class NavItem:
    label: str
    url: str
    active: bool = False


def _matches(path: str, prefix: str) -> bool:
    return path == prefix if prefix == "/" else path.startswith(prefix)


def navigation(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_items": []}
    entries = []
    for label, name, admin_only, prefixes in NAV:
        if admin_only and not user.is_portal_admin:
            continue
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        entries.append((label, url, (url, *prefixes)))
    path = request.path
    best = max(
        ((len(prefix), label) for label, _, prefixes in entries for prefix in prefixes if _matches(path, prefix)),
        default=(0, None),
    )[1]
    return {"nav_items": [NavItem(label=label, url=url, active=label == best) for label, url, _ in entries]}
