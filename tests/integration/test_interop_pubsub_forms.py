"""Pubsub data forms carry the field types XEP-0060 §16.4 registers.

Clients with typed form models (aioxmpp's NodeConfigForm, found by running aioxmpp's
end-to-end suite against pubsubd) refuse a whole form when one field's type differs from
the registry, so a node could not be configured from them at all.
"""

from __future__ import annotations

from typing import Any

from harness import ServerProcess, connect, disconnect, run

from .pubsub_helpers import OWNER, PUBSUB, PUBSUB_PLUGINS, raw_iq, service_jid

XDATA = "jabber:x:data"

# XEP-0060 §16.4.4 (pubsub#node_config) and §16.4.3 (pubsub#meta-data): the type of each
# registered field.
NODE_CONFIG_TYPES = {
    "pubsub#access_model": "list-single",
    "pubsub#body_xslt": "text-single",
    "pubsub#contact": "jid-multi",
    "pubsub#dataform_xslt": "text-single",
    "pubsub#deliver_notifications": "boolean",
    "pubsub#deliver_payloads": "boolean",
    "pubsub#description": "text-single",
    "pubsub#item_expire": "text-single",
    "pubsub#itemreply": "list-single",
    "pubsub#language": "list-single",
    "pubsub#max_items": "text-single",
    "pubsub#max_payload_size": "text-single",
    "pubsub#node_type": "list-single",
    "pubsub#notification_type": "list-single",
    "pubsub#notify_config": "boolean",
    "pubsub#notify_delete": "boolean",
    "pubsub#notify_retract": "boolean",
    "pubsub#notify_sub": "boolean",
    "pubsub#persist_items": "boolean",
    "pubsub#presence_based_delivery": "boolean",
    "pubsub#publish_model": "list-single",
    "pubsub#publish_node_full": "list-single",
    "pubsub#purge_offline": "boolean",
    "pubsub#roster_groups_allowed": "list-multi",
    "pubsub#send_last_published_item": "list-single",
    "pubsub#tempsub": "boolean",
    "pubsub#subscribe": "boolean",
    "pubsub#title": "text-single",
    "pubsub#type": "text-single",
}


# XEP-0060 §16.4.2 (pubsub#subscribe_options).
SUBSCRIBE_OPTIONS_TYPES = {
    "pubsub#deliver": "boolean",
    "pubsub#digest": "boolean",
    "pubsub#digest_frequency": "text-single",
    "pubsub#expire": "text-single",
    "pubsub#include_body": "boolean",
    "pubsub#show-values": "list-multi",
    "pubsub#subscription_type": "list-single",
    "pubsub#subscription_depth": "list-single",
}


def mistyped(types: dict[str, str | None], registry: dict[str, str]) -> dict[str, Any]:
    return {var: (given, registry[var]) for var, given in types.items()
            if var in registry and given != registry[var]}


def field_types(element: Any) -> dict[str, str | None]:
    return {f.get("var"): f.get("type") for f in element.iter(f"{{{XDATA}}}field")}


def test_node_configuration_form_uses_registered_field_types(shared_server: ServerProcess) -> None:
    jid = shared_server.add_user("formtypes")
    service = service_jid(shared_server)

    async def scenario() -> None:
        client = await connect(shared_server, jid, plugins=PUBSUB_PLUGINS)
        try:
            await raw_iq(client, service, "set",
                         f"<pubsub xmlns='{PUBSUB}'><create node='typed'/></pubsub>")
            reply = await raw_iq(client, service, "get",
                                 f"<pubsub xmlns='{OWNER}'><configure node='typed'/></pubsub>")
            types = field_types(reply)
            assert types["pubsub#language"] == "list-single"
            assert mistyped(types, NODE_CONFIG_TYPES) == {}

            # The language is still a free choice: a tag outside the offered options is kept
            # and then offered back as the current choice.
            await raw_iq(client, service, "set", (
                f"<pubsub xmlns='{OWNER}'><configure node='typed'><x xmlns='{XDATA}' type='submit'>"
                f"<field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#node_config</value></field>"
                "<field var='pubsub#language'><value>gsw</value></field></x></configure></pubsub>"))
            reply = await raw_iq(client, service, "get",
                                 f"<pubsub xmlns='{OWNER}'><configure node='typed'/></pubsub>")
            language = next(f for f in reply.iter(f"{{{XDATA}}}field")
                            if f.get("var") == "pubsub#language")
            assert language.findtext(f"{{{XDATA}}}value") == "gsw"
            options = [o.findtext(f"{{{XDATA}}}value") for o in language.iter(f"{{{XDATA}}}option")]
            assert "gsw" in options and "en" in options
        finally:
            await disconnect(client)

    run(scenario())


def test_subscription_options_form_uses_registered_field_types(
        shared_server: ServerProcess) -> None:
    jid = shared_server.add_user("optiontypes")
    service = service_jid(shared_server)

    async def scenario() -> None:
        client = await connect(shared_server, jid, plugins=PUBSUB_PLUGINS)
        try:
            # XEP-0060 §6.4: the default subscription options of the service.
            reply = await raw_iq(client, service, "get",
                                 f"<pubsub xmlns='{PUBSUB}'><default/></pubsub>")
            types = field_types(reply)
            assert types.get("pubsub#subscription_depth") == "list-single"
            assert mistyped(types, SUBSCRIBE_OPTIONS_TYPES) == {}
        finally:
            await disconnect(client)

    run(scenario())
