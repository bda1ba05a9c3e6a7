from __future__ import annotations

from django.urls import path

from billing import views

urlpatterns = [
    path("", views.keys, name="billing-keys"),
    path("<int:key_id>/revoke/", views.key_revoke, name="billing-key-revoke"),
]
