/**
 * An OpenAI structured-output schema as Anthropic's structured outputs take it. Anthropic refuses
 * keywords it does not enforce (`output_format.schema: For 'integer' type, property 'minimum' is not
 * supported`), and zod writes them for common types (`z.number().int()` gives a minimum and a
 * maximum). As Anthropic's own SDK does, a keyword it does not take is moved into the schema's
 * description, where the model still reads it, and every object is closed
 * (`additionalProperties: false`, which Anthropic requires).
 */
import { isRecord } from '../json.js';

/** String formats Anthropic's structured outputs take. */
const STRING_FORMATS = new Set(['date-time', 'time', 'date', 'duration', 'email', 'hostname', 'uri', 'ipv4', 'ipv6', 'uuid']);

/** Keywords every kind of schema keeps as they are. */
const KEPT = new Set(['type', 'description', 'title']);

function isPrimitive(value: unknown): boolean {
  return value === null || typeof value !== 'object';
}

export function anthropicSchema(schema: unknown): unknown {
  if (!isRecord(schema)) return schema;
  const out: Record<string, unknown> = {};
  const moved: string[] = [];
  const defs = schema.$defs;
  if (isRecord(defs)) out.$defs = Object.fromEntries(Object.entries(defs).map(([name, def]) => [name, anthropicSchema(def)]));
  if (schema.$ref !== undefined) {
    // A reference stands alone: what is beside it is not read.
    out.$ref = schema.$ref;
    if (schema.description !== undefined) out.description = schema.description;
    return out;
  }
  const literal = (Array.isArray(schema.enum) && schema.enum.length > 0 && schema.enum.every(isPrimitive)) || (schema.const !== undefined && isPrimitive(schema.const));
  const variants = Array.isArray(schema.anyOf) ? schema.anyOf : Array.isArray(schema.oneOf) ? schema.oneOf : null;
  for (const [name, value] of Object.entries(schema)) {
    if (name === '$defs' || name === '$schema') continue; // `$schema` names a dialect and constrains nothing
    if (KEPT.has(name)) {
      // A literal's type is its values'.
      if (!(name === 'type' && literal)) out[name] = value;
    } else if ((name === 'enum' || name === 'const') && literal) {
      out[name] = value;
    } else if ((name === 'anyOf' || name === 'oneOf') && variants === value) {
      out.anyOf = (value as unknown[]).map(anthropicSchema);
    } else if (name === 'allOf' && Array.isArray(value) && variants === null) {
      out.allOf = value.map(anthropicSchema);
    } else if (name === 'properties' && isRecord(value)) {
      out.properties = Object.fromEntries(Object.entries(value).map(([key, property]) => [key, anthropicSchema(property)]));
    } else if (name === 'required') {
      out.required = value;
    } else if (name === 'additionalProperties' && schema.type === 'object') {
      // closed below
    } else if (name === 'items' && schema.type === 'array') {
      out.items = anthropicSchema(value);
    } else if (name === 'minItems' && schema.type === 'array' && (value === 0 || value === 1)) {
      out.minItems = value;
    } else if (name === 'format' && schema.type === 'string' && typeof value === 'string' && STRING_FORMATS.has(value)) {
      out.format = value;
    } else {
      moved.push(`${name}: ${JSON.stringify(value)}`);
    }
  }
  if (schema.type === 'object') {
    out.properties ??= {};
    out.additionalProperties = false;
  }
  if (moved.length > 0) out.description = `${typeof out.description === 'string' && out.description !== '' ? `${out.description}\n\n` : ''}{${moved.join(', ')}}`;
  return out;
}
