"""JSON output constrained by a JSON schema: the schema compiled to a byte-level pushdown matcher.

`JsonGrammar.from_schema(schema)` (or `JsonGrammar.json_object()`, any JSON object) compiles the
schema; `g.start()` is the state before any output; `state.advance(b"...")` is the state after
those bytes, or None when no document of the schema starts that way; `state.is_accepting()` says
whether the bytes so far are a whole document. Every state the matcher reaches can still be
completed to a valid document (no dead ends), so a sampler that only picks allowed tokens
(wgllm.grammar_mask) always ends with output that parses and validates. web/src/grammar.ts is a
port with the same behaviour; tests/data/grammar_vectors.json holds the vectors both must pass.

What the output looks like (a subset of the JSON each schema allows; every document it accepts
validates against the schema):
- Whitespace: at most `max_whitespace` (default 20) bytes of space, tab, CR or LF in each gap
  between tokens (before the document, around ':' and ',', inside brackets); none after the
  document, so generation ends as soon as the value is complete. The bound stops a model from
  filling the context with whitespace, and lets a pretty-printed document through.
- Strings are spelled canonically, as JSON.stringify and json.dumps(ensure_ascii=False) write
  them: UTF-8 as is, escapes only for '"', '\\' and control characters (\\b \\f \\n \\r \\t, the other
  controls as \\u00xx in lower case). Every string can be written, and only one way, which keeps
  object keys comparable byte by byte. UTF-8 is checked byte by byte (no overlong forms, no
  surrogates), so a token may end in the middle of a character.
- Numbers: JSON's grammar, with at most 19 integer digits, 16 fraction digits and 2 exponent
  digits (so no value overflows to infinity); "integer" has no fraction or exponent.
- enum and const values are spelled canonically too: JSON.stringify's compact form, numbers as
  JavaScript's Number#toString writes them (1.0 as 1, 1e-7, 1e+21).
- Objects: the listed properties in any order, each at most once; '}' only after every required
  one. additionalProperties false, or absent while `properties` is given (OpenAI's strict rule),
  produces no other keys; true or a schema lets other keys through (their values follow that
  schema); an object schema without `properties` takes any keys. Optional properties are allowed
  (OpenAI's strict mode would list them in `required`; here they may be left out).
- Nesting deeper than `max_depth` (default 16) objects and arrays is never started: it bounds
  recursive $ref schemas and any-JSON values. A schema that needs more is an error.
- `format` is an annotation (JSON Schema's default): any string is produced.

Supported keywords: type (a name or a list), enum, const, anyOf, allOf with one schema, $ref to
"#" or "#/..." with $defs/definitions, properties, required, additionalProperties, items,
minItems, maxItems, uniqueItems: false, minLength, maxLength, format; annotations (title,
description, default, examples, $schema, $id, $comment, deprecated, readOnly, writeOnly) are
ignored. Any other keyword (pattern, minimum, oneOf, not, prefixItems, ...) is a SchemaError
naming its path, unless strict=False: then it is ignored and the output follows the rest of the
schema only. A schema with no type takes the types its keywords imply (properties: object, items:
array, minLength: string), or any value.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

INF = 1 << 30
WHITESPACE = frozenset(b" \t\n\r")
MAX_INT_DIGITS, MAX_FRAC_DIGITS, MAX_EXP_DIGITS = 19, 16, 2

# node kinds
ANY_OF, OBJECT, ARRAY, STRING, NUMBER, LITERAL = range(6)
# frame kinds: the bottom frame R (the document is done), a value to start V, an object O and the
# key K it is reading, an array A, a string S, a number N, a literal (enum/const/true/...) L
R, V, O, K, A, S, N, L = range(8)
O_OPEN, O_COLON, O_AFTER, O_COMMA = range(4)  # after '{', after a key, after a value, after ','
A_OPEN, A_AFTER, A_COMMA = range(3)  # after '[', after an item, after ','
# string lexer states: NORMAL, within an escape, then UTF-8 continuations still to come
# (C2_E0 / C2_ED / C3_F0 / C3_F4: the first continuation byte has a narrower range)
NORMAL, ESC, U0, U1, U2, U3_0, U3_1, C1, C2, C2_E0, C2_ED, C3, C3_F0, C3_F4 = range(14)
UTF8_LEX = (NORMAL, C1, C2, C2_E0, C2_ED, C3, C3_F0, C3_F4)  # the states plain bytes move between
# number lexer states; ZERO, INT, FRAC, EXP are complete numbers
N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP = range(8)
N_FINAL = frozenset((N_ZERO, N_INT, N_FRAC, N_EXP))

SIMPLE_ESCAPES = frozenset(b'"\\bfnrt')
HEX_LOWER = frozenset(b"0123456789abcdef")
U3_0_LAST = frozenset(b"01234567bef")  # \u000X for the controls without a short escape
TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
ANNOTATIONS = frozenset(("title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly"))
SUPPORTED = frozenset((
    "type", "enum", "const", "anyOf", "allOf", "$ref", "$defs", "definitions", "properties", "required",
    "additionalProperties", "items", "minItems", "maxItems", "uniqueItems", "minLength", "maxLength", "format",
))
OBJECT_WORDS, ARRAY_WORDS, STRING_WORDS = ("properties", "required", "additionalProperties"), ("items", "minItems", "maxItems"), ("minLength", "maxLength", "format")


class SchemaError(ValueError):
    """An invalid or unsupported schema. `path` is the JSON pointer of the field ('#/properties/a/type')."""

    def __init__(self, path: str, message: str):
        super().__init__(f"JSON schema {path}: {message}")
        self.path = path


def js_number(x: int | float) -> str:
    """JavaScript's Number#toString of x (what JSON.stringify writes), for enum and const values."""
    if isinstance(x, int) and abs(x) < 10**21:
        return str(x)
    x = float(x)
    if x == 0:
        return "0"
    sign, digits, exp = Decimal(repr(abs(x))).normalize().as_tuple()  # repr: the shortest round trip
    d = "".join(map(str, digits))
    k, n = len(d), len(d) + exp  # ECMAScript's k digits and decimal point position n
    s = "-" if x < 0 else ""
    if k <= n <= 21:
        return s + d + "0" * (n - k)
    if 0 < n <= 21:
        return s + d[:n] + "." + d[n:]
    if -6 < n <= 0:
        return s + "0." + "0" * -n + d
    e = n - 1
    return s + d[0] + ("." + d[1:] if k > 1 else "") + "e" + ("+" if e > 0 else "-") + str(abs(e))


def canonical_json(value: Any, path: str) -> bytes:
    """The one spelling of `value` the grammar produces: JSON.stringify's (compact, UTF-8)."""
    def text(v: Any) -> str:
        if v is None or isinstance(v, bool):
            return json.dumps(v)
        if isinstance(v, (int, float)):
            if isinstance(v, float) and not math.isfinite(v):
                raise SchemaError(path, f"{v} is not a JSON number")
            return js_number(v)
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)
        if isinstance(v, list):
            return "[" + ",".join(map(text, v)) + "]"
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + text(x) for k, x in v.items()) + "}"
        raise SchemaError(path, f"{v!r} is not a JSON value")
    try:
        return text(value).encode("utf-8")
    except UnicodeEncodeError:
        raise SchemaError(path, "a string holds a lone surrogate, which UTF-8 cannot encode") from None


def _type_matches(value: Any, t: str) -> bool:
    if t == "null":
        return value is None
    if t == "boolean":
        return isinstance(value, bool)
    if t in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return t == "number" or float(value).is_integer()
    return isinstance(value, {"string": str, "array": list, "object": dict}[t])


class _Node:
    __slots__ = ("kind", "children", "leaves", "props", "key_encs", "required", "additional", "item", "min", "max",
                 "integer", "literals", "prefixes", "extendable", "depth")

    def __init__(self, kind: int, **fields):
        self.kind, self.children, self.leaves, self.props, self.key_encs = kind, (), (), {}, ()
        self.required, self.additional, self.item, self.min, self.max = frozenset(), -1, -1, 0, -1
        self.integer, self.literals, self.prefixes, self.extendable, self.depth = False, frozenset(), frozenset(), frozenset(), INF
        for k, v in fields.items():
            setattr(self, k, v)


def _pointer(path: str, key: str | int) -> str:
    return f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"


class _Compiler:
    def __init__(self, root: Any, strict: bool):
        self.root, self.strict = root, strict
        self.nodes: list[_Node] = []
        self.refs: dict[str, int] = {}
        self.any_id = -1

    def add(self, node: _Node) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def any_value(self) -> int:
        """Any JSON value: the any-of of an any-object, an any-array, a string, a number, true/false/null."""
        if self.any_id < 0:
            self.any_id = self.add(_Node(ANY_OF))
            obj = self.add(_Node(OBJECT, additional=self.any_id))
            arr = self.add(_Node(ARRAY, item=self.any_id))
            self.nodes[self.any_id].children = (obj, arr, self.add(_Node(STRING)), self.add(_Node(NUMBER)),
                                                self.literal([b"true", b"false", b"null"]))
        return self.any_id

    def literal(self, values: list[bytes]) -> int:
        lits = frozenset(values)
        prefixes = frozenset(v[:i] for v in lits for i in range(1, len(v) + 1))
        extendable = frozenset(v for v in lits if any(w != v and w.startswith(v) for w in lits))
        return self.add(_Node(LITERAL, literals=lits, prefixes=prefixes, extendable=extendable))

    def fail(self, path: str, message: str) -> SchemaError:
        return SchemaError(path, message)

    def nonneg(self, schema: dict, key: str, path: str) -> int | None:
        v = schema.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise self.fail(_pointer(path, key), f"expected a non-negative integer, got {json.dumps(v)}")
        return v

    def compile(self, schema: Any, path: str) -> int:
        if schema is True or schema == {}:
            return self.any_value()
        if schema is False:
            raise self.fail(path, "the schema false accepts no value")
        if not isinstance(schema, dict):
            raise self.fail(path, f"expected a schema (an object or a boolean), got {json.dumps(schema)[:60]}")
        for key in schema:
            if key not in SUPPORTED and key not in ANNOTATIONS and self.strict:
                raise self.fail(_pointer(path, key), f"'{key}' is not supported (supported: {', '.join(sorted(SUPPORTED))})")
        for key in ("$defs", "definitions"):
            if key in schema and not isinstance(schema[key], dict):
                raise self.fail(_pointer(path, key), "expected an object mapping names to schemas")
        if schema.get("uniqueItems", False) is not False:
            raise self.fail(_pointer(path, "uniqueItems"), "only uniqueItems: false is supported")
        if "format" in schema and not isinstance(schema["format"], str):
            raise self.fail(_pointer(path, "format"), "expected a string")
        combinators = [k for k in ("$ref", "anyOf", "allOf") if k in schema]
        if combinators:
            key = combinators[0]
            others = [k for k in schema if k in SUPPORTED and k not in ("$defs", "definitions", key)]
            if others:
                raise self.fail(_pointer(path, others[0]), f"'{others[0]}' beside '{key}' is not supported")
            return self.combinator(schema, key, _pointer(path, key))
        types = schema.get("type")
        if isinstance(types, str):
            types = [types]
        if types is not None:
            if not isinstance(types, list) or not types or any(t not in TYPES for t in types) or len(set(types)) < len(types):
                raise self.fail(_pointer(path, "type"), f"expected one of {', '.join(TYPES)} or a list of them, got {json.dumps(schema['type'])}")
        if "enum" in schema or "const" in schema:
            return self.enum(schema, types, path)
        if types is None:
            types = [t for t, words in (("object", OBJECT_WORDS), ("array", ARRAY_WORDS), ("string", STRING_WORDS)) if any(w in schema for w in words)]
            if not types:
                return self.any_value()
        ids = [self.typed(schema, t, path) for t in types]
        return ids[0] if len(ids) == 1 else self.add(_Node(ANY_OF, children=tuple(ids)))

    def combinator(self, schema: dict, key: str, path: str) -> int:
        value = schema[key]
        if key == "$ref":
            if not isinstance(value, str) or not value.startswith("#"):
                raise self.fail(path, f"only local references ('#' or '#/...') are supported, got {json.dumps(value)}")
            if value not in self.refs:
                self.refs[value] = node = self.add(_Node(ANY_OF))
                self.nodes[node].children = (self.compile(self.resolve(value, path), value),)
            return self.refs[value]
        if not isinstance(value, list) or not value:
            raise self.fail(path, "expected a non-empty array of schemas")
        if key == "allOf":
            if len(value) != 1:
                raise self.fail(path, "allOf is supported with one schema only")
            return self.compile(value[0], _pointer(path, 0))
        return self.add(_Node(ANY_OF, children=tuple(self.compile(s, _pointer(path, i)) for i, s in enumerate(value))))

    def resolve(self, ref: str, path: str) -> Any:
        target = self.root
        for part in ref[1:].split("/")[1:] if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                raise self.fail(path, f"{ref} points to nothing in this schema")
        return target

    def enum(self, schema: dict, types: list[str] | None, path: str) -> int:
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise self.fail(_pointer(path, "enum"), "expected a non-empty array")
            where = [_pointer(_pointer(path, "enum"), i) for i in range(len(values))]
        if "const" in schema:
            if "enum" in schema and canonical_json(schema["const"], "#") not in [canonical_json(v, "#") for v in values]:
                raise self.fail(_pointer(path, "const"), "the const value is not one of the enum values")
            values, where = [schema["const"]], [_pointer(path, "const")]
        out = []
        for v, at in zip(values, where):
            if types is not None and not any(_type_matches(v, t) for t in types):
                raise self.fail(at, f"{json.dumps(v)[:60]} is not of type {' or '.join(types)}")
            out.append(canonical_json(v, at))
        return self.literal(out)

    def typed(self, schema: dict, t: str, path: str) -> int:
        if t in ("boolean", "null"):
            return self.literal([b"true", b"false"] if t == "boolean" else [b"null"])
        if t in ("number", "integer"):
            return self.add(_Node(NUMBER, integer=t == "integer"))
        if t == "string":
            lo, hi = self.nonneg(schema, "minLength", path) or 0, self.nonneg(schema, "maxLength", path)
            if hi is not None and lo > hi:
                raise self.fail(_pointer(path, "minLength"), f"minLength {lo} is more than maxLength {hi}")
            return self.add(_Node(STRING, min=lo, max=-1 if hi is None else hi))
        if t == "array":
            lo, hi = self.nonneg(schema, "minItems", path) or 0, self.nonneg(schema, "maxItems", path)
            if hi is not None and lo > hi:
                raise self.fail(_pointer(path, "minItems"), f"minItems {lo} is more than maxItems {hi}")
            items = schema.get("items", True)
            if items is False:
                if lo:
                    raise self.fail(_pointer(path, "minItems"), "minItems > 0 with items: false")
                hi = 0
            node = self.add(_Node(ARRAY, min=lo, max=-1 if hi is None else hi))
            self.nodes[node].item = self.any_value() if items is False else self.compile(items, _pointer(path, "items"))
            return node
        return self.object(schema, path)

    def object(self, schema: dict, path: str) -> int:
        props = schema.get("properties")
        if props is not None and not isinstance(props, dict):
            raise self.fail(_pointer(path, "properties"), "expected an object mapping names to schemas")
        required = schema.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required) or len(set(required)) < len(required):
            raise self.fail(_pointer(path, "required"), "expected an array of distinct property names")
        extra = schema.get("additionalProperties", props is None)
        if extra is not True and extra is not False and not isinstance(extra, dict):
            raise self.fail(_pointer(path, "additionalProperties"), "expected a boolean or a schema")
        props = props or {}
        for name in required:
            if name not in props:
                raise self.fail(_pointer(path, "required"), f"required property '{name}' is not in properties")
        node = self.add(_Node(OBJECT))
        compiled = {canonical_json(k, path)[1:-1]: self.compile(s, _pointer(_pointer(path, "properties"), k)) for k, s in props.items()}
        n = self.nodes[node]
        n.props = compiled
        n.key_encs = tuple((k + b'"', k) for k in compiled)
        n.required = frozenset(canonical_json(r, path)[1:-1] for r in required)
        if extra is not False:
            n.additional = self.compile(extra, _pointer(path, "additionalProperties"))
        return node

    def finish(self, root: int, max_depth: int) -> None:
        nodes = self.nodes
        for i, node in enumerate(nodes):  # the non-any-of nodes a node stands for, first seen first
            seen, order, todo = set(), [], [i]
            while todo:
                j = todo.pop()
                if j in seen:
                    continue
                seen.add(j)
                if nodes[j].kind == ANY_OF:
                    todo.extend(reversed(nodes[j].children))
                else:
                    order.append(j)
            node.leaves = tuple(order)
        # the least nesting of objects and arrays a value of each node needs (INF: none can be finished)
        changed = True
        while changed:
            changed = False
            for node in nodes:
                if node.kind == ANY_OF:
                    d = min((nodes[c].depth for c in node.children), default=INF)
                elif node.kind == OBJECT:
                    d = 1 + max((nodes[node.props[k]].depth for k in node.required), default=0)
                elif node.kind == ARRAY:
                    d = 1 + (nodes[node.item].depth if node.min else 0)
                else:
                    d = 0
                d = min(d, INF)
                if d < node.depth:
                    node.depth, changed = d, True
        if nodes[root].depth >= INF:
            raise SchemaError("#", "no finite document satisfies the schema (every way through it recurses)")
        if nodes[root].depth > max_depth:
            raise SchemaError("#", f"a document needs {nodes[root].depth} levels of nesting, more than max_depth={max_depth}")


class JsonGrammar:
    """A compiled schema. States are immutable: a state is a frozenset of stacks (tuples of frames)."""

    def __init__(self, nodes: list[_Node], root: int, max_depth: int, max_whitespace: int):
        self.nodes, self.root, self.max_depth, self.max_whitespace = nodes, root, max_depth, max_whitespace

    @classmethod
    def from_schema(cls, schema: Any, *, strict: bool = True, max_depth: int = 16, max_whitespace: int = 20) -> "JsonGrammar":
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
            raise ValueError(f"max_depth must be a positive integer, got {max_depth!r}")
        if isinstance(max_whitespace, bool) or not isinstance(max_whitespace, int) or max_whitespace < 0:
            raise ValueError(f"max_whitespace must be a non-negative integer, got {max_whitespace!r}")
        c = _Compiler(schema, strict)
        root = c.compile(schema, "#")
        c.finish(root, max_depth)
        return cls(c.nodes, root, max_depth, max_whitespace)

    @classmethod
    def json_object(cls, **options) -> "JsonGrammar":
        """response_format {"type": "json_object"}: any JSON object."""
        return cls.from_schema({"type": "object"}, **options)

    def start(self) -> "GrammarState":
        return GrammarState(self, frozenset([((R,), (V, self.root, 0))]))

    # -- the matcher: one byte on one stack -> the stacks it can become ----------------------------
    def step(self, stack: tuple, b: int) -> list[tuple]:
        top = stack[-1]
        return _STEPS[top[0]](self, stack, top, b)

    def accepting(self, stack: tuple) -> bool:
        if len(stack) == 1:
            return True
        if len(stack) != 2:
            return False
        top = stack[1]
        return (top[0] == N and top[2] in N_FINAL) or (top[0] == L and top[2] in self.nodes[top[1]].literals)

    def _depth(self, stack: tuple) -> int:
        return sum(1 for f in stack if f[0] == O or f[0] == A)

    def _fits(self, node: int, level: int) -> bool:
        return level + self.nodes[node].depth <= self.max_depth

    def _value(self, stack, top, b):
        _, node, ws = top
        base = stack[:-1]
        if b in WHITESPACE:
            return [base + ((V, node, ws + 1),)] if ws < self.max_whitespace else []
        out, level = [], self._depth(base)
        for leaf in self.nodes[node].leaves:
            n = self.nodes[leaf]
            if level + n.depth > self.max_depth:
                continue
            kind = n.kind
            if kind == OBJECT and b == 0x7B:
                out.append(base + ((O, leaf, O_OPEN, frozenset(), 0, None),))
            elif kind == ARRAY and b == 0x5B:
                out.append(base + ((A, leaf, A_OPEN, 0, 0),))
            elif kind == STRING and b == 0x22:
                out.append(base + ((S, leaf, NORMAL, 0),))
            elif kind == NUMBER and (b == 0x2D or 0x30 <= b <= 0x39):
                out.append(base + ((N, leaf, N_MINUS if b == 0x2D else N_ZERO if b == 0x30 else N_INT, 0 if b == 0x2D else 1),))
            elif kind == LITERAL:
                out += self._literal_to(base, leaf, n, bytes([b]))
        return out

    def _literal_to(self, base, node, n, raw):
        if raw not in n.prefixes:
            return []
        if raw in n.literals and raw not in n.extendable:
            return [base]  # complete: the parent takes over
        return [base + ((L, node, raw),)]

    def _literal(self, stack, top, b):
        n = self.nodes[top[1]]
        out = self._literal_to(stack[:-1], top[1], n, top[2] + bytes([b]))
        if not out and top[2] in n.literals:  # a complete literal another one extends: ends here
            return self.step(stack[:-1], b)
        return out

    def _number(self, stack, top, b):
        _, node, st, nd = top
        digit = 0x30 <= b <= 0x39
        real = not self.nodes[node].integer
        new = None
        if st == N_MINUS:
            new = (N_ZERO, 1) if b == 0x30 else (N_INT, 1) if digit else None
        elif st in (N_ZERO, N_INT, N_FRAC) and real and b in (0x65, 0x45):
            new = (N_E, 0)
        elif st in (N_ZERO, N_INT) and real and b == 0x2E:
            new = (N_DOT, 0)
        elif st == N_INT and digit and nd < MAX_INT_DIGITS:
            new = (N_INT, nd + 1)
        elif st in (N_DOT, N_FRAC) and digit and (st == N_DOT or nd < MAX_FRAC_DIGITS):
            new = (N_FRAC, nd + 1)
        elif st == N_E and b in (0x2B, 0x2D):
            new = (N_ESIGN, 0)
        elif st in (N_E, N_ESIGN, N_EXP) and digit and nd < MAX_EXP_DIGITS:
            new = (N_EXP, nd + 1)
        if new is not None:
            return [stack[:-1] + ((N, node, new[0], new[1]),)]
        return self.step(stack[:-1], b) if st in N_FINAL else []

    def _string(self, stack, top, b):
        _, node, lex, nchars = top
        if lex == NORMAL and b == 0x22:
            return [stack[:-1]] if nchars >= self.nodes[node].min else []
        new = _lex(lex, b)
        if new < 0:
            return []
        if lex == NORMAL and not 0x80 <= b <= 0xBF:  # a character (or an escape) begins
            mx = self.nodes[node].max
            if 0 <= mx <= nchars:
                return []
            nchars += 1
        return [stack[:-1] + ((S, node, new, nchars),)]

    def _keys_left(self, n: _Node, seen: frozenset, level: int) -> bool:
        if n.additional >= 0 and self._fits(n.additional, level):
            return True
        return any(k not in seen and self._fits(v, level) for k, v in n.props.items())

    def _object(self, stack, top, b):
        _, node, phase, seen, ws, key = top
        n, base = self.nodes[node], stack[:-1]
        if b in WHITESPACE:
            return [base + ((O, node, phase, seen, ws + 1, key),)] if ws < self.max_whitespace else []
        level = self._depth(stack)
        if phase in (O_OPEN, O_COMMA) and b == 0x22 and self._keys_left(n, seen, level):
            free = n.additional >= 0 and self._fits(n.additional, level)
            return [base + ((O, node, phase, seen, 0, None), (K, node, NORMAL if free else -1, b""))]
        if phase == O_COLON and b == 0x3A:
            child = n.props.get(key, n.additional)
            return [base + ((O, node, O_AFTER, seen | {key}, 0, None), (V, child, 0))]
        if phase == O_AFTER and b == 0x2C and self._keys_left(n, seen, level):
            return [base + ((O, node, O_COMMA, seen, 0, None),)]
        if (phase == O_AFTER or phase == O_OPEN) and b == 0x7D and n.required <= seen:
            return [base]
        return []

    def _key(self, stack, top, b):
        _, node, lex, raw = top
        n, obj = self.nodes[node], stack[-2]
        seen, level = obj[3], self._depth(stack)
        if lex < 0:  # one of the listed keys, spelled canonically
            raw += bytes([b])
            for enc, k in n.key_encs:
                if k not in seen and enc.startswith(raw) and self._fits(n.props[k], level):
                    if raw == enc:
                        return [stack[:-2] + ((O, node, O_COLON, seen, 0, k),)]
                    return [stack[:-1] + ((K, node, lex, raw),)]
            return []
        if lex == NORMAL and b == 0x22:
            if raw in seen or (raw in n.props and not self._fits(n.props[raw], level)):
                return []
            return [stack[:-2] + ((O, node, O_COLON, seen, 0, raw),)]
        new = _lex(lex, b)
        return [stack[:-1] + ((K, node, new, raw + bytes([b])),)] if new >= 0 else []

    def _array(self, stack, top, b):
        _, node, phase, count, ws = top
        n, base = self.nodes[node], stack[:-1]
        if b in WHITESPACE:
            return [base + ((A, node, phase, count, ws + 1),)] if ws < self.max_whitespace else []
        more = (n.max < 0 or count < n.max) and self._fits(n.item, self._depth(stack))
        if b == 0x5D and (phase == A_AFTER or phase == A_OPEN) and count >= n.min:
            return [base]
        if phase == A_AFTER:
            return [base + ((A, node, A_COMMA, count, 0),)] if b == 0x2C and more else []
        if not more:
            return []
        return self.step(base + ((A, node, A_AFTER, count + 1, 0), (V, n.item, 0)), b)

    def _done(self, stack, top, b):
        return []


_STEPS = {R: JsonGrammar._done, V: JsonGrammar._value, O: JsonGrammar._object, K: JsonGrammar._key,
          A: JsonGrammar._array, S: JsonGrammar._string, N: JsonGrammar._number, L: JsonGrammar._literal}
_STEPS = [_STEPS[k] for k in range(8)]


def _lex_table() -> list[list[int]]:
    """The string lexer (canonical spelling, UTF-8 checked): state x byte -> state, -1 rejects.
    NORMAL's '"' (the end) is the caller's."""
    t = [[-1] * 256 for _ in range(14)]
    for b in range(0x20, 0x80):
        t[NORMAL][b] = NORMAL
    t[NORMAL][0x22], t[NORMAL][0x5C] = -1, ESC
    for lo, hi, st in ((0xC2, 0xDF, C1), (0xE0, 0xE0, C2_E0), (0xE1, 0xEC, C2), (0xED, 0xED, C2_ED), (0xEE, 0xEF, C2),
                       (0xF0, 0xF0, C3_F0), (0xF1, 0xF3, C3), (0xF4, 0xF4, C3_F4)):
        for b in range(lo, hi + 1):
            t[NORMAL][b] = st
    for st, lo, hi, nxt in ((C1, 0x80, 0xBF, NORMAL), (C2, 0x80, 0xBF, C1), (C2_E0, 0xA0, 0xBF, C1), (C2_ED, 0x80, 0x9F, C1),
                            (C3, 0x80, 0xBF, C2), (C3_F0, 0x90, 0xBF, C2), (C3_F4, 0x80, 0x8F, C2)):
        for b in range(lo, hi + 1):
            t[st][b] = nxt
    for b in SIMPLE_ESCAPES:
        t[ESC][b] = NORMAL
    t[ESC][0x75], t[U0][0x30], t[U1][0x30], t[U2][0x30], t[U2][0x31] = U0, U1, U2, U3_0, U3_1
    for b in U3_0_LAST:
        t[U3_0][b] = NORMAL
    for b in HEX_LOWER:
        t[U3_1][b] = NORMAL
    return t


LEX = _lex_table()


def _lex(state: int, b: int) -> int:
    return LEX[state][b]


class GrammarState:
    """Where the output stands: every parse (stack of frames) the bytes so far allow."""

    __slots__ = ("grammar", "stacks")

    def __init__(self, grammar: JsonGrammar, stacks: frozenset):
        self.grammar, self.stacks = grammar, stacks

    def advance(self, data: bytes) -> "GrammarState | None":
        """The state after `data`, or None when no valid document continues that way."""
        stacks, step = self.stacks, self.grammar.step
        for b in data:
            nxt = set()
            for s in stacks:
                nxt.update(step(s, b))
            if not nxt:
                return None
            stacks = frozenset(nxt)
        return GrammarState(self.grammar, stacks)

    def is_accepting(self) -> bool:
        """Whether the bytes so far are a whole document (end of generation may come now)."""
        return any(self.grammar.accepting(s) for s in self.stacks)

    def can_continue(self) -> bool:
        """Whether any byte may follow (False: only the end of generation may come)."""
        step = self.grammar.step
        return any(step(s, b) for s in self.stacks for b in range(256))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GrammarState) and self.grammar is other.grammar and self.stacks == other.stacks

    def __hash__(self) -> int:
        return hash(self.stacks)


def grammar_for_response_format(response_format: Any, **options) -> JsonGrammar | None:
    """OpenAI's response_format: None or {"type": "text"} -> None; {"type": "json_object"};
    {"type": "json_schema", "json_schema": {"schema": ..., "strict": bool}}. Errors name the field."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict) or response_format.get("type") not in ("text", "json_object", "json_schema"):
        raise SchemaError("response_format", 'expected {"type": "text" | "json_object" | "json_schema", ...}')
    kind = response_format["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return JsonGrammar.json_object(**options)
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or "schema" not in spec:
        raise SchemaError("response_format.json_schema", 'expected {"name": ..., "schema": {...}, "strict": true}')
    strict = spec.get("strict", False)
    if not isinstance(strict, bool):
        raise SchemaError("response_format.json_schema.strict", f"expected a boolean, got {json.dumps(strict)}")
    return JsonGrammar.from_schema(spec["schema"], strict=strict, **options)
