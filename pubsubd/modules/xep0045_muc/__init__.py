"""XEP-0045 Multi-User Chat on ``conference.<domain>``, with room archives (XEP-0313) and
message moderation (XEP-0425).

``room`` holds the in-memory model; ``occupancy`` entering, presence and leaving;
``messages`` what occupants send; ``admin`` roles and affiliations; ``owner`` configuration
(with the form of ``config_form``) and destruction; ``requests`` the other forms a room sends
(registration, voice requests, room info); ``archive`` the room's archive and retractions;
``component`` ties them into one router component.
"""

from pubsubd.modules.xep0045_muc.component import MucComponent

__all__ = ["MucComponent"]
