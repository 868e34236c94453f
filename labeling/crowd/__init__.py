"""A simulated crowd that uses Crowdloop the way people do: over HTTP only.

``transport`` (how a person reaches the server), ``reader`` (how they see a digit),
``people`` (what they answer and how fast), ``doors`` (the widget and the worker UI,
walked through request by request), ``simulation`` (who comes when, on a simulated or
a real clock, until the budget is spent) and ``evaluation`` (the referee's look at the
database afterwards; never shown to the people).
"""
