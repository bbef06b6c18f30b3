"""The navigation bar of base.html, built once per request.

An entry whose URL is not routed is left out, so a page that ships later does not break every other page.
Admin-only entries are shown to portal admins only (the views check again: the bar is a convenience, not the
permission). The active entry is the one whose URL is the longest prefix of the current path.

Beside "Scans", a count of the user's analysed scans that no radiologist has reviewed yet, linking to the scan list
filtered to them (``nav_awaiting_review``: counted only when a page shows it).
"""
from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse
from django.utils.functional import SimpleLazyObject

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
    if user is None or not user.is_authenticated or getattr(request, "two_factor_step", None):
        return {"nav_items": []}  # (nothing before the log-in's second step: accounts.middleware)
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
    return {"nav_items": [NavItem(label=label, url=url, active=label == best) for label, url, _ in entries],
            "nav_awaiting_review": SimpleLazyObject(lambda: _awaiting_review(user))}


@dataclass(frozen=True)
class AwaitingReview:
    count: int
    url: str

    def __bool__(self) -> bool:
        return self.count > 0


def _awaiting_review(user) -> AwaitingReview:
    """The scans the scan list's "Awaiting review" filter shows this user (scans.selectors.scan_list_for)."""
    from scans.selectors import REVIEW_AWAITING, scan_list_for

    count = scan_list_for(user=user, filters={"review": REVIEW_AWAITING}).order_by().count()
    return AwaitingReview(count=count, url=f"{reverse('scans:list')}?review={REVIEW_AWAITING}")
