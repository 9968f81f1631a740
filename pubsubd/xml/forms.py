"""XEP-0004 data forms: a plain model, conversion to and from lxml, and submission checks.

Pubsub node configuration, subscription options, publish-options and ad-hoc commands all
speak data forms; this module keeps their XML in one place so handlers deal with
``Form``/``Field`` values and a single :class:`FormError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal, cast, get_args

from lxml import etree

from pubsubd import ns
from pubsubd.jid import JID, InvalidJID

__all__ = [
    "FORM_TYPE",
    "Field",
    "FieldType",
    "Form",
    "FormError",
    "FormType",
    "Option",
    "parse_boolean",
]

_NS: Final = ns.DATA_FORMS


def _q(local: str) -> str:
    return f"{{{_NS}}}{local}"


FORM_TYPE: Final = "FORM_TYPE"  # XEP-0068 §2: the hidden field naming the form's namespace

FormType = Literal["form", "submit", "result", "cancel"]  # XEP-0004 §3.1
FieldType = Literal[  # XEP-0004 §3.3
    "boolean",
    "fixed",
    "hidden",
    "jid-multi",
    "jid-single",
    "list-multi",
    "list-single",
    "text-multi",
    "text-private",
    "text-single",
]
_FORM_TYPES: Final = frozenset(get_args(FormType))
_FIELD_TYPES: Final = frozenset(get_args(FieldType))
_MULTI_VALUED: Final = frozenset({"jid-multi", "list-multi", "text-multi"})


class FormError(ValueError):
    """A form is malformed or a submission breaks its template; ``var`` is the field at fault
    (``None`` for the form as a whole), ``problem`` says what is wrong."""

    def __init__(self, var: str | None, problem: str) -> None:
        super().__init__(f"{var}: {problem}" if var is not None else problem)
        self.var = var
        self.problem = problem


def parse_boolean(text: str, var: str | None = None) -> bool:
    """XEP-0004 §3.3 boolean: "0"/"false" or "1"/"true"."""
    if text in ("1", "true"):
        return True
    if text in ("0", "false"):
        return False
    raise FormError(var, f"not a boolean: {text!r}")


@dataclass(frozen=True, slots=True)
class Option:
    """One choice of a list-single or list-multi field."""

    value: str
    label: str | None = None


@dataclass(slots=True)
class Field:
    """One ``<field/>``. ``type`` None means it was not given (text-single by default, §3.3)."""

    var: str | None
    type: FieldType | None = None
    label: str | None = None
    values: list[str] = field(default_factory=list)
    options: list[Option] = field(default_factory=list)
    required: bool = False
    desc: str | None = None

    @property
    def value(self) -> str | None:
        """The first value, if any."""
        return self.values[0] if self.values else None

    @property
    def effective_type(self) -> FieldType:
        return self.type if self.type is not None else "text-single"

    @property
    def boolean(self) -> bool | None:
        """The value read as a boolean (None without a value)."""
        return None if not self.values else parse_boolean(self.values[0], self.var)

    def to_element(self, parent: etree._Element | None = None) -> etree._Element:
        el = etree.Element(_q("field")) if parent is None else etree.SubElement(parent, _q("field"))
        if self.var is not None:
            el.set("var", self.var)
        if self.type is not None:
            el.set("type", self.type)
        if self.label is not None:
            el.set("label", self.label)
        if self.desc is not None:
            etree.SubElement(el, _q("desc")).text = self.desc
        if self.required:
            etree.SubElement(el, _q("required"))
        for value in self.values:
            etree.SubElement(el, _q("value")).text = value
        for option in self.options:
            opt = etree.SubElement(el, _q("option"))
            if option.label is not None:
                opt.set("label", option.label)
            etree.SubElement(opt, _q("value")).text = option.value
        return el

    @classmethod
    def from_element(cls, el: etree._Element) -> Field:
        var = el.get("var")
        type_ = el.get("type")
        if type_ is not None and type_ not in _FIELD_TYPES:
            raise FormError(var, f"unknown field type {type_!r}")
        options = []
        for opt in el.iterfind(_q("option")):
            value = opt.find(_q("value"))
            if value is None:
                raise FormError(var, "option without a value")
            options.append(Option(value.text or "", opt.get("label")))
        desc = el.find(_q("desc"))
        return cls(
            var=var,
            type=cast("FieldType | None", type_),  # checked against _FIELD_TYPES above
            label=el.get("label"),
            values=[v.text or "" for v in el.iterfind(_q("value"))],
            options=options,
            required=el.find(_q("required")) is not None,
            desc=desc.text if desc is not None else None,
        )


@dataclass(slots=True)
class Form:
    """An ``<x xmlns='jabber:x:data'/>``; ``reported``/``items`` hold multi-item results (§3.4)."""

    type: FormType
    title: str | None = None
    instructions: list[str] = field(default_factory=list)
    fields: list[Field] = field(default_factory=list)
    reported: list[Field] | None = None
    items: list[list[Field]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.type not in _FORM_TYPES:
            raise FormError(None, f"unknown form type {self.type!r}")

    @classmethod
    def with_form_type(
        cls, type: FormType, form_type: str, fields: Iterable[Field] = (), **kw: object
    ) -> Form:
        """A form whose first field is the hidden FORM_TYPE (XEP-0068 §2)."""
        hidden = Field(FORM_TYPE, "hidden", values=[form_type])
        return cls(type, fields=[hidden, *fields], **kw)  # type: ignore[arg-type]

    @property
    def form_type(self) -> str | None:
        """The FORM_TYPE value, which says which registered form this is."""
        return self.value(FORM_TYPE)

    def get_field(self, var: str) -> Field | None:
        for candidate in self.fields:
            if candidate.var == var:
                return candidate
        return None

    def values(self, var: str) -> list[str]:
        """All values of field ``var`` ([] if absent)."""
        found = self.get_field(var)
        return list(found.values) if found is not None else []

    def value(self, var: str) -> str | None:
        """The first value of field ``var`` (None if absent or empty)."""
        found = self.get_field(var)
        return found.value if found is not None else None

    def boolean(self, var: str) -> bool | None:
        """Field ``var`` read as a boolean; None if absent; FormError if not a boolean."""
        found = self.get_field(var)
        return found.boolean if found is not None else None

    def to_element(self) -> etree._Element:
        el = etree.Element(_q("x"), nsmap={None: _NS})
        el.set("type", self.type)
        if self.title is not None:
            etree.SubElement(el, _q("title")).text = self.title
        for line in self.instructions:
            etree.SubElement(el, _q("instructions")).text = line
        for f in self.fields:
            f.to_element(el)
        if self.reported is not None:
            reported = etree.SubElement(el, _q("reported"))
            for f in self.reported:
                f.to_element(reported)
        for item in self.items:
            item_el = etree.SubElement(el, _q("item"))
            for f in item:
                f.to_element(item_el)
        return el

    @classmethod
    def from_element(cls, el: etree._Element) -> Form:
        if el.tag != _q("x"):
            raise FormError(None, f"not a data form: {el.tag}")
        type_ = el.get("type")
        if type_ not in _FORM_TYPES:
            raise FormError(None, f"unknown form type {type_!r}")
        title = el.find(_q("title"))
        reported = el.find(_q("reported"))
        return cls(
            type=cast(FormType, type_),  # checked against _FORM_TYPES above
            title=title.text if title is not None else None,
            instructions=[i.text or "" for i in el.iterfind(_q("instructions"))],
            fields=[Field.from_element(f) for f in el.iterfind(_q("field"))],
            reported=(
                [Field.from_element(f) for f in reported.iterfind(_q("field"))]
                if reported is not None
                else None
            ),
            items=[
                [Field.from_element(f) for f in item.iterfind(_q("field"))]
                for item in el.iterfind(_q("item"))
            ],
        )

    def validate(self, submitted: Form, *, allow_unknown: bool = False) -> None:
        """Check ``submitted`` against this template form; raise FormError on the first fault.

        Field types come from the template, since a submission may omit them (XEP-0004 §3.2).
        """
        if submitted.type != "submit":
            raise FormError(None, f"expected a submitted form, got type {submitted.type!r}")
        if self.form_type is not None and submitted.form_type not in (None, self.form_type):
            raise FormError(FORM_TYPE, f"wrong form type {submitted.form_type!r}")
        template = {f.var: f for f in self.fields if f.var is not None}
        seen: set[str] = set()
        for given in submitted.fields:
            if given.var is None:
                raise FormError(None, "submitted field without var")
            if given.var in seen:
                raise FormError(given.var, "field submitted twice")
            seen.add(given.var)
            spec = template.get(given.var)
            if spec is None:
                if given.var == FORM_TYPE or allow_unknown:
                    continue
                raise FormError(given.var, "unknown field")
            _check_values(spec, given.values)
        for spec in template.values():
            if spec.required and not any(submitted.values(spec.var or "")):
                raise FormError(spec.var, "required field missing")


def _check_values(spec: Field, values: list[str]) -> None:
    """Check submitted values against the template field's type and options."""
    kind = spec.effective_type
    if kind not in _MULTI_VALUED and len(values) > 1:
        raise FormError(spec.var, "only one value allowed")
    if kind == "boolean":
        for v in values:
            parse_boolean(v, spec.var)
    elif kind in ("list-single", "list-multi") and spec.options:
        allowed = {o.value for o in spec.options}
        for v in values:
            if v not in allowed:
                raise FormError(spec.var, f"{v!r} is not one of the options")
    elif kind in ("jid-single", "jid-multi"):
        for v in values:
            try:
                JID.parse(v)
            except InvalidJID as exc:
                raise FormError(spec.var, f"not a JID: {exc}") from None
