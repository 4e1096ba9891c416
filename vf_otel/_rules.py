"""Mapping rules: events from spans and log records nobody tagged (docs/rules.md).

A ``Rule`` is a value: what to match (span name, kind, status, log body, attribute
conditions), the event name as a template over attributes, where the user is, and
the properties to copy (an explicit allow-list). ``load_rules`` reads them from a
TOML file (or a YAML one, with PyYAML). Both check everything at load and raise
``ValueError`` naming the rule and the field, so a typo never silently turns a rule off.

``RuleSet`` is the compiled form the exporters (and the relay) apply, through
``translate_span`` / ``translate_log``, to spans and records with no ``vf.*`` tag.
It indexes rules by span name (log body) and by the value of one equality condition
(``http.route`` first): a span that no rule names costs a dictionary lookup for its
name and one per indexed attribute, plus the rules with nothing to index. The first
rule that matches, in the order given, makes the one event. Nothing here imports the
OpenTelemetry SDK (the logging handler's settings import this module).
"""

from __future__ import annotations

import heapq
import os
import re
import string
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from types import SimpleNamespace
from typing import Any, Final, Literal

__all__ = [
    "DEFAULT_USER_KEYS",
    "Rule",
    "RuleMatch",
    "RuleSet",
    "load_rules",
    "rules_option",
]

#: Where a rule looks for the user, in order, unless it says otherwise: the
#: OpenTelemetry semantic conventions (``enduser.id``, deprecated for ``user.id``),
#: then the user ``vf_otel.user(...)`` put in the context (VibefollowUserSpanProcessor).
DEFAULT_USER_KEYS: Final = ("enduser.id", "user.id", "vf.context_user")
#: Template names that are not attributes: the span's name, the log record's body.
SPAN_NAME_FIELD: Final = "span.name"
LOG_BODY_FIELD: Final = "log.body"
SPAN_KINDS: Final = ("internal", "server", "client", "producer", "consumer")
SPAN_STATUSES: Final = ("unset", "ok", "error")
SIGNALS: Final = ("span", "log")
#: An attribute condition written as a status class: "2xx" matches 200 to 299.
_STATUS_CLASS: Final = re.compile(r"[1-5]xx")
_CONDITION_KEYS: Final = frozenset({"prefix", "min", "max", "exists", "not"})
_FILE_KEYS: Final = frozenset({"user", "rule"})
_FORMATTER: Final = string.Formatter()

Scalar = str | int | float | bool
_Predicate = Callable[[object], bool]


class _Invalid(Exception):  # noqa: N818 - internal: always re-raised as a ValueError
    """A rule field is wrong; the message is ``field: problem``. Re-raised as a plain
    ValueError that names the rule (and, from a file, the file and rule number)."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One mapping rule: which untagged spans (or log records) become which event.

    All the given conditions must hold; an attribute the template names must be
    present. ``where`` maps an attribute to a condition: a value (equal to it), a
    list (one of them), a status class such as ``"2xx"`` (an int from 200 to 299), or
    a table of ``prefix`` / ``min`` / ``max`` / ``exists`` / ``not``. ``properties``
    lists the attributes copied into the event, under the same names (or a mapping
    ``{property: attribute}`` to rename them); nothing else is copied. Invalid fields
    raise ``ValueError`` naming the rule and the field.
    """

    event: str
    """The event name; ``{attribute}`` placeholders, ``{span.name}``, ``{log.body}``."""
    name: str | None = None
    """What errors and ``vf-otel rules test`` call the rule (default: its event)."""
    signal: Literal["span", "log"] = "span"
    """What the rule reads: finished spans, or OpenTelemetry log records."""
    span_name: str | Sequence[str] | None = None
    """The span's name, or one of several (span rules)."""
    kind: str | Sequence[str] | None = None
    """The span kind: ``server``, ``client``, ``internal``, ``producer``, ``consumer``."""
    status: str | Sequence[str] | None = None
    """``unset``, ``ok``, ``error`` (or a list); if not given, ERROR spans match only
    with the exporter's ``include_error_spans``."""
    body: str | Sequence[str] | None = None
    """The log record's body, or one of several (log rules)."""
    where: Mapping[str, Any] = field(default_factory=dict)
    """Attribute conditions, all of which must hold."""
    user: Sequence[str] = DEFAULT_USER_KEYS
    """Attributes holding the user id, tried in order."""
    properties: Sequence[str] | Mapping[str, str] = ()
    """The attributes copied into the event's properties (an allow-list)."""

    def __post_init__(self) -> None:
        try:
            _check_rule(self)
        except _Invalid as exc:
            raise ValueError(f"rule {self.label!r}: {exc}") from None

    def __hash__(self) -> int:
        # A value: hashable although ``where`` and ``properties`` may be dicts.
        return hash((self.event, self.name, self.signal, self.span_name, self.kind))

    @property
    def label(self) -> str:
        """The rule's name, or its event template when it has none."""
        return self.name if isinstance(self.name, str) and self.name else str(self.event)


# -- checks -------------------------------------------------------------------------


def _check_rule(rule: Any) -> None:
    """Check a Rule's fields (or a namespace of them) and normalise them in place."""
    set_ = object.__setattr__  # normalising a frozen value in its own constructor
    if not isinstance(rule.event, str) or not rule.event.strip():
        raise _Invalid("event", "must be a non-empty string")
    _template_fields(rule.event)
    if rule.name is not None and (not isinstance(rule.name, str) or not rule.name):
        raise _Invalid("name", "must be a non-empty string")
    if rule.signal not in SIGNALS:
        raise _Invalid("signal", f"must be one of {', '.join(SIGNALS)}")
    set_(rule, "span_name", _choices("span_name", rule.span_name, None))
    set_(rule, "kind", _choices("kind", rule.kind, SPAN_KINDS))
    set_(rule, "status", _choices("status", rule.status, SPAN_STATUSES))
    set_(rule, "body", _choices("body", rule.body, None))
    misplaced = ("body",) if rule.signal == "span" else ("span_name", "kind", "status")
    for name in misplaced:
        if getattr(rule, name) is not None:
            raise _Invalid(name, f"does not apply to signal = {rule.signal!r}")
    if not isinstance(rule.where, Mapping):
        raise _Invalid("where", "must be a table of attribute = condition")
    for key, condition in rule.where.items():
        _predicate(key, condition)
    set_(rule, "where", dict(rule.where))
    set_(rule, "user", _names("user", rule.user, allow_empty=False))
    set_(rule, "properties", _properties(rule.properties))


def _choices(name: str, value: object, allowed: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """None, or one string or a list of them (each one of ``allowed``), as a tuple."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise _Invalid(name, "must be a string or a non-empty list of strings")
    for item in items:
        if not isinstance(item, str) or (allowed is not None and item not in allowed):
            wanted = f"one of {', '.join(allowed)}" if allowed else "a string"
            raise _Invalid(name, f"each value must be {wanted}")
    return tuple(items)


def _names(name: str, value: object, *, allow_empty: bool) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    ok = isinstance(items, list | tuple) and all(isinstance(i, str) and i for i in items)
    if not ok or (not allow_empty and not items):
        raise _Invalid(name, "must be a list of attribute names")
    return tuple(items)  # type: ignore[arg-type]


def _properties(value: object) -> tuple[str, ...] | dict[str, str]:
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items()):
            raise _Invalid("properties", "must map property names to attribute names")
        return dict(value)
    return _names("properties", value, allow_empty=True)


def _template_fields(template: str) -> tuple[str, ...]:
    """The attributes an event template names; checks its syntax."""
    names: list[str] = []
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise _Invalid("event", f"bad template ({exc}); write {{{{ for a literal brace") from None
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name or spec or conversion:
            raise _Invalid("event", "a placeholder is {attribute}, with no format or conversion")
        names.append(name)
    return tuple(names)


def _predicate(key: object, condition: object) -> _Predicate:
    """The test ``where[key] = condition`` stands for; raises _Invalid naming the key."""
    where = f"where[{key!r}]"
    if not isinstance(key, str) or not key:
        raise _Invalid("where", "attribute names must be non-empty strings")
    if isinstance(condition, Mapping):
        return _table_predicate(key, condition)
    if isinstance(condition, list | tuple):
        if not condition:
            raise _Invalid(where, "an empty list matches nothing")
        tests = [_value_predicate(where, item) for item in condition]
        return lambda value: any(test(value) for test in tests)
    return _value_predicate(where, condition)


def _value_predicate(where: str, expected: object) -> _Predicate:
    if isinstance(expected, str) and _STATUS_CLASS.fullmatch(expected):
        low = int(expected[0]) * 100
        return lambda value: value == expected or (_is_number(value) and low <= value < low + 100)  # type: ignore[operator]
    if not isinstance(expected, Scalar):
        raise _Invalid(where, "a value must be a string, number or boolean")
    is_bool = isinstance(expected, bool)
    # True == 1 in Python; an attribute's bool and int are different values here.
    return lambda value: value == expected and isinstance(value, bool) is is_bool


def _table_predicate(key: str, table: Mapping[Any, Any]) -> _Predicate:
    where = f"where[{key!r}]"
    unknown = set(table) - _CONDITION_KEYS
    if unknown or not table:
        raise _Invalid(where, f"a condition table takes {', '.join(sorted(_CONDITION_KEYS))}")
    tests: list[_Predicate] = []
    if "exists" in table:
        present = table["exists"]
        if not isinstance(present, bool):
            raise _Invalid(f"{where}.exists", "must be true or false")
        tests.append(lambda value: (value is not None) is present)
    if "prefix" in table:
        prefix = table["prefix"]
        if not isinstance(prefix, str):
            raise _Invalid(f"{where}.prefix", "must be a string")
        tests.append(lambda value: isinstance(value, str) and value.startswith(prefix))
    for bound in ("min", "max"):
        if bound in table:
            tests.append(_bound_predicate(f"{where}.{bound}", table[bound], bound == "min"))
    if "not" in table:
        negated = _predicate(key, table["not"])
        tests.append(lambda value: value is not None and not negated(value))
    if len(tests) == 1:  # the usual table: one test, no loop around it
        return tests[0]
    return lambda value: all(test(value) for test in tests)


def _bound_predicate(where: str, limit: object, lower: bool) -> _Predicate:
    if not _is_number(limit):
        raise _Invalid(where, "must be a number")
    if lower:
        return lambda value: _is_number(value) and value >= limit  # type: ignore[operator]
    return lambda value: _is_number(value) and value <= limit  # type: ignore[operator]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- loading ------------------------------------------------------------------------


def load_rules(path: str | os.PathLike[str]) -> tuple[Rule, ...]:
    """The rules of a TOML file: ``[[rule]]`` tables, and an optional top-level ``user``.

    A file named ``*.yaml`` or ``*.yml`` is read as YAML instead (with PyYAML: ``pip
    install 'vf-otel[yaml]'``), the same keys: ``user`` and a ``rule`` list of mappings.
    Raises ``ValueError`` naming the file, the rule (its number from 1, and name) and
    the field for anything wrong; a file that cannot be read is a ``ValueError`` too.
    """
    where = os.fspath(path)
    if where.lower().endswith(_YAML_SUFFIXES):
        return rules_from_mapping(_load_yaml(where), source=where)
    try:
        with open(where, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ValueError(f"{where}: cannot read the rules ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: not valid TOML ({exc})") from None
    return rules_from_mapping(data, source=where)


_YAML_SUFFIXES: Final = (".yaml", ".yml")


def _load_yaml(where: str) -> Mapping[str, Any]:
    """A YAML rules file's top-level mapping (an empty file is no rules)."""
    try:
        import yaml  # noqa: PLC0415 - optional: only YAML rules files need PyYAML
    except ImportError:
        raise ValueError(
            f"{where}: YAML rules need PyYAML: pip install 'vf-otel[yaml]' (or write TOML)"
        ) from None
    try:
        with open(where, "rb") as file:
            # SafeLoader: plain data only, never a Python object a file could name
            data = yaml.load(file, Loader=_unique_keys_loader(yaml))  # noqa: S506
    except OSError as exc:
        raise ValueError(f"{where}: cannot read the rules ({exc.strerror or exc})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping) or not all(isinstance(key, str) for key in data):
        raise ValueError(f"{where}: a rules file is a mapping of 'user' and a 'rule' list")
    return data


def _unique_keys_loader(yaml: Any) -> Any:
    """PyYAML's SafeLoader refusing a key given twice in one mapping, as TOML does
    (YAML keeps the last one: a rule's ``event`` written twice would change silently)."""

    class UniqueKeys(yaml.SafeLoader):  # type: ignore[misc]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[object] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    again = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: SafeLoader says so itself
                    break
                if again:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} is given twice", key_node.start_mark
                    )
            return super().construct_mapping(node, deep=deep)

    return UniqueKeys


def rules_from_mapping(data: Mapping[str, Any], *, source: str) -> tuple[Rule, ...]:
    """Rules from a parsed rules file (``source`` names it in errors)."""
    unknown = sorted(set(data) - _FILE_KEYS, key=str)
    if unknown:
        raise ValueError(f"{source}: unknown top-level key {unknown[0]!r} (expected [[rule]])")
    try:
        user = _names("user", data.get("user", DEFAULT_USER_KEYS), allow_empty=False)
    except _Invalid as exc:
        raise ValueError(f"{source}: {exc}") from None
    tables = data.get("rule", [])
    if not isinstance(tables, list) or not all(isinstance(t, Mapping) for t in tables):
        raise ValueError(f"{source}: rules are [[rule]] tables")
    return tuple(_rule_from_table(table, i, source, user) for i, table in enumerate(tables, 1))


_RULE_FIELDS: Final = frozenset(f.name for f in fields(Rule))
_FIELD_DEFAULTS: Final[Mapping[str, Any]] = {
    f.name: f.default for f in fields(Rule) if f.default is not MISSING
} | {"where": {}}


def _rule_from_table(
    table: Mapping[str, Any], number: int, source: str, user: tuple[str, ...]
) -> Rule:
    name = table.get("name")
    label = f"rule {number}" + (f" ({name})" if isinstance(name, str) and name else "")
    unknown = sorted(set(table) - _RULE_FIELDS, key=str)
    if unknown:
        raise ValueError(f"{source}: {label}: unknown field {unknown[0]!r}")
    if "event" not in table:
        raise ValueError(f"{source}: {label}: event: is required")
    values = {"user": user, **table}
    try:  # checked before it is built, to word the error with the file and rule number
        _check_rule(SimpleNamespace(**{**_FIELD_DEFAULTS, **values}))
    except _Invalid as exc:
        raise ValueError(f"{source}: {label}: {exc}") from None
    return Rule(**values)


def rules_option(name: str, value: Any) -> tuple[Rule, ...]:
    """The ``rules`` option's check: a TOML file's path, or a sequence of ``Rule``."""
    if isinstance(value, str | os.PathLike):
        text = os.fspath(value)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{name} must be a rules file path or a list of vf_otel.Rule")
        return load_rules(text)
    if not isinstance(value, list | tuple):
        raise ValueError(f"{name} must be a rules file path or a list of vf_otel.Rule")
    for index, rule in enumerate(value):
        if not isinstance(rule, Rule):
            raise ValueError(f"{name}[{index}] must be a vf_otel.Rule")
    return tuple(value)


# -- matching -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """What a rule made of a span or log record, before it is checked as an event."""

    rule: Rule
    index: int
    """The rule's position in its set, from 0."""
    name: str
    """The event name, the template filled in."""
    user: object
    """The first user attribute set, or None when none is."""
    properties: dict[str, Any]
    """The allow-listed attributes present, by property name."""


class _Compiled:
    """One rule, ready to test: its conditions as predicates, its template parsed."""

    __slots__ = (
        "body",
        "conditions",
        "index",
        "kind",
        "needed",
        "properties",
        "rule",
        "span_name",
        "status",
        "template",
        "user",
    )

    def __init__(self, rule: Rule, index: int) -> None:
        self.rule = rule
        self.index = index
        self.span_name = _frozen(rule.span_name)
        self.kind = _frozen(rule.kind)
        self.status = _frozen(rule.status)
        self.body = _frozen(rule.body)
        self.conditions = tuple((key, _predicate(key, c)) for key, c in rule.where.items())
        self.template = [(lit, name) for lit, name, _, _ in _FORMATTER.parse(rule.event)]
        reserved = (SPAN_NAME_FIELD, LOG_BODY_FIELD)
        self.needed = tuple(n for n in _template_fields(rule.event) if n not in reserved)
        props = rule.properties
        pairs = props.items() if isinstance(props, Mapping) else ((p, p) for p in props)
        self.properties = tuple(pairs)
        self.user = tuple(rule.user)

    def matches(self, attrs: Mapping[str, Any]) -> bool:
        """The attribute conditions hold and the template's attributes are present."""
        for key, test in self.conditions:
            if not test(attrs.get(key)):
                return False
        for name in self.needed:  # noqa: SIM110 - no generator: this runs per span and rule
            if attrs.get(name) is None:
                return False
        return True

    def result(self, attrs: Mapping[str, Any], special: tuple[str, object]) -> RuleMatch:
        parts: list[str] = []
        for literal, name in self.template:
            parts.append(literal)
            if name is not None:
                value = special[1] if name == special[0] else attrs.get(name)
                parts.append(str(value))
        user = next((attrs[k] for k in self.user if attrs.get(k) not in (None, "")), None)
        properties = {prop: attrs[attr] for prop, attr in self.properties if attr in attrs}
        return RuleMatch(self.rule, self.index, "".join(parts), user, properties)


def _frozen(values: Sequence[str] | str | None) -> frozenset[str] | None:
    # Checked fields are tuples by now; a str here would be a bug, not a value.
    return None if values is None or isinstance(values, str) else frozenset(values)


class _Index:
    """Rules of one signal, by span name (or log body), by one attribute's value, or neither.

    A rule goes in one place: under its span names / bodies if it names any, else under
    the values of one equality condition (``http.route`` first), else with the rest,
    which every span or record is tested against. Candidates are re-checked in full.
    """

    __slots__ = ("by_attr", "by_name", "rest")

    def __init__(self) -> None:
        self.by_name: dict[str, list[_Compiled]] = {}
        self.by_attr: dict[str, dict[object, list[_Compiled]]] = {}
        self.rest: list[_Compiled] = []

    def add(self, rule: _Compiled, names: frozenset[str] | None) -> None:
        if names is not None:
            for name in sorted(names):
                self.by_name.setdefault(name, []).append(rule)
            return
        key, values = _index_key(rule.rule.where)
        if key is None:
            self.rest.append(rule)
            return
        table = self.by_attr.setdefault(key, {})
        for value in values:
            table.setdefault(value, []).append(rule)

    def candidates(self, name: object, attrs: Mapping[str, Any]) -> Iterable[_Compiled] | None:
        """The rules that may match, in their order; None when none may (the common case:
        a dictionary lookup for the name and one per indexed attribute)."""
        found: list[list[_Compiled]] = []
        if self.by_name and type(name) is str and name in self.by_name:
            found.append(self.by_name[name])
        for key, table in self.by_attr.items():
            value = attrs.get(key)
            if type(value) in _INDEXABLE and value in table:
                found.append(table[value])
        if self.rest:
            found.append(self.rest)
        if not found:
            return None
        return found[0] if len(found) == 1 else heapq.merge(*found, key=_position)


_INDEXABLE: Final = frozenset({str, int, float, bool})
_PREFERRED_INDEX: Final = "http.route"


def _index_key(where: Mapping[str, Any]) -> tuple[str | None, tuple[object, ...]]:
    """The attribute (and its values) a rule is indexed under: an equality condition."""
    keys = sorted(where, key=lambda key: key != _PREFERRED_INDEX)  # http.route first
    for key in keys:
        condition = where[key]
        values = tuple(condition) if isinstance(condition, list | tuple) else (condition,)
        if all(_indexable(value) for value in values):
            return key, values
    return None, ()


def _indexable(value: object) -> bool:
    # A status class ("2xx") matches many values: not one key.
    if isinstance(value, str):
        return not _STATUS_CLASS.fullmatch(value)
    return type(value) in _INDEXABLE


def _position(rule: _Compiled) -> int:
    return rule.index


class RuleSet:
    """Rules compiled for matching, indexed by span name, log body and attribute values.

    ``match_span`` and ``match_log`` return the first matching rule's result in the
    order the rules were given (one event per span or record), or None. Never raise
    on any attribute value: a condition on a value of another type is simply false.
    """

    __slots__ = ("_logs", "_spans", "rules")

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = tuple(rules)
        self._spans = _Index()
        self._logs = _Index()
        for index, rule in enumerate(self.rules):
            compiled = _Compiled(rule, index)
            if rule.signal == "log":
                self._logs.add(compiled, compiled.body)
            else:
                self._spans.add(compiled, compiled.span_name)

    def __len__(self) -> int:
        return len(self.rules)

    def __repr__(self) -> str:
        return f"<RuleSet of {len(self.rules)} rule(s)>"

    def match_span(
        self,
        span: Any,
        attributes: Mapping[str, Any] | None = None,
        *,
        include_errors: bool = False,
    ) -> RuleMatch | None:
        """The event the first matching span rule makes of a finished span, or None.

        ``span``: an SDK ``ReadableSpan``, or anything with its ``name``, ``attributes``,
        ``status`` and (for rules naming a kind) ``kind``. ``attributes``: the span's,
        when the caller has them already. A rule with no ``status`` skips ERROR spans
        unless ``include_errors``.
        """
        attrs: Mapping[str, Any] = span.attributes or {} if attributes is None else attributes
        candidates = self._spans.candidates(span.name, attrs)
        if candidates is None:
            return None
        status = span.status.status_code.name.lower()
        # A span decoded by the relay may carry no kind: then no rule naming one matches.
        span_kind = getattr(span, "kind", None)
        kind = span_kind.name.lower() if span_kind is not None else None
        for rule in candidates:
            if rule.span_name is not None and span.name not in rule.span_name:
                continue
            if rule.status is None:
                if status == "error" and not include_errors:
                    continue
            elif status not in rule.status:
                continue
            if (rule.kind is None or kind in rule.kind) and rule.matches(attrs):
                return rule.result(attrs, (SPAN_NAME_FIELD, span.name))
        return None

    def match_log(self, body: object, attrs: Mapping[str, Any]) -> RuleMatch | None:
        """The event the first matching log rule makes of a record, or None."""
        candidates = self._logs.candidates(body, attrs)
        if candidates is None:
            return None
        for rule in candidates:
            if rule.body is not None and body not in rule.body:
                continue
            if rule.matches(attrs):
                return rule.result(attrs, (LOG_BODY_FIELD, body))
        return None
