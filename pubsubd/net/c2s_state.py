"""The negotiation states of a client stream and the element tags they are about.

Shared by the connection and its feature mixins (SASL, binding, resumption), so that none of
them has to import the connection module itself.
"""

from __future__ import annotations

from enum import Enum, auto

from pubsubd import ns


class State(Enum):
    EXPECT_HEADER = auto()
    EXPECT_STARTTLS = auto()  # TLS is required and not yet negotiated
    EXPECT_AUTH = auto()
    SASL_SCRAM = auto()  # waiting for the client's final SCRAM message
    EXPECT_BIND = auto()
    BOUND = auto()


class StreamRestart(Exception):
    """The stream restarts (after TLS or SASL): a fresh parser and a new header follow."""


T_STARTTLS = ns.clark(ns.TLS, "starttls")
T_AUTH = ns.clark(ns.SASL, "auth")
T_RESPONSE = ns.clark(ns.SASL, "response")
T_ABORT = ns.clark(ns.SASL, "abort")
T_BIND = ns.clark(ns.BIND, "bind")
T_SESSION = ns.clark(ns.SESSION, "session")
T_SM_ENABLE = ns.clark(ns.SM, "enable")
T_SM_RESUME = ns.clark(ns.SM, "resume")
T_SM_REQUEST = ns.clark(ns.SM, "r")
T_SM_ACK = ns.clark(ns.SM, "a")
SM_TAGS = frozenset({T_SM_ENABLE, T_SM_RESUME, T_SM_REQUEST, T_SM_ACK})
