"""Socket set-up shared by the publisher, subscriber, command server and client."""

from __future__ import annotations

import zmq

from protocol.security import SecurityConfig, apply_security, release_security


class EndpointError(OSError):
    """An endpoint that cannot be bound or connected (bad address, port in use)."""


def open_socket(
    kind: int,
    endpoint: str,
    *,
    bind: bool,
    security: SecurityConfig | None,
    context: zmq.Context | None,
    options: dict[int, int] | None = None,
) -> zmq.Socket:
    """A socket with LINGER 0 (close never waits), CURVE when asked, bound or connected."""
    ctx = context or zmq.Context.instance()
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    for option, value in (options or {}).items():
        sock.setsockopt(option, value)
    if security is not None:
        try:
            apply_security(sock, security)
        except BaseException:
            sock.close(linger=0)
            raise
    try:
        if bind:
            sock.bind(endpoint)
        else:
            sock.connect(endpoint)
    except zmq.ZMQError as exc:
        close_socket(sock, security)
        verb = "bind" if bind else "connect to"
        hint = " (is another process using it?)" if exc.errno == zmq.EADDRINUSE else ""
        raise EndpointError(f"cannot {verb} {endpoint}: {exc}{hint}") from None
    return sock


def close_socket(sock: zmq.Socket, security: SecurityConfig | None) -> None:
    context = sock.context
    sock.close(linger=0)
    release_security(context, security)


def bound_endpoint(sock: zmq.Socket) -> str:
    """The endpoint actually bound, with the port filled in for `tcp://host:*`."""
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)
