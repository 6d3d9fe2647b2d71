"""The SIP2 server for kiosks, door controllers and library systems (sip2.md Part A).

``gateway.server.build_service`` mounts one ``SIP2Factory`` on every ``sip2.listen`` endpoint, so
the failed-login throttle and the connection limit are per daemon, not per port.
"""

from gateway.sip2.protocol import LoginThrottle, Phase, SIP2Factory, SIP2Protocol

__all__ = ["LoginThrottle", "Phase", "SIP2Factory", "SIP2Protocol"]
