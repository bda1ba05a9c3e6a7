"""`{% load csp_nonce %}`: the page's CSP nonce on inline scripts that come as ready-made HTML."""

from __future__ import annotations

import re

from django import template
from django.utils.html import conditional_escape, escape
from django.utils.safestring import SafeData, SafeString, mark_safe

register = template.Library()

_SCRIPT_TAG = re.compile(r"<script\b", re.IGNORECASE)


@register.filter
def with_nonce(html: object, nonce: object) -> SafeString:
    """Trusted HTML (marked safe, such as a plotly chart's div and script) with `nonce` on each of its scripts.

    `{{ chart|safe|with_nonce:request.csp_nonce }}`. HTML that is not marked
    safe is escaped as usual, so it brings no script at all.
    """
    if not isinstance(html, SafeData):
        return conditional_escape(str(html))
    return mark_safe(_SCRIPT_TAG.sub(f'<script nonce="{escape(nonce)}"', str(html)))
