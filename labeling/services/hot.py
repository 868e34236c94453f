"""What every hot request reads and hardly ever changes, read once and cached.

A site by its key (with its project ids), a project's labels and its quality rules live
in Django's cache (Redis in production, shared by every process) for
``CROWDLOOP_HOT_CACHE_S`` seconds at most, and are dropped the moment they are saved or
deleted (:func:`invalidation_connect`, wired in the app config), so an owner's change
reaches the next request. Keys carry the project's creation time, so that a reused
primary key (a rolled-back test database) never reads another project's entry.
"""
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Model
from django.db.models.signals import m2m_changed, post_delete, post_save

from labeling.models import LabelClass, Project, QualityRules, Site


def _timeout() -> int:
    return settings.CROWDLOOP_HOT_CACHE_S


def _project_key(kind: str, project_id: int) -> str:
    return f"crowdloop:hot:{kind}:{project_id}"


def project_labels(project: Project) -> list[LabelClass]:
    """The project's label classes in order (cached)."""
    key = _project_key("labels", project.pk)
    hit = cache.get(key)
    if hit is not None and hit[0] == project.created_at:
        return hit[1]
    labels = list(project.label_classes.all())
    cache.set(key, (project.created_at, labels), timeout=_timeout())
    return labels


def project_rules(project: Project) -> QualityRules:
    """The project's quality rules, or the defaults (unsaved) when it has none (cached)."""
    key = _project_key("rules", project.pk)
    hit = cache.get(key)
    if hit is not None and hit[0] == project.created_at:
        return hit[1]
    rules = QualityRules.objects.filter(project=project).first() or QualityRules(project=project)
    cache.set(key, (project.created_at, rules), timeout=_timeout())
    return rules


def project_has_pseudo_labels(project: Project) -> bool:
    """Whether the project has pseudo-labeled items to verify (cached a few seconds: a
    new round's proposals reach the widget that much later, and no challenge tries a
    verify plan while there is nothing to verify)."""
    key = _project_key("pseudo", project.pk)
    hit = cache.get(key)
    if hit is not None and hit[0] == project.created_at:
        return hit[1]
    from labeling.models import Item, ItemStatus

    found = Item.objects.filter(project=project, status=ItemStatus.PSEUDO_LABELED).exists()
    cache.set(key, (project.created_at, found), timeout=10)
    return found


def pseudo_labels_changed(project_id: int) -> None:
    cache.delete(_project_key("pseudo", project_id))


def _site_key(sitekey: str) -> str:
    return f"crowdloop:hot:site:{sitekey}"


def site_by_key(sitekey: str) -> tuple[Site | None, list[Project]]:
    """``(site, its projects)`` for a sitekey, or ``(None, [])`` (cached when found)."""
    key = _site_key(sitekey)
    hit = cache.get(key)
    if hit is not None:
        return hit
    site = Site.objects.filter(sitekey=sitekey).first()
    entry = (site, list(site.projects.order_by("pk")) if site else [])
    if site is not None:
        cache.set(key, entry, timeout=_timeout())
    return entry


def site_forget(site: Site) -> None:
    """Drop a site's entry after an update that sends no signal (``QuerySet.update``)."""
    cache.delete(_site_key(site.sitekey))


def project_forget(project: Project) -> None:
    """Drop what is cached of a project (and the sites that serve it) after an update
    that sends no signal (``QuerySet.update``)."""
    _forget_project(Project, project)
    _forget_site(Project, project)


def _forget_labels(sender: type[Model], instance: LabelClass, **kwargs: Any) -> None:
    cache.delete(_project_key("labels", instance.project_id))


def _forget_rules(sender: type[Model], instance: QualityRules, **kwargs: Any) -> None:
    cache.delete(_project_key("rules", instance.project_id))


def _forget_project(sender: type[Model], instance: Project, **kwargs: Any) -> None:
    cache.delete_many([_project_key(kind, instance.pk) for kind in ("labels", "rules", "pseudo")])


def _forget_project_sites(sender: type[Model], instance: Project, **kwargs: Any) -> None:
    _forget_site(sender, instance)


def _forget_site(sender: type[Model], instance: Site | Project, **kwargs: Any) -> None:
    if isinstance(instance, Site):
        cache.delete(_site_key(instance.sitekey))
    else:  # a project's side of the site-project relation
        for sitekey in Site.objects.filter(projects=instance).values_list("sitekey", flat=True):
            cache.delete(_site_key(sitekey))


def invalidation_connect() -> None:
    post_save.connect(_forget_labels, sender=LabelClass, dispatch_uid="hot-labels-save")
    post_delete.connect(_forget_labels, sender=LabelClass, dispatch_uid="hot-labels-delete")
    post_save.connect(_forget_rules, sender=QualityRules, dispatch_uid="hot-rules-save")
    post_delete.connect(_forget_rules, sender=QualityRules, dispatch_uid="hot-rules-delete")
    post_delete.connect(_forget_project, sender=Project, dispatch_uid="hot-project-delete")
    post_save.connect(_forget_project_sites, sender=Project, dispatch_uid="hot-project-save")
    post_save.connect(_forget_site, sender=Site, dispatch_uid="hot-site-save")
    post_delete.connect(_forget_site, sender=Site, dispatch_uid="hot-site-delete")
    m2m_changed.connect(_forget_site, sender=Site.projects.through, dispatch_uid="hot-site-projects")
