from __future__ import annotations

import django_stubs_ext

# Django's generic classes subscriptable at runtime as django-stubs types them
# (admin.ModelAdmin[Provider], forms.ModelForm[Route], …); before any app module is imported.
django_stubs_ext.monkeypatch()

from switchyard.celery import app as celery_app  # noqa: E402

__all__ = ["celery_app"]
