// The pages people use, in headless Chromium against real `stocky hub` / `stocky edge`
// processes: the hub's back office (`/`) and the store's register (`/` on the edge).
//
//   cd tests/browser && STOCKY_UI_FROM_SOURCE=1 node --test --test-concurrency=1 pages.test.mjs
//
// Done-when lines proved here:
//  1. SALE_CREATED → the sales badge appears in all tabs (3 pages of one browser context,
//     the owner signed in at the hub); opening the sales page in one tab clears it in all.
//  2. At the edge with the hub stopped: sign in, sell 3 items (3 single-item sales), see
//     the stock drop and "3 waiting"; start the hub: the badge goes to "Synced" and the
//     hub's back office shows the sales.
//  3. A REST change shows in the back office's stock view, highlighted.
// And: a sale whose answer is lost is sent again with the same UUID and recorded once;
// errors are shown as sentences; users are edited and passwords changed from the back
// office; the pages run without console errors (CSP included).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  api, createUser, ensureSite, eventually, launchBrowser, login, ok, signInUI, startEdge,
  startHub, watchErrors,
} from './harness.mjs';

const VIEWPORT = { width: 1180, height: 820 };
const EXPECTED_HTTP_ERRORS = [/Failed to load resource/, /net::ERR_/];

const saleBody = (productId, price, quantity = 1) => ({
  id: crypto.randomUUID(),
  lines: [{ productId, quantity, unitPrice: price }],
  payments: [{ method: 'card', amount: price * quantity }],
});

async function liveState(page) {
  return page.getByTestId('live-state').getAttribute('data-state');
}

test('SALE_CREATED shows the sales badge in every tab, and opening sales in one tab clears it in all', async () => {
  const hub = await startHub();
  const browser = await launchBrowser();
  try {
    await ok(hub.url, '/api/products', { token: hub.ownerToken, body: { id: 1, name: 'Café 250 g', sku: 'CAF-250', price: 12.5 } });
    const context = await browser.newContext({ viewport: VIEWPORT });
    const first = await context.newPage();
    const errors = watchErrors(first, { ignore: EXPECTED_HTTP_ERRORS });
    await first.goto(`${hub.url}/`);
    await signInUI(first, hub.owner.email, hub.owner.password);
    // Two more tabs of the same browser: signed in already (the session is shared).
    const others = [];
    for (const path of ['#/stock', '#/stores']) {
      const page = await context.newPage();
      await page.goto(`${hub.url}/${path}`);
      await page.getByRole('button', { name: 'Sign out' }).waitFor();
      others.push(page);
    }
    const pages = [first, ...others];
    await eventually(async () => (await Promise.all(pages.map(liveState))).every((s) => s === 'live'),
      { ms: 20000, what: 'every tab live' });
    for (const page of pages) assert.equal(await page.getByTestId('sales-badge').isVisible(), false);

    await ok(hub.url, '/api/sales', { token: hub.ownerToken, body: saleBody(1, 12.5) });

    await eventually(async () => {
      const shown = await Promise.all(pages.map(async (p) => (await p.getByTestId('sales-badge').isVisible()) && (await p.getByTestId('sales-badge').innerText())));
      return shown.every((text) => text === '1');
    }, { ms: 15000, what: 'the badge "1" in all three tabs' });
    const label = await others[1].getByTestId('sales-badge').getAttribute('aria-label');
    assert.equal(label, '1 new sale');

    // Opening the sales page in the second tab clears the badge everywhere.
    await others[0].getByRole('link', { name: /^Sales/ }).click();
    await others[0].getByTestId('sales-table').waitFor();
    await eventually(async () => (await Promise.all(pages.map((p) => p.getByTestId('sales-badge').isVisible()))).every((v) => !v),
      { ms: 10000, what: 'the badge cleared in all tabs' });
    assert.equal(await others[0].locator('[data-testid="sales-table"] tbody tr[data-sale-id]').count(), 1);

    // A second sale while a tab shows the sales page: listed and highlighted there, and
    // counted as seen (it is on screen), so no tab shows the badge.
    await ok(hub.url, '/api/sales', { token: hub.ownerToken, body: saleBody(1, 12.5, 2) });
    await eventually(async () => (await others[0].locator('[data-testid="sales-table"] tbody tr[data-sale-id]').count()) === 2,
      { what: 'the new sale listed live' });
    await eventually(async () => (await Promise.all(pages.map((p) => p.getByTestId('sales-badge').isVisible()))).every((v) => !v),
      { ms: 5000, what: 'no badge while the sales page is open' });

    // Signing out in one tab signs out every tab.
    await first.getByRole('button', { name: 'Sign out' }).click();
    for (const page of pages) await page.getByRole('button', { name: 'Sign in' }).waitFor();
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await hub.dispose();
  }
});

test('the register sells with the hub stopped, counts what waits, and syncs when the hub is back', async () => {
  const hub = await startHub();
  const browser = await launchBrowser();
  let edge;
  try {
    const siteId = 'store-1';
    await ensureSite(hub, siteId);
    await ok(hub.url, '/api/products', { token: hub.ownerToken, body: { id: 1, name: 'Café 250 g', sku: 'CAF-250', price: 12.5 } });
    await ok(hub.url, '/api/products', { token: hub.ownerToken, body: { id: 2, name: 'Green tea', sku: 'TEA-01', price: 4 } });
    await ok(hub.url, `/api/stock/update?siteId=${siteId}`, { token: hub.ownerToken, body: { updates: [{ productId: 1, stock: 20 }, { productId: 2, stock: 30 }] } });
    const cashier = await createUser(hub, { email: 'cashier@store1.test', role: 'cashier', siteId });
    edge = await startEdge(hub, { siteId });

    await hub.stop();

    const page = await (await browser.newContext({ viewport: VIEWPORT })).newPage();
    const errors = watchErrors(page, { ignore: EXPECTED_HTTP_ERRORS });
    await page.goto(`${edge.url}/`);
    await signInUI(page, cashier.email, cashier.password); // checked by the edge itself
    const tile = page.locator('.tile[data-product-id="1"]');
    const stockOf = async () => Number(await tile.getByTestId('stock').getAttribute('data-quantity'));
    await eventually(async () => (await stockOf()) === 20, { what: 'the tile showing 20 in stock' });
    await eventually(async () => /offline/i.test(await page.getByTestId('sync-badge').innerText()), { what: 'the badge saying offline' });

    for (let i = 1; i <= 3; i++) {
      await tile.click();
      await page.getByTestId('charge').click();
      await eventually(async () => (await stockOf()) === 20 - i, { what: `stock ${20 - i} after sale ${i}` });
    }
    await eventually(async () => /3 waiting/.test(await page.getByTestId('sync-badge').innerText()),
      { ms: 10000, what: 'the badge saying "3 waiting"' });
    assert.equal(await page.getByTestId('sync-badge').getAttribute('data-state'), 'offline');
    assert.match(await tile.innerText(), /17 in stock/);

    await hub.start();

    await eventually(async () => (await page.getByTestId('sync-badge').innerText()) === 'Synced',
      { ms: 90000, every: 500, what: 'the badge saying "Synced"' });

    // The hub's back office (another browser) shows the three sales of the store.
    const office = await (await browser.newContext({ viewport: VIEWPORT })).newPage();
    const officeErrors = watchErrors(office, { ignore: EXPECTED_HTTP_ERRORS });
    await office.goto(`${hub.url}/#/sales`);
    await signInUI(office, hub.owner.email, hub.owner.password);
    await office.getByLabel('Site').selectOption(siteId);
    await eventually(async () => (await office.locator('[data-testid="sales-table"] tbody tr[data-sale-id]').count()) === 3,
      { ms: 20000, what: 'three sales of store-1 in the back office' });
    assert.match(await office.getByTestId('sales-table').innerText(), /1 × Café 250 g/);
    assert.deepEqual(errors, []);
    assert.deepEqual(officeErrors, []);
  } finally {
    await browser.close();
    if (edge) await edge.dispose();
    await hub.dispose();
  }
});

test('a REST change shows in the back office stock view, highlighted, and low stock is marked', async () => {
  const hub = await startHub();
  const browser = await launchBrowser();
  try {
    await ok(hub.url, '/api/products', { token: hub.ownerToken, body: { id: 7, name: 'Oat milk 1 l', sku: 'OAT-1', price: 3.2 } });
    await ok(hub.url, '/api/stock/update', { token: hub.ownerToken, body: { updates: [{ productId: 7, stock: 10 }] } });
    await ok(hub.url, '/api/inventory/7', { token: hub.ownerToken, method: 'PUT', body: { minStock: 5, maxStock: 50 } });
    const page = await (await browser.newContext({ viewport: VIEWPORT })).newPage();
    const errors = watchErrors(page, { ignore: EXPECTED_HTTP_ERRORS });
    await page.goto(`${hub.url}/`);
    await signInUI(page, hub.owner.email, hub.owner.password);
    const row = page.locator('[data-testid="stock-table"] tr[data-product-id="7"]');
    const qty = row.getByTestId('qty');
    await eventually(async () => (await qty.innerText()) === '10', { what: 'the row at 10' });
    await eventually(async () => (await liveState(page)) === 'live', { what: 'live' });
    assert.doesNotMatch(String(await row.getAttribute('class')), /flash/);

    await ok(hub.url, '/api/stock/update', { token: hub.ownerToken, body: { updates: [{ productId: 7, stock: 42 }] } });
    await eventually(async () => (await qty.innerText()) === '42', { what: 'the row at 42' });
    assert.match(await row.getAttribute('class'), /\bflash\b/);

    // Below the minimum: the row is marked low, live.
    await ok(hub.url, '/api/stock/subtract', { token: hub.ownerToken, body: { subtractions: [{ productId: 7, quantity: 40 }] } });
    await eventually(async () => (await qty.innerText()) === '2', { what: 'the row at 2' });
    await eventually(async () => row.getByTestId('low-mark').isVisible(), { what: 'the low mark' });

    // Search filters the rows.
    await ok(hub.url, '/api/products', { token: hub.ownerToken, body: { id: 8, name: 'Croissant', price: 2 } });
    await eventually(async () => (await page.locator('[data-testid="stock-table"] tr[data-product-id="8"]').count()) === 1, { what: 'the new product listed' });
    await page.getByTestId('stock-search').fill('oat');
    assert.equal(await page.locator('[data-testid="stock-table"] tr[data-product-id="8"]').isVisible(), false);
    assert.equal(await row.isVisible(), true);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await hub.dispose();
  }
});

test('a sale whose answer was lost is sent again with the same UUID and recorded once', async () => {
  const hub = await startHub();
  const browser = await launchBrowser();
  let edge;
  try {
    const siteId = 'store-2';
    await ensureSite(hub, siteId);
    await ok(hub.url, '/api/products', { token: hub.ownerToken, body: { id: 3, name: 'Espresso beans', price: 9.9 } });
    await ok(hub.url, `/api/stock/update?siteId=${siteId}`, { token: hub.ownerToken, body: { updates: [{ productId: 3, stock: 5 }] } });
    const manager = await createUser(hub, { email: 'manager@store2.test', role: 'manager', siteId });
    edge = await startEdge(hub, { siteId });
    const page = await (await browser.newContext({ viewport: VIEWPORT })).newPage();
    await page.goto(`${edge.url}/`);
    await signInUI(page, manager.email, manager.password);

    // The first POST /api/sales reaches the edge, but its answer never reaches the page.
    let sent = 0;
    const bodies = [];
    await page.route('**/api/sales', async (route) => {
      if (route.request().method() !== 'POST') return route.continue();
      sent++;
      bodies.push(route.request().postDataJSON());
      if (sent === 1) {
        await route.fetch();
        return route.abort('connectionreset');
      }
      return route.continue();
    });
    const tile = page.locator('.tile[data-product-id="3"]');
    await tile.click();
    await page.getByTestId('charge').click();
    await page.getByTestId('pending-sale').waitFor();
    assert.match(await page.getByTestId('pending-sale').innerText(), /not confirmed/);
    await page.getByRole('button', { name: 'Send again' }).click();
    await eventually(async () => /already recorded/.test(await page.getByTestId('toasts').innerText()), { what: 'the duplicate answer' });
    assert.equal(await page.getByTestId('pending-sale').count(), 0);
    assert.equal(bodies.length, 2);
    assert.equal(bodies[0].id, bodies[1].id);

    const session = await login(edge.url, manager.email, manager.password);
    const sales = await ok(edge.url, '/api/sales', { token: session.accessToken });
    assert.equal(sales.count, 1);
    assert.equal(sales.data[0].id, bodies[0].id);
    const stock = await ok(edge.url, '/api/stock/3', { token: session.accessToken });
    assert.equal(stock.stock, 4);
  } finally {
    await browser.close();
    if (edge) await edge.dispose();
    await hub.dispose();
  }
});

test('sign-in and refused actions are explained in plain words; admin pages are for admins', async () => {
  const hub = await startHub();
  const browser = await launchBrowser();
  try {
    const manager = await createUser(hub, { email: 'manager@hub.test', role: 'manager' });
    // A store node for site "south" that is not running: the site is offline.
    const edgeSite = 'south';
    await ensureSite(hub, edgeSite);
    const { code } = await ok(hub.url, `/api/admin/sites/${edgeSite}/activation-codes`, { token: hub.ownerToken, body: {} });
    const activated = await api(hub.url, '/activate', { body: { code, name: 'south till' } });
    assert.equal(activated.status, 200);
    await ok(hub.url, '/api/products', { token: hub.ownerToken, body: { id: 1, name: 'Café 250 g', price: 12.5 } });
    const page = await (await browser.newContext({ viewport: VIEWPORT })).newPage();
    await page.goto(`${hub.url}/`);
    await page.getByLabel('Email').fill(manager.email);
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await eventually(async () => (await page.getByTestId('signin-error').innerText()) === 'Wrong email or password.', { what: 'the sign-in error' });

    await signInUI(page, manager.email, manager.password);
    assert.equal(await page.getByRole('link', { name: 'Audit log' }).count(), 0);
    assert.equal(await page.getByRole('link', { name: 'Users & devices' }).count(), 0);
    await page.goto(`${hub.url}/#/audit`);
    await eventually(async () => (await page.evaluate(() => location.hash)) === '#/stock', { what: 'a manager sent back to stock' });

    // A transfer to a site whose store is offline is refused by the hub, in plain words.
    await page.getByRole('link', { name: 'Transfers' }).click();
    await page.getByLabel('From').selectOption('default');
    await page.getByLabel('To').selectOption(edgeSite);
    await page.getByRole('button', { name: 'Request transfer' }).click();
    await eventually(async () => /offline/.test(await page.locator('.form-error').first().innerText()), { what: 'the offline explanation' });
  } finally {
    await browser.close();
    await hub.dispose();
  }
});

test('owners and admins edit users in the back office; everyone changes their own password', async () => {
  const hub = await startHub();
  const browser = await launchBrowser();
  try {
    const manager = await createUser(hub, { email: 'manager@hub.test', role: 'manager' });
    await ensureSite(hub, 'north');
    const page = await (await browser.newContext({ viewport: VIEWPORT })).newPage();
    const errors = watchErrors(page, { ignore: EXPECTED_HTTP_ERRORS });
    await page.goto(`${hub.url}/#/admin`);
    await signInUI(page, hub.owner.email, hub.owner.password);
    await page.getByRole('link', { name: 'Users & devices' }).click();
    const dialog = page.getByRole('dialog');
    const toasts = () => page.getByTestId('toasts').innerText();
    const canLogIn = async (password) => (await api(hub.url, '/api/auth/login', { body: { email: manager.email, password } })).status === 200;

    // Demote and disable the manager: the hub has it, and the manager cannot sign in.
    await page.getByRole('button', { name: `Edit ${manager.email}` }).click();
    await dialog.getByLabel('Role').selectOption('cashier');
    await dialog.getByLabel('Home site').selectOption('north');
    await dialog.getByLabel('Access').selectOption('disabled');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await eventually(async () => (await toasts()).includes(`Saved ${manager.email}`), { what: 'the saved toast' });
    const row = (await ok(hub.url, '/api/admin/users', { token: hub.ownerToken })).data.find((u) => u.name === manager.email);
    assert.deepEqual([row.role, row.siteId, row.revoked], ['cashier', 'north', true]);
    assert.equal(await canLogIn(manager.password), false);
    await eventually(async () => /Disabled/.test(await page.getByTestId('users-table').innerText()), { what: 'the table redrawn' });

    // Let them in again with a password set here.
    await page.getByRole('button', { name: `Edit ${manager.email}` }).click();
    await dialog.getByLabel('Access').selectOption('active');
    await dialog.getByLabel('New password').fill('set from the back office');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await eventually(() => canLogIn('set from the back office'), { what: 'the new password works' });
    assert.equal(await canLogIn(manager.password), false, 'the old one does not');
    assert.equal(await page.getByRole('button', { name: `Edit ${hub.owner.email}` }).count(), 0, 'not oneself');

    // The owner's own password: the current one is checked.
    await page.getByRole('button', { name: 'Change your password' }).click();
    await dialog.getByLabel('Current password').fill('not the password');
    await dialog.getByLabel('New password').fill('the owner has a new one');
    await dialog.getByRole('button', { name: 'Change password' }).click();
    await eventually(async () => /current password is not right/.test(await dialog.locator('.form-error').innerText()), { what: 'the refusal' });
    await dialog.getByLabel('Current password').fill(hub.owner.password);
    await dialog.getByRole('button', { name: 'Change password' }).click();
    await eventually(async () => (await toasts()).includes('Password changed'), { what: 'the changed toast' });
    await login(hub.url, hub.owner.email, 'the owner has a new one');
    // This page's session stays.
    await page.getByRole('link', { name: 'Audit log' }).click();
    await eventually(async () => /user:password/.test(await page.locator('main').innerText()), { what: 'the audit entries' });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await hub.dispose();
  }
});

test('the register shows the day\'s orders with their daily numbers, live, and refunds a sale', async () => {
  const hub = await startHub();
  const browser = await launchBrowser();
  let edge;
  try {
    const siteId = 'pizzeria';
    await ensureSite(hub, siteId);
    await ok(hub.url, '/api/products', { token: hub.ownerToken, body: { id: 11, name: 'Margarita', price: 8 } });
    await ok(hub.url, `/api/stock/update?siteId=${siteId}`, { token: hub.ownerToken, body: { updates: [{ productId: 11, stock: 50 }] } });
    const cashier = await createUser(hub, { email: 'cashier@pizzeria.test', role: 'cashier', siteId });
    edge = await startEdge(hub, { siteId });
    const page = await (await browser.newContext({ viewport: VIEWPORT })).newPage();
    const errors = watchErrors(page, { ignore: EXPECTED_HTTP_ERRORS });
    await page.goto(`${edge.url}/#/orders`);
    await signInUI(page, cashier.email, cashier.password);
    await page.getByRole('heading', { name: 'Orders' }).waitFor();
    await eventually(async () => (await liveState(page)) === 'live', { what: 'live' });

    // Two orders from an online channel, posted to the hub: the store numbers them, live.
    for (const externalId of ['wa-1', 'wa-2']) {
      await ok(hub.url, '/api/orders', { token: hub.ownerToken, body: { siteId, channel: 'whatsapp', externalId, customer: { firstName: 'Ana' }, lines: [{ name: 'Margarita', quantity: 1 }] } });
    }
    const numbers = () => page.getByTestId('daily-number').allInnerTexts();
    await eventually(async () => (await numbers()).sort().join(',') === '#1,#2', { ms: 20000, what: 'orders #1 and #2 on the board' });
    const first = page.locator('[data-column="pending"] .order-card').first();
    await first.getByRole('button', { name: 'Accept' }).click();
    await eventually(async () => (await page.locator('[data-column="accepted"] .order-card').count()) === 1, { what: 'an accepted order' });

    // A sale, then a refund of it from the Sales tab.
    await page.getByRole('link', { name: 'Register', exact: true }).click();
    await page.locator('.tile[data-product-id="11"]').click();
    await page.getByRole('button', { name: 'One more Margarita' }).click();
    await page.getByTestId('charge').click();
    await eventually(async () => /Sale recorded/.test(await page.getByTestId('toasts').innerText()), { what: 'the sale recorded' });
    await page.getByRole('link', { name: 'Sales' }).click();
    await page.locator('[data-testid="register-sales"] tr[data-sale-id]').first().click();
    await page.getByRole('button', { name: 'Refund…' }).click();
    await page.getByLabel('Quantity of Margarita to refund').fill('1');
    await page.getByRole('button', { name: 'Refund', exact: true }).click();
    await eventually(async () => /Partly refunded/.test(await page.getByTestId('register-sales').innerText()), { what: 'the sale partly refunded' });
    const session = await login(edge.url, cashier.email, cashier.password);
    assert.equal((await ok(edge.url, '/api/stock/11', { token: session.accessToken })).stock, 49);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    if (edge) await edge.dispose();
    await hub.dispose();
  }
});

test('transfers: requested, approved and completed live in the back office; a rejection keeps its reason', async () => {
  const hub = await startHub();
  const browser = await launchBrowser();
  try {
    await ensureSite(hub, 'annex');
    await ok(hub.url, '/api/products', { token: hub.ownerToken, body: { id: 5, name: 'Green tea', price: 2.4 } });
    await ok(hub.url, '/api/stock/update', { token: hub.ownerToken, body: { updates: [{ productId: 5, stock: 30 }] } });
    const page = await (await browser.newContext({ viewport: VIEWPORT })).newPage();
    const errors = watchErrors(page, { ignore: EXPECTED_HTTP_ERRORS });
    await page.goto(`${hub.url}/#/transfers`);
    await signInUI(page, hub.owner.email, hub.owner.password);
    await page.getByRole('heading', { name: 'Request a transfer' }).waitFor();
    await page.getByLabel('From').selectOption('default');
    await page.getByLabel('To').selectOption('annex');
    await page.getByLabel('Product').selectOption('5');
    await page.getByLabel('Quantity').fill('12');
    await page.getByRole('button', { name: 'Request transfer' }).click();
    const row = page.locator('[data-testid="transfers-table"] tbody tr').first();
    await eventually(async () => (await row.locator('[data-status]').getAttribute('data-status')) === 'PENDING', { what: 'a pending transfer' });
    await row.getByRole('button', { name: 'Approve' }).click();
    await eventually(async () => (await row.locator('[data-status]').getAttribute('data-status')) === 'COMPLETED', { ms: 15000, what: 'the transfer completed' });
    const annex = await ok(hub.url, '/api/stock/5?siteId=annex', { token: hub.ownerToken });
    assert.equal(annex.stock, 12);

    // Another one, rejected with a reason (requested over REST: it appears live).
    await ok(hub.url, '/api/transfers/request', { token: hub.ownerToken, body: { fromSiteId: 'default', toSiteId: 'annex', productId: 5, quantity: 3 } });
    await eventually(async () => (await page.locator('[data-testid="transfers-table"] tbody tr').count()) === 2, { what: 'the second transfer, live' });
    await page.locator('[data-testid="transfers-table"] tbody tr').first().getByRole('button', { name: 'Reject' }).click();
    await page.getByLabel('Reason (optional)').fill('not needed');
    await page.getByRole('button', { name: 'Reject transfer' }).click();
    await eventually(async () => /Rejected\s*not needed/.test(await page.locator('[data-testid="transfers-table"] tbody tr').first().innerText()), { what: 'the rejection and its reason' });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await hub.dispose();
  }
});

test('the session refreshes itself: with 12 s tokens the back office stays signed in and live', async () => {
  const hub = await startHub({ env: { STOCKY_ACCESS_TTL_SECS: '12' } });
  const browser = await launchBrowser();
  try {
    await ok(hub.url, '/api/products', { token: hub.ownerToken, body: { id: 1, name: 'Café 250 g', price: 12.5 } });
    const context = await browser.newContext({ viewport: VIEWPORT });
    const page = await context.newPage();
    const errors = watchErrors(page, { ignore: EXPECTED_HTTP_ERRORS });
    await page.goto(`${hub.url}/`);
    await signInUI(page, hub.owner.email, hub.owner.password);
    const second = await context.newPage();
    await second.goto(`${hub.url}/#/sales`);
    await second.getByRole('button', { name: 'Sign out' }).waitFor();
    const first = await page.evaluate(() => JSON.parse(localStorage.getItem('stocky.session')).accessToken);
    await new Promise((r) => setTimeout(r, 30000)); // two and a half token lifetimes
    const now = await page.evaluate(() => JSON.parse(localStorage.getItem('stocky.session')).accessToken);
    assert.notEqual(now, first);
    // Still signed in, still live: a change made now shows in both tabs.
    await eventually(async () => (await liveState(page)) === 'live', { ms: 15000, what: 'live after refreshes' });
    const token = (await login(hub.url, hub.owner.email, hub.owner.password)).accessToken;
    await ok(hub.url, '/api/stock/update', { token, body: { updates: [{ productId: 1, stock: 9 }] } });
    await eventually(async () => (await page.locator('[data-testid="stock-table"] tr[data-product-id="1"]').getByTestId('qty').innerText()) === '9', { what: 'the change, live' });
    await ok(hub.url, '/api/sales', { token, body: saleBody(1, 12.5) });
    await eventually(async () => (await second.locator('[data-testid="sales-table"] tbody tr[data-sale-id]').count()) === 1, { what: 'the sale in the second tab' });
    assert.equal(await page.getByRole('button', { name: 'Sign in' }).count(), 0);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await hub.dispose();
  }
});
