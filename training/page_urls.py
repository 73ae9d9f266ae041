from django.urls import path

from . import views

app_name = "training-pages"

urlpatterns = [
    path("<slug:slug>/models/<int:sequence>/", views.version_page, name="version"),
]
