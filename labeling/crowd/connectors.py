"""How simulated people reach the server: in-process through Django's test client, or
over HTTP to a running server; each from an address of their own."""
import itertools

from labeling.crowd.transport import ClientTransport, HttpTransport


def _address(n):
    return f"198.18.{n // 250 % 250}.{n % 250 + 1}"


def client_connector():
    """People reach the server in-process through Django's test client, each from their
    own address."""
    addresses = itertools.count(1)

    def connect(person, origin):
        address = _address(next(addresses))
        person.addresses = [address]
        return ClientTransport(remote_addr=address, user_agent=user_agent_for(person), origin=origin)

    return connect


def http_connector(base_url, *, forwarded_for=False):
    """People reach a running server over HTTP. With ``forwarded_for`` each person
    sends their own address in ``X-Forwarded-For``, as a reverse proxy would (the
    server believes it only from ``CROWDLOOP_TRUSTED_PROXIES``)."""
    addresses = itertools.count(1)

    def connect(person, origin):
        address = _address(next(addresses))
        person.addresses = [address, "127.0.0.1"] if forwarded_for else ["127.0.0.1"]
        return HttpTransport(
            base_url, user_agent=user_agent_for(person), origin=origin, forwarded_for=address if forwarded_for else None
        )

    return connect


def user_agent_for(person):
    """The User-Agent a simulated person sends (and a visitor is partly known by)."""
    return f"Mozilla/5.0 (X11; Linux x86_64) crowdloop-sim/{person.name}"
