// The API reference at /docs (crates/stocky-server/ui/docs), in headless Chromium against a
// real `stocky hub`: the page renders the server's own OpenAPI 3.1 document
// (GET /api/openapi.json, public) under the strict CSP without console errors, lists the
// operations by tag with their public / needs-credentials marker, opens the one a
// #operationId names, filters as one types, lists the components' schemas, and says so
// clearly when the document cannot be loaded.
//
//   cd tests/browser && STOCKY_UI_FROM_SOURCE=1 node --test --test-concurrency=1 docs.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { eventually, launchBrowser, startHub, watchErrors } from './harness.mjs';

const VIEWPORT = { width: 1180, height: 820 };
const MOVEMENTS = '/api/stock/{product_id}/movements';

let hub;
let browser;

before(async () => {
  hub = await startHub();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await hub?.dispose();
});

/** The spec as a client without credentials gets it. */
async function fetchSpec() {
  const response = await fetch(`${hub.url}/api/openapi.json`);
  assert.equal(response.status, 200, 'GET /api/openapi.json needs no credentials');
  assert.match(response.headers.get('content-type') || '', /application\/json/);
  return response.json();
}

/** The <details> of an operation, by method and path (the page puts both in data-*). */
const operation = (page, method, path) => page.locator(`details.op[data-method="${method}"][data-path="${path}"]`);

test('GET /api/openapi.json is public OpenAPI 3.1 JSON, and /docs is served under the CSP', async () => {
  const spec = await fetchSpec();
  assert.equal(typeof spec.openapi, 'string');
  assert.ok(spec.openapi.startsWith('3.1'), `openapi is ${spec.openapi}`);
  assert.ok(spec.info?.title, 'info.title');
  assert.ok(spec.paths?.['/api/stock/update']?.post, 'POST /api/stock/update is documented');
  assert.ok(spec.components?.schemas?.ErrorEnvelope, 'components.schemas.ErrorEnvelope');

  const page = await fetch(`${hub.url}/docs`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type') || '', /text\/html/);
  assert.match(page.headers.get('content-security-policy') || '', /script-src 'self'/);
  for (const asset of ['/docs/docs.js', '/docs/docs.css']) {
    assert.equal((await fetch(`${hub.url}${asset}`)).status, 200, asset);
  }
});

test('/docs renders the document: title, operations by tag, markers, anchors, search and schemas', async () => {
  const spec = await fetchSpec();
  const context = await browser.newContext({ viewport: VIEWPORT });
  const page = await context.newPage();
  const errors = watchErrors(page); // CSP violations show as console errors
  try {
    await page.goto(`${hub.url}/docs`);

    // The header: the spec's title, once the document is loaded.
    const title = page.getByTestId('docs-title');
    await title.waitFor({ timeout: 15000 });
    assert.equal((await title.innerText()).trim(), spec.info.title);
    assert.equal(await page.getByTestId('docs-status').isVisible(), false, 'the loading notice is gone');

    // POST /api/stock/update is listed (needs credentials), its id the operationId.
    const update = operation(page, 'post', '/api/stock/update');
    assert.equal(await update.count(), 1);
    const head = await update.locator('summary').innerText();
    assert.match(head, /POST/);
    assert.ok(head.includes('/api/stock/update'), head);
    assert.match(await update.locator('.access').innerText(), /needs credentials/);
    const opId = spec.paths['/api/stock/update'].post.operationId;
    assert.ok(opId, 'POST /api/stock/update has an operationId');
    assert.equal(await update.getAttribute('id'), opId);

    // Login takes no credentials: `security: []` makes it "public".
    const loginOp = operation(page, 'post', '/api/auth/login');
    assert.equal(await loginOp.count(), 1);
    assert.match(await loginOp.locator('.access').innerText(), /public/);

    // Clicking an operation's header opens its details, clicking again closes them.
    assert.equal(await update.getAttribute('open'), null);
    await update.locator('summary').click();
    await eventually(async () => (await update.getAttribute('open')) !== null, { what: 'the operation opened' });
    assert.ok(await update.getByText('Responses', { exact: true }).isVisible());
    await update.locator('summary').click();
    await eventually(async () => (await update.getAttribute('open')) === null, { what: 'the operation closed' });

    // The search box: "movements" leaves the ledger visible and hides the sales.
    const movements = operation(page, 'get', MOVEMENTS);
    const sales = page.locator('details.op[data-path="/api/sales"]');
    assert.equal(await movements.count(), 1, `GET ${MOVEMENTS} is listed`);
    assert.ok((await sales.count()) >= 1, '/api/sales is listed');
    assert.ok(await sales.first().isVisible());
    await page.getByTestId('docs-search').fill('movements');
    await eventually(async () => {
      if (!(await movements.isVisible())) return false;
      for (let i = 0; i < (await sales.count()); i++) if (!(await sales.nth(i).isHidden())) return false;
      return true;
    }, { what: `only ${MOVEMENTS} left by the search "movements"` });
    assert.equal(await update.isHidden(), true, '/api/stock/update does not match "movements"');
    await page.getByTestId('docs-search').fill('');
    await eventually(async () => (await sales.first().isVisible()) && (await update.isVisible()),
      { what: 'every operation back once the search is cleared' });

    // Schemas: every error answer links to ErrorEnvelope, listed at the bottom.
    const schemas = page.getByTestId('schemas');
    const envelope = page.locator('#schema-ErrorEnvelope');
    assert.equal(await envelope.count(), 1);
    assert.ok((await envelope.innerText()).includes('ErrorEnvelope'));
    assert.ok((await schemas.innerText()).includes('ErrorEnvelope'));
    assert.ok((await page.locator('a[href="#schema-ErrorEnvelope"]').count()) > 0, 'error answers link to ErrorEnvelope');

    // /docs#<operationId> opens that operation and scrolls to it.
    const direct = await context.newPage();
    const directErrors = watchErrors(direct);
    await direct.goto(`${hub.url}/docs#${opId}`);
    const target = direct.locator(`[id="${opId}"]`);
    await eventually(async () => (await target.getAttribute('open')) !== null, { what: `#${opId} opened` });
    await eventually(() => target.evaluate((node) => {
      const { top } = node.getBoundingClientRect();
      return top >= 0 && top < window.innerHeight / 2;
    }), { what: `#${opId} scrolled into view` });
    assert.deepEqual(directErrors, []);

    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test('/docs says clearly when the document cannot be loaded', async () => {
  const context = await browser.newContext({ viewport: VIEWPORT });
  const page = await context.newPage();
  const errors = watchErrors(page, { ignore: [/Failed to load resource/, /net::ERR_/] });
  try {
    await page.route('**/api/openapi.json', (route) => route.fulfill({ status: 503, contentType: 'text/plain', body: 'unavailable' }));
    await page.goto(`${hub.url}/docs`);
    const status = page.getByTestId('docs-status');
    await eventually(async () => /Could not load the API description/.test(await status.innerText()),
      { what: 'the error message' });
    assert.match(await status.innerText(), /503/);
    assert.equal(await status.getAttribute('role'), 'alert');
    assert.equal(await page.locator('details.op').count(), 0);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});
