"""The Redis broker transport, with one fix: a worker survives Redis going away.

kombu 5.7's Redis channel, when the consumer closes it after the connection was lost,
tries to push the messages the worker holds (tasks with a countdown, the task running)
back onto their queue, through a connection whose parameters are already gone; the
``AttributeError`` it raises is not a connection error, so Celery stops the worker
("Unrecoverable error"). Here that restore is given up instead: the messages stay in
the transport's unacknowledged set in Redis, from which any worker restores them after
the visibility timeout (a restore could not reach Redis anyway: it is down). The worker
then reconnects as it does after any connection loss.

Used when the broker is Redis (``CELERY_BROKER_TRANSPORT``, labeling/settings.py).
"""
import logging

from kombu.transport import redis

logger = logging.getLogger(__name__)


class QoS(redis.QoS):
    def restore_unacked(self, client=None):
        try:
            return super().restore_unacked(client)
        except AttributeError as exc:
            logger.warning(
                "broker connection gone: %d held message(s) left to the visibility timeout (%s)",
                len(self._delivered), exc,
            )
            self._delivered.clear()
            return []


class Channel(redis.Channel):
    QoS = QoS


class Transport(redis.Transport):
    Channel = Channel
