from __future__ import annotations

import pytest
from lxml import etree

from pubsubd.xml.forms import FORM_TYPE, Field, Form, FormError, Option, parse_boolean

NS = "jabber:x:data"

# XEP-0004 §5.1, Example 2 (the <x/> only).
BOT_FORM = b"""
<x xmlns='jabber:x:data' type='form'>
  <title>Bot Configuration</title>
  <instructions>Fill out this form to configure your new bot!</instructions>
  <field type='hidden' var='FORM_TYPE'><value>jabber:bot</value></field>
  <field type='fixed'><value>Section 1: Bot Info</value></field>
  <field type='text-single' label='The name of your bot' var='botname'/>
  <field type='text-multi' label='Helpful description of your bot' var='description'/>
  <field type='boolean' label='Public bot?' var='public'><required/></field>
  <field type='text-private' label='Password for special access' var='password'/>
  <field type='list-multi' label='What features will the bot support?' var='features'>
    <option label='Contests'><value>contests</value></option>
    <option label='News'><value>news</value></option>
    <option label='Polls'><value>polls</value></option>
    <option label='Reminders'><value>reminders</value></option>
    <option label='Search'><value>search</value></option>
    <value>news</value>
    <value>search</value>
  </field>
  <field type='list-single' label='Maximum number of subscribers' var='maxsubs'>
    <value>20</value>
    <option label='10'><value>10</value></option>
    <option label='20'><value>20</value></option>
    <option label='None'><value>none</value></option>
  </field>
  <field type='jid-multi' label='People to invite' var='invitelist'>
    <desc>Tell all your friends about your new bot!</desc>
  </field>
  <field type='jid-single' label='Owner' var='owner'/>
</x>
"""

# XEP-0004 §5.1, Example 3 (abridged), types omitted on purpose: the template supplies them.
BOT_SUBMIT = b"""
<x xmlns='jabber:x:data' type='submit'>
  <field type='hidden' var='FORM_TYPE'><value>jabber:bot</value></field>
  <field var='botname'><value>The Jabber Google Bot</value></field>
  <field var='description'>
    <value>This bot enables you to send requests to</value>
    <value>Google and receive the search results right</value>
  </field>
  <field var='public'><value>0</value></field>
  <field var='features'><value>news</value><value>search</value></field>
  <field var='maxsubs'><value>none</value></field>
  <field var='invitelist'>
    <value>juliet@capulet.com</value><value>benvolio@montague.net</value>
  </field>
</x>
"""


def template() -> Form:
    return Form.from_element(etree.fromstring(BOT_FORM))


def submission() -> Form:
    return Form.from_element(etree.fromstring(BOT_SUBMIT))


def test_parse_template() -> None:
    form = template()
    assert form.type == "form"
    assert form.title == "Bot Configuration"
    assert form.instructions == ["Fill out this form to configure your new bot!"]
    assert form.form_type == "jabber:bot"
    assert form.values("features") == ["news", "search"]
    assert form.value("maxsubs") == "20"
    assert form.value("botname") is None and form.values("nope") == []
    public = form.get_field("public")
    assert public is not None and public.required and public.type == "boolean"
    features = form.get_field("features")
    assert features is not None and features.options[1] == Option("news", "News")
    invite = form.get_field("invitelist")
    assert invite is not None and invite.desc == "Tell all your friends about your new bot!"
    fixed = form.fields[1]
    assert fixed.var is None and fixed.type == "fixed" and fixed.value == "Section 1: Bot Info"


def test_round_trip_through_xml() -> None:
    form = template()
    el = form.to_element()
    assert el.tag == f"{{{NS}}}x" and el.nsmap[None] == NS
    assert Form.from_element(el) == form
    # Serialized output is plain XEP-0004 XML (default namespace, no prefixes).
    text = etree.tostring(el).decode()
    assert text.startswith('<x xmlns="jabber:x:data" type="form"><title>Bot Configuration')
    assert "<required/>" in text
    assert '<option label="News"><value>news</value></option>' in text


def test_multi_item_result_round_trip() -> None:
    # XEP-0004 §3.4 / Example 8.
    result = Form(
        "result",
        title="Joogle Search: verona",
        reported=[Field("name"), Field("url")],
        items=[
            [Field("name", values=["benvenuto!"]), Field("url", values=["http://a/"])],
            [Field("name", values=["Aeroporti"]), Field("url", values=["http://b/"])],
        ],
    )
    el = result.to_element()
    assert [child.tag.split("}")[1] for child in el] == ["title", "reported", "item", "item"]
    back = Form.from_element(el)
    assert back == result
    assert [item[1].value for item in back.items] == ["http://a/", "http://b/"]


def test_with_form_type_helper() -> None:
    form = Form.with_form_type(
        "submit", "http://jabber.org/protocol/pubsub#node_config", [Field("x", values=["1"])]
    )
    assert form.fields[0] == Field(FORM_TYPE, "hidden", values=[form.form_type or ""])
    assert form.form_type == "http://jabber.org/protocol/pubsub#node_config"
    assert form.boolean("x") is True


@pytest.mark.parametrize(
    ("text", "expected"), [("1", True), ("true", True), ("0", False), ("false", False)]
)
def test_parse_boolean(text: str, expected: bool) -> None:
    assert parse_boolean(text) is expected


@pytest.mark.parametrize("text", ["yes", "TRUE", "", " 1"])
def test_parse_boolean_rejects(text: str) -> None:
    with pytest.raises(FormError):
        parse_boolean(text, "v")


def test_field_boolean_and_missing() -> None:
    form = submission()
    assert form.boolean("public") is False
    assert form.boolean("absent") is None
    with pytest.raises(FormError) as info:
        form.boolean("botname")
    assert info.value.var == "botname"


def test_valid_submission_passes() -> None:
    template().validate(submission())


def _submit(*fields: Field) -> Form:
    return Form("submit", fields=[Field("public", values=["1"]), *fields])


@pytest.mark.parametrize(
    ("form", "var", "problem"),
    [
        (Form("submit", fields=[Field("botname", values=["x"])]), "public", "required"),
        (Form("submit", fields=[Field("public")]), "public", "required"),
        (_submit(Field("surprise", values=["x"])), "surprise", "unknown"),
        (_submit(Field("maxsubs", values=["15"])), "maxsubs", "options"),
        (_submit(Field("maxsubs", values=["10", "20"])), "maxsubs", "one value"),
        (_submit(Field("features", values=["news", "weather"])), "features", "options"),
        (_submit(Field("owner", values=["@bad"])), "owner", "JID"),
        (_submit(Field("invitelist", values=["ok@x", "juliet@"])), "invitelist", "JID"),
        (Form("submit", fields=[Field("public", values=["maybe"])]), "public", "boolean"),
        (
            _submit(Field("botname", values=["a"]), Field("botname", values=["b"])),
            "botname",
            "twice",
        ),
        (_submit(Field(FORM_TYPE, "hidden", values=["other"])), FORM_TYPE, "form type"),
    ],
)
def test_invalid_submissions(form: Form, var: str, problem: str) -> None:
    with pytest.raises(FormError) as info:
        template().validate(form)
    assert info.value.var == var
    assert problem in info.value.problem


def test_unknown_fields_can_be_allowed() -> None:
    template().validate(_submit(Field("surprise", values=["x"])), allow_unknown=True)


def test_jid_single_accepts_valid_jid() -> None:
    template().validate(_submit(Field("owner", values=["Juliet@Capulet.example/balcony"])))


def test_only_submit_forms_validate() -> None:
    with pytest.raises(FormError, match="submit"):
        template().validate(template())


@pytest.mark.parametrize(
    "xml",
    [
        b"<x xmlns='jabber:x:data' type='bogus'/>",
        b"<x xmlns='jabber:x:data'/>",
        b"<x xmlns='other' type='form'/>",
        b"<x xmlns='jabber:x:data' type='form'><field var='a' type='text-huge'/></x>",
        b"<x xmlns='jabber:x:data' type='form'><field var='a'><option/></field></x>",
    ],
)
def test_malformed_forms(xml: bytes) -> None:
    with pytest.raises(FormError):
        Form.from_element(etree.fromstring(xml))


def test_form_type_must_be_known() -> None:
    with pytest.raises(FormError):
        Form("draft")  # type: ignore[arg-type]
