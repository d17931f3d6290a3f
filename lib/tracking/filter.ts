// MLflow's search-runs filter and order-by syntax, for the common cases:
//   metrics.`val/loss` < 0.5 AND params.lr = '0.001' AND tags."mlflow.runName" LIKE 'exp%' AND attributes.status = 'FINISHED'
import { invalidParameter } from './errors.js';

export type EntityType = 'metric' | 'param' | 'tag' | 'attribute';
export type Comparator = '=' | '!=' | '<' | '<=' | '>' | '>=' | 'LIKE' | 'ILIKE' | 'IN' | 'NOT IN';

export interface FilterClause {
  type: EntityType;
  key: string;
  comparator: Comparator;
  value: string | number | string[];
}

export interface OrderByClause {
  type: EntityType;
  key: string;
  ascending: boolean;
}

const ENTITY_ALIASES: Record<string, EntityType> = {
  metric: 'metric', metrics: 'metric',
  param: 'param', params: 'param', parameter: 'param', parameters: 'param',
  tag: 'tag', tags: 'tag',
  attribute: 'attribute', attributes: 'attribute', attr: 'attribute', run: 'attribute',
};

/** Attribute names accepted in filters/order-by, mapped to the canonical MLflow name. */
export const RUN_ATTRIBUTES: Record<string, string> = {
  run_id: 'run_id', run_name: 'run_name', status: 'status', start_time: 'start_time', end_time: 'end_time',
  artifact_uri: 'artifact_uri', user_id: 'user_id', lifecycle_stage: 'lifecycle_stage', created: 'start_time',
  Created: 'start_time', 'Run name': 'run_name',
};
const NUMERIC_ATTRIBUTES = new Set(['start_time', 'end_time']);

interface Token { kind: 'ident' | 'quoted' | 'backtick' | 'string' | 'number' | 'op' | 'dot' | 'lparen' | 'rparen' | 'comma'; text: string }

function tokenize(s: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (/\s/.test(c)) { i++; continue; }
    if (c === '`' || c === '"' || c === "'") {
      let j = i + 1;
      let text = '';
      while (j < s.length && s[j] !== c) {
        if (s[j] === '\\' && j + 1 < s.length) { text += s[j + 1]; j += 2; continue; }
        text += s[j++];
      }
      if (j >= s.length) throw invalidParameter(`Invalid filter '${s}': unterminated ${c} quote`);
      out.push({ kind: c === '`' ? 'backtick' : c === '"' ? 'quoted' : 'string', text });
      i = j + 1;
      continue;
    }
    const two = s.slice(i, i + 2);
    if (two === '!=' || two === '<=' || two === '>=' || two === '<>') { out.push({ kind: 'op', text: two === '<>' ? '!=' : two }); i += 2; continue; }
    if (c === '=' || c === '<' || c === '>') { out.push({ kind: 'op', text: c }); i++; continue; }
    if (c === '.') { out.push({ kind: 'dot', text: c }); i++; continue; }
    if (c === '(') { out.push({ kind: 'lparen', text: c }); i++; continue; }
    if (c === ')') { out.push({ kind: 'rparen', text: c }); i++; continue; }
    if (c === ',') { out.push({ kind: 'comma', text: c }); i++; continue; }
    const num = /^[-+]?(\d+\.?\d*(e[-+]?\d+)?|\.\d+(e[-+]?\d+)?)/i.exec(s.slice(i));
    if (num && (out.length === 0 || out[out.length - 1]!.kind === 'op')) { out.push({ kind: 'number', text: num[0] }); i += num[0].length; continue; }
    const id = /^[\p{L}\p{N}_]+/u.exec(s.slice(i));
    if (id) { out.push({ kind: 'ident', text: id[0] }); i += id[0].length; continue; }
    throw invalidParameter(`Invalid filter '${s}': unexpected character '${c}' at ${i}`);
  }
  return out;
}

/** Parses `entity.key` (key plain, "quoted" or `backticked`); a bare name is an attribute. */
function parseIdentifier(toks: Token[], pos: number, src: string): { type: EntityType; key: string; next: number } {
  const t = toks[pos];
  if (!t) throw invalidParameter(`Invalid filter '${src}': expected an identifier`);
  if (t.kind === 'ident' && toks[pos + 1]?.kind === 'dot' && ENTITY_ALIASES[t.text.toLowerCase()]) {
    const type = ENTITY_ALIASES[t.text.toLowerCase()]!;
    // the key is everything up to the comparator: `a.b`, "a.b", or a.b.c plain
    let j = pos + 2;
    const k = toks[j];
    if (!k) throw invalidParameter(`Invalid filter '${src}': missing key after '${t.text}.'`);
    let key: string;
    if (k.kind === 'backtick' || k.kind === 'quoted') { key = k.text; j++; }
    else if (k.kind === 'ident') {
      key = k.text; j++;
      while (toks[j]?.kind === 'dot' && toks[j + 1]?.kind === 'ident') { key += '.' + toks[j + 1]!.text; j += 2; }
    } else throw invalidParameter(`Invalid filter '${src}': bad key after '${t.text}.'`);
    if (type === 'attribute') key = canonicalAttribute(key, src);
    return { type, key, next: j };
  }
  if (t.kind === 'ident' || t.kind === 'backtick' || t.kind === 'quoted') {
    return { type: 'attribute', key: canonicalAttribute(t.text, src), next: pos + 1 };
  }
  throw invalidParameter(`Invalid filter '${src}': expected an identifier such as metrics.\`val/loss\`, got '${t.text}'`);
}

function canonicalAttribute(key: string, src: string): string {
  const a = RUN_ATTRIBUTES[key];
  if (!a) throw invalidParameter(`Invalid attribute key '${key}' in '${src}'. Valid: ${Object.keys(RUN_ATTRIBUTES).filter((k) => /^[a-z_]+$/.test(k)).join(', ')}`);
  return a;
}

/** Parses an MLflow search filter into clauses joined by AND. Empty/undefined → []. */
export function parseFilter(filter: string | undefined): FilterClause[] {
  if (!filter || !filter.trim()) return [];
  const toks = tokenize(filter);
  const clauses: FilterClause[] = [];
  let i = 0;
  for (;;) {
    const id = parseIdentifier(toks, i, filter);
    i = id.next;
    const opTok = toks[i];
    if (!opTok) throw invalidParameter(`Invalid filter '${filter}': missing comparator after '${id.key}'`);
    let comparator: Comparator;
    if (opTok.kind === 'op') { comparator = opTok.text as Comparator; i++; }
    else if (opTok.kind === 'ident' && /^(LIKE|ILIKE|IN)$/i.test(opTok.text)) { comparator = opTok.text.toUpperCase() as Comparator; i++; }
    else if (opTok.kind === 'ident' && /^NOT$/i.test(opTok.text) && /^IN$/i.test(toks[i + 1]?.text ?? '')) { comparator = 'NOT IN'; i += 2; }
    else throw invalidParameter(`Invalid filter '${filter}': unknown comparator '${opTok.text}'`);
    let value: string | number | string[];
    if (comparator === 'IN' || comparator === 'NOT IN') {
      if (toks[i]?.kind !== 'lparen') throw invalidParameter(`Invalid filter '${filter}': IN needs a list ('a', 'b')`);
      i++;
      const list: string[] = [];
      while (toks[i] && toks[i]!.kind !== 'rparen') {
        const v = toks[i]!;
        if (v.kind !== 'string' && v.kind !== 'quoted' && v.kind !== 'number') throw invalidParameter(`Invalid filter '${filter}': bad IN value '${v.text}'`);
        list.push(v.text);
        i++;
        if (toks[i]?.kind === 'comma') i++;
      }
      if (toks[i]?.kind !== 'rparen') throw invalidParameter(`Invalid filter '${filter}': unterminated IN list`);
      i++;
      value = list;
    } else {
      const v = toks[i];
      if (!v) throw invalidParameter(`Invalid filter '${filter}': missing value`);
      i++;
      if (v.kind === 'number') value = Number(v.text);
      else if (v.kind === 'string' || v.kind === 'quoted') value = v.text;
      else throw invalidParameter(`Invalid filter '${filter}': expected a value, got '${v.text}' (quote strings with '…')`);
    }
    checkClause({ type: id.type, key: id.key, comparator, value }, filter);
    clauses.push({ type: id.type, key: id.key, comparator, value });
    if (i >= toks.length) break;
    const and = toks[i]!;
    if (and.kind !== 'ident' || and.text.toUpperCase() !== 'AND') {
      throw invalidParameter(`Invalid filter '${filter}': clauses must be joined by AND (got '${and.text}')`);
    }
    i++;
  }
  return clauses;
}

function checkClause(c: FilterClause, src: string): void {
  if (c.type === 'metric') {
    if (typeof c.value !== 'number') throw invalidParameter(`Invalid filter '${src}': metric '${c.key}' must be compared with a number`);
    if (!['=', '!=', '<', '<=', '>', '>='].includes(c.comparator)) throw invalidParameter(`Invalid filter '${src}': bad comparator ${c.comparator} for a metric`);
  } else if (c.type === 'attribute' && NUMERIC_ATTRIBUTES.has(c.key)) {
    if (typeof c.value !== 'number') throw invalidParameter(`Invalid filter '${src}': ${c.key} must be compared with a number`);
  } else if (typeof c.value === 'number') {
    throw invalidParameter(`Invalid filter '${src}': ${c.type} '${c.key}' must be compared with a quoted string`);
  }
  if ((c.comparator === 'IN' || c.comparator === 'NOT IN') && !(c.type === 'attribute' || c.type === 'param' || c.type === 'tag')) {
    throw invalidParameter(`Invalid filter '${src}': IN is not supported for ${c.type}s`);
  }
}

/** Parses order-by clauses like "metrics.`val/loss` ASC", "attributes.start_time DESC". */
export function parseOrderBy(orderBy: string[] | undefined): OrderByClause[] {
  return (orderBy ?? []).map((o) => {
    const toks = tokenize(o);
    const id = parseIdentifier(toks, 0, o);
    let ascending = true;
    const dir = toks[id.next];
    if (dir) {
      if (dir.kind === 'ident' && /^(ASC|DESC)$/i.test(dir.text)) ascending = dir.text.toUpperCase() === 'ASC';
      else throw invalidParameter(`Invalid order_by clause '${o}'`);
      if (toks.length > id.next + 1) throw invalidParameter(`Invalid order_by clause '${o}'`);
    }
    return { type: id.type, key: id.key, ascending };
  });
}

/** Backtick-quotes a key for an MLflow filter (the reference forgot this for `val/loss`). */
export function quoteKey(key: string): string {
  if (key.includes('`')) return `"${key.replace(/"/g, '\\"')}"`;
  return `\`${key}\``;
}
