"""The forms of the queue config editor in admin: one form (or formset) per section of a config
document, what each builds into the document, and where a check's dotted path lands on them."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.core.validators import RegexValidator

from apps.assignment.routing import STRATEGIES
from apps.cases.metric_definitions import REOPEN_WINDOW_KEY
from apps.cases.models import Channel, Priority, Status
from apps.cases.services.config_versions import FIELD_NAME
from apps.cases.services.queue_configs import QUEUE_CONFIG_DEFAULTS, SLA_TARGETS, SUPPORTED_TYPES
from apps.cases.targeting import OPERATORS
from apps.core.input import JSONDocumentError, json_document_load

# Bounds that only keep a typed value storable and the page small; the meta-schema decides what
# a config may say (its messages are placed next to these fields by `place_report`).
MAX_TEXT = 2000
MAX_LIST_TEXT = 20_000
MAX_ROWS = 100
MAX_RAW_JSON = 1_000_000
BIG = 10**9
PROPERTY_KEYS = ("type", "enum", "minimum", "maximum", "minLength", "maxLength", "description")
LIST_HELP = "One per line (or separated by commas)."


def _lines(text: str, *, commas: bool = True) -> list[str]:
    parts = text.replace(",", "\n").splitlines() if commas else text.splitlines()
    return list(dict.fromkeys(part.strip() for part in parts if part.strip()))


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _number(value: float | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


class FiniteFloatField(forms.FloatField):
    """A number JSON can carry: finite and within a sane magnitude."""

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", -1e15)
        kwargs.setdefault("max_value", 1e15)
        super().__init__(**kwargs)


class DynamicFieldForm(forms.Form):
    """One dynamic field: a property of the queue's field schema."""

    original = forms.CharField(required=False, widget=forms.HiddenInput, max_length=64)
    name = forms.CharField(max_length=64, validators=[RegexValidator(
        f"^{FIELD_NAME.pattern}$", "A letter or underscore, then letters, digits or underscores.")])
    type = forms.ChoiceField(choices=[(t, t) for t in SUPPORTED_TYPES], initial="string")
    required = forms.BooleanField(required=False)
    choices = forms.CharField(required=False, max_length=MAX_LIST_TEXT, help_text="One per line: a select.",
                              widget=forms.Textarea(attrs={"rows": 3, "cols": 18}))
    minimum = FiniteFloatField(required=False, widget=forms.NumberInput(attrs={"step": "any", "size": 6}))
    maximum = FiniteFloatField(required=False, widget=forms.NumberInput(attrs={"step": "any", "size": 6}))
    min_length = forms.IntegerField(required=False, min_value=0, max_value=BIG)
    max_length = forms.IntegerField(required=False, min_value=0, max_value=BIG)
    description = forms.CharField(required=False, max_length=MAX_TEXT, label="Help text",
                                  widget=forms.Textarea(attrs={"rows": 2, "cols": 24}))

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("type")
        if kind and kind != "string":
            for name in ("choices", "min_length", "max_length"):
                if cleaned.get(name) not in (None, ""):
                    self.add_error(name, "Only for text (string) fields.")
        if kind and kind not in ("integer", "number"):
            for name in ("minimum", "maximum"):
                if cleaned.get(name) is not None:
                    self.add_error(name, "Only for integer and number fields.")
        return cleaned

    def property(self, before: dict | None) -> dict:
        """The field's schema: the form's keys over whatever else the field had (title, format)."""
        data = self.cleaned_data
        prop = {k: v for k, v in copy.deepcopy(before or {}).items() if k not in PROPERTY_KEYS}
        prop["type"] = data["type"]
        if data["choices"]:
            prop["enum"] = _lines(data["choices"], commas=False)
        for key, name in (("minimum", "minimum"), ("maximum", "maximum"),
                          ("minLength", "min_length"), ("maxLength", "max_length")):
            if data[name] is not None:
                prop[key] = _number(data[name])
        if data["description"]:
            prop["description"] = data["description"]
        return prop

    @staticmethod
    def initial_for(name: str, prop: dict, required: bool) -> dict:
        enum = prop.get("enum")
        return {"original": name, "name": name, "type": prop.get("type", "string"), "required": required,
                "choices": "\n".join(str(v) for v in enum) if isinstance(enum, list) else "",
                "minimum": prop.get("minimum"), "maximum": prop.get("maximum"),
                "min_length": prop.get("minLength"), "max_length": prop.get("maxLength"),
                "description": prop.get("description", "")}


class BaseDynamicFieldFormSet(forms.BaseFormSet):
    def clean(self):
        if any(self.errors):
            return
        seen: set[str] = set()
        for form in self.kept_forms():
            name = form.cleaned_data["name"]
            if name in seen:
                form.add_error("name", "Another field has this name.")
            seen.add(name)

    def kept_forms(self) -> list[forms.Form]:
        return [form for form in self.forms if form.has_changed() and form.cleaned_data
                and not form.cleaned_data.get("DELETE")]


DynamicFieldFormSet = forms.formset_factory(
    DynamicFieldForm, formset=BaseDynamicFieldFormSet, extra=1, can_delete=True,
    max_num=MAX_ROWS, validate_max=True, absolute_max=MAX_ROWS)


def transition_name(source: str, target: str) -> str:
    return f"t_{source}__{target}"


class TransitionsForm(forms.Form):
    """The from-status x to-status matrix and the initial status."""

    initial_status = forms.ChoiceField(choices=Status.choices)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for source in Status.values:
            for target in Status.values:
                if source != target:
                    self.fields[transition_name(source, target)] = forms.BooleanField(
                        required=False, label=f"{source} → {target}")

    def matrix(self) -> list[tuple[str, list]]:
        """Rows for the template: (from-status, [bound checkbox or None on the diagonal])."""
        return [(source, [self[transition_name(source, target)] if source != target else None
                          for target in Status.values]) for source in Status.values]

    def transitions(self, before: dict) -> dict[str, list[str]]:
        data = self.cleaned_data
        result = {source: [target for target in Status.values
                           if source != target and data.get(transition_name(source, target))]
                  for source in Status.values}
        named = {data["initial_status"], *(t for targets in result.values() for t in targets)}
        # A status listed with no way out (a terminal one) stays listed, so a round trip through
        # the form does not show up in diffs.
        return {source: targets for source, targets in result.items()
                if targets or (source in before and source in named)}

    @staticmethod
    def initial_for(document: dict) -> dict:
        initial = {"initial_status": document.get("initial_status", Status.NEW)}
        for source, targets in (document.get("transitions") or {}).items():
            for target in targets if isinstance(targets, list) else []:
                initial[transition_name(source, target)] = True
        return initial


class SlaForm(forms.Form):
    first_response_minutes = forms.IntegerField(required=False, max_value=BIG, min_value=-BIG)
    resolution_minutes = forms.IntegerField(required=False, max_value=BIG, min_value=-BIG)
    # Range errors come from the schema check, under the same path as in raw JSON.
    reopen_window_days = forms.IntegerField(
        required=False, max_value=BIG, min_value=-BIG, label="Reopen window (days)",
        help_text="Did-we-resolve and first-contact resolution count a reopen or a follow-up case within "
                  "this many days of the resolution. Empty: the platform default.")

    def sla(self) -> dict:
        return {key: self.cleaned_data[key] for key in (*SLA_TARGETS, REOPEN_WINDOW_KEY)
                if self.cleaned_data.get(key) is not None}


def channel_name(channel: str) -> str:
    return f"cw_{channel}"


def priority_name(priority: int | str) -> str:
    return f"pw_{priority}"


OFFERS = (("", "engine default"), ("on", "on: offer first, the agent accepts"),
          ("off", "off: assign directly"))
SKILL_LISTS = ("required_skills", "optional_skills", "skills")


class RoutingForm(forms.Form):
    strategy = forms.ChoiceField(required=False,
                                 choices=[("", "engine default"), *((s, s) for s in STRATEGIES)])
    offers = forms.ChoiceField(required=False, choices=OFFERS)
    offer_timeout_seconds = forms.IntegerField(required=False, min_value=-BIG, max_value=BIG)
    required_skills = forms.CharField(required=False, max_length=MAX_LIST_TEXT, help_text=LIST_HELP,
                                      widget=forms.Textarea(attrs={"rows": 2, "cols": 30}))
    optional_skills = forms.CharField(required=False, max_length=MAX_LIST_TEXT, help_text=LIST_HELP,
                                      widget=forms.Textarea(attrs={"rows": 2, "cols": 30}))
    skills = forms.CharField(required=False, max_length=MAX_LIST_TEXT, label="Skills (older key, required)",
                             help_text=LIST_HELP, widget=forms.Textarea(attrs={"rows": 2, "cols": 30}))
    relax_after_seconds = forms.IntegerField(required=False, min_value=-BIG, max_value=BIG)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for channel, label in Channel.choices:
            self.fields[channel_name(channel)] = forms.IntegerField(
                required=False, min_value=-BIG, max_value=BIG, label=label,
                widget=forms.NumberInput(attrs={"size": 4}))
        for priority, label in Priority.choices:
            self.fields[priority_name(priority)] = FiniteFloatField(
                required=False, label=label, widget=forms.NumberInput(attrs={"step": "any", "size": 4}))

    def channel_fields(self) -> list:
        return [self[channel_name(channel)] for channel in Channel.values]

    def priority_fields(self) -> list:
        return [self[priority_name(priority)] for priority in Priority.values]

    def routing(self) -> dict:
        data = self.cleaned_data
        result: dict[str, Any] = {}
        if data["strategy"]:
            result["strategy"] = data["strategy"]
        if data["offers"]:
            result["offers"] = data["offers"] == "on"
        for key in ("offer_timeout_seconds", "relax_after_seconds"):
            if data[key] is not None:
                result[key] = data[key]
        for key in SKILL_LISTS:
            if _lines(data[key]):
                result[key] = _lines(data[key])
        weights = {c: data[channel_name(c)] for c in Channel.values if data[channel_name(c)] is not None}
        if weights:
            result["channel_weights"] = weights
        priorities = {str(p): _number(data[priority_name(p)]) for p in Priority.values
                      if data[priority_name(p)] is not None}
        if priorities:
            result["priority_weights"] = priorities
        return result

    @staticmethod
    def initial_for(routing: dict) -> dict:
        initial: dict[str, Any] = {key: routing.get(key) for key in ("strategy", "offer_timeout_seconds",
                                                                    "relax_after_seconds")}
        if isinstance(routing.get("offers"), bool):
            initial["offers"] = "on" if routing["offers"] else "off"
        for key in SKILL_LISTS:
            if isinstance(routing.get(key), list):
                initial[key] = "\n".join(str(skill) for skill in routing[key])
        for channel, weight in (routing.get("channel_weights") or {}).items():
            initial[channel_name(channel)] = weight
        for priority, weight in (routing.get("priority_weights") or {}).items():
            initial[priority_name(priority)] = weight
        return initial


class TargetingForm(forms.Form):
    signal_types = forms.CharField(required=False, max_length=MAX_LIST_TEXT, help_text=LIST_HELP,
                                   widget=forms.Textarea(attrs={"rows": 2, "cols": 30}))
    priority = forms.TypedChoiceField(required=False, coerce=int, empty_value=None,
                                      choices=[("", "case default"), *Priority.choices])
    experiment_name = forms.CharField(required=False, max_length=MAX_TEXT)
    treatment_percent = FiniteFloatField(required=False, widget=forms.NumberInput(attrs={"step": "any"}))

    def targeting(self, conditions: list[dict]) -> dict:
        data = self.cleaned_data
        result: dict[str, Any] = {}
        if _lines(data["signal_types"]):
            result["signal_types"] = _lines(data["signal_types"])
        if conditions:
            result["conditions"] = conditions
        if data["priority"] is not None:
            result["priority"] = data["priority"]
        if data["experiment_name"] or data["treatment_percent"] is not None:
            experiment: dict[str, Any] = {"name": data["experiment_name"]}
            if data["treatment_percent"] is not None:
                experiment["treatment_percent"] = _number(data["treatment_percent"])
            result["experiment"] = experiment
        return result

    @staticmethod
    def initial_for(targeting: dict) -> dict:
        experiment = targeting.get("experiment") if isinstance(targeting.get("experiment"), dict) else {}
        signal_types = targeting.get("signal_types")
        return {"signal_types": "\n".join(map(str, signal_types)) if isinstance(signal_types, list) else "",
                "priority": targeting.get("priority"), "experiment_name": experiment.get("name", ""),
                "treatment_percent": experiment.get("treatment_percent")}


class ConditionForm(forms.Form):
    path = forms.CharField(max_length=MAX_TEXT, help_text="Dotted, e.g. order.total")
    op = forms.ChoiceField(choices=[("", "---------"), *((op, op) for op in OPERATORS)])
    value = forms.CharField(required=False, max_length=MAX_LIST_TEXT,
                            help_text='JSON (30, "x", ["a", "b"], true); other text is taken as a string.')

    def clean_value(self):
        text = self.cleaned_data["value"]
        if text == "":
            return None
        try:
            return json_document_load(text)
        except JSONDocumentError as exc:
            if exc.code == "parse_error":
                return text
            raise forms.ValidationError([m for ms in exc.errors.values() for m in ms]) from None

    def condition(self) -> dict:
        result = {"path": self.cleaned_data["path"], "op": self.cleaned_data["op"]}
        if self.cleaned_data["value"] is not None:
            result["value"] = self.cleaned_data["value"]
        return result

    @staticmethod
    def initial_for(condition: dict) -> dict:
        value = condition.get("value")
        return {"path": condition.get("path", ""), "op": condition.get("op", ""),
                "value": "" if "value" not in condition else json.dumps(value, ensure_ascii=False)}


class BaseConditionFormSet(forms.BaseFormSet):
    def kept_forms(self) -> list[forms.Form]:
        return [form for form in self.forms if form.has_changed() and form.cleaned_data
                and not form.cleaned_data.get("DELETE")]


ConditionFormSet = forms.formset_factory(
    ConditionForm, formset=BaseConditionFormSet, extra=1, can_delete=True,
    max_num=MAX_ROWS, validate_max=True, absolute_max=MAX_ROWS)


class EditorForm(forms.Form):
    """What the editor page carries besides the sections: which mode's inputs count, the raw
    document of the JSON mode, the comment of a save, and the what-if window."""

    mode = forms.ChoiceField(choices=(("form", "forms"), ("json", "JSON")), initial="form",
                             widget=forms.HiddenInput)
    raw_json = forms.CharField(required=False, max_length=MAX_RAW_JSON, strip=False, label="Document (JSON)",
                               widget=forms.Textarea(attrs={"rows": 30, "cols": 100, "spellcheck": "false",
                                                            "style": "font-family: monospace"}))
    comment = forms.CharField(required=False, max_length=MAX_TEXT,
                              widget=forms.TextInput(attrs={"size": 60}))
    hours = forms.IntegerField(min_value=1, max_value=24 * 31, initial=24,
                               label="What-if over the last (hours)",
                               widget=forms.NumberInput(attrs={"size": 4}))


@dataclass
class Sections:
    """The bound or unbound forms of every section, built from or into one document."""

    fields: Any
    transitions: TransitionsForm
    sla: SlaForm
    routing: RoutingForm
    targeting: TargetingForm
    conditions: Any
    # Check results that no field shows, by dotted path.
    other_errors: dict[str, list[str]] = field(default_factory=dict)
    other_warnings: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: dict) -> Sections:
        schema = document.get("fields_schema") if isinstance(document.get("fields_schema"), dict) else {}
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = schema.get("required") if isinstance(schema.get("required"), list) else []
        targeting = document.get("targeting") if isinstance(document.get("targeting"), dict) else {}
        conditions = targeting.get("conditions") if isinstance(targeting.get("conditions"), list) else []
        return cls(
            fields=DynamicFieldFormSet(prefix="fields", initial=[
                DynamicFieldForm.initial_for(name, prop if isinstance(prop, dict) else {}, name in required)
                for name, prop in props.items()]),
            transitions=TransitionsForm(prefix="tr", initial=TransitionsForm.initial_for(document)),
            sla=SlaForm(prefix="sla", initial=_mapping(document.get("sla"))),
            routing=RoutingForm(prefix="ro",
                                initial=RoutingForm.initial_for(_mapping(document.get("routing")))),
            targeting=TargetingForm(prefix="tg", initial=TargetingForm.initial_for(targeting)),
            conditions=ConditionFormSet(prefix="cond", initial=[
                ConditionForm.initial_for(c) for c in conditions if isinstance(c, dict)]),
        )

    @classmethod
    def from_post(cls, data) -> Sections:
        return cls(fields=DynamicFieldFormSet(data, prefix="fields"),
                   transitions=TransitionsForm(data, prefix="tr"), sla=SlaForm(data, prefix="sla"),
                   routing=RoutingForm(data, prefix="ro"), targeting=TargetingForm(data, prefix="tg"),
                   conditions=ConditionFormSet(data, prefix="cond"))

    def parts(self) -> list:
        return [self.fields, self.transitions, self.sla, self.routing, self.targeting, self.conditions]

    def is_valid(self) -> bool:
        return all([part.is_valid() for part in self.parts()])  # a list: every part shows its errors

    def document(self, base: dict) -> dict:
        """The document the forms describe. `base` (the version being edited) keeps what the forms
        do not show: other keys of the field schema and of each field (title, format)."""
        base = {**QUEUE_CONFIG_DEFAULTS, **copy.deepcopy(base)}
        schema = base["fields_schema"] if isinstance(base["fields_schema"], dict) else {}
        before = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        properties, required = {}, []
        for form in self.fields.kept_forms():
            data = form.cleaned_data
            properties[data["name"]] = form.property(before.get(data["original"] or data["name"]))
            if data["required"]:
                required.append(data["name"])
        fields_schema = {k: v for k, v in schema.items() if k not in ("properties", "required")}
        if properties or fields_schema:
            fields_schema.setdefault("type", "object")
            fields_schema["properties"] = properties
        if required:
            fields_schema["required"] = required
        return {
            "fields_schema": fields_schema,
            "initial_status": self.transitions.cleaned_data["initial_status"],
            "transitions": self.transitions.transitions(base.get("transitions") or {}),
            "sla": self.sla.sla(),
            "routing": self.routing.routing(),
            "targeting": self.targeting.targeting([f.condition() for f in self.conditions.kept_forms()]),
        }

    def place(self, errors: dict[str, list[str]], warnings: dict[str, list[str]]) -> None:
        """Put a check's messages next to the fields they name; the rest stay in `other_*`."""
        for path, messages in errors.items():
            target = self._target(path)
            if target is None:
                self.other_errors[path] = messages
            else:
                form, name = target
                form.add_error(name if name in form.fields else None, messages)
        for path, messages in warnings.items():
            target = self._target(path)
            if target is None:
                self.other_warnings[path] = messages
            else:
                form, name = target
                form.warnings = {**getattr(form, "warnings", {})}
                form.warnings.setdefault(name, []).extend(messages)

    def _target(self, path: str) -> tuple[forms.Form, str | None] | None:
        parts = path.split(".")
        head, rest = parts[0], parts[1:]
        if head == "fields_schema" and len(rest) >= 2 and rest[0] == "properties":
            for form in self.fields.kept_forms():
                if form.cleaned_data.get("name") == rest[1]:
                    key = rest[2] if len(rest) > 2 else None
                    names = {"enum": "choices", "minLength": "min_length", "maxLength": "max_length",
                             "description": "description", "type": "type", "minimum": "minimum",
                             "maximum": "maximum"}
                    return form, names.get(key) if key else None
            return None
        if head in ("initial_status", "transitions"):
            return self.transitions, "initial_status" if head == "initial_status" else None
        if head == "sla" and rest and rest[0] in self.sla.fields:
            return self.sla, rest[0]
        if head == "routing" and rest:
            if rest[0] == "channel_weights":
                return self.routing, channel_name(rest[1]) if len(rest) > 1 else None
            if rest[0] == "priority_weights":
                return self.routing, priority_name(rest[1]) if len(rest) > 1 else None
            if rest[0] in self.routing.fields:
                return self.routing, rest[0]
            return self.routing, None
        if head == "targeting" and rest:
            if rest[0] == "conditions" and len(rest) > 1 and rest[1].isdigit():
                kept = self.conditions.kept_forms()
                index = int(rest[1])
                if index < len(kept):
                    return kept[index], rest[2] if len(rest) > 2 else None
                return None
            if rest[0] == "experiment":
                name = "treatment_percent" if rest[-1] == "treatment_percent" else "experiment_name"
                return self.targeting, name
            if rest[0] in self.targeting.fields:
                return self.targeting, rest[0]
        return None


def field_warnings(form: forms.Form, name: str) -> list[str]:
    return getattr(form, "warnings", {}).get(name, [])


def rows(form: forms.Form, names: list[str] | None = None) -> list[tuple[Any, list[str]]]:
    """(bound field, its warnings) pairs for the template, which cannot look a dict up by name."""
    return [(form[name], field_warnings(form, name)) for name in (names or list(form.fields))]
