"""The owner's page of personal API tokens: list, create (shown once), revoke."""
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from labeling import selectors
from labeling.services.owner_tokens import owner_token_create, owner_token_revoke


class OwnerTokenForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="What the token is for, e.g. 'CI export'.")
    projects = forms.ModelMultipleChoiceField(
        queryset=None, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="Tick none for a token that reaches all your projects.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["projects"].queryset = selectors.projects_managed_by(user)


def _page(request, form, *, raw_token=None, status=200):
    return render(
        request,
        "labeling/tokens.html",
        {"tokens": selectors.owner_tokens_of(request.user), "form": form, "raw_token": raw_token},
        status=status,
    )


@login_required
@never_cache
def owner_tokens(request):
    """``GET`` lists the user's tokens; ``POST`` makes one and shows it, once (never
    cached, never put in the session)."""
    if request.method != "POST":
        return _page(request, OwnerTokenForm(user=request.user))
    form = OwnerTokenForm(request.POST, user=request.user)
    if not form.is_valid():
        return _page(request, form, status=400)
    chosen = list(form.cleaned_data["projects"])
    try:
        _, raw = owner_token_create(user=request.user, name=form.cleaned_data["name"], projects=chosen or None)
    except ValidationError as exc:
        form.add_error(None, exc)
        return _page(request, form, status=400)
    return _page(request, OwnerTokenForm(user=request.user), raw_token=raw, status=201)


@login_required
@require_POST
def owner_token_revoke_view(request, token_id):
    token = selectors.owner_tokens_of(request.user).filter(pk=token_id).first()
    if token is None:
        raise Http404("No such token")
    owner_token_revoke(token)
    messages.success(request, f"Token {token} is revoked.")
    return redirect("owner-tokens")
