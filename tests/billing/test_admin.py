"""The billing admin pages, rendered and posted as a browser would."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.models import ApiKey, SpendCap, Team, TeamMembership, UsageRecord
from billing.services import api_key_create

pytestmark = pytest.mark.django_db


def url(name: str, *args: object) -> str:
    return reverse(f"admin:billing_{name}", args=args)


@pytest.fixture
def carol() -> Any:
    return get_user_model().objects.create_user("carol")


@pytest.fixture
def acme(carol: Any) -> Team:
    team = Team.objects.create(name="Acme", slug="acme")
    TeamMembership.objects.create(team=team, user=carol, role=TeamMembership.Role.OWNER)
    return team


def usage(carol: Any, team: Team | None, cost: str | None, **fields: Any) -> UsageRecord:
    defaults = {"requested": "auto", "model": "up/gpt-4o-mini", "provider": "up", "status": "ok"}
    return UsageRecord.objects.create(
        request_id=fields.pop("request_id", f"chatcmpl-{UsageRecord.objects.count()}"),
        created_at=timezone.now(),
        user=carol,
        team=team,
        cost_usd=None if cost is None else Decimal(cost),
        **(defaults | fields),
    )


def test_the_team_list_shows_members_keys_and_this_month_s_spend(admin_client: Client, acme: Team, carol: Any) -> None:
    api_key_create(user=carol, team=acme)
    revoked, _ = api_key_create(user=carol, team=acme)
    revoked.revoked_at = timezone.now()
    revoked.save()
    usage(carol, acme, "1.25")
    usage(carol, acme, "0.0000088500")
    SpendCap.objects.create(team=acme, limit_usd=Decimal("50"))

    response = admin_client.get(url("team_changelist"))

    assert response.status_code == 200
    row = response.context["cl"].result_list[0]
    assert (row.members, row.active_keys, row.caps) == (1, 1, 1)
    assert "$1.25" in response.content.decode()


def test_a_team_and_its_members_are_edited_on_one_page(admin_client: Client, acme: Team, carol: Any) -> None:
    dave = get_user_model().objects.create_user("dave")
    membership = acme.memberships.get()
    assert admin_client.get(url("team_change", acme.pk)).status_code == 200

    response = admin_client.post(
        url("team_change", acme.pk),
        {
            "name": "Acme Inc",
            "slug": "acme",
            "memberships-TOTAL_FORMS": "2",
            "memberships-INITIAL_FORMS": "1",
            "memberships-0-id": str(membership.pk),
            "memberships-0-team": str(acme.pk),
            "memberships-0-user": str(carol.pk),
            "memberships-0-role": "owner",
            "memberships-1-team": str(acme.pk),
            "memberships-1-user": str(dave.pk),
            "memberships-1-role": "admin",
        },
    )

    assert response.status_code == 302
    assert {(m.user.username, m.role) for m in acme.memberships.all()} == {("carol", "owner"), ("dave", "admin")}


def test_an_api_key_shows_its_prefix_and_never_its_hash(admin_client: Client, carol: Any, acme: Team) -> None:
    key, raw = api_key_create(user=carol, name="ci", team=acme)

    pages = [admin_client.get(url("apikey_changelist")), admin_client.get(url("apikey_change", key.pk))]

    for page in pages:
        text = page.content.decode()
        assert page.status_code == 200
        assert f"{key.prefix}…" in text
        assert key.hashed not in text and raw not in text
    assert admin_client.get(url("apikey_add")).status_code == 403


def test_the_revoke_action_revokes_only_active_keys(admin_client: Client, carol: Any) -> None:
    first, _ = api_key_create(user=carol)
    second, _ = api_key_create(user=carol)

    response = admin_client.post(
        url("apikey_changelist"),
        {"action": "revoke", "_selected_action": [str(first.pk), str(second.pk)]},
        follow=True,
    )

    assert "Revoked 2 API key(s)" in response.content.decode()
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 0
    assert "revoked" in admin_client.get(url("apikey_changelist") + "?status=revoked").content.decode()


def test_the_cap_list_shows_spend_use_and_reset(admin_client: Client, acme: Team, carol: Any) -> None:
    usage(carol, acme, "40")
    SpendCap.objects.create(team=acme, limit_usd=Decimal("50"))
    SpendCap.objects.create(user=carol, limit_usd=Decimal("10"), period=SpendCap.Period.DAY)

    response = admin_client.get(url("spendcap_changelist"))

    text = response.content.decode()
    assert response.status_code == 200
    assert "team acme" in text and "user carol" in text
    assert "$40.00" in text and "80%" in text and "used up" in text
    assert admin_client.get(url("spendcap_change", SpendCap.objects.first().pk)).status_code == 200


def test_a_cap_on_two_subjects_is_refused_with_a_clear_message(admin_client: Client, acme: Team, carol: Any) -> None:
    form = {"limit_usd": "5", "period": "month", "soft_threshold": "0.8", "enabled": "on"}
    assert admin_client.get(url("spendcap_add")).status_code == 200

    refused = admin_client.post(url("spendcap_add"), form | {"user": str(carol.pk), "team": str(acme.pk)})
    accepted = admin_client.post(url("spendcap_add"), form | {"team": str(acme.pk)})

    assert "A cap applies to exactly one of: a user, a team, an API key." in refused.content.decode()
    assert accepted.status_code == 302
    assert SpendCap.objects.get().team == acme


def test_usage_records_are_read_only_and_filterable(admin_client: Client, acme: Team, carol: Any) -> None:
    priced = usage(
        carol, acme, "0.0000088500", request_id="chatcmpl-abc", input_tokens=19, output_tokens=10, tokens_estimated=True
    )
    usage(carol, acme, None, request_id="chatcmpl-unpriced")
    usage(carol, None, None, request_id="chatcmpl-failed", model="", status="error")
    changelist = url("usagerecord_changelist")

    def listed(query: str) -> set[str]:
        response = admin_client.get(changelist + query)
        assert response.status_code == 200
        return {r.request_id for r in response.context["cl"].result_list}

    assert listed("?status=unpriced") == {"chatcmpl-unpriced"}
    assert listed("?status=error") == {"chatcmpl-failed"}
    assert listed("?q=chatcmpl-abc") == {"chatcmpl-abc"}
    assert listed("?model=up/gpt-4o-mini&source=api&provider=up") == {"chatcmpl-abc", "chatcmpl-unpriced"}
    everything = {"chatcmpl-abc", "chatcmpl-unpriced", "chatcmpl-failed"}
    assert listed("") == everything
    assert listed(f"?created_at__year={timezone.now().year}") == everything
    page = admin_client.get(changelist).content.decode()
    assert "$0.00000885" in page and "unpriced" in page and "19 / 10 (estimated)" in page

    detail = admin_client.get(url("usagerecord_change", priced.pk))
    assert detail.status_code == 200
    assert admin_client.post(url("usagerecord_change", priced.pk), {"status": "error"}).status_code == 403
    assert admin_client.get(url("usagerecord_add")).status_code == 403
    assert admin_client.get(url("usagerecord_delete", priced.pk)).status_code == 403
