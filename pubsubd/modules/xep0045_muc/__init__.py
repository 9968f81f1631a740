"""XEP-0045 Multi-User Chat on ``conference.<domain>``, with room archives (XEP-0313) and
message moderation (XEP-0425).

``room`` holds the in-memory model, ``config_form`` the muc#roomconfig form (§10, §15.5.3),
``requests`` the other forms a room sends or reads (registration, voice requests), and
``component`` the stanza handling.
"""

from pubsubd.modules.xep0045_muc.component import MucComponent

__all__ = ["MucComponent"]
