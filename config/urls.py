from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from frontend.login import LoginView, ThrottledAdminAuthenticationForm

# Failed logins are throttled on both login pages (frontend/login.py).
admin.site.login_form = ThrottledAdminAuthenticationForm

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/", include("annotation.urls")),
    path("api/", include("labor_ledger.urls")),
    path("earnings/", include("labor_ledger.page_urls")),
    path("labor-card/", include("labor_ledger.card_urls")),
    path("api/", include("training.urls")),
    path("training/", include("training.page_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("", include("frontend.console.urls")),
    path("", include("frontend.urls")),
]
