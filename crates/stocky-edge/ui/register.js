// Stocky register: the store node's page at `/` (served by `stocky edge`), for the
// store's cashiers and managers. It talks only to this edge, so it keeps working while the
// hub (or the internet) is down; the edge syncs with the hub on its own.
//
//  - Sign-in: POST /api/auth/login at the edge, which checks the users it mirrors from the
//    hub itself (works offline). Tokens refresh through app.js (POST /api/auth/refresh).
//  - Register (#/register): the catalog GET /api/products and the levels GET /api/inventory
//    as a searchable grid; a cart; "Charge" records the sale with POST /api/sales — a UUID
//    made in the browser (crypto.randomUUID), lines, one payment — kept in localStorage
//    until the edge answers, so a retry sends the same id and is a duplicate, never a
//    second sale. Levels follow the events stock:update|add|subtract|sync and product:*.
//  - Sales (#/sales): the day's sales here (GET /api/sales?day=), refunds
//    (POST /api/sales/{id}/refunds) and, for managers, voids (POST /api/sales/{id}/void).
//  - Orders (#/orders): the day's online orders with their daily numbers
//    (GET /api/orders), moved on with PATCH /api/orders/{id}; events order_created,
//    order_updated.
//  - The sync badge: GET /api/sync/status every 3 s and after every event: "Synced", or
//    "N waiting" (the edge's outbox: max(pending, pendingSales) + pendingDocuments +
//    pendingOrders — one single-item sale waits as one), online or offline.
// Sign-in, start and sign-out run through app.js's runPage(); live events come through the
// browser SDK (/sdk/stocky.js) via its startLive().

import {
  api, atLeast, cents, describeError, deviceId, field, flash, fmt, h, linesSummary, mount,
  openDialog, orderStats, ordersPanel, pill, refundDialog, runPage, saleLeft, saleStatusPill,
  signOut, toast, uuid,
} from '/ui/app.js';

const root = document.getElementById('app');
const DEVICE = deviceId('register');
const PENDING_KEY = 'stocky.register.pendingSale';
const CART_KEY = 'stocky.register.cart';
const STATUS_EVERY_MS = 3000;

const reg = {
  started: false,
  live: null,
  user: null,
  products: new Map(), // productId -> product
  levels: new Map(), // productId -> {quantity, minStock, low}
  status: null, // the edge's GET /api/sync/status
  view: null,
  main: null,
  router: null,
  unsubscribe: [],
  timers: [],
};

// ================================================================ start, sign-in, shell

function boot() {
  runPage(reg, {
    root,
    route,
    deviceId: DEVICE,
    signIn: {
      documentTitle: 'Sign in · Stocky register',
      title: 'Sign in to the register',
      subtitle: 'Register',
      note: 'Works without internet: this store checks sign-ins itself, for the people whose home store it is.',
    },
    shell: (liveSlot) => {
      renderShell(liveSlot);
      refreshStatus();
      reg.timers.push(setInterval(refreshStatus, STATUS_EVERY_MS));
    },
    onEvent: onLiveEvent,
    onFullRefresh: () => loadStock().catch(() => {}),
    load: loadStock,
  });
}

function renderShell(liveSlot) {
  reg.tabs = h('nav', { class: 'tabs', attrs: { 'aria-label': 'Register' } },
    [['register', 'Register'], ['sales', 'Sales'], ['orders', 'Orders']].map(([name, label]) =>
      h('a', { href: `#/${name}`, dataset: { nav: name }, text: label })));
  reg.badge = h('button', {
    class: 'pill big', type: 'button',
    attrs: { 'data-testid': 'sync-badge', 'aria-live': 'polite', 'data-state': 'checking', title: 'Sync with the hub: details' },
    text: 'Checking sync…',
    on: { click: showSyncDetails },
  });
  reg.siteEl = h('span', { class: 'who', attrs: { 'data-testid': 'store-name' } });
  reg.main = h('main', { class: 'main', id: 'main', attrs: { tabindex: '-1' } });
  mount(root, h('div', { class: 'app no-sidebar' },
    h('header', { class: 'topbar' },
      h('a', { class: 'brand', href: '#/register' }, h('img', { src: '/favicon.svg', alt: '' }), 'Stocky', h('small', { text: 'Register' })),
      reg.siteEl,
      reg.tabs,
      h('span', { class: 'spacer' }),
      reg.badge,
      liveSlot,
      h('span', { class: 'who', text: `${reg.user.email || ''} · ${reg.user.role || ''}` }),
      h('button', { class: 'btn small', type: 'button', text: 'Sign out', on: { click: () => signOut() } })),
    reg.main));
}

function route({ name }) {
  if (!reg.started || !reg.main?.isConnected) return;
  const views = { register: registerView, sales: salesView, orders: ordersView };
  if (!views[name]) { reg.router.go('register'); return; }
  for (const a of reg.tabs.querySelectorAll('a')) {
    if (a.dataset.nav === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${name[0].toUpperCase()}${name.slice(1)} · Stocky register`;
  reg.view?.destroy?.();
  mount(reg.main);
  reg.view = views[name](reg.main) || {};
}

let statusSoon = null;
function onLiveEvent(ev) {
  if (!ev || typeof ev.event !== 'string') return;
  if (/^stock:(update|add|subtract|sync)$/.test(ev.event) && Array.isArray(ev.data)) {
    for (const line of ev.data) if (line?.productId != null && line.stock !== undefined) setLevel(line.productId, line.stock);
  } else if (ev.event === 'stock:low') {
    for (const p of ev.data?.products || []) setLevel(p.productId, p.stock, { minStock: p.minStock });
  } else if (ev.event === 'inventory:thresholds' && ev.data) {
    setLevel(ev.data.productId, ev.data.quantity, { minStock: ev.data.minStock });
  } else if (ev.event.startsWith('product:') && ev.data?.id != null) {
    if (ev.event === 'product:deleted' || ev.data.deleted) reg.products.delete(ev.data.id);
    else reg.products.set(ev.data.id, ev.data);
    reg.view?.onCatalog?.(ev.data.id);
  } else if (ev.event === 'order_created' && ev.data?.dailyNumber != null) {
    toast(`New order #${ev.data.dailyNumber}${ev.data.channel ? ` (${ev.data.channel})` : ''}`, 'info');
  }
  reg.view?.onEvent?.(ev);
  clearTimeout(statusSoon);
  statusSoon = setTimeout(refreshStatus, 300);
}

// ================================================================ data: catalog and levels

async function loadStock() {
  const products = new Map();
  let after = null;
  for (let page = 0; page < 50; page++) {
    const answer = await api(`/api/products?limit=1000${after ? `&after=${after}` : ''}`);
    for (const p of answer.data || []) products.set(p.id, p);
    if (!answer.next) break;
    after = answer.next;
  }
  const inv = await api('/api/inventory');
  reg.products = products;
  reg.levels = new Map((inv.data || []).map((l) => [l.productId, { quantity: l.quantity, minStock: l.minStock, low: l.low }]));
  reg.view?.onStock?.();
}

function setLevel(productId, quantity, extra = {}) {
  const level = { ...(reg.levels.get(productId) || {}), ...extra, quantity };
  level.low = level.minStock != null && quantity < level.minStock;
  reg.levels.set(productId, level);
  reg.view?.onLevel?.(productId);
}

const productName = (id) => reg.products.get(Number(id))?.name || `Item #${id}`;

// ================================================================ sync badge

/** The edge's own count of what waits for the hub (one single-item sale waits as one). */
function waitingOf(s) {
  return Math.max(s.pending || 0, s.pendingSales || 0) + (s.pendingDocuments || 0) + (s.pendingOrders || 0);
}

async function refreshStatus() {
  try {
    reg.status = await api('/api/sync/status');
    reg.statusError = null;
  } catch (err) {
    reg.statusError = err;
    if (err.status === 401) return;
  }
  renderBadge();
}

function renderBadge() {
  const s = reg.status;
  const badge = reg.badge;
  if (!badge) return;
  let text;
  let state;
  let kind;
  if (reg.statusError && reg.statusError.status === 0) {
    [text, state, kind] = ['Store server unreachable', 'error', 'bad'];
  } else if (!s) {
    [text, state, kind] = ['Checking sync…', 'checking', 'neutral'];
  } else {
    const n = waitingOf(s);
    if (s.credentialRefused) [text, state, kind] = [`Hub refused this store · ${n} waiting`, 'refused', 'bad'];
    else if (!s.isConnected) [text, state, kind] = [n ? `Offline · ${n} waiting` : 'Hub offline · nothing waiting', 'offline', n ? 'bad' : 'warn'];
    else if (n) [text, state, kind] = [`Syncing · ${n} waiting`, 'waiting', 'warn'];
    else [text, state, kind] = ['Synced', 'synced', 'ok'];
    if (reg.siteEl && s.siteId) reg.siteEl.textContent = `Store ${s.siteId}`;
  }
  badge.className = `pill big ${kind}`;
  badge.dataset.state = state;
  if (badge.textContent !== text) badge.textContent = text;
  badge.setAttribute('aria-label', `Sync: ${text}. Show details`);
}

function showSyncDetails() {
  openDialog('Sync with the hub', (close) => {
    const s = reg.status;
    const body = s
      ? h('dl', { class: 'kv', attrs: { 'data-testid': 'sync-details' } },
        h('dt', { text: 'Hub' }), h('dd', {}, s.isConnected ? pill('Connected', 'ok') : pill('Not reachable', 'bad')),
        h('dt', { text: 'Last sync' }), h('dd', { text: s.lastSync ? `${fmt.ago(s.lastSync)} (${fmt.dateTime(s.lastSync)})` : 'never' }),
        h('dt', { text: 'Stock movements waiting' }), h('dd', { text: String(s.pending ?? 0) }),
        h('dt', { text: 'Sales waiting' }), h('dd', { text: String(s.pendingSales ?? 0) }),
        h('dt', { text: 'Oldest unsynced sale' }), h('dd', { text: s.oldestUnsyncedSaleAt ? `${fmt.dateTime(s.oldestUnsyncedSaleAt)} (${fmt.ago(s.oldestUnsyncedSaleAt)})` : '—' }),
        h('dt', { text: 'Documents waiting' }), h('dd', { text: String(s.pendingDocuments ?? 0) }),
        h('dt', { text: 'Order changes waiting' }), h('dd', { text: String(s.pendingOrders ?? 0) }),
        h('dt', { text: 'Refused by the hub' }), h('dd', { text: String(s.quarantined ?? 0) }),
        s.lastError ? [h('dt', { text: 'Last error' }), h('dd', { class: 'small', text: s.lastError })] : null)
      : h('p', { text: reg.statusError ? describeError(reg.statusError) : 'Checking…' });
    return h('div', {},
      h('p', { class: 'small muted', text: 'Sales are kept here first and sent to the hub when it can be reached. Nothing is lost while it is offline.' }),
      body,
      h('div', { class: 'form-actions' }, h('button', { class: 'btn', type: 'button', text: 'Close', on: { click: close } })));
  });
}

// ================================================================ Register: grid, cart, sell

function registerView(main) {
  const search = h('input', { type: 'search', id: 'reg-search', placeholder: 'Name, SKU or barcode', attrs: { 'data-testid': 'product-search', autocomplete: 'off', 'aria-describedby': 'reg-search-hint' } });
  const grid = h('ul', { class: 'product-grid', attrs: { 'aria-label': 'Products', 'data-testid': 'product-grid' } });
  const cartList = h('ul', { attrs: { 'aria-label': 'Items in this sale', 'data-testid': 'cart' } });
  const totalEl = h('span', { attrs: { 'data-testid': 'cart-total' } });
  const charge = h('button', { class: 'btn primary big block', type: 'button', attrs: { 'data-testid': 'charge' } });
  const clearBtn = h('button', { class: 'btn small', type: 'button', text: 'Clear' });
  const pendingBox = h('div', { attrs: { 'aria-live': 'polite' } });
  const method = { value: 'cash' };
  const tiles = new Map();
  let cart = loadCart(); // [{productId, quantity, unitPrice}]
  let selling = false;

  const methods = h('fieldset', { class: 'pay-methods' },
    h('legend', { class: 'sr-only', text: 'Payment method' }),
    [['cash', 'Cash'], ['card', 'Card']].map(([value, label]) => {
      const input = h('input', { type: 'radio', name: 'method', value, checked: value === method.value, on: { change: () => { method.value = value; } } });
      return h('label', {}, input, h('span', { text: label }));
    }));

  mount(main,
    pendingBox,
    h('div', { class: 'register' },
      h('section', { attrs: { 'aria-label': 'Products' } },
        h('div', { class: 'toolbar' }, h('div', { class: 'field' },
          h('label', { attrs: { for: 'reg-search' }, text: 'Search products' }), search,
          h('span', { class: 'hint', id: 'reg-search-hint', text: 'Enter adds an exact SKU or barcode match; "/" jumps here.' }))),
        grid),
      h('aside', { class: 'card cart', attrs: { 'aria-labelledby': 'cart-h' } },
        h('div', { class: 'card-head' }, h('h2', { id: 'cart-h', text: 'Current sale' }), h('span', { class: 'spacer' }), clearBtn),
        cartList,
        h('div', { class: 'cart-total' }, h('span', { text: 'Total' }), totalEl),
        methods,
        charge)));

  search.addEventListener('input', renderGrid);
  search.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter') return;
    const q = search.value.trim().toLowerCase();
    const exact = [...reg.products.values()].find((p) => [p.sku, p.barcode, String(p.id)].some((v) => v && String(v).toLowerCase() === q));
    if (exact) { addToCart(exact.id); search.select(); }
  });
  clearBtn.addEventListener('click', () => { cart = []; saveCart(); renderCart(); });
  charge.addEventListener('click', () => sell());
  const onKey = (e) => {
    if (e.key === '/' && !/^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement?.tagName)) { e.preventDefault(); search.focus(); }
  };
  document.addEventListener('keydown', onKey);

  function loadCart() {
    try { return JSON.parse(localStorage.getItem(CART_KEY)) || []; } catch { return []; }
  }
  function saveCart() { localStorage.setItem(CART_KEY, JSON.stringify(cart)); }

  function renderGrid() {
    const q = search.value.trim().toLowerCase();
    const list = [...reg.products.values()]
      .filter((p) => !q || `${p.name} ${p.sku || ''} ${p.barcode || ''} ${p.id}`.toLowerCase().includes(q))
      .sort((a, b) => a.name.localeCompare(b.name));
    tiles.clear();
    if (!list.length) {
      mount(grid, h('li', { class: 'empty', text: reg.products.size ? 'No product matches.' : 'No products in the catalog yet.' }));
      return;
    }
    mount(grid, list.map((p) => {
      const li = h('li');
      tiles.set(p.id, li);
      fillTile(li, p);
      return li;
    }));
  }

  function fillTile(li, p) {
    const level = reg.levels.get(p.id);
    const qty = level?.quantity;
    const stockText = qty === undefined ? 'No stock record' : qty <= 0 ? `Out of stock (${fmt.qty(qty)})` : `${fmt.qty(qty)} in stock`;
    mount(li, h('button', {
      class: 'tile', type: 'button', dataset: { productId: p.id },
      attrs: { 'aria-label': `${p.name}, ${fmt.money(p.price)}, ${stockText}. Add to sale` },
      on: { click: () => addToCart(p.id) },
    },
    h('span', { class: 'name', text: p.name }),
    p.sku ? h('span', { class: 'sku', text: p.sku }) : null,
    h('span', { class: 'price', text: fmt.money(p.price) }),
    h('span', { class: ['stock', level?.low || (qty !== undefined && qty <= 0) ? 'low' : null], attrs: { 'data-testid': 'stock' }, dataset: { quantity: qty ?? '' }, text: stockText })));
  }

  function addToCart(productId) {
    const p = reg.products.get(productId);
    if (!p) return;
    const line = cart.find((l) => l.productId === productId);
    if (line) line.quantity += 1;
    else cart.push({ productId, quantity: 1, unitPrice: p.price });
    saveCart();
    renderCart();
  }

  function setQty(productId, quantity) {
    cart = cart.map((l) => (l.productId === productId ? { ...l, quantity } : l)).filter((l) => l.quantity > 0);
    saveCart();
    renderCart();
  }

  const totalCents = () => cart.reduce((sum, l) => sum + cents(l.unitPrice) * l.quantity, 0);

  function renderCart() {
    if (!cart.length) mount(cartList, h('li', { class: 'empty', text: 'Tap a product to add it.' }));
    else {
      mount(cartList, cart.map((l) => {
        const name = productName(l.productId);
        return h('li', { class: 'cart-line', dataset: { productId: l.productId } },
          h('div', {}, h('div', { text: name }), h('div', { class: 'small muted', text: `${fmt.money(l.unitPrice)} each` })),
          h('div', { class: 'line-total', text: fmt.money((cents(l.unitPrice) * l.quantity) / 100) }),
          h('div', { class: 'qty' },
            h('button', { class: 'btn small', type: 'button', text: '−', attrs: { 'aria-label': `One less ${name}` }, on: { click: () => setQty(l.productId, l.quantity - 1) } }),
            h('output', { text: String(l.quantity), attrs: { 'aria-label': `Quantity of ${name}` } }),
            h('button', { class: 'btn small', type: 'button', text: '+', attrs: { 'aria-label': `One more ${name}` }, on: { click: () => setQty(l.productId, l.quantity + 1) } })),
          h('div', {}, h('button', { class: 'btn link small', type: 'button', text: 'Remove', attrs: { 'aria-label': `Remove ${name}` }, on: { click: () => setQty(l.productId, 0) } })));
      }));
    }
    const total = totalCents() / 100;
    totalEl.textContent = fmt.money(total);
    charge.textContent = cart.length ? `Charge ${fmt.money(total)}` : 'Charge';
    charge.disabled = !cart.length || selling || !!pendingSale();
  }

  // -- selling, idempotent by the sale's UUID

  function pendingSale() {
    try { return JSON.parse(localStorage.getItem(PENDING_KEY)); } catch { return null; }
  }

  async function sell() {
    if (!cart.length || selling) return;
    const total = totalCents() / 100;
    const sale = {
      id: uuid(),
      lines: cart.map((l) => ({ productId: l.productId, quantity: l.quantity, unitPrice: l.unitPrice })),
      payments: [{ method: method.value, amount: total }],
      total,
      deviceId: DEVICE,
      clientTimestamp: new Date().toISOString(),
    };
    localStorage.setItem(PENDING_KEY, JSON.stringify(sale));
    cart = [];
    saveCart();
    await send(sale);
  }

  /** Sends (or re-sends) the sale; the same id again is answered `duplicate`, never sold twice. */
  async function send(sale) {
    selling = true;
    renderCart();
    renderPending();
    try {
      const answer = await api('/api/sales', { body: sale, deviceId: DEVICE });
      localStorage.removeItem(PENDING_KEY);
      const s = answer.sale || {};
      toast(answer.status === 'duplicate' ? 'This sale was already recorded.' : `Sale recorded · ${fmt.money(s.total ?? sale.total)}`, 'ok');
      // The levels come back by the sale's stock:sync event; read them too, in case the live link is down.
      loadStock().catch(() => {});
      refreshStatus();
    } catch (err) {
      if (err.status === 0 || err.status >= 500 || err.code === 'rate_limited') {
        toast(`The sale is not confirmed yet: ${describeError(err)}`, 'bad');
      } else {
        localStorage.removeItem(PENDING_KEY);
        cart = sale.lines.map((l) => ({ ...l }));
        saveCart();
        toast(describeError(err, { action: 'The sale was not recorded' }), 'bad');
      }
    } finally {
      selling = false;
      renderPending();
      renderCart();
    }
  }

  function renderPending() {
    const sale = pendingSale();
    if (!sale || selling) { mount(pendingBox); return; }
    mount(pendingBox, h('div', { class: 'notice warn', attrs: { role: 'alert', 'data-testid': 'pending-sale' } },
      h('strong', { text: 'A sale is not confirmed yet. ' }),
      `${linesSummary(sale.lines, productName)} · ${fmt.money(sale.total)}. Send it again: it is recorded once whatever happens. `,
      h('button', { class: 'btn small primary', type: 'button', text: 'Send again', on: { click: () => send(sale) } }), ' ',
      h('button', { class: 'btn small', type: 'button', text: 'Put back in the cart', on: { click: () => {
        localStorage.removeItem(PENDING_KEY);
        cart = sale.lines.map((l) => ({ ...l }));
        saveCart();
        renderPending();
        renderCart();
      } } })));
  }

  renderGrid();
  renderCart();
  renderPending();
  search.focus();
  return {
    onStock: () => { renderGrid(); renderCart(); },
    onCatalog: () => renderGrid(),
    onLevel: (productId) => {
      const li = tiles.get(productId);
      const p = reg.products.get(productId);
      if (li && p) { fillTile(li, p); flash(li.firstChild); }
    },
    reload: () => loadStock().catch((e) => toast(describeError(e), 'bad')),
    destroy: () => document.removeEventListener('keydown', onKey),
  };
}

// ================================================================ Sales: today, refunds, voids

function salesView(main) {
  const body = h('div');
  const summary = h('div', { class: 'stats' });
  let sales = [];
  let open = null;

  mount(main,
    h('div', { class: 'page-head' }, h('h1', { text: 'Sales today' }), h('span', { class: 'sub', text: `UTC day ${fmt.utcDay()}` }), h('span', { class: 'spacer' }),
      h('button', { class: 'btn', type: 'button', text: 'Refresh', on: { click: () => load() } })),
    summary,
    h('div', { class: 'card' }, body));

  async function load() {
    try {
      const answer = await api(`/api/sales?day=${fmt.utcDay()}&limit=200`);
      sales = answer.data || [];
      render();
    } catch (err) {
      mount(body, h('div', { class: 'notice bad', attrs: { role: 'alert' }, text: describeError(err) }));
    }
  }

  function render() {
    const kept = sales.filter((s) => s.status !== 'cancelled');
    const stat = (label, value) => h('div', { class: 'stat' }, h('div', { class: 'label', text: label }), h('div', { class: 'value', text: value }));
    mount(summary,
      stat('Sales', String(kept.length)),
      stat('Taken', fmt.money(kept.reduce((sum, s) => sum + cents(s.total), 0) / 100)),
      stat('Refunds or voids', String(sales.filter((s) => s.refunds?.length || s.void).length)));
    if (!sales.length) { mount(body, h('p', { class: 'empty', text: 'No sales yet today.' })); return; }
    const tbody = h('tbody');
    for (const s of sales) {
      const toggle = () => { open = open === s.id ? null : s.id; render(); };
      tbody.append(h('tr', { class: ['clickable', open === s.id ? 'selected' : null], dataset: { saleId: s.id }, attrs: { tabindex: '0', 'aria-expanded': String(open === s.id) }, on: { click: toggle, keydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); toggle(); } } } },
        h('td', { class: 'nowrap', text: fmt.time(s.serverTimestamp) }),
        h('td', { text: linesSummary(s.lines, productName) }),
        h('td', { class: 'num', text: fmt.money(s.total) }),
        h('td', { class: 'small', text: (s.payments || []).map((p) => p.method).join(', ') }),
        h('td', {}, saleStatusPill(s.status))));
      if (open === s.id) tbody.append(details(s));
    }
    mount(body, h('div', { class: 'table-wrap' }, h('table', { class: 'table', attrs: { 'data-testid': 'register-sales', 'aria-label': 'Sales today' } },
      h('thead', {}, h('tr', {}, h('th', { text: 'Time' }), h('th', { text: 'Items' }), h('th', { class: 'num', text: 'Total' }), h('th', { text: 'Payment' }), h('th', { text: 'Status' }))),
      tbody)));
  }

  function details(s) {
    const left = saleLeft(s).some((r) => r.left > 0);
    return h('tr', { class: 'details' }, h('td', { attrs: { colspan: '5' } },
      (s.refunds || []).map((r) => h('p', { class: 'small muted', text: `Refunded ${fmt.time(r.at)}: ${linesSummary(r.lines, productName)}${r.reason ? ` (${r.reason})` : ''}` })),
      s.void ? h('p', { class: 'small muted', text: `Voided ${fmt.time(s.void.at)}` }) : null,
      h('p', { class: 'small muted mono', text: `Sale ${s.id} · register ${s.deviceId || '—'}` }),
      h('div', { class: 'form-actions' },
        left && s.status !== 'cancelled' ? h('button', { class: 'btn', type: 'button', text: 'Refund…', on: { click: () => refundDialog(s, { productName, deviceId: DEVICE, onDone: upsert }) } }) : null,
        s.status !== 'cancelled' && atLeast(reg.user.role, 'manager') ? h('button', { class: 'btn danger', type: 'button', text: 'Void sale', on: { click: () => voidSale(s) } }) : null)));
  }

  async function voidSale(s) {
    openDialog('Void this sale?', (close) => {
      const error = h('div', { class: 'form-error', attrs: { role: 'alert' } });
      const confirm = h('button', { class: 'btn danger', type: 'button', text: 'Void sale' });
      confirm.addEventListener('click', async () => {
        confirm.disabled = true;
        try {
          const answer = await api(`/api/sales/${s.id}/void`, { body: {}, deviceId: DEVICE });
          toast('Sale voided.', 'ok');
          close();
          upsert(answer.sale);
        } catch (err) {
          error.textContent = describeError(err);
          confirm.disabled = false;
        }
      });
      return h('div', {}, error, h('p', { text: 'Everything not refunded yet goes back to stock. This cannot be undone.' }),
        h('div', { class: 'form-actions' }, h('button', { class: 'btn', type: 'button', text: 'Keep the sale', on: { click: close } }), confirm));
    });
  }

  function upsert(sale) {
    if (!sale?.id) return;
    const i = sales.findIndex((x) => x.id === sale.id);
    if (i >= 0 && sale.eventId && sales[i].eventId > sale.eventId) return; // older than shown
    if (i >= 0) sales[i] = sale; else sales.unshift(sale);
    render();
    flash(body.querySelector(`tr[data-sale-id="${CSS.escape(sale.id)}"]`));
    loadStock().catch(() => {});
  }

  // Sale events reach owners and admins only; a sale's stock:sync reaches everyone here.
  let timer = null;
  function onEvent(ev) {
    if (/^SALE_/.test(ev.event) && ev.data) { upsert({ ...ev.data, eventId: ev.id }); return; }
    if (ev.event === 'stock:sync') { clearTimeout(timer); timer = setTimeout(load, 400); }
  }

  load();
  return { onEvent, reload: load, destroy: () => clearTimeout(timer) };
}

// ================================================================ Orders: the day's, with their daily numbers

function ordersView(main) {
  const day = h('input', { type: 'date', id: 'reg-orders-day', value: fmt.localDay() });
  const stats = h('div', { class: 'stats' });
  const body = h('div');

  mount(main,
    h('div', { class: 'page-head' }, h('h1', { text: 'Orders' }), h('span', { class: 'sub', text: 'Online orders, numbered here per business day' })),
    h('div', { class: 'toolbar' }, field('Business day', day)),
    stats,
    body);

  const view = ordersPanel({
    stats, body, day: () => day.value,
    query: (params) => new URLSearchParams({ ...params, limit: '500' }),
    inView: (o) => o.businessDay === day.value || (o.dailyNumber == null && o.status !== 'cancelled'),
    renderStats: orderTiles,
    renderError: (err) => h('div', { class: 'notice bad', attrs: { role: 'alert' }, text: describeError(err) }),
    empty: 'No orders this day yet. Orders from the online channels appear here with their number.',
  });
  day.addEventListener('change', view.reload);
  return view;
}

function orderTiles(orders) {
  const st = orderStats(orders);
  const last = orders.filter((o) => o.dailyNumber != null).reduce((m, o) => Math.max(m, o.dailyNumber), 0);
  const stat = (label, value) => h('div', { class: 'stat' }, h('div', { class: 'label', text: label }), h('div', { class: 'value', text: String(value) }));
  return [
    stat('Orders', st.total),
    stat('Last number', last ? `#${last}` : '—'),
    stat('To prepare', (st.byStatus.pending || 0) + (st.byStatus.accepted || 0) + (st.byStatus.preparing || 0)),
    stat('Ready', st.byStatus.ready || 0),
    stat('Delivered', st.byStatus.delivered || 0),
  ];
}

boot();
