"""The console, mounted at the site root (config/urls.py): /new-project/ and /projects/<slug>/…"""

from django.urls import path

from . import views, welfare

app_name = "console"

P = "projects/<slug:slug>/"

urlpatterns = [
    path("new-project/", views.project_create, name="project-create"),
    path(P, views.dashboard, name="dashboard"),
    path(P + "agreement/", views.agreement_page, name="agreement"),
    path(P + "agreement.csv", views.agreement_csv, name="agreement-csv"),
    path(P + "models/", views.models_page, name="models"),
    path(P + "models/runs.json", views.runs_json, name="runs-json"),
    path(P + "models/retrain/", views.retrain, name="retrain"),
    path(P + "models/settings/", views.training_settings, name="training-settings"),
    path(P + "models/accept/", views.accept_page, name="accept"),
    path(P + "models/accept/do/", views.accept, name="accept-do"),
    path(P + "models/accept/<int:batch_id>/undo/", views.accept_undo, name="accept-undo"),
    path(P + "settings/", views.settings_page, name="settings"),
    path(P + "settings/project/", views.settings_project, name="settings-project"),
    path(P + "settings/qc/", views.settings_qc, name="settings-qc"),
    path(P + "settings/routing/", views.settings_routing, name="settings-routing"),
    path(P + "settings/labels/", views.label_add, name="label-add"),
    path(P + "settings/labels/<int:label_id>/<slug:action>/", views.label_change, name="label-change"),
    path(P + "import/", views.import_page, name="import"),
    path(P + "pay/", views.pay_page, name="pay"),
    path(P + "ledger/", views.ledger_page, name="ledger"),
    path(P + "ledger/verify/", views.ledger_verify, name="ledger-verify"),
    path(P + "ledger/settle/", views.ledger_settle, name="ledger-settle"),
    path(P + "disputes/", views.disputes, name="disputes"),
    path(P + "disputes/<int:dispute_id>/decide/", views.dispute_decide, name="dispute-decide"),
    path(P + "welfare/", welfare.welfare_page, name="welfare"),
    path(P + "welfare/policy/", welfare.welfare_policy, name="welfare-policy"),
    path(P + "welfare/marks/", welfare.welfare_marks, name="welfare-marks"),
    path(P + "welfare/word-list/", welfare.welfare_word_list, name="welfare-word-list"),
    path(P + "review/", views.review, name="review"),
    path(P + "review/decide/", views.review_decide, name="review-decide"),
    path(P + "review/heartbeat/", views.review_heartbeat, name="review-heartbeat"),
    path(P + "review/close/", views.review_close, name="review-close"),
    path(P + "members/", views.members, name="members"),
    path(P + "members/invite/", views.member_invite, name="member-invite"),
    path(P + "members/<int:user_id>/role/", views.member_role, name="member-role"),
    path(P + "members/<int:user_id>/remove/", views.member_remove, name="member-remove"),
    path(P + "members/invitations/<int:invitation_id>/revoke/", views.invitation_revoke, name="invitation-revoke"),
    path("invitations/<str:token>/", views.invitation, name="invitation"),
]
