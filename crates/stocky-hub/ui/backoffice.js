// Stocky back office: the hub's page at `/` for owners, admins and managers.
//
// Sign-in (POST /api/auth/login), then a left sidebar with:
//  - Stock      live levels of one site or of all sites side by side with their total:
//               GET /api/inventory?siteId= per site (levels and thresholds), the catalog
//               GET /api/products; writes
//               POST /api/products, POST /api/stock/update?siteId=, PUT /api/inventory/{id};
//               events stock:update|add|subtract|sync, stock:low, inventory:thresholds,
//               product:*, stock:negative (a changed row flashes; low rows are marked).
//  - Sales      GET /api/sales (site, day, status, paging); refunds and voids;
//               events SALE_CREATED|SALE_UPDATED|SALE_CANCELLED. The sidebar's badge
//               counts new sales in every tab: each tab adds the SALE_CREATED it hears to
//               localStorage (`stocky.backoffice.newSales`, keyed by sale, so tabs agree),
//               and opening the sales page moves the "seen" mark for all tabs (the
//               `storage` event repaints the others).
//  - Stores     GET /api/admin/sites (isOnline, lastPingAt, lastSyncAt, syncVersion),
//               GET /api/sync/status (orders awaiting a number), the hub's sync log
//               GET /api/admin/sites/{id}/sync-log; event site:status.
//  - Transfers  GET /api/transfers, POST /api/transfers/request, …/{id}/approve|reject;
//               events transfer:*, TRANSFER_OUT|TRANSFER_IN.
//  - Orders     GET /api/orders (the day's, and those awaiting a number), PATCH
//               /api/orders/{id}; events order_created, order_updated.
//  - Admin      (owners, admins) users, sites, activation codes, devices, API keys:
//               /api/admin/users|sites|devices|api-keys, …/sites/{id}/activation-codes.
//  - Audit      (owners, admins) GET /api/audit with filters and paging.
// Sign-in, start and sign-out run through app.js's runPage(); the live connection is the
// browser SDK (/sdk/stocky.js) through its startLive(); 'full_refresh' reloads the open
// view. Nothing user-made is put in the page as HTML.

import {
  api, atLeast, cents, describeError, deviceId, field, flash, fmt, h, linesSummary, mount,
  openDialog, orderStats, ordersPanel, pill, refundDialog, refundedCents, runPage, saleLeft,
  saleStatusPill, select, signOut, toast, uuid,
} from '/ui/app.js';

const root = document.getElementById('app');
const DEVICE = deviceId('backoffice');

const app = {
  started: false,
  live: null,
  user: null, // {role, siteId, userId, tenantId, email}
  sites: [], // GET /api/admin/sites rows
  products: new Map(), // productId -> product
  users: new Map(), // userId -> email (owners and admins only)
  view: null, // the open view: {onEvent, reload, destroy}
  main: null,
  nav: null,
  router: null,
  unsubscribe: [],
};

const NAV = [
  { name: 'stock', label: 'Stock', icon: '▦' },
  { name: 'sales', label: 'Sales', icon: '¤' },
  { name: 'stores', label: 'Stores', icon: '⌂' },
  { name: 'transfers', label: 'Transfers', icon: '⇄' },
  { name: 'orders', label: 'Orders', icon: '☰' },
  { name: 'admin', label: 'Users & devices', icon: '⚙', least: 'admin' },
  { name: 'audit', label: 'Audit log', icon: '✎', least: 'admin' },
];

// ================================================================ start, sign-in, shell

function boot() {
  runPage(app, {
    root,
    route,
    deviceId: DEVICE,
    signIn: {
      documentTitle: 'Sign in · Stocky back office',
      title: 'Sign in to the back office',
      subtitle: 'Back office',
      note: 'Owners, admins and managers sign in here with the account the hub gave them.',
    },
    shell: renderShell,
    onEvent: onLiveEvent,
    onFullRefresh: () => loadCatalog().catch(() => {}),
    load: async () => {
      badge.render();
      app.unsubscribe.push(badge.watch());
      await Promise.all([loadSites(), loadCatalog(), loadUsers()]);
    },
  });
}

function renderShell(liveSlot) {
  const links = NAV.filter((n) => !n.least || atLeast(app.user.role, n.least)).map((n) => {
    const a = h('a', { href: `#/${n.name}`, dataset: { nav: n.name } },
      h('span', { class: 'nav-icon', attrs: { 'aria-hidden': 'true' }, text: n.icon }),
      h('span', { text: n.label }));
    if (n.name === 'sales') {
      app.badgeEl = h('span', { class: 'nav-badge', hidden: true, attrs: { 'data-testid': 'sales-badge' } });
      app.badgeLive = h('span', { class: 'sr-only', attrs: { 'aria-live': 'polite' } });
      a.append(app.badgeEl);
      a.addEventListener('click', () => { if (location.hash === '#/sales') badge.seen(); });
    }
    return h('li', {}, a);
  });
  // The badge is part of the link's name ("Sales, 2 new sales"); the live region beside
  // the list announces changes once.
  app.nav = h('nav', { class: 'sidebar', attrs: { 'aria-label': 'Back office' } }, h('ul', {}, links), app.badgeLive);
  app.main = h('main', { class: 'main', id: 'main', attrs: { tabindex: '-1' } });
  const who = h('span', { class: 'who', attrs: { 'data-testid': 'who' }, text: `${app.user.email || app.user.userId || ''} · ${app.user.role || ''}` });
  mount(root, h('div', { class: 'app' },
    h('header', { class: 'topbar' },
      h('a', { class: 'brand', href: '#/stock' }, h('img', { src: '/favicon.svg', alt: '' }), 'Stocky', h('small', { text: 'Back office' })),
      h('span', { class: 'spacer' }),
      liveSlot,
      who,
      h('button', { class: 'btn small', type: 'button', text: 'Password…', attrs: { 'aria-label': 'Change your password' }, on: { click: () => changeOwnPassword() } }),
      h('button', { class: 'btn small', type: 'button', text: 'Sign out', on: { click: () => signOut() } })),
    app.nav,
    app.main));
}

/** The signed-in user changes their own password (their other sessions end). */
function changeOwnPassword() {
  openDialog('Change your password', (close) => {
    const err = errorEl();
    const current = h('input', { type: 'password', required: true, autocomplete: 'current-password' });
    const next = h('input', { type: 'password', required: true, minLength: 8, autocomplete: 'new-password' });
    const form = h('form', {}, err,
      field('Current password', current),
      field('New password', next, 'At least 8 characters. You stay signed in here; other devices sign in again.'),
      h('div', { class: 'form-actions' },
        h('button', { class: 'btn', type: 'button', text: 'Cancel', on: { click: close } }),
        h('button', { class: 'btn primary', type: 'submit', text: 'Change password' })));
    onSubmit(form, err, async () => {
      await api('/api/auth/password', { body: { currentPassword: current.value, newPassword: next.value } });
      toast('Password changed.', 'ok');
      close();
    });
    return form;
  });
}

function route({ name, params }) {
  if (!app.started || !app.main?.isConnected) return;
  const allowed = NAV.find((n) => n.name === name && (!n.least || atLeast(app.user.role, n.least)));
  if (!allowed) { app.router.go('stock'); return; }
  for (const a of app.nav.querySelectorAll('a')) {
    if (a.dataset.nav === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${allowed.label} · Stocky back office`;
  app.view?.destroy?.();
  mount(app.main);
  const views = { stock: stockView, sales: salesView, stores: storesView, transfers: transfersView, orders: ordersView, admin: adminView, audit: auditView };
  app.view = views[name](app.main, params) || {};
  if (name === 'sales') badge.seen();
}

function onLiveEvent(ev) {
  if (!ev || typeof ev.event !== 'string') return;
  if (ev.event.startsWith('product:') && ev.data?.id != null) {
    if (ev.event === 'product:deleted' || ev.data.deleted) app.products.delete(ev.data.id);
    else app.products.set(ev.data.id, ev.data);
  }
  if (ev.event === 'site:status') updateSite(ev.data);
  if (ev.event === 'stock:negative') {
    const list = (ev.data?.products || []).map((p) => `${productName(p.productId)} at ${p.stock}`).join(', ');
    toast(`Below zero at ${siteName(ev.data?.siteId)}: ${list}`, 'warn', 9000);
  }
  if (ev.event === 'SALE_CREATED') badge.add(ev);
  try {
    app.view?.onEvent?.(ev);
  } catch (e) {
    console.error('view could not apply an event', e);
  }
}

// ================================================================ shared data

async function loadSites() {
  const answer = await api('/api/admin/sites');
  app.sites = answer.data || [];
}

function updateSite(status) {
  const site = app.sites.find((s) => s.id === status?.siteId);
  if (site) Object.assign(site, { isOnline: status.isOnline, lastPingAt: status.lastPingAt ?? site.lastPingAt });
}

async function loadCatalog() {
  const all = new Map();
  let after = null;
  for (let page = 0; page < 50; page++) {
    const answer = await api(`/api/products?limit=1000${after ? `&after=${after}` : ''}`);
    for (const p of answer.data || []) all.set(p.id, p);
    if (!answer.next) break;
    after = answer.next;
  }
  app.products = all;
}

async function loadUsers() {
  if (!atLeast(app.user.role, 'admin')) return;
  try {
    const [users, keys] = await Promise.all([api('/api/admin/users'), api('/api/admin/api-keys').catch(() => ({ data: [] }))]);
    app.users = new Map([
      ...(users.data || []).map((u) => [u.id, u.name]),
      ...(keys.data || []).map((k) => [`key:${k.id}`, `${k.name} (key)`]),
    ]);
  } catch { /* names stay ids */ }
}

const productName = (id) => app.products.get(Number(id))?.name || `Product #${id}`;
const siteName = (id) => app.sites.find((s) => s.id === id)?.name || id || '—';
const userName = (id) => {
  if (!id) return '—';
  if (app.users.has(id)) return app.users.get(id);
  if (id === app.user.userId) return app.user.email || 'you';
  return id.length > 14 ? `${id.slice(0, 8)}…` : id;
};
const canAll = () => atLeast(app.user.role, 'admin') && !app.user.siteId;

/** [value, label] options of the sites the user sees, optionally headed by "All sites". */
function siteChoices(withAll) {
  const list = app.sites.map((s) => [s.id, s.name && s.name !== s.id ? `${s.name} (${s.id})` : s.id]);
  return withAll && canAll() ? [['', 'All sites'], ...list] : list;
}

function pageHead(title, sub, ...actions) {
  return h('div', { class: 'page-head' },
    h('h1', { text: title }),
    sub ? h('span', { class: 'sub', text: sub }) : null,
    h('span', { class: 'spacer' }),
    actions);
}

function errorBox(err, retry) {
  return h('div', { class: 'notice bad', attrs: { role: 'alert' } },
    describeError(err), ' ',
    retry ? h('button', { class: 'btn small', type: 'button', text: 'Try again', on: { click: retry } }) : null);
}

/** A form's submit that shows its error in `errorEl` and re-enables the button. */
function onSubmit(form, errorEl, fn) {
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    errorEl.textContent = '';
    const button = form.querySelector('button[type="submit"]');
    if (button) button.disabled = true;
    try {
      await fn();
    } catch (err) {
      errorEl.textContent = describeError(err);
    } finally {
      if (button) button.disabled = false;
    }
  });
}

const errorEl = () => h('div', { class: 'form-error', attrs: { role: 'alert' } });

// ================================================================ sales badge (all tabs)

const badge = (() => {
  // Two keys, so that tabs writing at the same moment never undo each other: the new sales
  // heard ({epoch, sales: {saleId: eventId}}, every tab adds the same entries) and the
  // "seen" mark ({epoch, id}, only ever moves up).
  const NEW = 'stocky.backoffice.newSales';
  const SEEN = 'stocky.backoffice.salesSeen';
  const read = (key, empty) => {
    try { return JSON.parse(localStorage.getItem(key)) || empty; } catch { return empty; }
  };
  const heard = () => read(NEW, { epoch: null, sales: {} });
  const mark = () => read(SEEN, { epoch: null, id: 0 });
  const seenIn = (epoch) => { const m = mark(); return m.epoch === epoch ? m.id : 0; };
  const count = () => {
    const b = heard();
    const seenId = seenIn(b.epoch);
    return Object.values(b.sales).filter((id) => id > seenId).length;
  };
  const onSales = () => location.hash.startsWith('#/sales') && document.visibilityState === 'visible';

  function render() {
    if (!app.badgeEl) return;
    const n = count();
    app.badgeEl.hidden = n === 0;
    app.badgeEl.textContent = n > 99 ? '99+' : String(n);
    app.badgeEl.setAttribute('aria-label', `${n} new ${n === 1 ? 'sale' : 'sales'}`);
    const say = n ? `${n} new ${n === 1 ? 'sale' : 'sales'}` : '';
    if (app.badgeLive.textContent !== say) app.badgeLive.textContent = say;
  }

  /** A SALE_CREATED heard by this tab (each tab hears it once and adds the same entry). */
  function add(ev) {
    let b = heard();
    if (ev.epoch && b.epoch !== ev.epoch) b = { epoch: ev.epoch, sales: {} };
    const seenId = seenIn(b.epoch);
    for (const [id, eventId] of Object.entries(b.sales)) if (eventId <= seenId) delete b.sales[id];
    const saleId = ev.data?.id || `event-${ev.id}`;
    if (ev.id > seenId) b.sales[saleId] = Math.max(ev.id, b.sales[saleId] || 0);
    localStorage.setItem(NEW, JSON.stringify(b));
    if (onSales()) seen(ev.id);
    else render();
  }

  /** The sales page is open: everything heard so far is seen, in every tab. */
  function seen(upTo = 0) {
    const b = heard();
    const epoch = b.epoch || app.live?.epoch || null;
    const now = seenIn(epoch);
    const top = Math.max(upTo, now, app.live?.lastEventId || 0, ...Object.values(b.sales));
    if (top > now || mark().epoch !== epoch) localStorage.setItem(SEEN, JSON.stringify({ epoch, id: top }));
    render();
  }

  function watch() {
    const onStorage = (e) => { if (e.key === NEW || e.key === SEEN || e.key === null) render(); };
    const onVisible = () => { if (onSales()) seen(); };
    window.addEventListener('storage', onStorage);
    document.addEventListener('visibilitychange', onVisible);
    return () => {
      window.removeEventListener('storage', onStorage);
      document.removeEventListener('visibilitychange', onVisible);
    };
  }

  return { add, seen, render, watch };
})();

// ================================================================ Stock

function stockView(main, params) {
  const all = canAll() && app.sites.length > 1;
  let site = params[0] ?? (all ? '' : app.user.siteId || app.sites[0]?.id || 'default');
  if (site === '' && !canAll()) site = app.user.siteId || 'default';
  const rows = new Map(); // productId -> {qty, min, max: {siteId: n}}
  const blank = () => ({ qty: {}, min: {}, max: {} });
  const isLow = (r, s) => r.min[s] != null && r.qty[s] !== undefined && r.qty[s] < r.min[s];
  const rowEls = new Map();
  const siteSelect = select(siteChoices(true), { value: site, id: 'stock-site' });
  const search = h('input', { type: 'search', id: 'stock-search', placeholder: 'Name, SKU or number', attrs: { 'data-testid': 'stock-search' } });
  const lowOnly = h('input', { type: 'checkbox', id: 'stock-low' });
  const body = h('div');
  const countEl = h('span', { class: 'sub', attrs: { 'aria-live': 'polite' } });
  const canWrite = atLeast(app.user.role, 'manager');

  mount(main,
    pageHead('Stock', null, countEl,
      canWrite ? h('button', { class: 'btn primary', type: 'button', text: 'New product', on: { click: newProduct } }) : null),
    h('div', { class: 'toolbar' },
      field('Site', siteSelect),
      field('Search', search),
      h('label', { class: 'field', attrs: { for: 'stock-low' } }, h('span', { class: 'label', text: 'Show' }), h('span', {}, lowOnly, ' Low stock only'))),
    h('div', { class: 'card' }, body));

  siteSelect.addEventListener('change', () => app.router.go(`stock${siteSelect.value ? `/${siteSelect.value}` : '/'}`));
  search.addEventListener('input', applyFilter);
  lowOnly.addEventListener('change', applyFilter);

  const sitesShown = () => (site ? [site] : app.sites.map((s) => s.id));

  async function load() {
    mount(body, h('p', { class: 'empty', text: 'Loading stock…' }));
    try {
      rows.clear();
      // Each site's levels with their thresholds (GET /api/inventory?siteId=): the
      // quantities, the low marks, and for "All sites" the total of the columns.
      const shown = sitesShown();
      const lists = await Promise.all(shown.map((id) => api(`/api/inventory?siteId=${encodeURIComponent(id)}`)));
      lists.forEach((inv, i) => {
        for (const l of inv.data || []) {
          const r = rows.get(l.productId) || blank();
          r.qty[shown[i]] = l.quantity;
          r.min[shown[i]] = l.minStock;
          r.max[shown[i]] = l.maxStock;
          rows.set(l.productId, r);
        }
      });
      for (const id of app.products.keys()) if (!rows.has(id)) rows.set(id, blank());
      renderTable();
    } catch (err) {
      mount(body, errorBox(err, load));
    }
  }

  function renderTable() {
    rowEls.clear();
    const ids = [...rows.keys()].sort((a, b) => a - b);
    if (!ids.length) {
      mount(body, h('p', { class: 'empty', text: 'No products yet. Add one with "New product", or set stock over the API.' }));
      countEl.textContent = '';
      return;
    }
    const head = h('tr', {},
      h('th', { class: 'num', text: '#' }),
      h('th', { text: 'Product' }),
      h('th', { class: 'num', text: 'Price' }),
      sitesShown().map((id) => h('th', { class: 'num', text: site ? 'On hand' : siteName(id) })),
      site ? null : h('th', { class: 'num', text: 'Total' }),
      site ? h('th', { class: 'num', text: 'Min / max' }) : null,
      h('th', { text: 'Status' }),
      site && canWrite ? h('th', { class: 'num', text: 'Actions' }) : null);
    const tbody = h('tbody');
    for (const id of ids) {
      const tr = h('tr', { dataset: { productId: id } });
      rowEls.set(id, tr);
      fillRow(tr, id);
      tbody.append(tr);
    }
    mount(body, h('div', { class: 'table-wrap' },
      h('table', { class: 'table', attrs: { 'data-testid': 'stock-table', 'aria-label': site ? `Stock at ${siteName(site)}` : 'Stock at every site' } },
        h('thead', {}, head), tbody)));
    applyFilter();
  }

  function fillRow(tr, id) {
    const r = rows.get(id);
    const p = app.products.get(id);
    const qtys = sitesShown().map((s) => r.qty[s]);
    const total = qtys.reduce((a, q) => a + (q || 0), 0);
    const low = sitesShown().some((s) => isLow(r, s));
    const negative = qtys.some((q) => q < 0);
    tr.classList.toggle('is-low', low || negative);
    const status = negative ? pill('Below zero', 'bad') : low ? pill('Low', 'warn', { attrs: { 'data-testid': 'low-mark' } }) : p ? pill('OK', 'ok') : pill('Not in catalog', 'neutral');
    mount(tr,
      h('td', { class: 'num muted', text: String(id) }),
      h('td', {}, h('div', { text: p?.name || `Product #${id}` }), p?.sku ? h('div', { class: 'small muted', text: p.sku }) : null),
      h('td', { class: 'num', text: p ? fmt.money(p.price) : '—' }),
      sitesShown().map((s) => h('td', { class: ['num', 'qty', isLow(r, s) || r.qty[s] < 0 ? 'low' : null], dataset: { site: s }, attrs: { 'data-testid': 'qty' }, text: r.qty[s] === undefined ? '—' : fmt.qty(r.qty[s]) })),
      site ? null : h('td', { class: 'num', attrs: { 'data-testid': 'total' }, text: fmt.qty(total) }),
      site ? h('td', { class: 'num muted', text: `${r.min[site] ?? '—'} / ${r.max[site] ?? '—'}` }) : null,
      h('td', {}, status),
      site && canWrite
        ? h('td', {}, h('div', { class: 'actions' },
          h('button', { class: 'btn small', type: 'button', text: 'Count', attrs: { 'aria-label': `Set the count of ${p?.name || `product ${id}`}` }, on: { click: () => setCount(id) } }),
          h('button', { class: 'btn small', type: 'button', text: 'Min/max', attrs: { 'aria-label': `Thresholds of ${p?.name || `product ${id}`}` }, on: { click: () => thresholds(id) } })))
        : null);
    tr.dataset.search = `${id} ${p?.name || ''} ${p?.sku || ''} ${p?.barcode || ''} ${p?.category || ''}`.toLowerCase();
  }

  function applyFilter() {
    const q = search.value.trim().toLowerCase();
    let shown = 0;
    for (const [, tr] of rowEls) {
      const hide = (q && !tr.dataset.search.includes(q)) || (lowOnly.checked && !tr.classList.contains('is-low'));
      tr.hidden = hide;
      if (!hide) shown++;
    }
    countEl.textContent = `${shown} of ${rowEls.size} products`;
  }

  /** A product's level changed at `siteId`: update its row and flash it. */
  function change(productId, siteId, patch) {
    if (!sitesShown().includes(siteId)) return;
    const r = rows.get(productId) || blank();
    if (patch.stock !== undefined) r.qty[siteId] = patch.stock;
    if (patch.min !== undefined) r.min[siteId] = patch.min;
    if (patch.max !== undefined) r.max[siteId] = patch.max;
    const isNew = !rows.has(productId);
    rows.set(productId, r);
    if (isNew || !rowEls.has(productId)) { renderTable(); flash(rowEls.get(productId)); return; }
    const tr = rowEls.get(productId);
    fillRow(tr, productId);
    applyFilter();
    flash(tr);
  }

  function onEvent(ev) {
    const scopeSite = ev.scope?.siteId;
    if (/^stock:(update|add|subtract|sync)$/.test(ev.event) && Array.isArray(ev.data)) {
      for (const line of ev.data) {
        if (line?.productId == null || line.stock === undefined) continue;
        change(line.productId, line.siteId || scopeSite, { stock: line.stock });
      }
    } else if (ev.event === 'stock:low') {
      for (const p of ev.data?.products || []) change(p.productId, ev.data.siteId || scopeSite, { stock: p.stock, min: p.minStock });
    } else if (ev.event === 'inventory:thresholds' && ev.data) {
      change(ev.data.productId, ev.data.siteId || scopeSite, { stock: ev.data.quantity, min: ev.data.minStock, max: ev.data.maxStock });
    } else if (ev.event.startsWith('product:') && ev.data?.id != null) {
      if (!rows.has(ev.data.id)) rows.set(ev.data.id, blank());
      if (rowEls.has(ev.data.id)) { fillRow(rowEls.get(ev.data.id), ev.data.id); flash(rowEls.get(ev.data.id)); applyFilter(); } else renderTable();
    }
  }

  function newProduct() {
    openDialog('New product', (close) => {
      const err = errorEl();
      const id = h('input', { type: 'number', min: '1', step: '1', placeholder: 'next free number' });
      const name = h('input', { type: 'text', required: true, maxLength: 200 });
      const sku = h('input', { type: 'text', maxLength: 64 });
      const price = h('input', { type: 'number', min: '0', step: '0.01', required: true });
      const category = h('input', { type: 'text', maxLength: 100 });
      const form = h('form', {}, err,
        h('div', { class: 'form-row' }, field('Product number', id, 'The stock key; leave empty for the next one.'), field('SKU', sku)),
        field('Name', name),
        h('div', { class: 'form-row' }, field('Price', price), field('Category', category)),
        h('div', { class: 'form-actions' },
          h('button', { class: 'btn', type: 'button', text: 'Cancel', on: { click: close } }),
          h('button', { class: 'btn primary', type: 'submit', text: 'Create product' })));
      onSubmit(form, err, async () => {
        const body = { name: name.value.trim(), price: Number(price.value) };
        if (id.value) body.id = Number(id.value);
        if (sku.value.trim()) body.sku = sku.value.trim();
        if (category.value.trim()) body.category = category.value.trim();
        const answer = await api('/api/products', { body });
        app.products.set(answer.product.id, answer.product);
        toast(`Created ${answer.product.name}.`, 'ok');
        close();
        onEvent({ event: 'product:created', data: answer.product });
      });
      return form;
    });
  }

  function setCount(productId) {
    openDialog(`Count of ${productName(productId)}`, (close) => {
      const err = errorEl();
      const qty = h('input', { type: 'number', min: '0', step: '1', required: true, value: String(rows.get(productId)?.qty[site] ?? 0) });
      const key = uuid();
      const form = h('form', {}, err,
        field(`On hand at ${siteName(site)}`, qty, 'Sets the level (stock:update); the change is kept in the ledger.'),
        h('div', { class: 'form-actions' },
          h('button', { class: 'btn', type: 'button', text: 'Cancel', on: { click: close } }),
          h('button', { class: 'btn primary', type: 'submit', text: 'Save count' })));
      onSubmit(form, err, async () => {
        const stock = Number(qty.value);
        if (!Number.isInteger(stock) || stock < 0) throw new Error('The count is a whole number, 0 or more.');
        await api(`/api/stock/update?siteId=${encodeURIComponent(site)}`, { body: { updates: [{ productId, stock }] }, idempotencyKey: key });
        toast('Count saved.', 'ok');
        close();
      });
      return form;
    });
  }

  function thresholds(productId) {
    const r = rows.get(productId) || {};
    openDialog(`Low-stock level of ${productName(productId)}`, (close) => {
      const err = errorEl();
      const min = h('input', { type: 'number', min: '0', step: '1', value: r.min?.[site] ?? '' });
      const max = h('input', { type: 'number', min: '0', step: '1', value: r.max?.[site] ?? '' });
      const form = h('form', {}, err,
        h('div', { class: 'form-row' }, field('Minimum', min, 'Below it, the product is marked low.'), field('Maximum', max)),
        h('div', { class: 'form-actions' },
          h('button', { class: 'btn', type: 'button', text: 'Cancel', on: { click: close } }),
          h('button', { class: 'btn primary', type: 'submit', text: 'Save' })));
      onSubmit(form, err, async () => {
        const num = (el) => (el.value === '' ? null : Number(el.value));
        await api(`/api/inventory/${productId}?siteId=${encodeURIComponent(site)}`, { method: 'PUT', body: { minStock: num(min), maxStock: num(max) } });
        toast('Thresholds saved.', 'ok');
        close();
      });
      return form;
    });
  }

  load();
  return { onEvent, reload: load };
}

// ================================================================ Sales

function salesView(main) {
  const siteSel = select(siteChoices(true), { id: 'sales-site' });
  const day = h('input', { type: 'date', id: 'sales-day' });
  const status = select([['', 'Any status'], ['completed', 'Completed'], ['pending', 'Payment pending'], ['partially_refunded', 'Partly refunded'], ['refunded', 'Refunded'], ['cancelled', 'Voided']], { id: 'sales-status' });
  const stats = h('div', { class: 'stats', attrs: { 'aria-label': 'Today' } });
  const body = h('div');
  const more = h('button', { class: 'btn', type: 'button', text: 'Load more', hidden: true });
  let sales = [];
  let today = [];
  let next = null;
  let open = null; // the sale whose details are shown

  mount(main,
    pageHead('Sales', 'Newest first; new sales appear as they happen'),
    stats,
    h('div', { class: 'toolbar' }, field('Site', siteSel), field('Day (UTC)', day), field('Status', status)),
    h('div', { class: 'card' }, body, h('div', { class: 'form-actions' }, more)));
  for (const el of [siteSel, day, status]) el.addEventListener('change', () => load());
  more.addEventListener('click', () => load(true));

  const query = (extra = {}) => {
    const q = new URLSearchParams({ limit: '100', ...extra });
    if (siteSel.value) q.set('siteId', siteSel.value);
    return q;
  };
  const matches = (s) => (!siteSel.value || s.siteId === siteSel.value)
    && (!status.value || s.status === status.value)
    && (!day.value || String(s.serverTimestamp).startsWith(day.value));

  async function load(append = false) {
    if (!append) mount(body, h('p', { class: 'empty', text: 'Loading sales…' }));
    try {
      const q = query();
      if (day.value) q.set('day', day.value);
      if (status.value) q.set('status', status.value);
      if (append && next) q.set('before', next);
      const [page, todays] = await Promise.all([
        api(`/api/sales?${q}`),
        append ? null : api(`/api/sales?${query({ limit: '500', day: fmt.utcDay() })}`),
      ]);
      sales = append ? [...sales, ...(page.data || [])] : page.data || [];
      if (todays) today = todays.data || [];
      next = page.next;
      more.hidden = !next;
      renderStats();
      renderTable();
    } catch (err) {
      mount(body, errorBox(err, () => load()));
    }
  }

  function renderStats() {
    const live = today.filter((s) => s.status !== 'cancelled');
    const net = live.reduce((sum, s) => sum + cents(s.total) - refundedCents(s), 0);
    const stat = (label, value, testid) => h('div', { class: 'stat' }, h('div', { class: 'label', text: label }), h('div', { class: 'value', attrs: { 'data-testid': testid }, text: value }));
    mount(stats,
      stat('Sales today (UTC)', String(live.length), 'stat-sales-today'),
      stat('Net revenue today', fmt.money(net / 100), 'stat-revenue-today'),
      stat('Refunded or voided', String(today.filter((s) => s.status !== 'completed' && s.status !== 'pending').length), 'stat-refunds-today'),
      stat('Need review', String(today.filter((s) => s.needsReview).length), 'stat-review-today'));
  }

  function renderTable() {
    if (!sales.length) {
      mount(body, h('p', { class: 'empty', attrs: { 'data-testid': 'sales-empty' }, text: 'No sales match. New sales appear here as they are made.' }));
      return;
    }
    const tbody = h('tbody');
    for (const s of sales) tbody.append(...saleRows(s));
    mount(body, h('div', { class: 'table-wrap' }, h('table', { class: 'table', attrs: { 'data-testid': 'sales-table', 'aria-label': 'Sales' } },
      h('thead', {}, h('tr', {},
        h('th', { text: 'Time' }), h('th', { text: 'Store' }), h('th', { text: 'Register' }), h('th', { text: 'Items' }),
        h('th', { class: 'num', text: 'Total' }), h('th', { text: 'Payment' }), h('th', { text: 'Status' }))),
      tbody)));
  }

  function saleRows(s) {
    const toggle = () => { open = open === s.id ? null : s.id; renderTable(); };
    const tr = h('tr', { class: ['clickable', open === s.id ? 'selected' : null], dataset: { saleId: s.id }, attrs: { tabindex: '0', 'aria-expanded': String(open === s.id) }, on: { click: toggle, keydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); toggle(); } } } },
      h('td', { class: 'nowrap', text: fmt.dateTime(s.serverTimestamp) }),
      h('td', { class: 'nowrap', text: siteName(s.siteId) }),
      h('td', { class: 'small', text: s.deviceId || '—' }),
      h('td', {}, linesSummary(s.lines, productName), s.needsReview ? [' ', pill('Review', 'warn')] : null),
      h('td', { class: 'num', text: fmt.money(s.total) }),
      h('td', { class: 'small', text: (s.payments || []).map((p) => p.method).join(', ') || '—' }),
      h('td', {}, saleStatusPill(s.status)));
    return open === s.id ? [tr, saleDetails(s)] : [tr];
  }

  function saleDetails(s) {
    const left = saleLeft(s).some((r) => r.left > 0);
    const done = (sale) => upsert(sale, true);
    return h('tr', { class: 'details' }, h('td', { attrs: { colspan: '7' } },
      h('div', { class: 'grid-2' },
        h('dl', { class: 'kv' },
          h('dt', { text: 'Sale' }), h('dd', { class: 'mono small', text: s.id }),
          h('dt', { text: 'Sold by' }), h('dd', { text: userName(s.userId) }),
          h('dt', { text: 'Register time' }), h('dd', { text: s.clientTimestamp ? fmt.dateTime(s.clientTimestamp) : '—' }),
          h('dt', { text: 'Recorded' }), h('dd', { text: fmt.dateTime(s.serverTimestamp) }),
          s.notes ? [h('dt', { text: 'Notes' }), h('dd', { text: s.notes })] : null,
          s.unknownProducts?.length ? [h('dt', { text: 'Not in catalog' }), h('dd', { text: s.unknownProducts.join(', ') })] : null),
        h('div', {},
          h('table', { class: 'table' }, h('tbody', {}, (s.lines || []).map((l) => h('tr', {},
            h('td', { text: `${fmt.qty(l.quantity)} × ${productName(l.productId)}` }),
            h('td', { class: 'num', text: fmt.money(l.total) }))))),
          (s.payments || []).map((p) => h('p', { class: 'small', text: `${p.method}: ${fmt.money(p.amount)} (${p.status})` })),
          (s.refunds || []).map((r) => h('p', { class: 'small muted', text: `Refund ${fmt.dateTime(r.at)}: ${linesSummary(r.lines, productName)}${r.reason ? ` (${r.reason})` : ''}` })),
          s.void ? h('p', { class: 'small muted', text: `Voided ${fmt.dateTime(s.void.at)}${s.void.reason ? ` (${s.void.reason})` : ''}` }) : null,
          h('div', { class: 'form-actions' },
            left && s.status !== 'cancelled' ? h('button', { class: 'btn', type: 'button', text: 'Refund…', on: { click: () => refundDialog(s, { productName, deviceId: DEVICE, onDone: done }) } }) : null,
            s.status !== 'cancelled' && atLeast(app.user.role, 'manager') ? h('button', { class: 'btn danger', type: 'button', text: 'Void sale…', on: { click: () => voidSale(s) } }) : null)))));
  }

  function voidSale(s) {
    openDialog('Void this sale?', (close) => {
      const err = errorEl();
      const reason = h('input', { type: 'text', maxLength: 500 });
      const form = h('form', {}, err,
        h('p', { text: `Everything not refunded yet goes back to stock at ${siteName(s.siteId)}. This cannot be undone.` }),
        field('Reason (optional)', reason),
        h('div', { class: 'form-actions' },
          h('button', { class: 'btn', type: 'button', text: 'Keep the sale', on: { click: close } }),
          h('button', { class: 'btn danger', type: 'submit', text: 'Void sale' })));
      onSubmit(form, err, async () => {
        const answer = await api(`/api/sales/${s.id}/void`, { body: reason.value.trim() ? { reason: reason.value.trim() } : {}, deviceId: DEVICE });
        toast('Sale voided.', 'ok');
        close();
        upsert(answer.sale, true);
      });
      return form;
    });
  }

  function upsert(sale, highlight) {
    if (!sale?.id) return;
    const i = sales.findIndex((s) => s.id === sale.id);
    if (i >= 0 && sale.eventId && sales[i].eventId > sale.eventId) return; // older than shown
    if (i >= 0) sales[i] = { ...sales[i], ...sale };
    else if (matches(sale)) sales.unshift(sale);
    const t = today.findIndex((s) => s.id === sale.id);
    if (t >= 0) today[t] = sale;
    else if (String(sale.serverTimestamp).startsWith(fmt.utcDay()) && (!siteSel.value || sale.siteId === siteSel.value)) today.unshift(sale);
    renderStats();
    renderTable();
    if (highlight) flash(body.querySelector(`tr[data-sale-id="${CSS.escape(sale.id)}"]`));
  }

  function onEvent(ev) {
    if (/^SALE_(CREATED|UPDATED|CANCELLED)$/.test(ev.event) && ev.data) upsert({ ...ev.data, eventId: ev.id }, true);
  }

  load();
  return { onEvent, reload: () => load() };
}

// ================================================================ Stores

function storesView(main) {
  const body = h('div');
  const log = h('div');
  let status = new Map(); // siteId -> {pendingOrders, lastSync, isConnected}
  const admin = atLeast(app.user.role, 'admin');

  mount(main,
    pageHead('Stores', 'Each site and its store node (edge) as the hub sees it',
      h('button', { class: 'btn', type: 'button', text: 'Refresh', on: { click: () => load() } })),
    h('p', { class: 'notice' },
      'Online, last ping and last sync come from the store node\'s connection to the hub. ',
      'Outbox and unsynced sales are what the store node reported with its last sync (it reports with every pull); an offline store may have more waiting.'),
    h('div', { class: 'card' }, body),
    log);

  async function load() {
    try {
      const [sites, sync] = await Promise.all([api('/api/admin/sites'), api('/api/sync/status').catch(() => null)]);
      app.sites = sites.data || [];
      const list = sync?.sites || (sync?.siteId ? [sync] : []);
      status = new Map(list.map((s) => [s.siteId, s]));
      render();
    } catch (err) {
      mount(body, errorBox(err, load));
    }
  }

  function nodeState(s) {
    if (s.isOnline) return pill('Online', 'ok', { attrs: { 'data-testid': 'site-online' } });
    if (!s.lastPingAt && !s.lastSyncAt) return pill('No store node', 'neutral', { attrs: { title: 'No edge has connected for this site: the hub serves it directly.' } });
    return pill('Offline', 'bad', { attrs: { 'data-testid': 'site-offline' } });
  }

  // The node's last outbox report: operations waiting, sales not taken by the hub yet,
  // and the oldest of those sales.
  function outboxCell(s) {
    if (s.outboxDepth == null) {
      return h('td', { class: 'muted', attrs: { title: 'This site\'s store node has not reported its outbox yet' } },
        '—', h('span', { class: 'sr-only', text: 'no report yet' }));
    }
    const waiting = s.outboxDepth > 0 || s.pendingSales > 0;
    return h('td', { attrs: { 'data-testid': 'site-outbox', title: `reported ${s.outboxReportedAt || ''}` } },
      waiting
        ? pill(`${s.outboxDepth} waiting`, 'warn')
        : pill('Empty', 'ok'),
      s.pendingSales > 0
        ? h('div', { class: 'small', text: `${s.pendingSales} unsynced sale${s.pendingSales === 1 ? '' : 's'}, oldest ${fmt.ago(s.oldestUnsyncedSaleAt)}` })
        : null,
      h('div', { class: 'small muted', text: `as of ${fmt.ago(s.outboxReportedAt)}` }));
  }

  function render() {
    const rows = app.sites.map((s) => {
      const st = status.get(s.id) || {};
      return h('tr', { dataset: { siteId: s.id } },
        h('td', {}, h('div', { class: 'nowrap', text: s.name || s.id }), h('div', { class: 'small muted mono', text: s.id })),
        h('td', {}, nodeState(s)),
        h('td', { title: s.lastPingAt || '', text: fmt.ago(s.lastPingAt) }),
        h('td', { title: s.lastSyncAt || '', text: fmt.ago(s.lastSyncAt) }),
        h('td', { class: 'num', text: String(s.syncVersion ?? 0) }),
        h('td', { class: 'num', text: st.pendingOrders != null ? String(st.pendingOrders) : '—' }),
        outboxCell(s),
        h('td', {}, h('div', { class: 'actions' },
          admin ? h('button', { class: 'btn small', type: 'button', text: 'Sync log', on: { click: () => showLog(s.id) } }) : null,
          admin ? h('button', { class: 'btn small', type: 'button', text: 'New code', attrs: { 'aria-label': `New activation code for ${s.name || s.id}` }, on: { click: () => activationCode(s.id) } }) : null)));
    });
    mount(body, h('div', { class: 'table-wrap' }, h('table', { class: 'table', attrs: { 'data-testid': 'stores-table', 'aria-label': 'Stores' } },
      h('thead', {}, h('tr', {},
        h('th', { text: 'Store' }), h('th', { text: 'Store node' }), h('th', { text: 'Last ping' }), h('th', { text: 'Last sync' }),
        h('th', { class: 'num', text: 'Sync version' }), h('th', { class: 'num', text: 'Orders to number' }),
        h('th', { text: 'Outbox (last report)' }), h('th', { class: 'num', text: 'Actions' }))),
      h('tbody', {}, rows))));
  }

  async function showLog(siteId) {
    mount(log, h('div', { class: 'card' }, h('p', { class: 'empty', text: 'Loading the sync log…' })));
    try {
      const answer = await api(`/api/admin/sites/${encodeURIComponent(siteId)}/sync-log?limit=20`);
      const rows = (answer.data || []).map((r) => h('tr', {},
        h('td', { class: 'nowrap', text: fmt.dateTime(r.timestamp) }),
        h('td', { text: r.operation }),
        h('td', { class: 'num', text: String(r.items) }),
        h('td', {}, r.status === 'success' ? pill('Success', 'ok') : pill('Failed', 'bad')),
        h('td', { class: 'num', text: `${r.durationMs} ms` }),
        h('td', { class: 'small', text: r.error || '' })));
      mount(log, h('section', { class: 'card', attrs: { 'aria-label': `Sync log of ${siteName(siteId)}` } },
        h('div', { class: 'card-head' }, h('h2', { text: `Sync log: ${siteName(siteId)}` }), h('span', { class: 'spacer' }),
          h('button', { class: 'btn small', type: 'button', text: 'Close', on: { click: () => mount(log) } })),
        rows.length
          ? h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
            h('thead', {}, h('tr', {}, ['When', 'Round', 'Items', 'Result', 'Took', 'Error'].map((t) => h('th', { text: t })))),
            h('tbody', {}, rows)))
          : h('p', { class: 'empty', text: 'No push or pull recorded for this site yet.' })));
    } catch (err) {
      mount(log, errorBox(err, () => showLog(siteId)));
    }
  }

  function onEvent(ev) {
    if (ev.event === 'site:status') {
      render();
      flash(body.querySelector(`tr[data-site-id="${CSS.escape(ev.data?.siteId || '')}"]`));
    }
    if (ev.event === 'order_created' || ev.event === 'order_updated') scheduleReload();
  }
  let timer = null;
  const scheduleReload = () => { clearTimeout(timer); timer = setTimeout(load, 800); };
  const poll = setInterval(load, 15000);

  load();
  return { onEvent, reload: load, destroy: () => { clearInterval(poll); clearTimeout(timer); } };
}

/** Draws a one-time activation code for `siteId` and shows it (POST …/activation-codes). */
function activationCode(siteId) {
  openDialog(`Activation code for ${siteName(siteId)}`, (close) => {
    const err = errorEl();
    const ttl = select([['86400', '24 hours'], ['3600', '1 hour'], ['604800', '7 days']], { id: 'code-ttl' });
    const out = h('div', { attrs: { 'aria-live': 'polite' } });
    const form = h('form', {}, err,
      h('p', { text: 'A store node enrols once with a 6-digit code; draw one, then run the command shown at the store.' }),
      field('Valid for', ttl),
      out,
      h('div', { class: 'form-actions' },
        h('button', { class: 'btn', type: 'button', text: 'Close', on: { click: close } }),
        h('button', { class: 'btn primary', type: 'submit', text: 'Create code' })));
    onSubmit(form, err, async () => {
      const answer = await api(`/api/admin/sites/${encodeURIComponent(siteId)}/activation-codes`, { body: { ttlSecs: Number(ttl.value) } });
      const revoke = h('button', { class: 'btn small danger', type: 'button', text: 'Revoke this code' });
      revoke.addEventListener('click', async () => {
        try {
          await api(`/api/admin/sites/${encodeURIComponent(siteId)}/activation-codes/${answer.code}`, { method: 'DELETE' });
          toast('Code revoked.', 'ok');
          mount(out, h('p', { class: 'muted', text: 'Revoked.' }));
        } catch (e) { err.textContent = describeError(e); }
      });
      mount(out, h('div', { class: 'card' },
        h('div', { class: 'code-box', attrs: { 'data-testid': 'activation-code' }, text: answer.code }),
        h('p', { class: 'small muted', text: `Valid until ${fmt.dateTime(answer.expiresAt)}. Shown once: note it now.` }),
        h('pre', { text: `stocky edge activate --hub ${location.origin} --code ${answer.code}` }),
        revoke));
    });
    return form;
  });
}

// ================================================================ Transfers

function transfersView(main) {
  const canWrite = atLeast(app.user.role, 'manager');
  const statusSel = select([['', 'Any status'], ['PENDING', 'Pending'], ['PROCESSING', 'Processing'], ['COMPLETED', 'Completed'], ['REJECTED', 'Rejected']], { id: 'tr-status' });
  const body = h('div');
  let list = [];

  mount(main,
    pageHead('Transfers', 'Stock moved between stores: requested, approved by the origin, then executed'),
    canWrite ? requestForm() : null,
    h('div', { class: 'toolbar' }, field('Status', statusSel)),
    h('div', { class: 'card' }, body));
  statusSel.addEventListener('change', load);

  function requestForm() {
    const err = errorEl();
    const from = select(siteChoices(false), { id: 'tr-from' });
    const to = select(siteChoices(false), { id: 'tr-to' });
    if (app.sites[1]) to.value = app.sites[1].id;
    const product = select([...app.products.values()].map((p) => [String(p.id), `${p.name} (#${p.id})`]), { id: 'tr-product' });
    const qty = h('input', { type: 'number', min: '1', step: '1', value: '1', required: true, id: 'tr-qty' });
    const reason = h('input', { type: 'text', maxLength: 500, id: 'tr-reason' });
    const form = h('form', { class: 'card', attrs: { 'aria-label': 'Request a transfer' } },
      h('h2', { text: 'Request a transfer' }), err,
      h('div', { class: 'form-row' }, field('From', from), field('To', to), field('Product', product), field('Quantity', qty), field('Reason', reason)),
      h('div', { class: 'form-actions' }, h('button', { class: 'btn primary', type: 'submit', text: 'Request transfer' })));
    onSubmit(form, err, async () => {
      if (from.value === to.value) throw new Error('Choose two different stores.');
      const body = { fromSiteId: from.value, toSiteId: to.value, productId: Number(product.value), quantity: Number(qty.value) };
      if (reason.value.trim()) body.reason = reason.value.trim();
      const answer = await api('/api/transfers/request', { body });
      toast('Transfer requested.', 'ok');
      reason.value = '';
      upsert(answer.transfer, true);
    });
    return form;
  }

  async function load() {
    try {
      const q = new URLSearchParams({ limit: '200' });
      if (statusSel.value) q.set('status', statusSel.value);
      list = (await api(`/api/transfers?${q}`)).data || [];
      render();
    } catch (err) {
      mount(body, errorBox(err, load));
    }
  }

  const STATUS = { PENDING: ['Pending', 'warn'], PROCESSING: ['Processing', 'info'], COMPLETED: ['Completed', 'ok'], REJECTED: ['Rejected', 'bad'] };

  function render() {
    if (!list.length) { mount(body, h('p', { class: 'empty', text: 'No transfers.' })); return; }
    mount(body, h('div', { class: 'table-wrap' }, h('table', { class: 'table', attrs: { 'data-testid': 'transfers-table', 'aria-label': 'Transfers' } },
      h('thead', {}, h('tr', {}, ['Requested', 'Product', 'From → to', 'Qty', 'Status', 'People', ''].map((t, i) => h('th', { class: i === 3 ? 'num' : null, text: t })))),
      h('tbody', {}, list.map((t) => {
        const [label, kind] = STATUS[t.status] || [t.status, 'neutral'];
        return h('tr', { dataset: { transferId: t.id } },
          h('td', { class: 'nowrap', text: fmt.dateTime(t.createdAt) }),
          h('td', { text: productName(t.productId) }),
          h('td', { text: `${siteName(t.fromSiteId)} → ${siteName(t.toSiteId)}` }),
          h('td', { class: 'num', text: fmt.qty(t.quantity) }),
          h('td', {}, pill(label, kind, { attrs: { 'data-status': t.status } }),
            t.lastError && t.status === 'PROCESSING' ? h('div', { class: 'small muted', text: `Waiting: ${t.lastError} (${t.attempts} attempts)` }) : null,
            t.rejectionReason ? h('div', { class: 'small muted', text: t.rejectionReason }) : null),
          h('td', { class: 'small' },
            h('div', { text: `Asked by ${userName(t.requestedBy)}` }),
            t.approvedBy ? h('div', { text: `Approved by ${userName(t.approvedBy)}` }) : null,
            t.rejectedBy ? h('div', { text: `Rejected by ${userName(t.rejectedBy)}` }) : null),
          h('td', {}, t.status === 'PENDING' && canWrite ? h('div', { class: 'actions' },
            h('button', { class: 'btn small ok', type: 'button', text: 'Approve', on: { click: () => decide(t, 'approve') } }),
            h('button', { class: 'btn small danger', type: 'button', text: 'Reject', on: { click: () => reject(t) } })) : null));
      })))));
  }

  async function decide(t, what) {
    try {
      const answer = await api(`/api/transfers/${encodeURIComponent(t.id)}/${what}`, { method: 'POST' });
      toast(what === 'approve' ? 'Transfer approved: it runs as soon as both stores are online.' : 'Transfer rejected.', 'ok');
      upsert(answer.transfer, true);
    } catch (err) {
      toast(describeError(err), 'bad');
    }
  }

  function reject(t) {
    openDialog('Reject this transfer?', (close) => {
      const err = errorEl();
      const reason = h('input', { type: 'text', maxLength: 500 });
      const form = h('form', {}, err, field('Reason (optional)', reason),
        h('div', { class: 'form-actions' },
          h('button', { class: 'btn', type: 'button', text: 'Cancel', on: { click: close } }),
          h('button', { class: 'btn danger', type: 'submit', text: 'Reject transfer' })));
      onSubmit(form, err, async () => {
        const answer = await api(`/api/transfers/${encodeURIComponent(t.id)}/reject`, { body: reason.value.trim() ? { reason: reason.value.trim() } : {} });
        toast('Transfer rejected.', 'ok');
        close();
        upsert(answer.transfer, true);
      });
      return form;
    });
  }

  const RANK = { PENDING: 0, PROCESSING: 1, COMPLETED: 2, REJECTED: 2 };
  function upsert(t, highlight) {
    if (!t?.id) return;
    const i = list.findIndex((x) => x.id === t.id);
    // An answer can arrive after the event of a later step (the execution is quick).
    if (i >= 0 && (RANK[t.status] ?? 0) < (RANK[list[i].status] ?? 0)) return;
    const clean = { ...t };
    delete clean.stock;
    if (i >= 0) list[i] = { ...list[i], ...clean };
    else if (!statusSel.value || statusSel.value === t.status) list.unshift(clean);
    render();
    if (highlight) flash(body.querySelector(`tr[data-transfer-id="${CSS.escape(t.id)}"]`));
  }

  function onEvent(ev) {
    if (ev.event.startsWith('transfer:') || ev.event === 'TRANSFER_OUT' || ev.event === 'TRANSFER_IN') upsert(ev.data, true);
  }

  load();
  return { onEvent, reload: load };
}

// ================================================================ Orders

function ordersView(main) {
  const siteSel = select(siteChoices(true), { id: 'orders-site' });
  const day = h('input', { type: 'date', id: 'orders-day', value: fmt.localDay() });
  const stats = h('div', { class: 'stats' });
  const body = h('div');

  mount(main,
    pageHead('Orders', 'Online orders by status; the store gives each its daily number'),
    h('div', { class: 'toolbar' }, field('Site', siteSel), field('Business day', day)),
    stats,
    body);

  const view = ordersPanel({
    stats, body, day: () => day.value,
    query: (params) => {
      const p = new URLSearchParams({ limit: '500', ...params });
      if (siteSel.value) p.set('siteId', siteSel.value);
      return p;
    },
    inView: (o) => (!siteSel.value || o.siteId === siteSel.value)
      && (o.businessDay === day.value || (o.dailyNumber == null && o.status !== 'cancelled') || (!o.businessDay && String(o.createdAt).startsWith(day.value))),
    renderStats: orderTiles,
    renderError: errorBox,
    board: () => ({ showSite: !siteSel.value }),
    empty: 'No orders for this day yet. They appear here as the channels send them.',
  });
  siteSel.addEventListener('change', view.reload);
  day.addEventListener('change', view.reload);
  return view;
}

function orderTiles(orders) {
  const st = orderStats(orders);
  const stat = (label, value) => h('div', { class: 'stat' }, h('div', { class: 'label', text: label }), h('div', { class: 'value', text: String(value) }));
  return [
    stat('Orders', st.total),
    stat('Awaiting a number', st.awaiting),
    stat('In the kitchen', (st.byStatus.accepted || 0) + (st.byStatus.preparing || 0)),
    stat('Ready', st.byStatus.ready || 0),
    stat('Delivered', st.byStatus.delivered || 0),
    stat('Cancelled', st.byStatus.cancelled || 0),
  ];
}

// ================================================================ Admin: users, sites, codes, devices, keys

function adminView(main) {
  const users = h('div');
  const devices = h('div');
  const keys = h('div');
  mount(main,
    pageHead('Users & devices', 'People who sign in, store nodes and machine keys'),
    h('div', { class: 'grid-2' }, userForm(), siteForm()),
    h('section', { class: 'card', attrs: { 'aria-labelledby': 'users-h' } }, h('h2', { id: 'users-h', text: 'Users' }), users),
    h('section', { class: 'card', attrs: { 'aria-labelledby': 'devices-h' } }, h('h2', { id: 'devices-h', text: 'Devices' }),
      h('p', { class: 'small muted', text: 'Store nodes register here when they redeem an activation code. Draw a code from the site list below or from Stores.' }), devices),
    h('section', { class: 'card', attrs: { 'aria-labelledby': 'keys-h' } }, h('h2', { id: 'keys-h', text: 'API keys' }), keys));

  function userForm() {
    const err = errorEl();
    const email = h('input', { type: 'email', required: true, autocomplete: 'off' });
    const password = h('input', { type: 'password', required: true, minLength: 8, autocomplete: 'new-password' });
    const roles = [['cashier', 'Cashier'], ['manager', 'Manager'], ['admin', 'Admin'], ...(app.user.role === 'owner' ? [['owner', 'Owner']] : [])];
    const role = select(roles, { value: 'cashier' });
    const site = select([['', 'Every site (not mirrored to stores)'], ...siteChoices(false)], { value: app.sites.find((s) => s.id !== 'default')?.id || '' });
    const form = h('form', { class: 'card', attrs: { 'aria-label': 'Add a user' } },
      h('h2', { text: 'Add a user' }), err,
      field('Email', email),
      field('Password', password, 'At least 8 characters. The person can sign in at their store even while it is offline.'),
      h('div', { class: 'form-row' }, field('Role', role), field('Home site', site)),
      h('div', { class: 'form-actions' }, h('button', { class: 'btn primary', type: 'submit', text: 'Add user' })));
    onSubmit(form, err, async () => {
      const body = { email: email.value.trim(), password: password.value, role: role.value };
      if (site.value) body.siteId = site.value;
      const created = await api('/api/admin/users', { body });
      toast(`Added ${created.email}.`, 'ok');
      email.value = ''; password.value = '';
      await loadUsers();
      loadAll();
    });
    return form;
  }

  function siteForm() {
    const err = errorEl();
    const id = h('input', { type: 'text', required: true, pattern: '[A-Za-z0-9][A-Za-z0-9_.\\-]*', maxLength: 64 });
    const name = h('input', { type: 'text', maxLength: 200 });
    const form = h('form', { class: 'card', attrs: { 'aria-label': 'Add a site' } },
      h('h2', { text: 'Sites and activation codes' }), err,
      h('div', { class: 'form-row' }, field('Site id', id, 'Letters, digits, _ - .'), field('Name', name)),
      h('div', { class: 'form-actions' }, h('button', { class: 'btn primary', type: 'submit', text: 'Add site' })),
      h('ul', { class: 'small', attrs: { 'data-testid': 'site-list' } }, app.sites.map((s) => h('li', {},
        `${s.name || s.id} (${s.id}) `,
        h('button', { class: 'btn link', type: 'button', text: 'activation code', on: { click: () => activationCode(s.id) } })))));
    onSubmit(form, err, async () => {
      await api('/api/admin/sites', { body: { id: id.value.trim(), name: name.value.trim() || id.value.trim() } });
      toast('Site added.', 'ok');
      await loadSites();
      app.router.go('admin');
    });
    return form;
  }

  async function loadAll() {
    try {
      const [u, d, k] = await Promise.all([api('/api/admin/users'), api('/api/admin/devices'), api('/api/admin/api-keys')]);
      mount(users, table(['Email', 'Role', 'Home site', 'Modules', 'Created', 'State', ''], (u.data || []).map((x) => [
        x.name, x.role, x.siteId ? siteName(x.siteId) : 'every site', x.modules ? x.modules.join(', ') : 'all',
        fmt.dateTime(typeof x.createdAt === 'number' ? new Date(x.createdAt).toISOString() : x.createdAt),
        x.revoked ? pill('Disabled', 'bad') : pill('Active', 'ok'),
        canEdit(x) ? h('button', { class: 'btn small', type: 'button', text: 'Edit…', attrs: { 'aria-label': `Edit ${x.name}` }, on: { click: () => editUser(x) } }) : '',
      ]), 'users-table'));
      mount(devices, (d.data || []).length
        ? table(['Device', 'Name', 'Site'], d.data.map((x) => [h('span', { class: 'mono', text: x.id }), x.name, siteName(x.siteId)]), 'devices-table')
        : h('p', { class: 'empty', text: 'No devices yet.' }));
      mount(keys, (k.data || []).length
        ? table(['Name', 'Role', 'Site', 'Created', 'State', ''], k.data.map((x) => [
          x.name, x.role, x.siteId ? siteName(x.siteId) : 'every site',
          fmt.dateTime(typeof x.createdAt === 'number' ? new Date(x.createdAt).toISOString() : x.createdAt),
          x.revoked ? pill('Revoked', 'neutral') : pill('Active', 'ok'),
          x.revoked ? '' : h('button', { class: 'btn small danger', type: 'button', text: 'Revoke', on: { click: () => revokeKey(x) } }),
        ]), 'keys-table')
        : h('p', { class: 'empty', text: 'No API keys.' }));
    } catch (err) {
      mount(users, errorBox(err, loadAll));
    }
  }

  // Nobody edits their own account here, and only owners edit owners (the hub says so too).
  function canEdit(user) {
    return user.id !== app.user.userId && (user.role !== 'owner' || app.user.role === 'owner');
  }

  function editUser(user) {
    openDialog(`Edit ${user.name}`, (close) => {
      const err = errorEl();
      const roles = [['cashier', 'Cashier'], ['manager', 'Manager'], ['admin', 'Admin'], ...(app.user.role === 'owner' ? [['owner', 'Owner']] : [])];
      const role = select(roles, { value: user.role });
      const site = select([['', 'Every site (not mirrored to stores)'], ...siteChoices(false)], { value: user.siteId || '' });
      const access = select([['active', 'Active: can sign in'], ['disabled', 'Disabled: cannot sign in']], { value: user.revoked ? 'disabled' : 'active' });
      const password = h('input', { type: 'password', minLength: 8, autocomplete: 'new-password' });
      const form = h('form', {}, err,
        h('div', { class: 'form-row' }, field('Role', role), field('Home site', site)),
        field('Access', access),
        field('New password', password, 'Leave empty to keep the current one.'),
        h('p', { class: 'small muted', text: 'Saving signs this person out everywhere: they sign in again with what you set here.' }),
        h('div', { class: 'form-actions' },
          h('button', { class: 'btn', type: 'button', text: 'Cancel', on: { click: close } }),
          h('button', { class: 'btn primary', type: 'submit', text: 'Save' })));
      onSubmit(form, err, async () => {
        const change = {};
        if (role.value !== user.role) change.role = role.value;
        if (site.value !== (user.siteId || '')) change.siteId = site.value || null;
        if ((access.value === 'disabled') !== Boolean(user.revoked)) change.disabled = access.value === 'disabled';
        const path = `/api/admin/users/${encodeURIComponent(user.id)}`;
        if (Object.keys(change).length) await api(path, { method: 'PATCH', body: change });
        if (password.value) await api(`${path}/password`, { body: { password: password.value } });
        toast(`Saved ${user.name}.`, 'ok');
        close();
        loadAll();
      });
      return form;
    });
  }

  function revokeKey(key) {
    openDialog(`Revoke "${key.name}"?`, (close) => {
      const err = errorEl();
      const form = h('form', {}, err,
        h('p', { text: 'Whatever uses this key is refused from now on. If it is a store node\'s key, that store stops syncing (it keeps selling) until it gets a new credential.' }),
        h('div', { class: 'form-actions' },
          h('button', { class: 'btn', type: 'button', text: 'Keep it', on: { click: close } }),
          h('button', { class: 'btn danger', type: 'submit', text: 'Revoke key' })));
      onSubmit(form, err, async () => {
        await api(`/api/admin/api-keys/${encodeURIComponent(key.id)}`, { method: 'DELETE' });
        toast('Key revoked.', 'ok');
        close();
        loadAll();
      });
      return form;
    });
  }

  loadAll();
  return { reload: loadAll };
}

function table(headers, rows, testid) {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'table', attrs: { 'data-testid': testid } },
    h('thead', {}, h('tr', {}, headers.map((t) => h('th', { text: t })))),
    h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((c) => h('td', {}, c)))))));
}

// ================================================================ Audit

function auditView(main) {
  const type = select([['', 'Everything'], ...['sale', 'stock', 'ledger', 'product', 'inventory', 'document', 'event', 'user', 'api_key', 'site', 'device', 'order', 'tenant'].map((t) => [t, t])], { id: 'audit-type' });
  const entity = h('input', { type: 'text', id: 'audit-entity', placeholder: 'e.g. a sale id or product number' });
  const since = h('input', { type: 'date', id: 'audit-since' });
  const body = h('div');
  const more = h('button', { class: 'btn', type: 'button', text: 'Load more', hidden: true });
  let entries = [];
  let next = null;
  let open = null;
  let known = new Set();

  mount(main,
    pageHead('Audit log', 'Every change, who made it and from which device; newest first'),
    h('form', { class: 'toolbar', attrs: { role: 'search' } }, field('Kind', type), field('Entity', entity), field('Since', since),
      h('button', { class: 'btn', type: 'submit', text: 'Filter' })),
    h('div', { class: 'card' }, body, h('div', { class: 'form-actions' }, more)));
  main.querySelector('form').addEventListener('submit', (e) => { e.preventDefault(); load(); });
  type.addEventListener('change', () => load());
  more.addEventListener('click', () => load(true));

  async function load(append = false, highlightNew = false) {
    try {
      const q = new URLSearchParams({ limit: '100' });
      if (type.value) q.set('entityType', type.value);
      if (entity.value.trim()) q.set('entityId', entity.value.trim());
      if (since.value) q.set('since', `${since.value}T00:00:00.000Z`);
      if (append && next) q.set('before', next);
      const answer = await api(`/api/audit?${q}`);
      const before = known;
      entries = append ? [...entries, ...(answer.data || [])] : answer.data || [];
      next = answer.next;
      more.hidden = !next;
      known = new Set(entries.map((e) => e.id));
      render();
      if (highlightNew) for (const e of entries) if (!before.has(e.id)) flash(body.querySelector(`tr[data-entry-id="${e.id}"]`));
    } catch (err) {
      mount(body, errorBox(err, () => load()));
    }
  }

  function entityText(e) {
    if (e.entityType === 'product' && e.entityId) return `product ${productName(e.entityId)}`;
    if (e.entityType === 'stock' && e.entityId) return `stock of ${productName(e.entityId)}`;
    const id = e.entityId && e.entityId.length > 20 ? `${e.entityId.slice(0, 8)}…` : e.entityId;
    return `${e.entityType}${id ? ` ${id}` : ''}`;
  }

  function render() {
    if (!entries.length) { mount(body, h('p', { class: 'empty', text: 'No entries match.' })); return; }
    const tbody = h('tbody');
    for (const e of entries) {
      const toggle = () => { open = open === e.id ? null : e.id; render(); };
      tbody.append(h('tr', { class: ['clickable', open === e.id ? 'selected' : null], dataset: { entryId: e.id }, attrs: { tabindex: '0', 'aria-expanded': String(open === e.id) }, on: { click: toggle, keydown: (k) => { if (k.key === 'Enter' || k.key === ' ') { k.preventDefault(); toggle(); } } } },
        h('td', { class: 'nowrap', text: fmt.dateTime(e.serverTimestamp) }),
        h('td', {}, h('code', { text: e.action })),
        h('td', { class: 'small', text: entityText(e) }),
        h('td', { text: userName(e.userId) }),
        h('td', { class: 'small', text: e.deviceId || '—' }),
        h('td', { class: 'num small muted', text: e.eventId ? String(e.eventId) : '—' })));
      if (open === e.id) {
        tbody.append(h('tr', { class: 'details' }, h('td', { attrs: { colspan: '6' } },
          h('div', { class: 'grid-2' },
            h('div', {}, h('h3', { text: 'Before' }), h('pre', { text: e.before == null ? '—' : JSON.stringify(e.before, null, 2) })),
            h('div', {}, h('h3', { text: 'After' }), h('pre', { text: e.after == null ? '—' : JSON.stringify(e.after, null, 2) }))))));
      }
    }
    const widths = ['w-time', 'w-action', null, 'w-who', 'w-device', 'w-num'];
    mount(body, h('div', { class: 'table-wrap' }, h('table', { class: 'table fixed', attrs: { 'data-testid': 'audit-table', 'aria-label': 'Audit log' } },
      h('thead', {}, h('tr', {}, ['When', 'Action', 'What', 'Who', 'Device', 'Event'].map((t, i) => h('th', { class: [widths[i], i === 5 ? 'num' : null], text: t })))),
      tbody)));
  }

  // The audit log has no event of its own: any event means new entries; reload the first page.
  let timer = null;
  function onEvent() {
    if (next && entries.length > 100) return; // the user is paging back; leave the list alone
    clearTimeout(timer);
    timer = setTimeout(() => load(false, true), 700);
  }

  load();
  return { onEvent, reload: () => load(), destroy: () => clearTimeout(timer) };
}

boot();
