from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from billing.models import ApiKey, Team
from billing.services import api_key_create, api_key_hash

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("redis_url")]

HTMX = {"HX-Request": "true"}


def plain_key_in(html: str) -> str:
    match = re.search(r'id="new-key" type="text" value="(sk-sy-[A-Za-z0-9_-]+)"', html)
    assert match, "the new key is not shown"
    return match.group(1)


@pytest.mark.parametrize("path", ["/keys/", "/keys/1/revoke/"])
def test_it_sends_an_anonymous_visitor_to_the_login_page(client: Client, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


def test_it_lists_the_users_own_keys_with_their_details(
    alice_client: Client, alice: Any, bob: Any, research: Team
) -> None:
    laptop, _ = api_key_create(user=alice, name="laptop", team=research)
    old, _ = api_key_create(user=alice, name="old-ci")
    old.revoked_at = timezone.now()
    old.save()
    ApiKey.objects.filter(pk=laptop.pk).update(last_used_at=timezone.now())
    bobs, _ = api_key_create(user=bob, name="bobs-secret-app")

    html = alice_client.get("/keys/").content.decode()

    assert "laptop" in html and f"<code>{laptop.prefix}…</code>" in html
    assert "<td>Research</td>" in html
    assert "old-ci" in html and "revoked" in html
    assert "never" not in html.split("laptop")[1].split("</tr>")[0], "a used key shows when it was used"
    assert "bobs-secret-app" not in html and bobs.prefix not in html
    assert laptop.hashed not in html


def test_it_shows_an_empty_state_without_keys(alice_client: Client) -> None:
    html = alice_client.get("/keys/").content.decode()

    assert "You have no API key yet." in html


def test_it_creates_a_key_and_shows_the_plain_key_once(alice_client: Client, alice: Any) -> None:
    response = alice_client.post("/keys/", {"name": "laptop"})

    html = response.content.decode()
    plain = plain_key_in(html)
    key = ApiKey.objects.get(user=alice)
    assert response.status_code == 200
    assert key.name == "laptop" and key.team is None and key.is_active
    assert key.hashed == api_key_hash(plain)
    assert "this is the only time it is shown" in html
    assert ">Copy</button>" in html
    assert f'api_key="{plain}"' in html, "the SDK snippet carries the new key"
    assert "no-store" in response["Cache-Control"]

    again = alice_client.get("/keys/").content.decode()
    assert plain not in again
    assert f"<code>{key.prefix}…</code>" in again


def test_it_books_a_new_key_to_one_of_the_users_teams(alice_client: Client, alice: Any, research: Team) -> None:
    alice_client.post("/keys/", {"name": "research-bot", "team": research.pk})

    assert ApiKey.objects.get(user=alice).team == research


def test_it_offers_only_the_users_teams(alice_client: Client, research: Team, ops: Team) -> None:
    html = alice_client.get("/keys/").content.decode()

    assert f'<option value="{research.pk}">Research</option>' in html
    assert "Ops" not in html


def test_it_refuses_another_users_team_with_an_error_in_the_form(alice_client: Client, ops: Team) -> None:
    response = alice_client.post("/keys/", {"name": "sneaky", "team": ops.pk})

    html = response.content.decode()
    assert response.status_code == 200
    assert 'class="field-error">Select a valid choice.' in html
    assert 'value="sneaky"' in html, "the form keeps what was typed"
    assert ApiKey.objects.count() == 0
    assert 'id="new-key"' not in html


def test_it_requires_a_name(alice_client: Client) -> None:
    html = alice_client.post("/keys/", {"name": "  "}).content.decode()

    assert 'class="field-error">This field is required.' in html
    assert ApiKey.objects.count() == 0


def test_an_htmx_create_gets_the_keys_partial_only(alice_client: Client) -> None:
    response = alice_client.post("/keys/", {"name": "laptop"}, headers=HTMX)

    html = response.content.decode()
    assert html.lstrip().startswith('<div id="keys">')
    assert "<html" not in html and "<nav" not in html
    plain_key_in(html)
    assert "laptop" in html.split('id="list-title"')[1], "the list already holds the new key"


def test_it_asks_for_confirmation_before_revoking(alice_client: Client, alice: Any) -> None:
    key, _ = api_key_create(user=alice, name="laptop")

    html = alice_client.get(f"/keys/{key.pk}/revoke/").content.decode()

    assert "Revoke the key" in html and "laptop" in html
    assert f'<form method="post" action="/keys/{key.pk}/revoke/">' in html
    key.refresh_from_db()
    assert key.is_active


def test_it_revokes_a_key_and_says_so(alice_client: Client, alice: Any) -> None:
    key, _ = api_key_create(user=alice, name="laptop")

    response = alice_client.post(f"/keys/{key.pk}/revoke/", follow=True)

    key.refresh_from_db()
    assert key.revoked_at is not None
    assert response.redirect_chain == [("/keys/", 302)]
    html = response.content.decode()
    assert f"The key {key.prefix}… (laptop) is revoked" in html
    assert f'hx-post="/keys/{key.pk}/revoke/"' not in html, "a revoked key offers no revoke action"


def test_an_htmx_revoke_gets_the_keys_partial_with_a_notice(alice_client: Client, alice: Any) -> None:
    key, _ = api_key_create(user=alice, name="laptop")

    html = alice_client.post(f"/keys/{key.pk}/revoke/", headers=HTMX).content.decode()

    assert html.lstrip().startswith('<div id="keys">')
    assert f"The key {key.prefix}… (laptop) is revoked" in html
    assert ApiKey.objects.get().revoked_at is not None


def test_the_revoke_link_asks_for_confirmation_with_htmx_and_falls_back_to_the_page(
    alice_client: Client, alice: Any
) -> None:
    key, _ = api_key_create(user=alice, name="laptop")

    html = alice_client.get("/keys/").content.decode()

    link = html.split(f'href="/keys/{key.pk}/revoke/"')[1].split(">")[0]
    assert f'hx-post="/keys/{key.pk}/revoke/"' in link
    assert "hx-confirm=" in link


@pytest.mark.parametrize("method", ["get", "post"])
def test_another_users_key_is_not_found(alice_client: Client, bob: Any, method: str) -> None:
    key, _ = api_key_create(user=bob, name="bobs")

    response = getattr(alice_client, method)(f"/keys/{key.pk}/revoke/")

    assert response.status_code == 404
    key.refresh_from_db()
    assert key.is_active


def test_it_refuses_other_methods(alice_client: Client) -> None:
    assert alice_client.delete("/keys/").status_code == 405


def test_the_nav_links_to_the_keys_page_and_marks_it_current(alice_client: Client) -> None:
    html = alice_client.get("/keys/").content.decode()

    assert '<a href="/keys/" aria-current="page">API keys</a>' in html
    assert '<a href="/keys/">API keys</a>' in alice_client.get("/").content.decode()


def test_the_home_page_links_to_the_keys_page_in_its_api_snippet(alice_client: Client) -> None:
    html = alice_client.get("/").content.decode()

    assert 'base_url="http://testserver/v1"' in html
    assert "create one at http://testserver/keys/" in html
    assert 'href="/keys/">Create an API key</a>' in html
