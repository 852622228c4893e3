/**
 * An OpenAI structured-output schema as Anthropic's structured outputs take it. Anthropic refuses
 * keywords it does not enforce (`output_format.schema: For 'integer' type, property 'minimum' is not
 * supported`), and zod writes them for common types (`z.number().int()` gives a minimum and a
 * maximum). As Anthropic's own SDK does, a keyword it does not take is moved into the schema's
 * description, where the model still reads it, and an object that says nothing of
 * `additionalProperties` is closed (`false`, which Anthropic requires); one the client left open is
 * sent as it wrote it, for Anthropic to refuse rather than the gateway to change what it means.
 */
import { isRecord } from '../json.js';

/** String formats Anthropic's structured outputs take. */
const STRING_FORMATS = new Set(['date-time', 'time', 'date', 'duration', 'email', 'hostname', 'uri', 'ipv4', 'ipv6', 'uuid']);

/** Keywords every kind of schema keeps as they are. */
const KEPT = new Set(['type', 'description', 'title']);

function isPrimitive(value: unknown): boolean {
  return value === null || typeof value !== 'object';
}

/** Whether a schema's `type` (a name, or a list of names: `["object", "null"]`) includes `kind`. */
function allows(type: unknown, kind: string): boolean {
  return type === kind || (Array.isArray(type) && type.includes(kind));
}

/** Definitions, under either name (`$defs`; `definitions`, draft 7's, which zod and zod-to-json-schema write). */
const DEFINITIONS = new Set(['$defs', 'definitions']);

/** `inAllOf`: a member of an `allOf`, which must not be closed on its own (no object would then meet every member). */
export function anthropicSchema(schema: unknown, inAllOf = false): unknown {
  if (!isRecord(schema)) return schema;
  const out: Record<string, unknown> = {};
  const moved: string[] = [];
  for (const name of DEFINITIONS) {
    const defs = schema[name];
    if (isRecord(defs)) out[name] = Object.fromEntries(Object.entries(defs).map(([key, def]) => [key, anthropicSchema(def)]));
  }
  const type = schema.type;
  // An object is one by its type or its properties.
  const object = allows(type, 'object') || (type === undefined && isRecord(schema.properties));
  const literal = (Array.isArray(schema.enum) && schema.enum.length > 0 && schema.enum.every(isPrimitive)) || (schema.const !== undefined && isPrimitive(schema.const));
  const variants = Array.isArray(schema.anyOf) ? schema.anyOf : Array.isArray(schema.oneOf) ? schema.oneOf : null;
  for (const [name, value] of Object.entries(schema)) {
    if (DEFINITIONS.has(name) && isRecord(value)) continue;
    if (name === '$schema') continue; // names a dialect and constrains nothing
    if (schema.$ref !== undefined && name !== '$ref' && name !== 'description') {
      // A reference stands for its schema: what is beside it is said, not enforced.
      moved.push(`${name}: ${JSON.stringify(value)}`);
    } else if (name === '$ref' || KEPT.has(name)) {
      // A literal's type is its values'.
      if (!(name === 'type' && literal)) out[name] = value;
    } else if ((name === 'enum' || name === 'const') && literal) {
      out[name] = value;
    } else if ((name === 'anyOf' || name === 'oneOf') && variants === value) {
      out.anyOf = (value as unknown[]).map((variant) => anthropicSchema(variant));
    } else if (name === 'allOf' && Array.isArray(value) && variants === null) {
      out.allOf = value.map((member: unknown) => anthropicSchema(member, true));
    } else if (name === 'properties' && isRecord(value)) {
      out.properties = Object.fromEntries(Object.entries(value).map(([key, property]) => [key, anthropicSchema(property)]));
    } else if (name === 'required') {
      out.required = value;
    } else if (name === 'additionalProperties' && object) {
      // Anthropic takes only false (set below when absent): a map's value schema (zod's record)
      // or true is the client's, which Anthropic refuses in its own words, not a silent `{}`.
      out.additionalProperties = value;
    } else if (name === 'items' && allows(type, 'array')) {
      out.items = anthropicSchema(value);
    } else if (name === 'minItems' && allows(type, 'array') && (value === 0 || value === 1)) {
      out.minItems = value;
    } else if (name === 'format' && allows(type, 'string') && typeof value === 'string' && STRING_FORMATS.has(value)) {
      out.format = value;
    } else if (name === 'pattern' && allows(type, 'string')) {
      // Anthropic enforces a simple pattern (and refuses one it cannot, in its own words).
      out.pattern = value;
    } else {
      moved.push(`${name}: ${JSON.stringify(value)}`);
    }
  }
  // Closed once, where it is whole: not a member of an allOf, nor an object its allOf adds to.
  if (object && schema.$ref === undefined && !inAllOf && schema.allOf === undefined) {
    out.properties ??= {};
    out.additionalProperties ??= false;
  }
  if (moved.length > 0) out.description = `${typeof out.description === 'string' && out.description !== '' ? `${out.description}\n\n` : ''}{${moved.join(', ')}}`;
  return out;
}
