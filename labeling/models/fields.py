"""Fields of our own."""
from django.db import models

from labeling import clock


class ClockDateTimeField(models.DateTimeField):
    """A ``DateTimeField`` whose ``auto_now`` and ``auto_now_add`` take the time from
    :func:`labeling.clock.now`, so that rows written under an installed clock (the
    simulated crowd's) carry its time, as the code that compares them with
    ``clock.now()`` expects. Otherwise exactly Django's field: the value is set at
    save, over any value given, and never by ``QuerySet.update`` or ``bulk_update``.

    It deconstructs as Django's field: the column is the same, so migrations neither
    see nor alter it.
    """

    def pre_save(self, model_instance, add):
        if self.auto_now or (self.auto_now_add and add):
            value = clock.now()
            setattr(model_instance, self.attname, value)
            return value
        return super().pre_save(model_instance, add)

    def deconstruct(self):
        name, _, args, kwargs = super().deconstruct()
        return name, "django.db.models.DateTimeField", args, kwargs
