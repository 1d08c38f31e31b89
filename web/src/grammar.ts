// JSON output constrained by a JSON schema: the port of py/wgllm/grammar.py (the schema compiled to
// a byte-level pushdown matcher) and py/wgllm/grammar_mask.py (its mask over a vocabulary). The
// two answer tests/data/grammar_vectors.json alike (tests/grammar_vectors.mjs); what the output
// looks like, which keywords are supported and why is written once, in grammar.py's docstring.
//
//   const g = JsonGrammar.fromSchema(schema);          // or JsonGrammar.jsonObject()
//   const vocab = GrammarVocabulary.fromTokenizer(tokenizer);
//   let state = g.start();
//   const mask = tokenMask(state, vocab);              // Uint8Array (nVocab): 1 = allowed
//   state = state.advance(tokenizer.tokenBytes(id))!;  // null: not a way a document goes on

import { WgllmError } from "./errors";

const INF = 1 << 30;
const MAX_INT_DIGITS = 19, MAX_FRAC_DIGITS = 16, MAX_EXP_DIGITS = 2;
const isWhitespace = (b: number) => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
// node kinds
const ANY_OF = 0, OBJECT = 1, ARRAY = 2, STRING = 3, NUMBER = 4, LITERAL = 5;
// frame kinds (see grammar.py): R done, V value to start, O object, K its key, A array, S string, N number, L literal
const R = 0, V = 1, O = 2, K = 3, A = 4, S = 5, N = 6, L = 7;
const O_OPEN = 0, O_COLON = 1, O_AFTER = 2, O_COMMA = 3;
const A_OPEN = 0, A_AFTER = 1, A_COMMA = 2;
const NORMAL = 0, ESC = 1, U0 = 2, U1 = 3, U2 = 4, U3_0 = 5, U3_1 = 6, C1 = 7, C2 = 8, C2_E0 = 9, C2_ED = 10, C3 = 11, C3_F0 = 12, C3_F4 = 13;
const UTF8_LEX = [NORMAL, C1, C2, C2_E0, C2_ED, C3, C3_F0, C3_F4];
const N_MINUS = 0, N_ZERO = 1, N_INT = 2, N_DOT = 3, N_FRAC = 4, N_E = 5, N_ESIGN = 6, N_EXP = 7;
const isFinalNumber = (st: number) => st === N_ZERO || st === N_INT || st === N_FRAC || st === N_EXP;

const TYPES = ["object", "array", "string", "number", "integer", "boolean", "null"];
const ANNOTATIONS = new Set(["title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly"]);
const SUPPORTED = new Set([
  "type", "enum", "const", "anyOf", "allOf", "$ref", "$defs", "definitions", "properties", "required",
  "additionalProperties", "items", "minItems", "maxItems", "uniqueItems", "minLength", "maxLength", "format",
]);
const SUPPORTED_LIST = [...SUPPORTED].sort().join(", ");
const INFERRED: [string, string[]][] = [
  ["object", ["properties", "required", "additionalProperties"]],
  ["array", ["items", "minItems", "maxItems"]],
  ["string", ["minLength", "maxLength", "format"]],
];

/** An invalid or unsupported schema. `path` is the JSON pointer of the field ('#/properties/a/type'). */
export class SchemaError extends WgllmError {
  constructor(readonly path: string, message: string) {
    super(`JSON schema ${path}: ${message}`);
  }
}

const utf8 = new TextEncoder();
/** bytes as a string of char codes 0-255, the matcher's way of holding bytes */
const binary = (bytes: Uint8Array) => String.fromCharCode(...bytes);
const show = (v: unknown) => (JSON.stringify(v) ?? String(v)).slice(0, 60);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const pointer = (path: string, key: string | number) => `${path}/${String(key).replaceAll("~", "~0").replaceAll("/", "~1")}`;

/** The one spelling of `value` the grammar produces: JSON.stringify's (compact), as UTF-8 in a binary string. */
export function canonicalJson(value: unknown, path: string): string {
  const check = (v: unknown): void => {
    if (typeof v === "number" && !Number.isFinite(v)) throw new SchemaError(path, `${v} is not a JSON number`);
    if (typeof v === "string" && /\p{Cs}/u.test(v)) throw new SchemaError(path, "a string holds a lone surrogate, which UTF-8 cannot encode");
    if (Array.isArray(v)) v.forEach(check);
    else if (isObject(v)) Object.entries(v).forEach(([k, x]) => (check(k), check(x)));
    else if (v !== null && !["string", "number", "boolean"].includes(typeof v)) throw new SchemaError(path, `${String(v)} is not a JSON value`);
  };
  check(value);
  return binary(utf8.encode(JSON.stringify(value)));
}

function typeMatches(v: unknown, t: string): boolean {
  if (t === "null") return v === null;
  if (t === "boolean") return typeof v === "boolean";
  if (t === "number") return typeof v === "number";
  if (t === "integer") return typeof v === "number" && Number.isInteger(v);
  if (t === "string") return typeof v === "string";
  return t === "array" ? Array.isArray(v) : isObject(v);
}

interface GNode {
  kind: number;
  children: number[];
  leaves: number[];
  props: Map<string, number>; // canonical key bytes (no quotes) -> node
  keyEncs: [string, string][]; // [key bytes + '"', key bytes]
  required: string[];
  additional: number;
  item: number;
  min: number;
  max: number;
  integer: boolean;
  literals: Set<string>;
  prefixes: Set<string>;
  extendable: Set<string>;
  depth: number;
}

function newNode(kind: number, fields: Partial<GNode> = {}): GNode {
  return {
    kind, children: [], leaves: [], props: new Map(), keyEncs: [], required: [], additional: -1, item: -1, min: 0, max: -1,
    integer: false, literals: new Set(), prefixes: new Set(), extendable: new Set(), depth: INF, ...fields,
  };
}

class Compiler {
  readonly nodes: GNode[] = [];
  private readonly refs = new Map<string, number>();
  private anyId = -1;

  constructor(private readonly root: unknown, private readonly strict: boolean) {}

  private add(node: GNode): number {
    return this.nodes.push(node) - 1;
  }

  private anyValue(): number {
    if (this.anyId < 0) {
      this.anyId = this.add(newNode(ANY_OF));
      const obj = this.add(newNode(OBJECT, { additional: this.anyId }));
      const arr = this.add(newNode(ARRAY, { item: this.anyId }));
      this.nodes[this.anyId].children = [obj, arr, this.add(newNode(STRING)), this.add(newNode(NUMBER)), this.literal(["true", "false", "null"])];
    }
    return this.anyId;
  }

  private literal(values: string[]): number {
    const literals = new Set(values);
    const prefixes = new Set<string>();
    for (const v of literals) for (let i = 1; i <= v.length; i++) prefixes.add(v.slice(0, i));
    const extendable = new Set([...literals].filter((v) => [...literals].some((w) => w !== v && w.startsWith(v))));
    return this.add(newNode(LITERAL, { literals, prefixes, extendable }));
  }

  private nonneg(schema: Record<string, unknown>, key: string, path: string): number | undefined {
    const v = schema[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw new SchemaError(pointer(path, key), `expected a non-negative integer, got ${show(v)}`);
    return v;
  }

  compile(schema: unknown, path: string): number {
    if (schema === true || (isObject(schema) && !Object.keys(schema).length)) return this.anyValue();
    if (schema === false) throw new SchemaError(path, "the schema false accepts no value");
    if (!isObject(schema)) throw new SchemaError(path, `expected a schema (an object or a boolean), got ${show(schema)}`);
    for (const key of Object.keys(schema)) {
      if (!SUPPORTED.has(key) && !ANNOTATIONS.has(key) && this.strict) {
        throw new SchemaError(pointer(path, key), `'${key}' is not supported (supported: ${SUPPORTED_LIST})`);
      }
    }
    for (const key of ["$defs", "definitions"]) {
      if (key in schema && !isObject(schema[key])) throw new SchemaError(pointer(path, key), "expected an object mapping names to schemas");
    }
    if ("uniqueItems" in schema && schema.uniqueItems !== false) throw new SchemaError(pointer(path, "uniqueItems"), "only uniqueItems: false is supported");
    if ("format" in schema && typeof schema.format !== "string") throw new SchemaError(pointer(path, "format"), "expected a string");
    const combinator = ["$ref", "anyOf", "allOf"].find((k) => k in schema);
    if (combinator) {
      const other = Object.keys(schema).find((k) => SUPPORTED.has(k) && k !== "$defs" && k !== "definitions" && k !== combinator);
      if (other) throw new SchemaError(pointer(path, other), `'${other}' beside '${combinator}' is not supported`);
      return this.combinator(schema, combinator, pointer(path, combinator));
    }
    let types = schema.type as unknown;
    if (typeof types === "string") types = [types];
    if (types !== undefined) {
      const t = types as unknown[];
      if (!Array.isArray(t) || !t.length || t.some((x) => !TYPES.includes(x as string)) || new Set(t).size < t.length) {
        throw new SchemaError(pointer(path, "type"), `expected one of ${TYPES.join(", ")} or a list of them, got ${show(schema.type)}`);
      }
    }
    if ("enum" in schema || "const" in schema) return this.enumeration(schema, types as string[] | undefined, path);
    let list = types as string[] | undefined;
    if (list === undefined) {
      list = INFERRED.filter(([, words]) => words.some((w) => w in schema)).map(([t]) => t);
      if (!list.length) return this.anyValue();
    }
    const ids = list.map((t) => this.typed(schema, t, path));
    return ids.length === 1 ? ids[0] : this.add(newNode(ANY_OF, { children: ids }));
  }

  private combinator(schema: Record<string, unknown>, key: string, path: string): number {
    const value = schema[key];
    if (key === "$ref") {
      if (typeof value !== "string" || !value.startsWith("#")) throw new SchemaError(path, `only local references ('#' or '#/...') are supported, got ${show(value)}`);
      if (!this.refs.has(value)) {
        const node = this.add(newNode(ANY_OF));
        this.refs.set(value, node);
        this.nodes[node].children = [this.compile(this.resolve(value, path), value)];
      }
      return this.refs.get(value)!;
    }
    if (!Array.isArray(value) || !value.length) throw new SchemaError(path, "expected a non-empty array of schemas");
    if (key === "allOf") {
      if (value.length !== 1) throw new SchemaError(path, "allOf is supported with one schema only");
      return this.compile(value[0], pointer(path, 0));
    }
    return this.add(newNode(ANY_OF, { children: value.map((s, i) => this.compile(s, pointer(path, i))) }));
  }

  private resolve(ref: string, path: string): unknown {
    let target: unknown = this.root;
    for (let part of ref === "#" ? [] : ref.slice(1).split("/").slice(1)) {
      part = part.replaceAll("~1", "/").replaceAll("~0", "~");
      if (isObject(target) && Object.hasOwn(target, part)) target = target[part];
      else if (Array.isArray(target) && /^[0-9]+$/.test(part) && Number(part) < target.length) target = target[Number(part)];
      else throw new SchemaError(path, `${ref} points to nothing in this schema`);
    }
    return target;
  }

  private enumeration(schema: Record<string, unknown>, types: string[] | undefined, path: string): number {
    let values: unknown[] = [], where: string[] = [];
    if ("enum" in schema) {
      if (!Array.isArray(schema.enum) || !schema.enum.length) throw new SchemaError(pointer(path, "enum"), "expected a non-empty array");
      values = schema.enum;
      where = values.map((_, i) => pointer(pointer(path, "enum"), i));
    }
    if ("const" in schema) {
      if ("enum" in schema && !values.map((v) => canonicalJson(v, "#")).includes(canonicalJson(schema.const, "#"))) {
        throw new SchemaError(pointer(path, "const"), "the const value is not one of the enum values");
      }
      values = [schema.const];
      where = [pointer(path, "const")];
    }
    const out = values.map((v, i) => {
      if (types !== undefined && !types.some((t) => typeMatches(v, t))) throw new SchemaError(where[i], `${show(v)} is not of type ${types.join(" or ")}`);
      return canonicalJson(v, where[i]);
    });
    return this.literal(out);
  }

  private typed(schema: Record<string, unknown>, t: string, path: string): number {
    if (t === "boolean" || t === "null") return this.literal(t === "boolean" ? ["true", "false"] : ["null"]);
    if (t === "number" || t === "integer") return this.add(newNode(NUMBER, { integer: t === "integer" }));
    if (t === "string") {
      const lo = this.nonneg(schema, "minLength", path) ?? 0, hi = this.nonneg(schema, "maxLength", path);
      if (hi !== undefined && lo > hi) throw new SchemaError(pointer(path, "minLength"), `minLength ${lo} is more than maxLength ${hi}`);
      return this.add(newNode(STRING, { min: lo, max: hi ?? -1 }));
    }
    if (t === "array") {
      const lo = this.nonneg(schema, "minItems", path) ?? 0;
      let hi = this.nonneg(schema, "maxItems", path);
      if (hi !== undefined && lo > hi) throw new SchemaError(pointer(path, "minItems"), `minItems ${lo} is more than maxItems ${hi}`);
      const items = "items" in schema ? schema.items : true;
      if (items === false) {
        if (lo) throw new SchemaError(pointer(path, "minItems"), "minItems > 0 with items: false");
        hi = 0;
      }
      const node = this.add(newNode(ARRAY, { min: lo, max: hi ?? -1 }));
      this.nodes[node].item = items === false ? this.anyValue() : this.compile(items, pointer(path, "items"));
      return node;
    }
    return this.object(schema, path);
  }

  private object(schema: Record<string, unknown>, path: string): number {
    const props = schema.properties;
    if (props !== undefined && !isObject(props)) throw new SchemaError(pointer(path, "properties"), "expected an object mapping names to schemas");
    const required = "required" in schema ? schema.required : [];
    if (!Array.isArray(required) || !required.every((r) => typeof r === "string") || new Set(required).size < required.length) {
      throw new SchemaError(pointer(path, "required"), "expected an array of distinct property names");
    }
    const extra = "additionalProperties" in schema ? schema.additionalProperties : props === undefined;
    if (extra !== true && extra !== false && !isObject(extra)) throw new SchemaError(pointer(path, "additionalProperties"), "expected a boolean or a schema");
    const entries = Object.entries(props ?? {});
    for (const name of required as string[]) {
      if (!entries.some(([k]) => k === name)) throw new SchemaError(pointer(path, "required"), `required property '${name}' is not in properties`);
    }
    const node = this.add(newNode(OBJECT));
    const key = (k: string) => canonicalJson(k, path).slice(1, -1);
    const compiled = new Map(entries.map(([k, s]) => [key(k), this.compile(s, pointer(pointer(path, "properties"), k))]));
    const n = this.nodes[node];
    n.props = compiled;
    n.keyEncs = [...compiled.keys()].map((k) => [k + '"', k]);
    n.required = (required as string[]).map(key);
    if (extra !== false) n.additional = this.compile(extra, pointer(path, "additionalProperties"));
    return node;
  }

  finish(root: number, maxDepth: number): void {
    const nodes = this.nodes;
    nodes.forEach((node, i) => {
      const seen = new Set<number>(), order: number[] = [], todo = [i];
      while (todo.length) {
        const j = todo.pop()!;
        if (seen.has(j)) continue;
        seen.add(j);
        if (nodes[j].kind === ANY_OF) todo.push(...[...nodes[j].children].reverse());
        else order.push(j);
      }
      node.leaves = order;
    });
    // the least nesting of objects and arrays a value of each node needs (INF: none can be finished)
    for (let changed = true; changed; ) {
      changed = false;
      for (const node of nodes) {
        let d: number;
        if (node.kind === ANY_OF) d = Math.min(INF, ...node.children.map((c) => nodes[c].depth));
        else if (node.kind === OBJECT) d = 1 + Math.max(0, ...node.required.map((k) => nodes[node.props.get(k)!].depth));
        else if (node.kind === ARRAY) d = 1 + (node.min ? nodes[node.item].depth : 0);
        else d = 0;
        d = Math.min(d, INF);
        if (d < node.depth) (node.depth = d), (changed = true);
      }
    }
    if (nodes[root].depth >= INF) throw new SchemaError("#", "no finite document satisfies the schema (every way through it recurses)");
    if (nodes[root].depth > maxDepth) throw new SchemaError("#", `a document needs ${nodes[root].depth} levels of nesting, more than max_depth=${maxDepth}`);
  }
}

/** The string lexer (canonical spelling, UTF-8 checked): LEX[state * 256 + byte] -> state, -1 rejects. */
const LEX = (() => {
  const t = new Int8Array(14 * 256).fill(-1);
  const set = (st: number, lo: number, hi: number, to: number) => t.fill(to, st * 256 + lo, st * 256 + hi + 1);
  set(NORMAL, 0x20, 0x7f, NORMAL);
  set(NORMAL, 0x22, 0x22, -1);
  set(NORMAL, 0x5c, 0x5c, ESC);
  for (const [lo, hi, st] of [[0xc2, 0xdf, C1], [0xe0, 0xe0, C2_E0], [0xe1, 0xec, C2], [0xed, 0xed, C2_ED], [0xee, 0xef, C2],
    [0xf0, 0xf0, C3_F0], [0xf1, 0xf3, C3], [0xf4, 0xf4, C3_F4]]) set(NORMAL, lo, hi, st);
  for (const [st, lo, hi, to] of [[C1, 0x80, 0xbf, NORMAL], [C2, 0x80, 0xbf, C1], [C2_E0, 0xa0, 0xbf, C1], [C2_ED, 0x80, 0x9f, C1],
    [C3, 0x80, 0xbf, C2], [C3_F0, 0x90, 0xbf, C2], [C3_F4, 0x80, 0x8f, C2]]) set(st, lo, hi, to);
  for (const c of '"\\bfnrt') set(ESC, c.charCodeAt(0), c.charCodeAt(0), NORMAL);
  for (const [st, c, to] of [[ESC, "u", U0], [U0, "0", U1], [U1, "0", U2], [U2, "0", U3_0], [U2, "1", U3_1]] as [number, string, number][]) {
    set(st, c.charCodeAt(0), c.charCodeAt(0), to);
  }
  for (const c of "01234567bef") set(U3_0, c.charCodeAt(0), c.charCodeAt(0), NORMAL);
  for (const c of "0123456789abcdef") set(U3_1, c.charCodeAt(0), c.charCodeAt(0), NORMAL);
  return t;
})();

type Frame = readonly (number | string | null | readonly string[])[];
type Stack = readonly Frame[];
const stackKey = (s: Stack) => JSON.stringify(s);

export interface GrammarOptions {
  /** unsupported keywords are an error (true, the default) or ignored (false) */
  strict?: boolean;
  /** objects and arrays nested deeper than this are never started (default 16) */
  maxDepth?: number;
  /** whitespace bytes allowed in each gap between tokens (default 20) */
  maxWhitespace?: number;
}

/** A compiled schema. States are immutable sets of stacks of frames. */
export class JsonGrammar {
  private constructor(readonly nodes: readonly GNode[], readonly root: number, readonly maxDepth: number, readonly maxWhitespace: number) {}

  static fromSchema(schema: unknown, options: GrammarOptions = {}): JsonGrammar {
    const { strict = true, maxDepth = 16, maxWhitespace = 20 } = options;
    if (!Number.isInteger(maxDepth) || maxDepth < 1) throw new RangeError(`maxDepth must be a positive integer, got ${maxDepth}`);
    if (!Number.isInteger(maxWhitespace) || maxWhitespace < 0) throw new RangeError(`maxWhitespace must be a non-negative integer, got ${maxWhitespace}`);
    const c = new Compiler(schema, strict);
    const root = c.compile(schema, "#");
    c.finish(root, maxDepth);
    return new JsonGrammar(c.nodes, root, maxDepth, maxWhitespace);
  }

  /** response_format {"type": "json_object"}: any JSON object. */
  static jsonObject(options: GrammarOptions = {}): JsonGrammar {
    return JsonGrammar.fromSchema({ type: "object" }, options);
  }

  start(): GrammarState {
    return new GrammarState(this, [[[R], [V, this.root, 0]]]);
  }

  /** One byte on one stack -> the stacks it can become. */
  step(stack: Stack, b: number): Stack[] {
    const top = stack[stack.length - 1];
    switch (top[0] as number) {
      case V: return this.value(stack, top, b);
      case O: return this.object(stack, top, b);
      case K: return this.key(stack, top, b);
      case A: return this.array(stack, top, b);
      case S: return this.string(stack, top, b);
      case N: return this.number(stack, top, b);
      case L: return this.literal(stack, top, b);
      default: return [];
    }
  }

  accepting(stack: Stack): boolean {
    if (stack.length === 1) return true;
    if (stack.length !== 2) return false;
    const top = stack[1];
    return (top[0] === N && isFinalNumber(top[2] as number)) || (top[0] === L && this.nodes[top[1] as number].literals.has(top[2] as string));
  }

  private depth(stack: Stack): number {
    let d = 0;
    for (const f of stack) if (f[0] === O || f[0] === A) d++;
    return d;
  }

  private fits(node: number, level: number): boolean {
    return level + this.nodes[node].depth <= this.maxDepth;
  }

  private value(stack: Stack, top: Frame, b: number): Stack[] {
    const node = top[1] as number, ws = top[2] as number, base = stack.slice(0, -1);
    if (isWhitespace(b)) return ws < this.maxWhitespace ? [[...base, [V, node, ws + 1]]] : [];
    const out: Stack[] = [], level = this.depth(base);
    for (const leaf of this.nodes[node].leaves) {
      const n = this.nodes[leaf];
      if (level + n.depth > this.maxDepth) continue;
      if (n.kind === OBJECT && b === 0x7b) out.push([...base, [O, leaf, O_OPEN, [], 0, null]]);
      else if (n.kind === ARRAY && b === 0x5b) out.push([...base, [A, leaf, A_OPEN, 0, 0]]);
      else if (n.kind === STRING && b === 0x22) out.push([...base, [S, leaf, NORMAL, 0]]);
      else if (n.kind === NUMBER && (b === 0x2d || (b >= 0x30 && b <= 0x39))) {
        out.push([...base, [N, leaf, b === 0x2d ? N_MINUS : b === 0x30 ? N_ZERO : N_INT, b === 0x2d ? 0 : 1]]);
      } else if (n.kind === LITERAL) out.push(...this.literalTo(base, leaf, n, String.fromCharCode(b)));
    }
    return out;
  }

  private literalTo(base: Stack, node: number, n: GNode, raw: string): Stack[] {
    if (!n.prefixes.has(raw)) return [];
    if (n.literals.has(raw) && !n.extendable.has(raw)) return [base]; // complete: the parent takes over
    return [[...base, [L, node, raw]]];
  }

  private literal(stack: Stack, top: Frame, b: number): Stack[] {
    const n = this.nodes[top[1] as number], raw = top[2] as string;
    const out = this.literalTo(stack.slice(0, -1), top[1] as number, n, raw + String.fromCharCode(b));
    if (!out.length && n.literals.has(raw)) return this.step(stack.slice(0, -1), b); // a complete literal another one extends: ends here
    return out;
  }

  private number(stack: Stack, top: Frame, b: number): Stack[] {
    const node = top[1] as number, st = top[2] as number, nd = top[3] as number;
    const digit = b >= 0x30 && b <= 0x39, real = !this.nodes[node].integer;
    let next: [number, number] | undefined;
    if (st === N_MINUS) next = b === 0x30 ? [N_ZERO, 1] : digit ? [N_INT, 1] : undefined;
    else if ((st === N_ZERO || st === N_INT || st === N_FRAC) && real && (b === 0x65 || b === 0x45)) next = [N_E, 0];
    else if ((st === N_ZERO || st === N_INT) && real && b === 0x2e) next = [N_DOT, 0];
    else if (st === N_INT && digit && nd < MAX_INT_DIGITS) next = [N_INT, nd + 1];
    else if ((st === N_DOT || st === N_FRAC) && digit && (st === N_DOT || nd < MAX_FRAC_DIGITS)) next = [N_FRAC, nd + 1];
    else if (st === N_E && (b === 0x2b || b === 0x2d)) next = [N_ESIGN, 0];
    else if ((st === N_E || st === N_ESIGN || st === N_EXP) && digit && nd < MAX_EXP_DIGITS) next = [N_EXP, nd + 1];
    if (next) return [[...stack.slice(0, -1), [N, node, next[0], next[1]]]];
    return isFinalNumber(st) ? this.step(stack.slice(0, -1), b) : [];
  }

  private string(stack: Stack, top: Frame, b: number): Stack[] {
    const node = top[1] as number, lex = top[2] as number;
    let nchars = top[3] as number;
    if (lex === NORMAL && b === 0x22) return nchars >= this.nodes[node].min ? [stack.slice(0, -1)] : [];
    const next = LEX[lex * 256 + b];
    if (next < 0) return [];
    if (lex === NORMAL && !(b >= 0x80 && b <= 0xbf)) { // a character (or an escape) begins
      const max = this.nodes[node].max;
      if (max >= 0 && max <= nchars) return [];
      nchars++;
    }
    return [[...stack.slice(0, -1), [S, node, next, nchars]]];
  }

  private keysLeft(n: GNode, seen: readonly string[], level: number): boolean {
    if (n.additional >= 0 && this.fits(n.additional, level)) return true;
    for (const [k, v] of n.props) if (!seen.includes(k) && this.fits(v, level)) return true;
    return false;
  }

  private object(stack: Stack, top: Frame, b: number): Stack[] {
    const node = top[1] as number, phase = top[2] as number, seen = top[3] as readonly string[], ws = top[4] as number, key = top[5] as string | null;
    const n = this.nodes[node], base = stack.slice(0, -1);
    if (isWhitespace(b)) return ws < this.maxWhitespace ? [[...base, [O, node, phase, seen, ws + 1, key]]] : [];
    const level = this.depth(stack);
    if ((phase === O_OPEN || phase === O_COMMA) && b === 0x22 && this.keysLeft(n, seen, level)) {
      const free = n.additional >= 0 && this.fits(n.additional, level);
      return [[...base, [O, node, phase, seen, 0, null], [K, node, free ? NORMAL : -1, ""]]];
    }
    if (phase === O_COLON && b === 0x3a) {
      const child = n.props.get(key!) ?? n.additional;
      return [[...base, [O, node, O_AFTER, [...seen, key!].sort(), 0, null], [V, child, 0]]];
    }
    if (phase === O_AFTER && b === 0x2c && this.keysLeft(n, seen, level)) return [[...base, [O, node, O_COMMA, seen, 0, null]]];
    if ((phase === O_AFTER || phase === O_OPEN) && b === 0x7d && n.required.every((k) => seen.includes(k))) return [base];
    return [];
  }

  private key(stack: Stack, top: Frame, b: number): Stack[] {
    const node = top[1] as number, lex = top[2] as number;
    let raw = top[3] as string;
    const n = this.nodes[node], seen = stack[stack.length - 2][3] as readonly string[], level = this.depth(stack);
    if (lex < 0) { // one of the listed keys, spelled canonically
      raw += String.fromCharCode(b);
      for (const [enc, k] of n.keyEncs) {
        if (!seen.includes(k) && enc.startsWith(raw) && this.fits(n.props.get(k)!, level)) {
          if (raw === enc) return [[...stack.slice(0, -2), [O, node, O_COLON, seen, 0, k]]];
          return [[...stack.slice(0, -1), [K, node, lex, raw]]];
        }
      }
      return [];
    }
    if (lex === NORMAL && b === 0x22) {
      if (seen.includes(raw) || (n.props.has(raw) && !this.fits(n.props.get(raw)!, level))) return [];
      return [[...stack.slice(0, -2), [O, node, O_COLON, seen, 0, raw]]];
    }
    const next = LEX[lex * 256 + b];
    return next >= 0 ? [[...stack.slice(0, -1), [K, node, next, raw + String.fromCharCode(b)]]] : [];
  }

  private array(stack: Stack, top: Frame, b: number): Stack[] {
    const node = top[1] as number, phase = top[2] as number, count = top[3] as number, ws = top[4] as number;
    const n = this.nodes[node], base = stack.slice(0, -1);
    if (isWhitespace(b)) return ws < this.maxWhitespace ? [[...base, [A, node, phase, count, ws + 1]]] : [];
    const more = (n.max < 0 || count < n.max) && this.fits(n.item, this.depth(stack));
    if (b === 0x5d && (phase === A_AFTER || phase === A_OPEN) && count >= n.min) return [base];
    if (phase === A_AFTER) return b === 0x2c && more ? [[...base, [A, node, A_COMMA, count, 0]]] : [];
    if (!more) return [];
    return this.step([...base, [A, node, A_AFTER, count + 1, 0], [V, n.item, 0]], b);
  }
}

/** Where the output stands: every parse (stack of frames) the bytes so far allow. */
export class GrammarState {
  constructor(readonly grammar: JsonGrammar, readonly stacks: readonly Stack[]) {}

  /** The state after `data`, or null when no valid document continues that way. */
  advance(data: Uint8Array): GrammarState | null {
    let stacks = this.stacks;
    for (const b of data) {
      const next = new Map<string, Stack>();
      for (const s of stacks) for (const t of this.grammar.step(s, b)) next.set(stackKey(t), t);
      if (!next.size) return null;
      stacks = [...next.values()];
    }
    return new GrammarState(this.grammar, stacks);
  }

  /** Whether the bytes so far are a whole document (end of generation may come now). */
  isAccepting(): boolean {
    return this.stacks.some((s) => this.grammar.accepting(s));
  }

  /** Whether any byte may follow (false: only the end of generation may come). */
  canContinue(): boolean {
    for (const s of this.stacks) for (let b = 0; b < 256; b++) if (this.grammar.step(s, b).length) return true;
    return false;
  }
}

// -- the mask over a vocabulary (grammar_mask.py) ----------------------------------------------------
class Trie {
  readonly children: Map<number, number>[] = [new Map()];
  readonly ends: (number[] | undefined)[] = [undefined];

  constructor(entries: Iterable<[number, Uint8Array]>) {
    for (const [id, data] of entries) {
      let node = 0;
      for (const b of data) {
        let next = this.children[node].get(b);
        if (next === undefined) {
          next = this.children.push(new Map()) - 1;
          this.ends.push(undefined);
          this.children[node].set(b, next);
        }
        node = next;
      }
      (this.ends[node] ??= []).push(id);
    }
  }
}

const isPlain = (t: Uint8Array) => t.every((b) => b !== 0x22 && b !== 0x5c && b >= 0x20);
const NORMAL_TYPE = 1, USER_DEFINED_TYPE = 4, BYTE_TYPE = 6;

/** The tokenizer side of token_mask; Tokenizer in ./tokenizer has these. */
export interface GrammarTokenizer {
  readonly nVocab: number;
  readonly endOfGenerationIds: ReadonlySet<number>;
  tokenBytes(id: number): Uint8Array;
  tokenType(id: number): number;
}

/** A vocabulary's token bytes prepared for tokenMask. Tokens with no bytes or in `excluded` are never
 * text; `eosIds` end the generation (allowed only when the document is complete). */
export class GrammarVocabulary {
  readonly size: number;
  readonly eosIds: number[];
  private readonly full: Trie;
  private readonly special: Trie;
  private readonly plainIds: Int32Array;
  private readonly plainChars: Int32Array;
  private readonly plainEnd = new Map<number, Int8Array>();
  private readonly cache = new Map<string, Uint8Array>();

  constructor(tokenBytes: readonly Uint8Array[], eosIds: Iterable<number>, excluded: Iterable<number> = [], private readonly cacheSize = 256) {
    this.size = tokenBytes.length;
    this.eosIds = [...new Set(eosIds)].sort((a, b) => a - b);
    if (this.eosIds.some((i) => !Number.isInteger(i) || i < 0 || i >= this.size)) {
      throw new RangeError(`end-of-generation ids [${this.eosIds}] fall outside the vocabulary of ${this.size} tokens`);
    }
    const skip = new Set([...excluded, ...this.eosIds]);
    const text = tokenBytes.flatMap((t, i): [number, Uint8Array][] => (t.length && !skip.has(i) ? [[i, t]] : []));
    const plain = text.filter(([, t]) => isPlain(t));
    this.full = new Trie(text);
    this.special = new Trie(text.filter(([, t]) => !isPlain(t)));
    this.plainIds = Int32Array.from(plain, ([i]) => i);
    this.plainChars = Int32Array.from(plain, ([, t]) => t.reduce((n, b) => n + (b < 0x80 || b >= 0xc0 ? 1 : 0), 0));
    for (const s of UTF8_LEX) {
      this.plainEnd.set(s, Int8Array.from(plain, ([, t]) => {
        let st = s;
        for (const b of t) if ((st = LEX[st * 256 + b]) < 0) return -1;
        return st;
      }));
    }
  }

  /** From a Tokenizer: its normal, byte and user-defined tokens are text; its end-of-generation ids end the document. */
  static fromTokenizer(tok: GrammarTokenizer, cacheSize?: number): GrammarVocabulary {
    const bytes: Uint8Array[] = [], excluded: number[] = [];
    for (let i = 0; i < tok.nVocab; i++) {
      bytes.push(tok.tokenBytes(i));
      const t = tok.tokenType(i);
      if (t !== NORMAL_TYPE && t !== USER_DEFINED_TYPE && t !== BYTE_TYPE) excluded.push(i);
    }
    return new GrammarVocabulary(bytes, tok.endOfGenerationIds, excluded, cacheSize);
  }

  stackMask(grammar: JsonGrammar, stack: Stack): Uint8Array {
    const key = stackKey(stack);
    const hit = this.cache.get(key);
    if (hit && hit.length === this.size && this.cacheOwner === grammar) {
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit;
    }
    if (this.cacheOwner !== grammar) this.cache.clear(), (this.cacheOwner = grammar);
    const mask = new Uint8Array(this.size), top = stack[stack.length - 1];
    const end = (top[0] === S || top[0] === K) ? this.plainEnd.get(top[2] as number) : undefined;
    if (end) { // within a free string: the tables, then the rest
      const max = top[0] === S ? grammar.nodes[top[1] as number].max : -1;
      const room = max >= 0 ? max - (top[3] as number) : Infinity;
      for (let j = 0; j < end.length; j++) if (end[j] >= 0 && this.plainChars[j] <= room) mask[this.plainIds[j]] = 1;
      this.walk(grammar, this.special, stack, mask);
    } else this.walk(grammar, this.full, stack, mask);
    this.cache.set(key, mask);
    if (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value!);
    return mask;
  }

  private cacheOwner: JsonGrammar | undefined;

  private walk(grammar: JsonGrammar, trie: Trie, stack: Stack, mask: Uint8Array): void {
    const todo: [number, Stack[]][] = [[0, [stack]]];
    while (todo.length) {
      const [node, stacks] = todo.pop()!;
      for (const [b, child] of trie.children[node]) {
        let next = stacks.length === 1 ? grammar.step(stacks[0], b) : stacks.flatMap((s) => grammar.step(s, b));
        if (!next.length) continue;
        for (const id of trie.ends[child] ?? []) mask[id] = 1;
        if (trie.children[child].size) {
          if (next.length > 1) next = [...new Map(next.map((s) => [stackKey(s), s])).values()];
          todo.push([child, next]);
        }
      }
    }
  }
}

/** Uint8Array (vocab.size): 1 for the tokens that may come next in `state`. */
export function tokenMask(state: GrammarState, vocab: GrammarVocabulary): Uint8Array {
  const mask = vocab.stackMask(state.grammar, state.stacks[0]).slice();
  for (const s of state.stacks.slice(1)) {
    const m = vocab.stackMask(state.grammar, s);
    for (let i = 0; i < mask.length; i++) mask[i] |= m[i];
  }
  if (state.isAccepting()) for (const id of vocab.eosIds) mask[id] = 1;
  return mask;
}

/** `logits` with the tokens the mask leaves out set to -Infinity, in place. */
export function applyMask(logits: Float32Array, mask: Uint8Array): Float32Array {
  if (logits.length !== mask.length) throw new RangeError(`logits have ${logits.length} entries, the mask ${mask.length}: not the same vocabulary`);
  for (let i = 0; i < logits.length; i++) if (!mask[i]) logits[i] = -Infinity;
  return logits;
}

/** OpenAI's response_format: undefined or {type: "text"} -> null; {type: "json_object"};
 * {type: "json_schema", json_schema: {schema, strict}}. Errors name the field. */
export function grammarForResponseFormat(responseFormat: unknown, options: Omit<GrammarOptions, "strict"> = {}): JsonGrammar | null {
  if (responseFormat === undefined || responseFormat === null) return null;
  const kind = isObject(responseFormat) ? responseFormat.type : undefined;
  if (kind !== "text" && kind !== "json_object" && kind !== "json_schema") {
    throw new SchemaError("response_format", 'expected {"type": "text" | "json_object" | "json_schema", ...}');
  }
  if (kind === "text") return null;
  if (kind === "json_object") return JsonGrammar.jsonObject(options);
  const spec = (responseFormat as Record<string, unknown>).json_schema;
  if (!isObject(spec) || !("schema" in spec)) throw new SchemaError("response_format.json_schema", 'expected {"name": ..., "schema": {...}, "strict": true}');
  const strict = spec.strict ?? false;
  if (typeof strict !== "boolean") throw new SchemaError("response_format.json_schema.strict", `expected a boolean, got ${show(strict)}`);
  return JsonGrammar.fromSchema(spec.schema, { ...options, strict });
}
