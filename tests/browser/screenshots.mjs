// Screenshots of the pages for docs/pages.md, with demo data made over REST against real
// processes: a hub, the store "north" running its edge, and the kiosk "harbour" whose edge
// was activated and is not running (offline).
//
//   cd tests/browser && STOCKY_UI_FROM_SOURCE=1 node screenshots.mjs [outDir]
//
// Writes hub-signin, hub-stock, hub-sales, hub-stores, hub-transfers, hub-orders, hub-admin,
// hub-audit, edge-register and edge-orders (.png) to docs/screenshots/ (or outDir), at a
// tablet-sized viewport (1180×820).

import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  createUser, eventually, launchBrowser, login, ok, repo, signInUI, sleep, startEdge, startHub,
} from './harness.mjs';

const OUT = resolve(process.argv[2] || join(repo, 'docs', 'screenshots'));
const VIEWPORT = { width: 1180, height: 820 };

const PRODUCTS = [
  { id: 1, sku: 'CAF-250', name: 'Café molido 250 g', category: 'coffee', price: 12.5 },
  { id: 2, sku: 'CAF-1K', name: 'Coffee beans 1 kg', category: 'coffee', price: 38 },
  { id: 3, sku: 'ESP-DBL', name: 'Double espresso', category: 'drinks', price: 2.8 },
  { id: 4, sku: 'LAT-M', name: 'Latte (medium)', category: 'drinks', price: 3.6 },
  { id: 5, sku: 'TEA-GRN', name: 'Green tea', category: 'drinks', price: 2.4 },
  { id: 6, sku: 'CRO-BUT', name: 'Butter croissant', category: 'bakery', price: 2.2 },
  { id: 7, sku: 'MUF-BLU', name: 'Blueberry muffin', category: 'bakery', price: 2.9 },
  { id: 8, sku: 'OAT-1L', name: 'Oat milk 1 l', category: 'grocery', price: 3.2 },
  { id: 9, sku: 'CUP-12', name: 'Reusable cup 12 oz', category: 'merch', price: 9.5 },
  { id: 10, sku: 'GRD-HND', name: 'Hand grinder', category: 'merch', price: 45 },
];

const sale = (lines, method = 'card') => {
  const total = Math.round(lines.reduce((s, [id, q]) => s + PRODUCTS[id - 1].price * 100 * q, 0)) / 100;
  return {
    id: crypto.randomUUID(),
    lines: lines.map(([productId, quantity]) => ({ productId, quantity, unitPrice: PRODUCTS[productId - 1].price })),
    payments: [{ method, amount: total }],
  };
};

async function seedHub(hub) {
  const T = { token: hub.ownerToken };
  for (const p of PRODUCTS) await ok(hub.url, '/api/products', { ...T, body: p });
  await ok(hub.url, '/api/admin/sites', { ...T, body: { id: 'north', name: 'North store' } });
  await ok(hub.url, '/api/admin/sites', { ...T, body: { id: 'harbour', name: 'Harbour kiosk' } });
  const stock = {
    default: [120, 40, 0, 0, 0, 0, 0, 60, 35, 6],
    north: [18, 6, 250, 240, 180, 24, 3, 14, 8, 1],
    harbour: [9, 2, 120, 110, 90, 12, 10, 4, 0, 0],
  };
  for (const [site, levels] of Object.entries(stock)) {
    await ok(hub.url, `/api/stock/update?siteId=${site}`, { ...T, body: { updates: levels.map((stock, i) => ({ productId: i + 1, stock })) } });
  }
  for (const [site, productId, minStock, maxStock] of [['north', 7, 5, 30], ['north', 10, 2, 6], ['north', 1, 10, 40], ['default', 10, 8, 20], ['harbour', 2, 3, 10]]) {
    await ok(hub.url, `/api/inventory/${productId}?siteId=${site}`, { ...T, method: 'PUT', body: { minStock, maxStock } });
  }
  const people = [
    { email: 'ana.manager@north.example', role: 'manager', siteId: 'north' },
    { email: 'leo.cashier@north.example', role: 'cashier', siteId: 'north' },
    { email: 'mia.cashier@harbour.example', role: 'cashier', siteId: 'harbour' },
    { email: 'sam.admin@stocky.example', role: 'admin' },
  ];
  for (const p of people) await createUser(hub, { ...p, password: 'demo password 2026' });
}

async function main() {
  mkdirSync(OUT, { recursive: true });
  const hub = await startHub();
  const browser = await launchBrowser();
  const edges = [];
  try {
    await seedHub(hub);
    const T = { token: hub.ownerToken };
    // The kiosk's edge: activated, then stopped (the hub shows it offline).
    const harbour = await startEdge(hub, { siteId: 'harbour' });
    edges.push(harbour);
    await sleep(1500);
    await harbour.stop();
    const north = await startEdge(hub, { siteId: 'north' });
    edges.push(north);
    await eventually(async () => (await ok(hub.url, '/api/admin/sites', T)).data.find((s) => s.id === 'north')?.isOnline, { ms: 20000, what: 'north online' });

    // Sales at the hub's own site and at the store (through its edge, as a register would).
    for (const lines of [[[1, 2]], [[10, 1], [9, 1]], [[8, 6]]]) await ok(hub.url, '/api/sales', { ...T, body: sale(lines), headers: { 'X-Device-Id': 'backoffice-web' } });
    const cashier = await login(north.url, 'leo.cashier@north.example', 'demo password 2026');
    const C = { token: cashier.accessToken, headers: { 'X-Device-Id': 'register-north-1' } };
    const northSales = [];
    for (const [lines, method] of [[[[3, 2], [6, 2]], 'cash'], [[[4, 1], [7, 1]], 'card'], [[[5, 3]], 'card'], [[[1, 1], [3, 1]], 'cash'], [[[4, 2], [6, 1], [7, 1]], 'card']]) {
      northSales.push((await ok(north.url, '/api/sales', { ...C, body: sale(lines, method) })).sale);
    }
    await ok(north.url, `/api/sales/${northSales[2].id}/refunds`, { ...C, body: { lines: [{ productId: 5, quantity: 1 }], reason: 'spilled' } });

    // Transfers: one completed, one rejected, one waiting for approval.
    const t1 = (await ok(hub.url, '/api/transfers/request', { ...T, body: { fromSiteId: 'default', toSiteId: 'north', productId: 2, quantity: 10, reason: 'Weekend restock' } })).transfer;
    await ok(hub.url, `/api/transfers/${t1.id}/approve`, { ...T, method: 'POST' });
    const t2 = (await ok(hub.url, '/api/transfers/request', { ...T, body: { fromSiteId: 'default', toSiteId: 'north', productId: 10, quantity: 4 } })).transfer;
    await ok(hub.url, `/api/transfers/${t2.id}/reject`, { ...T, body: { reason: 'Counted wrong: only 2 left at the warehouse' } });
    await ok(hub.url, '/api/transfers/request', { ...T, body: { fromSiteId: 'north', toSiteId: 'default', productId: 8, quantity: 6, reason: 'Back to the warehouse' } });

    // Online orders for the store: numbered by its edge, then moved along.
    const orders = [
      ['whatsapp', 'wa-1001', 'Ana', [{ name: 'Latte (medium)', quantity: 2 }, { name: 'Butter croissant', quantity: 2 }], 'delivered'],
      ['whatsapp', 'wa-1002', 'Bruno', [{ name: 'Double espresso', quantity: 1 }], 'delivered'],
      ['web', 'web-311', 'Carla', [{ name: 'Coffee beans 1 kg', quantity: 1 }], 'ready'],
      ['whatsapp', 'wa-1003', 'Diego', [{ name: 'Green tea', quantity: 2 }, { name: 'Blueberry muffin', quantity: 1 }], 'preparing', 'no sugar'],
      ['web', 'web-312', 'Eva', [{ name: 'Latte (medium)', quantity: 1 }], 'accepted'],
      ['whatsapp', 'wa-1004', 'Fran', [{ name: 'Butter croissant', quantity: 3 }], 'pending'],
      ['whatsapp', 'wa-1005', 'Gus', [{ name: 'Double espresso', quantity: 2 }], 'pending'],
    ];
    const ids = [];
    for (const [channel, externalId, firstName, lines, , notes] of orders) {
      const r = await ok(hub.url, '/api/orders', { ...T, body: { siteId: 'north', channel, externalId, customer: { firstName }, lines, notes } });
      ids.push(r.order.id);
      await sleep(150);
    }
    await eventually(async () => {
      const list = (await ok(hub.url, '/api/orders?siteId=north', T)).data;
      return list.every((o) => o.dailyNumber != null);
    }, { ms: 30000, what: 'orders numbered by the store' });
    for (let i = 0; i < orders.length; i++) {
      if (orders[i][4] !== 'pending') await ok(hub.url, `/api/orders/${ids[i]}`, { ...T, method: 'PATCH', body: { status: orders[i][4] } });
    }
    await sleep(1500);

    // ---------------------------------------------------------------- the hub's back office
    const context = await browser.newContext({ viewport: VIEWPORT });
    const page = await context.newPage();
    await page.goto(`${hub.url}/`);
    await page.getByLabel('Email').fill(hub.owner.email);
    await page.screenshot({ path: join(OUT, 'hub-signin.png') });
    await page.getByLabel('Password').fill(hub.owner.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
    await eventually(async () => (await page.getByTestId('live-state').getAttribute('data-state')) === 'live', { what: 'live' });
    await page.getByTestId('stock-table').waitFor();
    // A sale and a count while the page is open: the badge, and a highlighted row.
    await ok(north.url, '/api/sales', { ...C, body: sale([[7, 1]]) });
    await ok(hub.url, '/api/stock/add?siteId=default', { ...T, body: { additions: [{ productId: 3, quantity: 48 }] } });
    await eventually(async () => page.getByTestId('sales-badge').isVisible(), { ms: 20000, what: 'the badge' });
    await sleep(300);
    await page.screenshot({ path: join(OUT, 'hub-stock.png') });

    await page.getByRole('link', { name: /^Sales/ }).click();
    await page.getByTestId('sales-table').waitFor();
    await sleep(500);
    await page.locator('[data-testid="sales-table"] tbody tr[data-sale-id]').nth(2).click();
    await sleep(300);
    await page.screenshot({ path: join(OUT, 'hub-sales.png') });

    await page.getByRole('link', { name: 'Stores' }).click();
    await page.getByTestId('stores-table').waitFor();
    await page.getByRole('button', { name: 'Sync log' }).nth(1).click();
    await page.getByRole('heading', { name: /Sync log/ }).waitFor();
    await sleep(300);
    await page.screenshot({ path: join(OUT, 'hub-stores.png') });

    await page.getByRole('link', { name: 'Transfers' }).click();
    await page.getByTestId('transfers-table').waitFor();
    await sleep(300);
    await page.screenshot({ path: join(OUT, 'hub-transfers.png') });

    await page.getByRole('link', { name: 'Orders' }).click();
    await page.getByTestId('orders-board').waitFor();
    await sleep(300);
    await page.screenshot({ path: join(OUT, 'hub-orders.png') });

    await page.getByRole('link', { name: 'Users & devices' }).click();
    await page.getByTestId('users-table').waitFor();
    await sleep(300);
    await page.screenshot({ path: join(OUT, 'hub-admin.png') });

    await page.getByRole('link', { name: 'Audit log' }).click();
    await page.getByTestId('audit-table').waitFor();
    await page.locator('[data-testid="audit-table"] tbody tr[data-entry-id]').first().click();
    await sleep(300);
    await page.screenshot({ path: join(OUT, 'hub-audit.png') });

    // ---------------------------------------------------------------- the store's register
    const till = await (await browser.newContext({ viewport: VIEWPORT })).newPage();
    await till.goto(`${north.url}/`);
    await signInUI(till, 'leo.cashier@north.example', 'demo password 2026');
    await till.locator('.tile').first().waitFor();
    await eventually(async () => (await till.getByTestId('sync-badge').innerText()) === 'Synced', { ms: 30000, what: 'synced' });
    for (const id of [4, 4, 6, 9]) await till.locator(`.tile[data-product-id="${id}"]`).click();
    await till.getByLabel('Card').check();
    await sleep(300);
    await till.screenshot({ path: join(OUT, 'edge-register.png') });

    await till.getByRole('link', { name: 'Orders' }).click();
    await till.getByTestId('orders-board').waitFor();
    await sleep(300);
    await till.screenshot({ path: join(OUT, 'edge-orders.png') });
    console.log(`screenshots written to ${OUT}`);
  } finally {
    await browser.close();
    for (const e of edges) await e.dispose().catch(() => {});
    await hub.dispose();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
