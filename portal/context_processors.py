"""The navigation bar of base.html, built once per request.

Each entry names the URL it points to; an entry whose URL is not (yet) routed is left out, so an app that
ships later does not break every page. Admin-only entries are shown to portal admins only (the views check
again: the bar is a convenience, not the permission).
"""
from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse

# (label, URL name candidates, admins only). The first candidate that reverses wins.
NAV = (
    ("Scans", ("scans:list",), False),
    ("Upload", ("scans:upload",), False),
    ("Dashboards", ("reports:dashboard", "reports:dashboards"), False),
    ("Model", ("reports:model",), False),
    ("Audit log", ("audit:list", "audit:log", "audit:event_list"), True),
    ("Users", ("accounts:user_list",), True),
    ("API docs", ("api-docs",), False),
)


@dataclass(frozen=True)
class NavItem:
    label: str
    url: str
    active: bool


def _first_url(names):
    for name in names:
        try:
            return reverse(name)
        except NoReverseMatch:
            continue
    return None


def navigation(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_items": []}
    is_admin = user.is_portal_admin
    path = request.path
    items = []
    for label, names, admin_only in NAV:
        if admin_only and not is_admin:
            continue
        url = _first_url(names)
        if url is None:
            continue
        # "/" is the scans list: only exactly "/" or the scans pages mark it active, not every page.
        active = path == url if url == "/" else path.startswith(url)
        items.append(NavItem(label=label, url=url, active=active))
    return {"nav_items": items}
