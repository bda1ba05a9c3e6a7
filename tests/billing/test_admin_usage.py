"""The usage ledger in the admin: its filters, its CSV export and the admin's frame (title, icon)."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_admin_is_titled_switchyard(admin_client: Client) -> None:
    page = admin_client.get("/admin/").content.decode()

    assert "<title>Administration | Switchyard admin</title>" in page
    assert '<a href="/admin/">Switchyard</a>' in page
    assert "Django administration" not in page


def test_the_icon_is_linked_by_the_admin_and_the_site_and_served_at_the_root(admin_client: Client) -> None:
    for page in (admin_client.get("/admin/"), admin_client.get("/")):
        assert '<link rel="icon" href="/static/favicon.ico" sizes="32x32">' in page.content.decode()
        assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page.content.decode()

    icon = admin_client.get("/favicon.ico", follow=True)
    svg = admin_client.get("/static/favicon.svg")

    assert icon.redirect_chain == [("/static/favicon.ico", 302)]
    assert (icon.status_code, icon["Content-Type"]) == (200, "image/x-icon")
    assert (svg.status_code, svg["Content-Type"]) == (200, "image/svg+xml")
