"""The dashboard's items pages: the filtered item list, one item, and the owner's
settling or gold label on it. Same conventions as :mod:`labeling.dashboard.views`."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from labeling.dashboard import figures, forms, selectors, services
from labeling.dashboard.views import _context, _page, _project, _query
from labeling.models import KnownLabelSource, Split


@login_required
@require_GET
def items(request, slug):
    project = _project(request, slug)
    form = forms.ItemFilterForm(request.GET)
    data = form.cleaned_data if form.is_valid() else {}
    filters = selectors.ItemFilters(
        status=data.get("status") or "",
        source=data.get("source") or "",
        split=data.get("split") or "",
        min_confidence=data.get("min_confidence"),
        max_confidence=data.get("max_confidence"),
        disputed=bool(data.get("disputed")),
        q=(data.get("q") or "").lstrip("#"),
        sort=data.get("sort") or "id",
        page=_page(request),
    )
    rows, more = selectors.items_page(project, filters)
    return render(
        request,
        "dashboard/items.html",
        _context(
            request,
            project,
            "items",
            form=form,
            rows=rows,
            next_url=_query(request, page=filters.page + 1) if more else None,
            prev_url=_query(request, page=filters.page - 1) if filters.page > 1 else None,
        ),
    )


@login_required
@require_GET
def item_detail(request, slug, item_id):
    from labeling.selectors.items import item_explain

    project = _project(request, slug)
    item = selectors.item_get(project, item_id)
    detail = selectors.item_detail(project, item)
    classes = selectors.label_classes(project)
    consensus = selectors.related_or_none(item, "consensus")
    posterior = figures.posterior(consensus, classes, project.consensus_threshold)
    known = selectors.related_or_none(item, "known_label")
    initial = {"label": (known.label_id if known else consensus.label_id if consensus and consensus.label_id else None)}
    return render(
        request,
        "dashboard/item_detail.html",
        _context(
            request,
            project,
            "items",
            item=item,
            consensus=consensus,
            known=known,
            pseudo=selectors.related_or_none(item, "pseudo_label"),
            posterior=posterior,
            explain=item_explain(item),
            settle_form=forms.LabelForm(project, initial=initial),
            can_settle=item.split == Split.POOL,
            **detail,
        ),
    )


@login_required
@require_POST
def item_settle(request, slug, item_id):
    return _item_label_set(request, slug, item_id, KnownLabelSource.SETTLED, "settled as")


@login_required
@require_POST
def item_gold(request, slug, item_id):
    return _item_label_set(request, slug, item_id, KnownLabelSource.GOLD, "now a gold item labeled")


def _item_label_set(request, slug, item_id, source, done):
    project = _project(request, slug)
    item = selectors.item_get(project, item_id)
    form = forms.LabelForm(project, request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the project's labels.")
    else:
        label = form.cleaned_data["label"]
        try:
            services.item_label_set(item, label, source=source, user=request.user)
        except ValueError as exc:
            messages.error(request, f"Not changed: {exc}.")
        else:
            messages.success(request, f"Item #{item.pk} is {done} “{label.name}”.")
    return redirect("dashboard:item", slug=project.slug, item_id=item.pk)
