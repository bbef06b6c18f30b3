import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def nav(response):
    return {item.label: item for item in response.context["nav_items"]}


def test_doctor_sees_the_common_entries_but_not_the_admin_ones(client_a):
    items = nav(client_a.get(reverse("accounts:me")))
    assert {"Scans", "Upload", "Dashboards", "Model", "API docs"} <= set(items)
    assert "Users" not in items and "Audit log" not in items
    assert items["Scans"].url == reverse("scans:list")


def test_admin_also_sees_users_and_audit_log(client_admin):
    items = nav(client_admin.get(reverse("accounts:me")))
    assert items["Users"].url == reverse("accounts:user_list")
    assert items["Audit log"].url == reverse("audit:list")


def test_the_active_entry_is_the_longest_matching_prefix(client_admin):
    assert [i.label for i in nav(client_admin.get(reverse("accounts:user_list"))).values() if i.active] == ["Users"]
    assert [i.label for i in nav(client_admin.get(reverse("accounts:me"))).values() if i.active] == []
    assert [i.label for i in nav(client_admin.get(reverse("scans:upload"))).values() if i.active] == ["Upload"]


def test_anonymous_pages_have_no_navigation(client):
    response = client.get(reverse("accounts:login"))
    assert response.context["nav_items"] == []
    assert 'action="/accounts/logout/"' not in response.content.decode()


def test_every_page_offers_logout_by_post_with_csrf(client_a):
    html = client_a.get(reverse("accounts:me")).content.decode()
    form = html[html.index('action="/accounts/logout/"') - 40:]
    assert 'method="post"' in form[:80]
    assert "csrfmiddlewaretoken" in form[:300]
