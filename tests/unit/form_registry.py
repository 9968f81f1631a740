"""The field types registered with the XMPP Registrar for the FORM_TYPEs this server emits.

Copied from the registry sections of the specifications (XEP-0045 §15.5, XEP-0060 §16.4,
XEP-0133 §6, XEP-0313 §10.4), not from our code, so a form that drifts from them is caught.
A set lists the types a field may have where a specification contradicts itself.
"""

from __future__ import annotations

REGISTERED: dict[str, dict[str, str | frozenset[str]]] = {
    # XEP-0045 §15.5.2
    "http://jabber.org/protocol/muc#register": {
        "muc#register_allow": "boolean",
        "muc#register_email": "text-single",
        "muc#register_faqentry": "text-multi",
        "muc#register_first": "text-single",
        "muc#register_last": "text-single",
        "muc#register_roomnick": "text-single",
        "muc#register_url": "text-single",
    },
    # XEP-0045 §15.5.3
    "http://jabber.org/protocol/muc#roomconfig": {
        "muc#maxhistoryfetch": "text-single",
        "muc#roomconfig_allowinvites": "boolean",
        "muc#roomconfig_allowpm": "list-single",
        "muc#roomconfig_changesubject": "boolean",
        "muc#roomconfig_enablelogging": "boolean",
        "muc#roomconfig_getmemberlist": "list-multi",
        "muc#roomconfig_lang": "text-single",
        "muc#roomconfig_pubsub": "text-single",
        "muc#roomconfig_maxusers": "list-single",
        "muc#roomconfig_membersonly": "boolean",
        "muc#roomconfig_moderatedroom": "boolean",
        "muc#roomconfig_passwordprotectedroom": "boolean",
        "muc#roomconfig_persistentroom": "boolean",
        "muc#roomconfig_presencebroadcast": "list-multi",
        "muc#roomconfig_publicroom": "boolean",
        "muc#roomconfig_roomadmins": "jid-multi",
        "muc#roomconfig_roomdesc": "text-single",
        "muc#roomconfig_roomname": "text-single",
        "muc#roomconfig_roomowners": "jid-multi",
        "muc#roomconfig_roomsecret": "text-private",
        "muc#roomconfig_whois": "list-single",
    },
    # XEP-0045 §15.5.4
    "http://jabber.org/protocol/muc#roominfo": {
        "muc#maxhistoryfetch": "text-single",
        "muc#roominfo_contactjid": "jid-multi",
        "muc#roominfo_description": "text-single",
        "muc#roominfo_lang": "text-single",
        "muc#roominfo_ldapgroup": "text-single",
        "muc#roominfo_logs": "text-single",
        "muc#roominfo_occupants": "text-single",
        "muc#roominfo_subject": "text-single",
        "muc#roominfo_subjectmod": "boolean",
    },
    # XEP-0045 §15.5.5 (voice requests, §7.13 / §8.6)
    "http://jabber.org/protocol/muc#request": {
        "muc#jid": "jid-single",
        "muc#role": "list-single",
        "muc#roomnick": "text-single",
        "muc#request_allow": "boolean",
    },
    # XEP-0060 §16.4.1
    "http://jabber.org/protocol/pubsub#subscribe_authorization": {
        "pubsub#allow": "boolean",
        "pubsub#node": "text-single",
        "pubsub#subscriber_jid": "jid-single",
        "pubsub#subid": "text-single",
    },
    # XEP-0060 §16.4.2
    "http://jabber.org/protocol/pubsub#subscribe_options": {
        "pubsub#deliver": "boolean",
        "pubsub#digest": "boolean",
        "pubsub#digest_frequency": "text-single",
        "pubsub#expire": "text-single",
        "pubsub#include_body": "boolean",
        "pubsub#show-values": "list-multi",
        "pubsub#subscription_type": "list-single",
        "pubsub#subscription_depth": "list-single",
    },
    # XEP-0060 §16.4.3
    "http://jabber.org/protocol/pubsub#meta-data": {
        "pubsub#contact": "jid-multi",
        "pubsub#creation_date": "text-single",
        "pubsub#creator": "jid-single",
        "pubsub#description": "text-single",
        "pubsub#language": "list-single",
        "pubsub#access_model": "list-single",
        "pubsub#publish_model": "list-single",
        "pubsub#num_subscribers": "text-single",
        "pubsub#owner": "jid-multi",
        "pubsub#publisher": "jid-multi",
        "pubsub#title": "text-single",
        "pubsub#type": "text-single",
        "pubsub#max_items": "text-single",
    },
    # XEP-0060 §16.4.4, with the collection fields of XEP-0248 §10.4.2
    "http://jabber.org/protocol/pubsub#node_config": {
        "pubsub#collection": "text-multi",
        "pubsub#children": "text-multi",
        "pubsub#children_association_policy": "list-single",
        "pubsub#children_association_whitelist": "jid-multi",
        "pubsub#children_max": "text-single",
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
    },
    # XEP-0133 §6 (registry)
    "http://jabber.org/protocol/admin": {
        "accountjid": "jid-single",
        "accountjids": "jid-multi",
        "activeuserjids": "jid-multi",
        "activeusersnum": "text-single",
        "adminjids": "jid-multi",
        "announcement": "text-multi",
        "blacklistjids": "jid-multi",
        # the registry says list-multi, the examples of §4.30-4.31 list-single (one delay)
        "delay": frozenset({"list-multi", "list-single"}),
        "disableduserjids": "jid-multi",
        "disabledusersnum": "text-single",
        "email": "text-single",
        "given_name": "text-single",
        "idleusersnum": "text-single",
        # not registered: §4.22's example lists idle users as activeuserjids, which would
        # mislabel them; idleuserjids is the evident counterpart of idleusersnum
        "idleuserjids": "jid-multi",
        "ipaddresses": "list-multi",
        "lastlogin": "text-single",
        "loginsperminute": "text-single",
        "max_items": "list-single",
        "motd": "text-multi",
        "onlineresources": "text-single",
        "onlineuserjids": "jid-multi",
        "onlineusersnum": "text-single",
        "password": "text-private",
        "password-verify": "text-private",
        "registereduserjids": "jid-multi",
        "registeredusersnum": "text-single",
        "rostersize": "text-single",
        "stanzaspersecond": "text-single",
        "surname": "text-single",
        "welcome": "text-multi",
        "whitelistjids": "jid-multi",
    },
    # XEP-0313 §10.4
    "urn:xmpp:mam:2": {
        "with": "jid-single",
        "start": "text-single",
        "end": "text-single",
        "before-id": "text-single",
        "after-id": "text-single",
        # the registry says text-multi, §4.1.5's example list-multi with open validation
        "ids": frozenset({"text-multi", "list-multi"}),
    },
}

# XEP-0060 §5.4: the meta-data of a node may repeat its configuration, whose fields keep the
# types registered for pubsub#node_config.
REGISTERED["http://jabber.org/protocol/pubsub#meta-data"] = {
    **REGISTERED["http://jabber.org/protocol/pubsub#node_config"],
    **REGISTERED["http://jabber.org/protocol/pubsub#meta-data"],
}
