"""Forms of the billing pages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms

from billing.models import ApiKey, Team

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class ApiKeyCreateForm(forms.Form):
    """Name a new key and, optionally, book its calls to one of the user's teams."""

    name = forms.CharField(
        max_length=ApiKey._meta.get_field("name").max_length,
        help_text="To recognise the key later, e.g. the app or machine that uses it.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": "e.g. laptop, ci, my-app"}),
    )
    team = forms.ModelChoiceField(
        queryset=Team.objects.none(),
        required=False,
        empty_label="No team (personal)",
        help_text="Calls made with the key are booked to this team.",
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A key can only be booked to a team its owner belongs to.
        team = self.fields["team"]
        assert isinstance(team, forms.ModelChoiceField)
        team.queryset = Team.objects.filter(memberships__user=user).order_by("name")
