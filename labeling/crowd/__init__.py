"""A simulated crowd that uses Crowdloop the way people do: over HTTP only.

``transport`` (how a person reaches the server), ``reader`` (how they see a digit),
``people`` (what they answer and how fast), ``doors`` (the widget and the worker UI,
walked through request by request), ``accounts`` (the registered workers and their
accounts), ``connectors`` (each person's own address and transport), ``clocks``
(simulated or real seconds), ``ledger`` (what the crowd did, as it saw it),
``simulation`` (who comes when, until the budget is spent) and ``evaluation`` (the
referee's look at the database afterwards; never shown to the people).
"""
