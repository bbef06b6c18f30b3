from django.urls import path

from . import views

app_name = "accounts"
urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("me/", views.AccountView.as_view(), name="me"),
    path("me/password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("me/two-factor/", views.TwoFactorView.as_view(), name="two_factor"),
    path("me/two-factor/recovery-codes/", views.TwoFactorCodesView.as_view(), name="two_factor_codes"),
    path("two-factor/", views.TwoFactorVerifyView.as_view(), name="two_factor_verify"),
    path("users/", views.UserListView.as_view(), name="user_list"),
    path("users/new/", views.UserCreateView.as_view(), name="user_create"),
    path("users/<int:pk>/", views.UserUpdateView.as_view(), name="user_edit"),
    path("users/<int:pk>/password/", views.UserPasswordResetView.as_view(), name="user_password"),
    path("users/<int:pk>/two-factor/reset/", views.UserTwoFactorResetView.as_view(), name="user_two_factor_reset"),
    path("users/<int:pk>/deactivate/", views.UserActiveView.as_view(activate=False), name="user_deactivate"),
    path("users/<int:pk>/reactivate/", views.UserActiveView.as_view(activate=True), name="user_reactivate"),
]
