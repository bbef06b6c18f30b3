"""A minimal log-in/log-out URLconf, so the audit signals are tested through the real middleware
stack (axes, sessions, request id) without depending on the accounts pages."""
from django.contrib.auth import views as auth_views
from django.http import HttpResponse
from django.urls import path

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="audit/tests/login.html", next_page="/done/"),
         name="test-login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="/done/"), name="test-logout"),
    path("done/", lambda request: HttpResponse("done"), name="test-done"),
]
