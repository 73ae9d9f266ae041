"""The Labor Card pages, mounted under /labor-card/ (config/urls.py)."""

from django.urls import path

from . import card_views

app_name = "labor_card"

urlpatterns = [
    path("<slug:slug>/", card_views.labor_card_index, name="index"),
    path("<slug:slug>/v<int:sequence>/", card_views.labor_card_page, name="version"),
]
