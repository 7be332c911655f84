// Stocky API reference: the page at /docs. It fetches the server's OpenAPI 3.1 document
// (GET /api/openapi.json, public) and renders it for people:
//  - a header: info.title, info.version, info.description, the security schemes;
//  - the operations grouped by their first tag (the document's `tags` order, then first
//    appearance), a sidebar of tags with counts, and a search box that filters by method,
//    path and summary as one types (every word must match);
//  - each operation a <details> whose id is its operationId, so /docs#<operationId> opens
//    and scrolls to it: method, path, summary, "public" (`security: []`) or "needs
//    credentials" (its own or the top-level `security`), description, parameters, request
//    body and responses;
//  - a Schemas section with every components.schemas entry (id `schema-<Name>`).
// JSON Schema 2020-12 is drawn as a compact tree: objects as field lists, "array of X",
// `type` arrays as "string | null", $ref to #/components/schemas/X as a link to X (never
// expanded, so recursive schemas cannot loop; a body's or a 2xx answer's top-level ref is
// expanded one level), oneOf/anyOf/allOf as alternatives, enums as their values.
// The DOM is built with createElement/textContent only: nothing from the document goes
// through innerHTML, and there is no inline style or script (the page runs under a strict CSP).

const SPEC_URL = '/api/openapi.json';
const METHODS = ['get', 'put', 'post', 'patch', 'delete', 'head', 'options', 'trace'];
const SCHEMAS = '#/components/schemas/';
const MAX_DEPTH = 12;
const COMPOSITIONS = { oneOf: 'One of:', anyOf: 'Any of:', allOf: 'All of:' };

let spec = {};

// ---------------------------------------------------------------- DOM helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  return add(node, ...children);
}

/** Appends children (nodes, text, nested arrays; null and false are skipped). */
function add(node, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** `text` with `backticks` as <code>, as nodes. */
function withCode(text) {
  return text.split(/`([^`\n]+)`/).map((part, i) => (i % 2 ? el('code', { text: part }) : part));
}

/** Plain-text paragraphs (blank-line separated), or null. */
function paras(text, cls = 'desc') {
  if (typeof text !== 'string' || !text.trim()) return null;
  return text.trim().split(/\n\s*\n/).map((p) => el('p', { class: cls }, withCode(p.trim())));
}

/** `parts` with `separator` between them (a function makes a fresh node each time). */
function joined(parts, separator) {
  return parts.flatMap((part, i) => (i ? [typeof separator === 'function' ? separator() : separator, part] : [part]));
}

const slug = (text) => String(text).replace(/[^A-Za-z0-9_-]+/g, '-');
const short = (value) => {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}…` : text;
};

// ---------------------------------------------------------------- references

const unescapePointer = (s) => decodeURIComponent(s).replace(/~1/g, '/').replace(/~0/g, '~');

/** A local `$ref` (parameters, bodies, responses) followed to its target, a few hops at most. */
function resolve(obj, hops = 0) {
  if (!obj || typeof obj.$ref !== 'string' || !obj.$ref.startsWith('#/') || hops > 8) return obj || {};
  const target = obj.$ref.slice(2).split('/').map(unescapePointer)
    .reduce((node, key) => (node == null ? node : node[key]), spec);
  return target ? resolve(target, hops + 1) : obj;
}

const schemaName = (ref) => (typeof ref === 'string' && ref.startsWith(SCHEMAS) ? unescapePointer(ref.slice(SCHEMAS.length)) : null);

function refLink(ref) {
  const name = schemaName(ref);
  return name ? el('a', { class: 'ref', href: `#schema-${slug(name)}`, text: name }) : el('code', { text: ref });
}

// ---------------------------------------------------------------- schemas

const isObj = (s) => s !== null && typeof s === 'object' && !Array.isArray(s);
const word = (text) => el('span', { class: 'type', text });
const sepSpan = (text) => () => el('span', { class: 'sep', text });

/** Whether a schema needs more than one line: fields, or alternatives that do. */
function needsBlock(s, depth = 0) {
  if (!isObj(s) || s.$ref || depth > MAX_DEPTH) return false;
  if (isObj(s.properties) && Object.keys(s.properties).length) return true;
  for (const key of Object.keys(COMPOSITIONS)) {
    if (Array.isArray(s[key]) && s[key].some((a) => altNeedsBlock(a, depth + 1))) return true;
  }
  if (Array.isArray(s.allOf) && s.allOf.length > 1 && s.type) return true;
  return needsBlock(s.items, depth + 1) || needsBlock(s.additionalProperties, depth + 1);
}

/** An alternative with its own description is listed on its own line, to show it. */
const altNeedsBlock = (a, depth) => needsBlock(a, depth) || (isObj(a) && typeof a.description === 'string' && a.description.trim() !== '');

/** A schema's one-line type, as nodes: a link for a ref, "array of X", "A | B", … */
function typeInline(s, depth = 0) {
  if (s === true || s === undefined || (isObj(s) && !Object.keys(s).length)) return [word('any')];
  if (s === false) return [word('nothing')];
  if (!isObj(s) || depth > MAX_DEPTH) return [word('…')];
  if (typeof s.$ref === 'string') return [refLink(s.$ref)];
  if ('const' in s) return [el('code', { class: 'const', text: short(s.const) })];
  const parts = [];
  const types = Array.isArray(s.type) ? s.type : s.type ? [s.type] : [];
  if (types.length) parts.push(joined(types.map((t) => typeWord(s, t, depth)), sepSpan(' | ')));
  for (const [key, sep] of [['oneOf', ' | '], ['anyOf', ' | '], ['allOf', ' & ']]) {
    const alts = s[key];
    if (!Array.isArray(alts) || !alts.length) continue;
    if (alts.some((a) => altNeedsBlock(a, depth + 1))) parts.push([word(COMPOSITIONS[key].slice(0, -1).toLowerCase())]);
    else parts.push(joined(alts.map((a) => typeInline(a, depth + 1)), sepSpan(sep)));
  }
  if (!parts.length) {
    if (s.properties || s.additionalProperties) parts.push(typeWord(s, 'object', depth));
    else if (s.items) parts.push(typeWord(s, 'array', depth));
    else if (Array.isArray(s.enum)) parts.push([word('enum')]);
    else parts.push([word('any')]);
  }
  return joined(parts, sepSpan(' · '));
}

function typeWord(s, t, depth) {
  if (t === 'array') {
    if (Array.isArray(s.prefixItems)) return [word('tuple of '), joined(s.prefixItems.map((i) => typeInline(i, depth + 1)), ', ')];
    return [word('array of '), typeInline(s.items, depth + 1)];
  }
  if (t === 'object' && !s.properties && isObj(s.additionalProperties)) {
    return [word('map of '), typeInline(s.propertyNames || { type: 'string' }, depth + 1), word(' → '), typeInline(s.additionalProperties, depth + 1)];
  }
  return [word(s.format ? `${t} (${s.format})` : t)];
}

const LIMITS = [
  ['default', 'default'], ['minimum', '≥'], ['exclusiveMinimum', '>'], ['maximum', '≤'],
  ['exclusiveMaximum', '<'], ['multipleOf', 'multiple of'], ['minLength', 'min length'],
  ['maxLength', 'max length'], ['pattern', 'pattern'], ['minItems', 'min items'],
  ['maxItems', 'max items'], ['minProperties', 'min fields'], ['maxProperties', 'max fields'],
];

/** Enum values, bounds, defaults, flags and an example, as one small line (or null). */
function constraints(s) {
  if (!isObj(s)) return null;
  const bits = [];
  if (Array.isArray(s.enum)) bits.push(['one of ', joined(s.enum.map((v) => el('code', { class: 'const', text: short(v) })), ' ')]);
  for (const [key, label] of LIMITS) {
    if (s[key] !== undefined) bits.push([`${label} `, el('code', { text: key === 'pattern' ? s.pattern : short(s[key]) })]);
  }
  if (s.uniqueItems) bits.push('unique items');
  if (s.readOnly) bits.push('read-only');
  if (s.writeOnly) bits.push('write-only');
  if (s.deprecated) bits.push(el('span', { class: 'deprecated', text: 'deprecated' }));
  const example = Array.isArray(s.examples) ? s.examples[0] : s.example;
  if (example !== undefined) bits.push(['e.g. ', el('code', { text: short(example) })]);
  return bits.length ? el('span', { class: 'constraints' }, joined(bits, ' · ')) : null;
}

/** The lines below a type: the fields of an object, the alternatives, the items' fields. */
function schemaBlock(s, depth = 0) {
  if (!needsBlock(s, depth) || depth > MAX_DEPTH) return null;
  const out = el('div', { class: 'schema' });
  if (isObj(s.properties) && Object.keys(s.properties).length) add(out, fieldList(s, depth));
  for (const [key, label] of Object.entries(COMPOSITIONS)) {
    const alts = s[key];
    if (!Array.isArray(alts) || !(alts.some((a) => altNeedsBlock(a, depth + 1)) || (key === 'allOf' && s.type))) continue;
    add(out, el('div', { class: 'alts-label', text: label }),
      el('ol', { class: 'alts' }, alts.map((a) => el('li', {}, schemaLine(a, depth + 1)))));
  }
  for (const [key, label] of [['items', 'Each item:'], ['additionalProperties', 'Each value:']]) {
    const inner = schemaBlock(s[key], depth + 1);
    if (inner) add(out, el('div', { class: 'alts-label', text: label }), inner);
  }
  return out;
}

function fieldList(s, depth) {
  const required = new Set(Array.isArray(s.required) ? s.required : []);
  return el('ul', { class: 'fields' }, Object.entries(s.properties).map(([name, p]) => el('li', { class: 'field-row' },
    el('div', { class: 'field-head' },
      el('code', { class: 'fname', text: name }), ' ', typeInline(p, depth + 1),
      required.has(name) ? el('span', { class: 'req', text: 'required' }) : null,
      constraints(p)),
    paras(isObj(p) ? p.description : null),
    schemaBlock(p, depth + 1))));
}

/** A schema as a type line, its description and its block. */
function schemaLine(s, depth = 0) {
  return el('div', { class: 'schema-line' },
    el('div', { class: 'field-head' }, isObj(s) && s.title ? el('strong', { text: `${s.title}: ` }) : null, typeInline(s, depth), constraints(s)),
    paras(isObj(s) ? s.description : null),
    schemaBlock(s, depth));
}

/** A body's schema; a top-level ref to a component is expanded one level when `expand`. */
function topSchema(s, expand) {
  const name = isObj(s) ? schemaName(s.$ref) : null;
  const target = name && spec.components?.schemas?.[name];
  if (!expand || !isObj(target)) return schemaLine(s);
  return el('div', { class: 'schema-line' },
    el('div', { class: 'field-head' }, refLink(s.$ref), el('span', { class: 'muted', text: ' · ' }), typeInline(target, 1), constraints(target)),
    schemaBlock(target, 1));
}

function mediaList(content, expand) {
  return Object.entries(isObj(content) ? content : {}).map(([type, media]) => el('div', { class: 'media' },
    el('span', { class: 'pill plain neutral ctype', text: type }),
    isObj(media) && media.schema !== undefined ? topSchema(media.schema, expand) : null));
}

// ---------------------------------------------------------------- operations

function collectOperations() {
  const ops = [];
  for (const [path, rawItem] of Object.entries(spec.paths || {})) {
    const item = resolve(rawItem);
    for (const method of METHODS) {
      const op = item[method];
      if (!isObj(op)) continue;
      const params = new Map();
      for (const p of [...(item.parameters || []), ...(op.parameters || [])].map((x) => resolve(x))) params.set(`${p.in}:${p.name}`, p);
      ops.push({
        path, method, op, params: [...params.values()],
        tag: (Array.isArray(op.tags) && op.tags[0]) || 'other',
        id: op.operationId || slug(`${method}-${path}`),
        search: `${method} ${path} ${op.summary || ''}`.toLowerCase(),
      });
    }
  }
  return ops;
}

/** The operation's security requirements: its own, else the document's. */
function access(op) {
  const requirements = Array.isArray(op.security) ? op.security : Array.isArray(spec.security) ? spec.security : [];
  const open = requirements.length === 0 || requirements.some((r) => isObj(r) && !Object.keys(r).length);
  return { open, schemes: [...new Set(requirements.flatMap((r) => Object.keys(r || {})))] };
}

function statusClass(code) {
  return { 2: 'ok', 3: 'info', 4: 'warn', 5: 'bad' }[String(code)[0]] || 'neutral';
}

function renderOperation(o) {
  const { open, schemes } = access(o.op);
  const body = el('div', { class: 'op-body' });
  add(body, paras(o.op.description));
  if (!open) {
    add(body, el('p', { class: 'small muted' }, 'Credentials: ',
      joined(schemes.map((n) => el('a', { href: `#auth-${slug(n)}`, text: n })), ' or '), '.'));
  }
  if (o.params.length) {
    add(body, el('h4', { text: 'Parameters' }), el('div', { class: 'table-wrap' }, el('table', { class: 'table params' },
      el('thead', {}, el('tr', {}, ['Name', 'In', 'Type', 'Description'].map((h) => el('th', { text: h })))),
      el('tbody', {}, o.params.map((p) => {
        const schema = p.schema ?? Object.values(p.content || {})[0]?.schema;
        return el('tr', {},
          el('td', {}, el('code', { class: 'fname', text: p.name }), p.required ? el('span', { class: 'req', text: 'required' }) : null),
          el('td', { text: p.in }),
          el('td', {}, typeInline(schema)),
          el('td', {}, paras(p.description), constraints(schema), p.deprecated ? el('span', { class: 'deprecated', text: 'deprecated' }) : null, schemaBlock(schema, 1)));
      })))));
  }
  if (o.op.requestBody) {
    const rb = resolve(o.op.requestBody);
    add(body, el('h4', {}, 'Request body ', el('span', { class: 'small muted', text: rb.required ? '(required)' : '(optional)' })),
      paras(rb.description), mediaList(rb.content, true));
  }
  const responses = Object.entries(isObj(o.op.responses) ? o.op.responses : {});
  if (responses.length) {
    add(body, el('h4', { text: 'Responses' }), el('ul', { class: 'responses' }, responses.map(([code, raw]) => {
      const r = resolve(raw);
      return el('li', {},
        el('div', { class: 'resp-head' }, el('span', { class: `pill plain status ${statusClass(code)}`, text: code }), el('span', {}, withCode(r.description || ''))),
        mediaList(r.content, String(code).startsWith('2')));
    })));
  }
  add(body, el('p', { class: 'small muted permalink' }, 'Operation ', el('a', { href: `#${o.id}` }, el('code', { text: o.id }))));
  const badge = open
    ? el('span', { class: 'pill ok access', text: 'public' })
    : el('span', { class: 'pill neutral access', title: `Needs ${schemes.join(' or ')}`, text: 'needs credentials' });
  o.node = el('details', { class: `op${o.op.deprecated ? ' is-deprecated' : ''}`, id: o.id, 'data-method': o.method, 'data-path': o.path },
    el('summary', { class: 'op-head' },
      el('span', { class: `method m-${o.method}`, text: o.method.toUpperCase() }),
      el('code', { class: 'op-path', text: o.path }),
      el('span', { class: 'op-summary', text: o.op.summary || '' }),
      o.op.deprecated ? el('span', { class: 'pill warn plain', text: 'deprecated' }) : null,
      badge),
    body);
  return o.node;
}

// ---------------------------------------------------------------- page

function renderHeader() {
  const info = isObj(spec.info) ? spec.info : {};
  const schemes = Object.entries(spec.components?.securitySchemes || {}).map(([name, raw]) => {
    const s = resolve(raw);
    const how = s.type === 'http' ? `HTTP ${s.scheme || ''}`.trim() : s.type === 'apiKey' ? `API key in ${s.in} ${s.name}` : s.type;
    return el('li', { id: `auth-${slug(name)}` }, el('code', { text: name }), el('span', { class: 'muted', text: ` — ${how || 'scheme'}. ` }), withCode(s.description || ''));
  });
  return el('header', { class: 'card docs-head' },
    el('div', { class: 'page-head' },
      el('h1', { 'data-testid': 'docs-title', text: info.title || 'API' }),
      info.version ? el('span', { class: 'pill info plain', 'data-testid': 'docs-version', text: `v${info.version}` }) : null,
      el('span', { class: 'pill neutral plain', text: `OpenAPI ${spec.openapi || '?'}` }),
      el('span', { class: 'spacer' }),
      el('a', { href: SPEC_URL, text: 'Raw JSON' })),
    paras(info.description),
    schemes.length ? [el('h2', { text: 'Credentials' }),
      el('p', { class: 'small muted', text: 'Operations marked "needs credentials" take one of these; "public" ones take none.' }),
      el('ul', { class: 'schemes' }, schemes)] : null);
}

function render() {
  const ops = collectOperations();
  const groups = new Map((Array.isArray(spec.tags) ? spec.tags : []).map((t) => [t.name, { tag: t, ops: [] }]));
  for (const o of ops) {
    if (!groups.has(o.tag)) groups.set(o.tag, { tag: { name: o.tag }, ops: [] });
    groups.get(o.tag).ops.push(o);
  }
  const list = [...groups.values()].filter((g) => g.ops.length);
  const nav = document.getElementById('docs-tags');
  const content = document.getElementById('docs-content');
  const noMatch = el('p', { class: 'empty', hidden: true, 'data-testid': 'docs-no-match', text: 'No operation matches.' });
  content.append(renderHeader(), noMatch);
  for (const g of list) {
    const id = `tag-${slug(g.tag.name)}`;
    g.count = el('span', { class: 'count', text: String(g.ops.length) });
    g.link = el('a', { href: `#${id}` }, el('span', { class: 'tag-name', text: g.tag.name }), g.count);
    nav.append(el('li', {}, g.link));
    g.section = el('section', { class: 'tag-section', id, 'data-tag': g.tag.name },
      el('h2', { text: g.tag.name }), paras(g.tag.description), g.ops.map(renderOperation));
    content.append(g.section);
  }
  const schemas = Object.entries(spec.components?.schemas || {});
  nav.append(el('li', { class: 'nav-schemas' }, el('a', { href: '#schemas' }, el('span', { class: 'tag-name', text: 'Schemas' }), el('span', { class: 'count', text: String(schemas.length) }))));
  content.append(el('section', { class: 'schemas', id: 'schemas', 'data-testid': 'schemas' },
    el('h2', { text: 'Schemas' }),
    schemas.length ? null : el('p', { class: 'empty', text: 'The document defines no schemas.' }),
    schemas.map(([name, s]) => el('section', { class: 'card schema-def', id: `schema-${slug(name)}` },
      el('h3', {}, el('code', { text: name }), ' ', el('span', { class: 'small' }, typeInline(s, 1))),
      paras(isObj(s) ? s.description : null), constraints(s), schemaBlock(s, 1)))));

  const search = document.getElementById('docs-search');
  const filter = () => {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const g of list) {
      let n = 0;
      for (const o of g.ops) {
        const hit = words.every((w) => o.search.includes(w));
        o.node.hidden = !hit;
        n += hit ? 1 : 0;
      }
      g.section.hidden = n === 0;
      g.count.textContent = words.length ? `${n}/${g.ops.length}` : String(g.ops.length);
      g.link.classList.toggle('none', n === 0);
      shown += n;
    }
    noMatch.hidden = shown > 0;
  };
  search.addEventListener('input', filter);
  document.addEventListener('keydown', (e) => {
    if (e.key === '/' && document.activeElement !== search && !/^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement?.tagName)) {
      e.preventDefault();
      search.focus();
    }
  });
  filter();
}

/** Opens and scrolls to the operation (or schema, tag) that the URL's #fragment names. */
function openHash() {
  let id = location.hash.slice(1);
  try { id = decodeURIComponent(id); } catch { /* keep it as it is */ }
  const target = id && document.getElementById(id);
  if (!target) return;
  if (target instanceof HTMLDetailsElement) target.open = true;
  target.scrollIntoView({ block: 'start' });
}

async function main() {
  const status = document.getElementById('docs-status');
  const root = document.getElementById('main');
  try {
    let response;
    try {
      response = await fetch(SPEC_URL, { headers: { Accept: 'application/json' } });
    } catch (e) {
      throw new Error(`the server could not be reached (${e.message})`);
    }
    if (!response.ok) throw new Error(`the server answered ${response.status} ${response.statusText}`.trim());
    try {
      spec = await response.json();
    } catch {
      throw new Error('the answer is not JSON');
    }
    if (!isObj(spec) || !isObj(spec.paths)) throw new Error('the answer is not an OpenAPI document (it has no "paths")');
    render();
  } catch (e) {
    document.getElementById('docs-content').replaceChildren();
    status.className = 'notice bad';
    status.setAttribute('role', 'alert');
    status.replaceChildren(`Could not load the API description from ${SPEC_URL}: ${e.message}. `,
      el('a', { href: SPEC_URL, text: 'Open the raw document' }), ' or ', el('a', { href: '/docs', text: 'reload this page' }), '.');
    root.removeAttribute('aria-busy');
    return;
  }
  const title = spec.info?.title;
  if (title) document.title = `${title}${spec.info.version ? ` ${spec.info.version}` : ''} · API reference`;
  status.hidden = true;
  root.removeAttribute('aria-busy');
  window.addEventListener('hashchange', openHash);
  openHash();
}

main();
