// Command-line flags derived from zod schemas: one field, one flag — its name (camelCase → --kebab-case), value
// name, description, choices and default all come from the field, so the CLI cannot drift from the library's
// options (lib/config.ts). And the other way: library errors name the option at fault (HeimdallError.option);
// the CLI names its flag.
import { Option } from 'commander';
import { z } from 'zod';
import { HeimdallError } from '../errors.js';

/** How a field appears on the command line, beyond what the schema says (`.meta({ cli: {...} })`). */
export interface FlagMeta {
  /** The value's name in --help (default: the field name in kebab case). */
  arg?: string;
  /** Shown in --help as the default when the schema has none (e.g. `rf-localization-<timestamp>`). */
  defaultText?: string;
  /** Description of the `--no-…` flag of a boolean. */
  negate?: string;
}

export const flagName = (key: string): string => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** Attaches CLI presentation to a schema field (kept on the outermost schema, so call it last). */
export function flag<T extends z.ZodType>(schema: T, description: string, cli: FlagMeta = {}): T {
  return schema.meta({ description, cli });
}

interface FieldInfo {
  inner: z.ZodType;
  defaultValue?: unknown;
  description?: string;
  cli: FlagMeta;
}

function describeField(field: z.ZodType): FieldInfo {
  const meta = (z.globalRegistry.get(field) ?? {}) as { description?: string; cli?: FlagMeta };
  let inner: z.ZodType = field;
  let defaultValue: unknown;
  let description = meta.description ?? field.description;
  for (;;) {
    if (inner instanceof z.ZodDefault || inner instanceof z.ZodPrefault) {
      defaultValue ??= (inner.def as { defaultValue: unknown }).defaultValue;
      inner = inner.def.innerType as z.ZodType;
    } else if (inner instanceof z.ZodOptional) {
      inner = inner.def.innerType as z.ZodType;
    } else if (inner instanceof z.ZodPipe) {
      inner = inner.def.in as z.ZodType;
    } else break;
    description ??= inner.description;
  }
  return { inner, defaultValue, description, cli: meta.cli ?? {} };
}

/** The default of a schema field (`.default()` / `.prefault()`), for text that quotes it. */
export function defaultOf(field: z.ZodType): unknown {
  return describeField(field).defaultValue;
}

/**
 * Commander options for every field of `schema`: numbers parsed as numbers, enums as choices, booleans as a
 * `--x` / `--no-x` pair with no commander default (so a --config file can set them), the schema's default
 * shown and used.
 */
export function schemaOptions(schema: z.ZodObject): Option[] {
  const options: Option[] = [];
  for (const [key, field] of Object.entries(schema.shape)) {
    const { inner, defaultValue, description = '', cli } = describeField(field as z.ZodType);
    const name = flagName(key);
    if (inner instanceof z.ZodBoolean) {
      const when = defaultValue === undefined ? '' : ` (default: ${defaultValue ? 'on' : 'off'})`;
      options.push(new Option(name, `${description}${when}`));
      options.push(new Option(`--no-${name.slice(2)}`, cli.negate ?? `not: ${description}`));
      continue;
    }
    const shown = defaultValue === undefined && cli.defaultText ? `${description} (default: ${cli.defaultText})` : description;
    const option = new Option(`${name} <${cli.arg ?? name.slice(2)}>`, shown);
    if (inner instanceof z.ZodNumber) option.argParser(Number);
    if (inner instanceof z.ZodEnum) option.choices(inner.options.map(String));
    if (defaultValue !== undefined) option.default(defaultValue);
    options.push(option);
  }
  return options;
}

/**
 * Names the CLI flag of a library error's option (`dataDir` → `--data-dir: …`); `flags` maps the options whose
 * flags are named otherwise (`runId` → `--run`). Other errors pass unchanged.
 */
export function withFlagName(err: unknown, flags: Record<string, string> = {}): unknown {
  if (err instanceof HeimdallError && err.option) err.message = `${flags[err.option] ?? flagName(err.option)}: ${err.message}`;
  return err;
}
