"""Registered crowd workers, one name for the services of their door.

The services live by sub-domain: :mod:`~labeling.services.accounts` (sign-up,
admission, memberships), :mod:`~labeling.services.assignment` (the next items, under
leases), :mod:`~labeling.services.submission` (answers, undo), :mod:`~labeling.services.rules`
(quality rules) and :mod:`~labeling.services.worker_status` (pauses, bans, decisions).
Views and the API import them from here; what owners see of a worker is read by
:mod:`labeling.selectors.workers`.
"""
from labeling.services.accounts import (  # noqa: F401
    ProjectNotFound,
    UndoRefused,
    UnknownTask,
    WorkerError,
    WorkerNotActive,
    membership_grant,
    membership_revoke,
    project_admit,
    project_crowd_settings_update,
    project_get_for_worker,
    projects_for_worker,
    worker_ensure_active,
    worker_for_user,
    worker_sign_up,
)
from labeling.services.assignment import Batch, control_share_for, tasks_next  # noqa: F401
from labeling.services.rules import (  # noqa: F401
    quality_rules_for,
    quality_rules_update,
    worker_rules_apply,
    worker_rules_check,
)
from labeling.services.submission import (  # noqa: F401
    SubmitResult,
    TaskAnswer,
    TaskOutcome,
    answer_undo,
    task_answers_submit,
)
from labeling.services.worker_status import (  # noqa: F401
    DecisionError,
    fresh_start,
    projects_closing,
    status_here,
    worker_answers_recount,
    worker_decision_reverse,
    worker_status_change,
    worker_status_in,
)
