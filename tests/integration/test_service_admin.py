"""Operating the syndication side: ``pubsubd feeds``/``pubsubd admin`` and the admin-only ad-hoc
commands list feeds, force a refresh that really reaches the feed's web server, and report
poller, node and delivery statistics, while the Prometheus counters move with the traffic."""

from __future__ import annotations

import http.client
import json
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feeds_support import FEEDS_EXTRA, PUBSUB, Inbox, ThreadedFeedServer, iq, rss  # noqa: E402
from harness import ServerProcess, connect, disconnect, run  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from slixmpp.exceptions import IqError  # noqa: E402

SERVICE = "pubsub.localhost"
NODE = "urn:pubsubd:service-admin:0#"
DATA = "jabber:x:data"
PLUGINS = ("xep_0030", "xep_0004", "xep_0050")
CATCH_UP = ("<options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' "
            "type='hidden'><value>http://jabber.org/protocol/pubsub#subscribe_options</value>"
            "</field><field var='pubsubd#catch_up'><value>1</value></field></x></options>")
# Polled once when added, then only when told: every fetch the test sees is one it caused.
QUIET = {**FEEDS_EXTRA, "default_interval": 600.0, "min_interval": 600.0,
         "max_interval": 600.0}


class Env:
    def __init__(self, server: ServerProcess, web: ThreadedFeedServer) -> None:
        self.server = server
        self.web = web
        self.url = web.url("/news.xml")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with ThreadedFeedServer() as web:
        web.set("/news.xml", rss("News", ["n1"]), content_type="application/rss+xml")
        server = ServerProcess(tmp_path_factory.mktemp("service-admin"), extra={"feeds": QUIET})
        server.config["listeners"].append(
            {"kind": "metrics", "address": "127.0.0.1", "port": server.metrics_port})
        server.config_path.write_text(yaml.safe_dump(server.config))
        server.start()
        try:
            server.add_user("admin")
            server.add_user("reader")
            server.add_user("mallory")
            server.add_user("away")
            yield Env(server, web)
        finally:
            server.kill()


def samples(srv: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.metrics_port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
    finally:
        conn.close()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def metric(data: dict[Any, float], name: str, **labels: str) -> float:
    return data.get((name, tuple(sorted(labels.items()))), 0.0)


def cli_json(srv: ServerProcess, *args: str) -> Any:
    return json.loads(srv.cli(*args, "--json").stdout)


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_cli_lists_feeds_and_refresh_really_fetches(env: Env) -> None:
    srv, web = env.server, env.web
    before = samples(srv)
    added = cli_json(srv, "feeds", "add", env.url, "--title", "News")
    assert added["id"] == env.url
    wait_until(lambda: web.hits("/news.xml") >= 1)
    wait_until(lambda: cli_json(srv, "feeds", "list")[0]["status"] == 200)
    listed = cli_json(srv, "feeds", "list")
    row = next(r for r in listed if r["url"] == env.url)
    assert row["subscribers"] == 0 and row["items"] == 1 and row["state"] == "ok"
    table = srv.cli("feeds", "list").stdout.splitlines()
    assert table[0].split() == ["TITLE", "URL", "STATE", "STATUS", "NEXT", "SUBS", "ITEMS"]
    assert env.url in table[1] and all(len(line) <= 100 for line in table)
    wide = srv.cli("feeds", "list", "--wide").stdout.splitlines()
    assert "SUBSCRIBERS" in wide[0] and "LAST_ERROR" in wide[0]

    hits = web.hits("/news.xml")
    refreshed = cli_json(srv, "admin", "feeds.refresh", env.url)
    assert web.hits("/news.xml") == hits + 1
    assert refreshed["status"] == 304 and refreshed["ok"]

    poller = cli_json(srv, "admin", "stats.poller")
    assert poller["fetches"] >= 2 and poller["not_modified"] >= 1
    assert 0 < poller["not_modified_ratio"] <= 0.5 and poller["fetches_per_minute"] > 0
    assert {"errors_by_kind", "queue_depth", "lag_seconds"} <= poller.keys()

    after = samples(srv)
    assert metric(after, "pubsubd_feed_fetches_total", status="200") >= \
        metric(before, "pubsubd_feed_fetches_total", status="200") + 1
    assert metric(after, "pubsubd_feed_fetches_total", status="304") >= 1
    assert metric(after, "pubsubd_feed_fetch_seconds_count") >= 2
    wait_until(lambda: metric(samples(srv), "pubsubd_feeds", state="ok") == 1)

    missing = srv.cli("admin", "feeds.refresh", "http://127.0.0.1:9/none.xml", check=False)
    assert missing.returncode == 1 and "not a polled feed" in missing.stderr


def test_notifications_counted_per_node_and_in_metrics(env: Env) -> None:
    srv, web = env.server, env.web
    reader = f"reader@{srv.domain}"
    before = samples(srv)

    async def scenario() -> None:
        # A subscriber who asked to catch up, then left: what it misses is held for it.
        away = await connect(srv, f"away@{srv.domain}")
        await iq(away, SERVICE, "set", f"<pubsub xmlns='{PUBSUB}'>"
                 f"<subscribe node='{env.url}' jid='away@{srv.domain}'/>{CATCH_UP}</pubsub>")
        await disconnect(away)
        client = await connect(srv, reader)
        inbox = Inbox(client)
        await iq(client, SERVICE, "set", f"<pubsub xmlns='{PUBSUB}'>"
                 f"<subscribe node='{env.url}' jid='{reader}'/></pubsub>")
        await inbox.wait_for(lambda: len(inbox.item_notifications(env.url)) >= 1)  # on_sub
        web.set("/news.xml", rss("News", ["n3", "n2", "n1"]),
                content_type="application/rss+xml")
        outcome = cli_json(srv, "admin", "feeds.refresh", env.url)
        assert outcome["new"] == 2 and outcome["notified"] == 2
        await inbox.wait_for(lambda: {"n2", "n3"} <= {
            i for _, i, _ in inbox.item_notifications(env.url)})
        await disconnect(client)

    run(scenario())
    delivery = cli_json(srv, "admin", "stats.delivery")
    assert delivery["delivered"] >= 3 and delivery["notifications_per_minute"] > 0
    assert delivery["held"] == 2  # each new entry is one notification, held for "away"
    nodes = cli_json(srv, "admin", "stats.nodes", f"node={env.url}")
    assert nodes == [{"node": env.url, "items": 3, "subscribers": 2,
                      "notifications": delivery["delivered"], "held": 2}]
    after = samples(srv)
    assert metric(after, "pubsubd_notifications_total", outcome="delivered") >= \
        metric(before, "pubsubd_notifications_total", outcome="delivered") + 3
    assert metric(after, "pubsubd_notifications_total", outcome="held") == \
        metric(before, "pubsubd_notifications_total", outcome="held") + 2


def test_offline_storage_counted(env: Env) -> None:
    srv = env.server
    before = cli_json(srv, "admin", "stats.delivery")["offline_stored"]

    async def scenario() -> None:
        client = await connect(srv, f"mallory@{srv.domain}")
        client.send_message(mto=f"away@{srv.domain}", mbody="are you there?", mtype="chat")
        await client.plugin["xep_0199"].ping(srv.domain, timeout=5)  # the message was routed
        await disconnect(client)

    run(scenario())
    assert cli_json(srv, "admin", "stats.delivery")["offline_stored"] == before + 1
    assert metric(samples(srv), "pubsubd_offline_stored_total") >= before + 1


# -- the same through XEP-0050, for admins only --------------------------------------------


async def command(client: Any, srv: ServerProcess, name: str,
                  values: dict[str, str] | None = None) -> ET.Element:
    """Run ``name``, filling its form with ``values`` if it shows one; the final <command/>."""
    xep0050 = client.plugin["xep_0050"]
    first = await xep0050.send_command(srv.domain, NODE + name, timeout=15)
    if first["command"]["status"] != "executing":
        return first["command"].xml
    form = client.plugin["xep_0004"].make_form(ftype="submit")
    for var, value in (values or {}).items():
        form.add_field(var=var, value=value)
    done = await xep0050.send_command(srv.domain, NODE + name, action="complete",
                                      sessionid=first["command"]["sessionid"], payload=form,
                                      timeout=15)
    return done["command"].xml


def fields(el: ET.Element) -> dict[str, list[str]]:
    x = el.find(f"{{{DATA}}}x")
    assert x is not None, ET.tostring(el)
    return {f.get("var", ""): [v.text or "" for v in f.findall(f"{{{DATA}}}value")]
            for f in x.findall(f"{{{DATA}}}field")}


def rows(el: ET.Element) -> list[dict[str, str]]:
    x = el.find(f"{{{DATA}}}x")
    assert x is not None and x.find(f"{{{DATA}}}reported") is not None
    return [{f.get("var", ""): f.findtext(f"{{{DATA}}}value") or ""
             for f in item.findall(f"{{{DATA}}}field")} for item in x.findall(f"{{{DATA}}}item")]


def test_admin_commands_list_refresh_and_report(env: Env) -> None:
    srv, web = env.server, env.web

    async def scenario() -> None:
        client = await connect(srv, f"admin@{srv.domain}", plugins=PLUGINS)
        items = await client.plugin["xep_0050"].get_commands(srv.domain, timeout=10)
        nodes = {i[1] for i in items["disco_items"]["items"]}
        for name in ("feeds-list", "feed-add", "feed-remove", "feed-pause", "feed-resume",
                     "feed-refresh", "node-stats", "poller-stats", "delivery-stats"):
            assert NODE + name in nodes

        listed = rows(await command(client, srv, "feeds-list"))
        news = next(r for r in listed if r["url"] == env.url)
        assert news["http_status"] in ("200", "304") and news["items"] == "3"
        assert news["subscribers"] == "2" and news["last_fetch"] and news["next_fetch"]

        hits = web.hits("/news.xml")
        done = await command(client, srv, "feed-refresh", {"url": env.url})
        assert web.hits("/news.xml") == hits + 1
        assert fields(done)["http_status"] == ["304"]

        paused = await command(client, srv, "feed-pause", {"url": env.url})
        assert fields(paused)["state"] == ["paused"]
        resumed = await command(client, srv, "feed-resume", {"url": env.url})
        assert fields(resumed)["state"] != ["paused"]

        web.set("/other.xml", rss("Other", ["o1"]), content_type="application/rss+xml")
        other = web.url("/other.xml")
        added = await command(client, srv, "feed-add", {"url": other, "title": "Other"})
        assert fields(added)["url"] == [other]
        removed = await command(client, srv, "feed-remove", {"url": other})
        assert "no longer polled" in ET.tostring(removed, encoding="unicode")
        assert other not in {r["url"] for r in rows(await command(client, srv, "feeds-list"))}

        poller = fields(await command(client, srv, "poller-stats"))
        assert int(poller["fetches"][0]) >= 3 and float(poller["not_modified_ratio"][0]) > 0
        assert "queue_depth" in poller and "lag_seconds" in poller
        delivery = fields(await command(client, srv, "delivery-stats"))
        assert int(delivery["delivered"][0]) >= 3 and "offline_stored" in delivery
        stats = rows(await command(client, srv, "node-stats", {"node": env.url}))
        assert stats[0]["subscribers"] == "2" and int(stats[0]["notifications"]) >= 3
        await disconnect(client)

    run(scenario())


def test_non_admin_sees_none_and_is_forbidden(env: Env) -> None:
    srv = env.server

    async def scenario() -> None:
        client = await connect(srv, f"mallory@{srv.domain}", plugins=PLUGINS)
        items = await client.plugin["xep_0050"].get_commands(srv.domain, timeout=10)
        assert not [i for i in items["disco_items"]["items"] if i[1].startswith(NODE)]
        for name in ("feeds-list", "feed-refresh", "delivery-stats"):
            with pytest.raises(IqError) as refused:
                await client.plugin["xep_0050"].send_command(srv.domain, NODE + name,
                                                             timeout=10)
            assert refused.value.iq["error"]["condition"] == "forbidden"
        await disconnect(client)

    run(scenario())
