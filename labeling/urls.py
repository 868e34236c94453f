from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from labeling import (
    accessibility_views,
    api,
    api_schema,
    api_sites,
    api_tokens,
    demo_site,
    predict_api,
    token_views,
    views,
    widget_api,
    worker_api,
    worker_views,
)

urlpatterns = [
    path("", views.project_list, name="project-list"),
    path("docs/", views.docs, name="docs"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path("projects/<slug:slug>/import", views.project_import, name="project-import"),
    path("projects/<slug:slug>/export", views.project_export, name="project-export"),
    path("imports/<uuid:job_id>/", views.import_detail, name="import-detail"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/tokens/", token_views.owner_tokens, name="owner-tokens"),
    path("accounts/tokens/<int:token_id>/revoke", token_views.owner_token_revoke_view, name="owner-token-revoke"),
    path("admin/", admin.site.urls),
    path("dashboard/", include("labeling.dashboard.urls")),
    path("api/v1/projects/", api.ProjectListApi.as_view(), name="api-project-list"),
    path("api/v1/projects/<slug:slug>/", api.ProjectDetailApi.as_view(), name="api-project-detail"),
    path("api/v1/projects/<slug:slug>/imports", api.ImportCreateApi.as_view(), name="api-import-create"),
    path("api/v1/imports/<uuid:job_id>", api.ImportDetailApi.as_view(), name="api-import-detail"),
    path("api/v1/projects/<slug:slug>/export", api.ExportApi.as_view(), name="api-export"),
    path("api/v1/projects/<slug:slug>/runs", api.TrainingRunsApi.as_view(), name="api-runs"),
    path("api/v1/runs/<uuid:run_id>", api.TrainingRunDetailApi.as_view(), name="api-run-detail"),
    path("api/v1/projects/<slug:slug>/model", api.ModelDownloadApi.as_view(), name="api-model"),
    path("api/v1/projects/<slug:slug>/audit", api.AuditApi.as_view(), name="api-audit"),
    path("api/v1/projects/<slug:slug>/audit/<int:decision_id>/reverse", api.AuditReverseApi.as_view(), name="api-audit-reverse"),
    path("api/v1/projects/<slug:slug>/predict", predict_api.PredictApi.as_view(), name="api-predict"),
    path("api/v1/projects/<slug:slug>/predict/batch", predict_api.PredictBatchApi.as_view(), name="api-predict-batch"),
    path("api/v1/projects/<slug:slug>/predictions", api.PredictionsApi.as_view(), name="api-predictions"),
    path("api/v1/projects/<slug:slug>/items", api_sites.ItemListApi.as_view(), name="api-items"),
    path("api/v1/projects/<slug:slug>/workers", api_sites.WorkerListApi.as_view(), name="api-workers"),
    path("api/v1/sites/", api_sites.SiteListApi.as_view(), name="api-site-list"),
    path("api/v1/sites/<str:sitekey>", api_sites.SiteDetailApi.as_view(), name="api-site-detail"),
    path("api/v1/sites/<str:sitekey>/rotate", api_sites.SiteRotateApi.as_view(), name="api-site-rotate"),
    path("api/v1/tokens/", api_tokens.TokenListApi.as_view(), name="api-token-list"),
    path("api/v1/tokens/<int:token_id>/revoke", api_tokens.TokenRevokeApi.as_view(), name="api-token-revoke"),
    path("api/schema/", api_schema.schema_view, name="api-schema"),
    path("api/docs/", api_schema.swagger_view, name="api-docs"),
]

# The widget's front door (public, any origin) and the demo site that embeds it.
urlpatterns += [
    path("api/v1/challenge", widget_api.challenge_new, name="widget-challenge"),
    path("api/v1/challenge/<str:challenge_id>/answer", widget_api.challenge_answer_view, name="widget-challenge-answer"),
    path(
        "api/v1/challenge/<uuid:challenge_id>/image/<str:public_id>",
        widget_api.challenge_image_view,
        name="widget-challenge-image",
    ),
    path("api/siteverify", widget_api.siteverify, name="widget-siteverify"),
    path("demo/signup/", demo_site.signup, name="demo-signup"),
    path("accessibility/", accessibility_views.pass_page, name="accessibility-pass"),
    path("accessibility/verify/<str:token>", accessibility_views.pass_verify, name="accessibility-verify"),
    path("accessibility/use", accessibility_views.pass_use, name="accessibility-use"),
]

# Crowd workers: their pages, the API the labeling page uses, and the owners' rules page.
urlpatterns += [
    path("work/", worker_views.worker_home, name="worker-home"),
    path("work/signup/", worker_views.signup, name="worker-signup"),
    path("work/<slug:slug>/", worker_views.worker_label, name="worker-label"),
    path("projects/<slug:slug>/workers", worker_views.project_workers, name="project-workers"),
    path("projects/<slug:slug>/workers/admit", worker_views.project_worker_admit, name="project-worker-admit"),
    path(
        "projects/<slug:slug>/workers/<int:worker_id>/remove",
        worker_views.project_worker_remove,
        name="project-worker-remove",
    ),
    path("api/v1/projects/<slug:slug>/next", worker_api.TaskNextApi.as_view(), name="api-task-next"),
    path("api/v1/projects/<slug:slug>/answers", worker_api.AnswerBatchApi.as_view(), name="api-task-answers"),
    path("api/v1/answers/<str:key>/undo", worker_api.AnswerUndoApi.as_view(), name="api-answer-undo"),
    path("api/v1/tasks/<str:lease_id>/image", worker_api.task_image, name="api-task-image"),
]

if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
