from django.urls import path

from labeling.dashboard import audit_views, item_views, learning_views, site_views, views, worker_views

app_name = "dashboard"

urlpatterns = [
    path("", views.project_list, name="projects"),
    path("<slug:slug>/", views.overview, name="overview"),
    path("<slug:slug>/live.json", views.live, name="live"),
    path("<slug:slug>/workers/", worker_views.workers, name="workers"),
    path("<slug:slug>/workers/<int:worker_id>/", worker_views.worker_detail, name="worker"),
    path("<slug:slug>/workers/<int:worker_id>/status", worker_views.worker_status, name="worker-status"),
    path("<slug:slug>/decisions/<int:decision_id>/undo", worker_views.decision_undo, name="decision-undo"),
    path("<slug:slug>/items/", item_views.items, name="items"),
    path("<slug:slug>/items/<int:item_id>/", item_views.item_detail, name="item"),
    path("<slug:slug>/items/<int:item_id>/settle", item_views.item_settle, name="item-settle"),
    path("<slug:slug>/items/<int:item_id>/gold", item_views.item_gold, name="item-gold"),
    path("<slug:slug>/clusters/", learning_views.clusters, name="clusters"),
    path("<slug:slug>/clusters/start", learning_views.clustering_start, name="clustering-start"),
    path("<slug:slug>/training/", learning_views.training, name="training"),
    path("<slug:slug>/training/start", learning_views.training_start, name="training-start"),
    path("<slug:slug>/training/<uuid:run_id>/panel", learning_views.training_panel, name="training-panel"),
    path("<slug:slug>/audit/", audit_views.audit, name="audit"),
    path("<slug:slug>/audit/start", audit_views.audit_start, name="audit-start"),
    path("<slug:slug>/audit/<int:decision_id>/reverse", audit_views.audit_reverse, name="audit-reverse"),
    path("<slug:slug>/audit/<int:decision_id>/gold", audit_views.audit_gold_resolve, name="audit-gold"),
    path("<slug:slug>/sites/", site_views.sites, name="sites"),
    path("<slug:slug>/sites/<int:site_id>/rotate", site_views.site_rotate, name="site-rotate"),
]
