"""XEP-0012 last activity and XEP-0054 vCards with slixmpp, and the answer to a probe of a
contact who is offline (RFC 6121 §4.3.2)."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

from harness import ServerProcess, disconnect, run

from .im_helpers import C, befriend, client_for, presence, raw_iq

VCARD = "vcard-temp"
DELAY = "{urn:xmpp:delay}delay"
PLUGINS = ("xep_0030", "xep_0012", "xep_0054")


def test_vcard_set_get_and_anothers(shared_server: ServerProcess) -> None:
    vera, walt = (shared_server.add_user(u) for u in ("vera", "walt"))

    async def scenario() -> None:
        from slixmpp.exceptions import IqError

        v, _ = await client_for(shared_server, vera, plugins=PLUGINS)
        w, _ = await client_for(shared_server, walt, plugins=PLUGINS)
        # XEP-0054 §3.1: no vCard yet is an empty one
        empty = await raw_iq(w, "get", f"<vCard xmlns='{VCARD}'/>", to=vera)
        assert len(empty.find(f"{{{VCARD}}}vCard")) == 0
        vcard = v.plugin["xep_0054"].make_vcard()
        vcard["FN"] = "Vera Lynn"
        vcard["NICKNAME"] = "vee"
        await v.plugin["xep_0054"].publish_vcard(vcard)  # §3.2
        own = await v.plugin["xep_0054"].get_vcard()  # no 'to': one's own
        assert own["vcard_temp"]["FN"] == "Vera Lynn"
        other = await w.plugin["xep_0054"].get_vcard(jid=vera, cached=False)  # §3.1
        assert other["vcard_temp"]["FN"] == "Vera Lynn"
        assert other["vcard_temp"]["NICKNAME"] == ["vee"]
        try:  # nobody else may change it
            await raw_iq(w, "set", f"<vCard xmlns='{VCARD}'><FN>Mallory</FN></vCard>", to=vera)
            raise AssertionError("no error")
        except IqError as exc:
            assert exc.iq["error"]["condition"] == "forbidden"
        again = await w.plugin["xep_0054"].get_vcard(jid=vera, cached=False)
        assert again["vcard_temp"]["FN"] == "Vera Lynn"
        await disconnect(v, w)

    run(scenario())


def test_last_activity_and_probe_of_an_offline_contact(shared_server: ServerProcess) -> None:
    ann, ben, cat = (shared_server.add_user(u) for u in ("ann", "ben", "cat"))

    async def scenario() -> None:
        from slixmpp.exceptions import IqError

        a, a_in = await client_for(shared_server, ann, plugins=PLUGINS)
        b, b_in = await client_for(shared_server, ben, plugins=PLUGINS)
        c, _ = await client_for(shared_server, cat, plugins=PLUGINS)
        await befriend(a, a_in, b, b_in)  # ben receives ann's presence
        last = b.plugin["xep_0012"]
        online = await last.get_last_activity(ann)
        assert online["last_activity"]["seconds"] == 0  # XEP-0012 §4: online now
        a.send_presence(ptype="unavailable", pstatus="gone fishing")
        await b_in.wait(presence("unavailable", str(a.boundjid)))
        await disconnect(a)
        await asyncio.sleep(1.1)  # the behaviour under test: a second passes after the logout
        offline = await last.get_last_activity(ann)
        # seconds since the logout, with the status of the last unavailable presence
        assert 1 <= offline["last_activity"]["seconds"] < 30
        assert offline["last_activity"]["status"] == "gone fishing"
        try:
            await c.plugin["xep_0012"].get_last_activity(ann)  # §4: subscribers only
            raise AssertionError("no error")
        except IqError as exc:
            assert exc.iq["error"]["condition"] == "forbidden"
        # RFC 6121 §4.3.2 (3): ben's next initial presence probes ann, who is offline; the
        # answer is her last unavailable presence from her bare JID, with a delay stamp.
        await disconnect(b)
        b2, b2_in = await client_for(shared_server, ben + "/again", plugins=PLUGINS)
        answer = await b2_in.wait(presence("unavailable", ann))
        assert answer.findtext(f"{C}status") == "gone fishing"
        delay = answer.find(DELAY)
        assert delay is not None, answer
        stamp = datetime.datetime.fromisoformat(delay.get("stamp", "").replace("Z", "+00:00"))
        age = datetime.datetime.now(datetime.UTC) - stamp
        assert datetime.timedelta(0) <= age < datetime.timedelta(seconds=60)
        await disconnect(b2, c)

    run(scenario())


def test_probe_after_restart_is_stamped_with_the_logout(tmp_path: Any) -> None:
    """Without a remembered stanza (the server restarted), the logout time still dates it."""
    srv = ServerProcess(tmp_path)
    srv.start()
    try:
        dora, eli = srv.add_user("dora"), srv.add_user("eli")

        async def first() -> None:
            d, d_in = await client_for(srv, dora)
            e, e_in = await client_for(srv, eli)
            await befriend(d, d_in, e, e_in)
            await disconnect(d, e)

        run(first())
        srv.restart()

        async def second() -> None:
            e, e_in = await client_for(srv, eli)
            answer = await e_in.wait(presence("unavailable", dora))
            assert answer.find(DELAY) is not None, answer
            await disconnect(e)

        run(second())
    finally:
        if srv.alive():
            srv.kill()
