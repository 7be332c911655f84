// Headless Chromium tests of the browser SDK (/sdk/stocky.js) and of the seed 000 example
// page, against real `stocky hub` / `stocky edge` processes (harness.mjs). The tabs of one
// user are pages of ONE browser context, so they share BroadcastChannel, Web Locks and
// localStorage as the tabs of one browser profile do.
//
//   cd tests/browser && STOCKY_UI_FROM_SOURCE=1 node --test --test-concurrency=1 sdk.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  repo, binary, startHub, startEdge, createUser, login, api, ok, launchBrowser, eventually, openConnections, sleep,
} from './harness.mjs';

// ------------------------------------------------------------------------- helpers

/**
 * A tab of the user: a same-origin page (`/health`) that imports the SDK and records what
 * its handlers get in `window.__t` (event envelopes with an id, full_refreshes, states,
 * token refreshes).
 */
async function openTab(context, server, { token, refreshToken, login: credentials, options = {} }) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));
  await page.goto(`${server.url}/health`);
  await page.evaluate(
    async ({ token, refreshToken, credentials, options }) => {
      const { connect } = await import('/sdk/stocky.js');
      const t = { events: [], refreshes: [], states: [], sessions: [], errors: [], logins: 0 };
      window.__t = t;
      if (credentials) {
        // The token as a function (what an app with its own session store passes): a login each time.
        token = async () => {
          t.logins++;
          const r = await fetch('/api/auth/login', {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify(credentials),
          });
          return (await r.json()).accessToken;
        };
      }
      const s = connect({ token, refreshToken, onTokenRefresh: (x) => t.sessions.push(x), ...options });
      s.on('*', (e) => {
        if (e.event !== 'full_refresh') t.events.push({ id: e.id, event: e.event, opId: e.opId ?? null, data: e.data });
      });
      s.on('full_refresh', (e) => t.refreshes.push(e));
      s.on('state', (x) => t.states.push(x.state));
      s.on('stock:error', (e) => t.errors.push(e.data));
      window.s = s;
      await s.ready;
    },
    { token, refreshToken: refreshToken ?? null, credentials: credentials ?? null, options },
  );
  return page;
}

/** What a tab's SDK says about itself. */
function info(page) {
  return page.evaluate(() => ({
    state: window.s.state,
    isLeader: window.s.isLeader,
    last: window.s.lastEventId,
    epoch: window.s.epoch,
    ids: window.__t.events.map((e) => e.id),
  }));
}

async function infos(pages) {
  return Promise.all(pages.map(info));
}

/** Waits until exactly one tab leads and every tab is live. */
async function allLive(pages, what = 'one leader, every tab live') {
  return eventually(
    async () => {
      const all = await infos(pages);
      return all.filter((i) => i.isLeader).length === 1 && all.every((i) => i.state === 'live') && all;
    },
    { ms: 15000, what },
  );
}

async function setStock(server, token, productId, stock) {
  const r = await ok(server.url, '/api/stock/update', { token, body: { updates: [{ productId, stock }] } });
  return r.id;
}

/** Every REST id is in the tab's list exactly once, and the list is strictly increasing. */
function assertSawEach(ids, expected, label) {
  for (let i = 1; i < ids.length; i++) {
    assert.ok(ids[i] > ids[i - 1], `${label}: ids out of order or doubled at ${i}: ${ids.slice(Math.max(0, i - 3), i + 3)}`);
  }
  const seen = new Set(ids);
  const missing = expected.filter((id) => !seen.has(id));
  assert.deepEqual(missing, [], `${label}: missed ${missing.length} of ${expected.length} events`);
}

/** Keeps committing stock changes over REST until `stop()`; resolves to their ids. */
function changeContinuously(server, token, every = 25) {
  let running = true;
  const ids = [];
  const done = (async () => {
    let n = 0;
    while (running) {
      ids.push(await setStock(server, token, 1, ++n));
      await sleep(every);
    }
    return ids;
  })();
  return { ids, stop: () => ((running = false), done) };
}

async function withHub(fn, hubOptions) {
  const hub = await startHub(hubOptions);
  const browser = await launchBrowser();
  try {
    await fn(hub, browser);
  } finally {
    await browser.close().catch(() => {});
    await hub.dispose();
  }
}

// ------------------------------------------------------------------------- tests

test('backoff: 10 fast tries with ±50 % jitter, then about a minute apart, never 0', async () => {
  const { backoffDelay } = await import(join(repo, 'crates/stocky-server/ui/sdk/stocky.js'));
  for (let n = 0; n < 10; n++) {
    const base = Math.min(30000, 500 * 2 ** n);
    assert.equal(backoffDelay(n, () => 0), base * 0.5);
    assert.ok(backoffDelay(n, () => 0.999999) <= base * 1.5);
  }
  for (const n of [10, 11, 50, 1000]) {
    assert.ok(backoffDelay(n, () => 0) >= 45000 && backoffDelay(n, () => 0.999999) <= 75000);
  }
});

test('3 tabs share 1 WebSocket; closing the leader hands over within 2 s, nothing missed or doubled', async () => {
  await withHub(async (hub, browser) => {
    const context = await browser.newContext();
    const token = hub.ownerToken;
    const tabs = [];
    for (let i = 0; i < 3; i++) tabs.push(await openTab(context, hub, { token }));
    await allLive(tabs);
    await eventually(async () => (await openConnections(hub, token)) === 1, { what: 'one connection at the server' });
    assert.equal(await openConnections(hub, token), 1);

    const writer = changeContinuously(hub, token);
    await sleep(600);
    const all = await infos(tabs);
    const leader = tabs[all.findIndex((i) => i.isLeader)];
    const rest = tabs.filter((t) => t !== leader);
    // A follower keeps sending commands through the hand-over: each must apply exactly once.
    const sends = rest[0].evaluate(async () => {
      const acks = [];
      for (let i = 0; i < 30; i++) {
        acks.push(window.s.send('stock:add', [{ productId: 2, quantity: 1 }]));
        await new Promise((r) => setTimeout(r, 15));
      }
      return Promise.all(acks);
    });
    await sleep(150);
    const closedAt = Date.now();
    await leader.close();
    await eventually(async () => (await infos(rest)).some((i) => i.isLeader), { ms: 2000, every: 20, what: 'a new leader' });
    const handover = Date.now() - closedAt;
    await sleep(800);
    const ids = await writer.stop();
    const acks = await sends;
    assert.ok(ids.length > 20, `only ${ids.length} changes were made`);
    const ackIds = acks.map((a) => a.id);
    assert.equal(new Set(ackIds).size, 30, 'thirty distinct events for thirty sends');
    assert.equal((await ok(hub.url, '/api/stock/2', { token })).stock, 30, 'no send applied twice, none lost');
    const expected = [...ids, ...ackIds].sort((a, b) => a - b);
    const last = expected[expected.length - 1];
    await eventually(async () => (await infos(rest)).every((i) => i.last === last), { what: `every tab at ${last}` });
    for (const [n, i] of (await infos(rest)).entries()) {
      assertSawEach(i.ids, expected, `tab ${n}`);
      assert.equal(i.ids[i.ids.length - 1] - i.ids[0] + 1, i.ids.length, `tab ${n}: one contiguous run of ids`);
    }
    assert.ok(handover < 2000, `hand-over took ${handover} ms`);
    await eventually(async () => (await openConnections(hub, token)) === 1, { what: 'one connection after the hand-over' });
    await allLive(rest);

    // A second hand-over, by s.close() this time.
    const next = rest[(await infos(rest)).findIndex((i) => i.isLeader)];
    const other = rest.find((t) => t !== next);
    await next.evaluate(() => window.s.close());
    await eventually(async () => (await info(other)).isLeader, { ms: 2000, every: 20, what: 'the last tab leads' });
    const after = await setStock(hub, token, 1, 12345);
    await eventually(async () => (await info(other)).last === after, { what: 'the last tab sees the change' });
    assert.deepEqual(await next.evaluate(() => [window.s.state, window.s.isLeader]), ['offline', false]);
    await eventually(async () => (await openConnections(hub, token)) === 1, { what: 'one connection' });
  });
});

test('commands from any tab go through the leader: acks, stock:error, duplicates; other users get their own socket', async () => {
  await withHub(async (hub, browser) => {
    const context = await browser.newContext();
    const token = hub.ownerToken;
    const tabs = [await openTab(context, hub, { token }), await openTab(context, hub, { token })];
    const all = await allLive(tabs);
    const follower = tabs[all.findIndex((i) => !i.isLeader)];
    const leader = tabs[all.findIndex((i) => i.isLeader)];

    const ack = await follower.evaluate(() => window.s.send('stock:add', [{ productId: 7, quantity: 3 }]));
    assert.equal(ack.type, 'ack');
    assert.equal(ack.command, 'stock:add');
    assert.equal(ack.data[0].stock, 3);
    assert.match(ack.opId, /^web-[0-9a-f]{8}\//);
    const fromLeader = await leader.evaluate(() => window.s.send('stock:update', [{ productId: 7, stock: 50 }], { opId: 'fixed-op-1' }));
    assert.equal(fromLeader.opId, 'fixed-op-1');
    for (const tab of tabs) {
      await eventually(async () => (await info(tab)).last === fromLeader.id, { what: 'both commands seen' });
      const events = await tab.evaluate(() => window.__t.events);
      assert.equal(events.filter((e) => e.id === ack.id).length, 1);
      assert.equal(events.find((e) => e.id === ack.id).event, 'stock:add');
      assert.equal(events.filter((e) => e.id === fromLeader.id).length, 1);
    }

    // The same opId again: a duplicate ack, no new event.
    const again = await follower.evaluate(() => window.s.send('stock:update', [{ productId: 7, stock: 50 }], { opId: 'fixed-op-1' }));
    assert.equal(again.duplicate, true);
    assert.equal(again.id, fromLeader.id);

    // A refused command rejects with the stock:error, in the tab that sent it only.
    const refused = await follower.evaluate(() =>
      window.s.send('stock:subtract', [{ productId: 7, quantity: 1000 }]).then(
        () => null,
        (e) => ({ name: e.name, code: e.code, message: e.message, opId: e.opId }),
      ),
    );
    assert.equal(refused.name, 'StockyError');
    assert.equal(refused.code, 'insufficient_stock');
    assert.match(refused.message, /Stock insuficiente/);
    assert.equal((await follower.evaluate(() => window.__t.errors)).length, 1);
    assert.equal((await leader.evaluate(() => window.__t.errors)).length, 0);
    for (const tab of tabs) assert.equal((await info(tab)).last, fromLeader.id, 'a refused command is no event');

    // Another user in the same browser gets a socket of their own.
    const cashier = await createUser(hub, { email: 'c1@shop.test', role: 'cashier' });
    const cashierToken = (await login(hub.url, cashier.email, cashier.password)).accessToken;
    const third = await openTab(context, hub, { token: cashierToken });
    await eventually(async () => (await info(third)).isLeader && (await info(third)).state === 'live', { what: 'the cashier leads its own scope' });
    await eventually(async () => (await openConnections(hub, token)) === 2, { what: 'two connections: one per user' });
    const sold = await third.evaluate(() => window.s.send('stock:subtract', [{ productId: 7, quantity: 1 }]));
    for (const tab of [...tabs, third]) {
      await eventually(async () => (await info(tab)).ids.includes(sold.id), { what: 'everyone sees the sale' });
    }
  });
});

test('hub restart: every tab reconnects and replays, once; sends made while down are delivered', async () => {
  await withHub(async (hub, browser) => {
    const context = await browser.newContext();
    const token = hub.ownerToken;
    const tabs = [];
    for (let i = 0; i < 3; i++) tabs.push(await openTab(context, hub, { token }));
    await allLive(tabs);
    const expected = [];
    const follower = tabs[(await infos(tabs)).findIndex((i) => !i.isLeader)];

    for (const kill of [false, true]) {
      for (let i = 0; i < 5; i++) expected.push(await setStock(hub, token, 2, i));
      await hub.stop({ kill });
      await eventually(async () => (await infos(tabs)).every((i) => i.state === 'reconnecting'), { what: 'every tab reconnecting' });
      // A send while the hub is down waits for the connection.
      const pending = follower.evaluate(() => window.s.send('stock:add', [{ productId: 3, quantity: 1 }]));
      await hub.start();
      for (let i = 0; i < 5; i++) expected.push(await setStock(hub, token, 2, 100 + i)); // most likely before the tabs are back
      const ack = await pending;
      expected.push(ack.id);
      await allLive(tabs, 'every tab live again');
      const changed = await setStock(hub, token, 2, 999);
      expected.push(changed);
      await eventually(async () => (await infos(tabs)).every((i) => i.last === changed), { what: 'every tab shows the change' });
      for (const [n, i] of (await infos(tabs)).entries()) assertSawEach(i.ids, expected, `tab ${n} (kill: ${kill})`);
      assert.deepEqual(
        await Promise.all(tabs.map((t) => t.evaluate(() => window.__t.states.includes('reconnecting')))),
        [true, true, true],
      );
    }
    await eventually(async () => (await openConnections(hub, token)) === 1, { what: 'one connection' });
  });
});

test('a follower that missed channel messages catches up: resend from the ring, or a local full_refresh past it', async () => {
  await withHub(async (hub, browser) => {
    const context = await browser.newContext();
    const token = hub.ownerToken;
    const options = { ringSize: 20 };
    const tabs = [await openTab(context, hub, { token, options }), await openTab(context, hub, { token, options })];
    const all = await allLive(tabs);
    const follower = tabs[all.findIndex((i) => !i.isLeader)];
    // Lose the next N entries on the way to the follower (as a frozen or late tab would).
    await follower.evaluate(() => {
      window.__drop = 0;
      const original = window.s.onChannel.bind(window.s);
      window.s.onChannel = (m) => {
        if (m && m.t === 'entry' && window.__drop > 0) return void window.__drop--;
        return original(m);
      };
    });
    const lose = (n) => follower.evaluate((n) => { window.__drop = n; }, n);

    await lose(3);
    const first = [];
    for (let i = 0; i < 6; i++) first.push(await setStock(hub, token, 1, i));
    await eventually(async () => (await info(follower)).last === first.at(-1), { what: 'the follower caught up' });
    assertSawEach((await info(follower)).ids, first, 'after losing 3');
    assert.equal((await follower.evaluate(() => window.__t.refreshes)).length, 0, 'the ring had them: no refresh');

    await lose(30); // more than the leader's ring holds
    const second = [];
    for (let i = 0; i < 35; i++) second.push(await setStock(hub, token, 1, 100 + i));
    await eventually(async () => (await info(follower)).last === second.at(-1), { what: 'the follower caught up again' });
    const refreshes = await follower.evaluate(() => window.__t.refreshes);
    assert.equal(refreshes.length, 1);
    assert.equal(refreshes[0].local, true);
    assert.ok(refreshes[0].snapshot.data.length > 0, 'with the REST snapshot');
    assert.ok(refreshes[0].snapshot.lastEventId >= refreshes[0].lastEventId, 'the snapshot covers the position');
    const ids = (await info(follower)).ids;
    for (let i = 1; i < ids.length; i++) assert.ok(ids[i] > ids[i - 1], 'never twice, never backwards');
    const after = second.filter((id) => id > refreshes[0].lastEventId);
    assert.deepEqual(after.filter((id) => !ids.includes(id)), [], 'every event after the refresh delivered');
    assertSawEach((await info(tabs.find((t) => t !== follower))).ids, [...first, ...second], 'the leader');
  });
});

test('close codes: 4002 and refused credentials stop with a reason instead of reconnecting', async () => {
  await withHub(async (hub, browser) => {
    const token = hub.ownerToken;
    const context = await browser.newContext();
    const tabs = [await openTab(context, hub, { token }), await openTab(context, hub, { token })];
    await allLive(tabs);
    const deviceId = await tabs[0].evaluate(() => window.s.deviceId);
    assert.match(deviceId, /^web-[0-9a-f]{8}$/);
    assert.equal(await tabs[1].evaluate(() => window.s.deviceId), deviceId, 'one device id per browser');
    // Another browser (profile) connects with the same user and device id: ours is replaced.
    const other = await (await browser.newContext()).newPage();
    await other.goto(`${hub.url}/health`);
    await other.evaluate(({ token, deviceId }) => new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://${location.host}/ws?token=${encodeURIComponent(token)}&deviceId=${deviceId}`);
      ws.onmessage = (m) => JSON.parse(m.data).type === 'auth_success' && resolve();
      ws.onclose = reject;
      window.ws = ws;
    }), { token, deviceId });
    for (const tab of tabs) {
      await eventually(async () => (await tab.evaluate(() => window.s.state === 'offline' && window.s.reason)), { what: 'offline after 4002' });
      assert.match(await tab.evaluate(() => window.s.reason), /4002/);
    }
    await sleep(1500);
    assert.equal(await openConnections(hub, token), 1, 'no reconnect loop: only the other browser is connected');
    assert.equal(await other.evaluate(() => window.ws.readyState), 1);

    const bad = await openTab(await browser.newContext(), hub, { token: 'not-a-valid-token' });
    await eventually(async () => (await bad.evaluate(() => window.s.state)) === 'offline', { what: 'offline on bad credentials' });
    assert.match(await bad.evaluate(() => window.s.reason), /invalid credentials/);
    await sleep(1000);
    assert.deepEqual(await bad.evaluate(() => window.__t.states), ['offline'], 'one attempt, no loop');
  });
});

test('SALE_CREATED from POST /api/sales reaches the handlers of every tab', async () => {
  await withHub(async (hub, browser) => {
    const context = await browser.newContext();
    const token = hub.ownerToken;
    const tabs = [];
    for (let i = 0; i < 3; i++) tabs.push(await openTab(context, hub, { token }));
    await allLive(tabs);
    await ok(hub.url, '/api/products', { token, body: { id: 1, name: 'Café molido 250 g', price: 12.5 } });
    await setStock(hub, token, 1, 10);
    const saleId = '6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b';
    const sale = await ok(hub.url, '/api/sales', {
      token,
      body: { id: saleId, lines: [{ productId: 1, quantity: 2, unitPrice: 12.5 }], payments: [{ method: 'cash', amount: 25 }] },
    });
    for (const tab of tabs) {
      const events = await eventually(
        async () => {
          const evs = await tab.evaluate(() => window.__t.events);
          return evs.some((e) => e.event === 'stock:sync') && evs;
        },
        { what: 'the sale and its stock:sync' },
      );
      const created = events.filter((e) => e.event === 'SALE_CREATED');
      assert.equal(created.length, 1);
      assert.equal(created[0].id, sale.eventId);
      assert.equal(created[0].data.id, saleId);
      assert.equal(events.find((e) => e.event === 'stock:sync').data[0].stock, 8);
    }
  });
});

test('token refresh before expiry: one live socket, new tokens shared with every tab', async () => {
  await withHub(
    async (hub, browser) => {
      const context = await browser.newContext();
      const session = await login(hub.url, hub.owner.email, hub.owner.password);
      const tabs = [];
      for (let i = 0; i < 2; i++) {
        tabs.push(await openTab(context, hub, { token: session.accessToken, refreshToken: session.refreshToken }));
      }
      // Another browser profile whose app hands the SDK a function instead (no refresh token):
      // at 4001 the SDK asks it again and resumes.
      const asker = await openTab(await browser.newContext(), hub, { token: 'x', login: hub.owner });
      await allLive(tabs);
      await allLive([asker]);
      const before = await setStock(hub, hub.ownerToken, 4, 1);
      const firstExpiry = Date.parse(session.expiresAt);
      // Refreshed at half of the 6 s lifetime, so at least twice by 3 s after the first expiry.
      await sleep(Math.max(0, firstExpiry - Date.now()) + 3500);
      const sessions = await Promise.all(tabs.map((t) => t.evaluate(() => window.__t.sessions)));
      for (const s of sessions) assert.ok(s.length >= 2, `onTokenRefresh ran ${s.length} times`);
      const latest = await eventually(async () => {
        const tokens = await Promise.all(tabs.map((t) => t.evaluate(() => window.__t.sessions.at(-1))));
        return tokens[0].accessToken === tokens[1].accessToken && tokens[0].refreshToken === tokens[1].refreshToken && tokens[0];
      }, { what: 'both tabs with the same newest session' });
      const changed = await setStock(hub, latest.accessToken, 4, 44); // the session still works (no refresh-token reuse)
      for (const tab of [...tabs, asker]) {
        await eventually(async () => (await info(tab)).last === changed, { what: 'the change after expiry' });
        const { ids } = await info(tab);
        assert.equal(ids.at(-1) - ids[ids.indexOf(before)] + 1, ids.length - ids.indexOf(before), 'no event lost across token changes');
      }
      await allLive(tabs);
      await allLive([asker]); // its own browser profile: its own leader
      assert.equal(await openConnections(hub, latest.accessToken), 2, 'one socket per browser profile');
      for (const tab of [...tabs, asker]) {
        const states = await tab.evaluate(() => window.__t.states);
        assert.ok(!states.includes('offline'), `states: ${states}`);
      }
      assert.ok((await asker.evaluate(() => window.__t.logins)) >= 2, 'the function was asked again after 4001');
    },
    { env: { STOCKY_ACCESS_TTL_SECS: '6' } },
  );
});

test('full_refresh: after the hub\'s database is replaced (new epoch), every tab gets the REST snapshot', async () => {
  await withHub(async (hub, browser) => {
    const context = await browser.newContext();
    const token = hub.ownerToken;
    await setStock(hub, token, 5, 55);
    const tabs = [await openTab(context, hub, { token }), await openTab(context, hub, { token })];
    await allLive(tabs);
    const before = await info(tabs[0]);
    // A consistent copy (`stocky snapshot` gives it a new epoch), put in place of the database.
    const copy = join(hub.dataDir, 'copy.db');
    await promisify(execFile)(binary(), ['snapshot', '--data-dir', hub.dataDir, '--out', copy]);
    await hub.stop();
    for (const f of ['stocky.db-wal', 'stocky.db-shm']) rmSync(join(hub.dataDir, f), { force: true });
    renameSync(copy, join(hub.dataDir, 'stocky.db'));
    await hub.start();
    for (const tab of tabs) {
      const refreshes = await eventually(async () => {
        const r = await tab.evaluate(() => window.__t.refreshes);
        return r.length > 0 && r;
      }, { ms: 15000, what: 'a full_refresh in every tab' });
      assert.equal(refreshes.length, 1);
      assert.match(refreshes[0].reason, /epoch changed/);
      assert.deepEqual(refreshes[0].stock, [{ productId: 5, stock: 55 }]);
      assert.equal(refreshes[0].snapshot.data[0].stock, 55, 'the snapshot reloaded over REST');
      assert.equal(refreshes[0].snapshot.epoch, refreshes[0].epoch);
      const now = await info(tab);
      assert.notEqual(now.epoch, before.epoch);
      assert.equal(now.epoch, refreshes[0].epoch);
    }
    const key = await tabs[0].evaluate(() => window.s.storageKey);
    const stored = await tabs[0].evaluate((key) => JSON.parse(localStorage.getItem(`${key}:position`)), key);
    assert.equal(stored.epoch, (await info(tabs[0])).epoch, 'the new epoch is persisted');
    const changed = await setStock(hub, token, 5, 56);
    for (const tab of tabs) await eventually(async () => (await info(tab)).last === changed, { what: 'live after the refresh' });
  });
});

test('without Web Locks, the BroadcastChannel election keeps one socket and hands over', async () => {
  await withHub(async (hub, browser) => {
    const context = await browser.newContext();
    const token = hub.ownerToken;
    const options = { election: 'broadcast' };
    const tabs = [];
    for (let i = 0; i < 3; i++) tabs.push(await openTab(context, hub, { token, options }));
    await allLive(tabs);
    await eventually(async () => (await openConnections(hub, token)) === 1, { what: 'one connection' });
    const writer = changeContinuously(hub, token);
    await sleep(500);
    const leader = tabs[(await infos(tabs)).findIndex((i) => i.isLeader)];
    const rest = tabs.filter((t) => t !== leader);
    const closedAt = Date.now();
    await leader.close({ runBeforeUnload: true });
    await eventually(async () => (await infos(rest)).some((i) => i.isLeader), { ms: 2500, every: 20, what: 'a new leader' });
    const handover = Date.now() - closedAt;
    await sleep(800);
    const ids = await writer.stop();
    const last = ids[ids.length - 1];
    await eventually(async () => (await infos(rest)).every((i) => i.last === last), { what: `every tab at ${last}` });
    for (const [n, i] of (await infos(rest)).entries()) assertSawEach(i.ids, ids, `tab ${n}`);
    assert.ok(handover < 2000, `hand-over took ${handover} ms`);
    await allLive(rest);
    await eventually(async () => (await openConnections(hub, token)) === 1, { what: 'one connection after the hand-over' });
  });
});

test("seed 000's StockManager, verbatim, updates /examples/stock-manager.html on hub and edge; the SDK works at the edge", async () => {
  const seed = readFileSync('/work/shared/seeds/000_f807ca0ce37c91af.txt', 'utf8');
  const start = seed.indexOf('class StockManager {');
  const end = seed.indexOf('\n}\n', start) + 3;
  const verbatim = seed.slice(start, end);
  const served = readFileSync(join(repo, 'crates/stocky-server/ui/examples/stock-manager.js'), 'utf8');
  assert.ok(verbatim.length > 3000 && served.includes(verbatim), 'the class is copied character for character');

  const hub = await startHub();
  let edge;
  let browser;
  try {
    const manager = await createUser(hub, { email: 'manager@store-1.test', role: 'manager', siteId: 'store-1' });
    edge = await startEdge(hub, { siteId: 'store-1' });
    browser = await launchBrowser();
    const edgeToken = (await login(edge.url, manager.email, manager.password)).accessToken;
    for (const [server, token] of [[hub, hub.ownerToken], [edge, edgeToken]]) {
      await setStock(server, token, 1, 5);
      const context = await browser.newContext();
      const page = await context.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
      const before = await openConnections(server, token);
      await page.goto(`${server.url}/examples/stock-manager.html?token=${encodeURIComponent(token)}`);
      await eventually(async () => (await page.textContent('[data-product="1"]')) === '5', { what: 'the first level over REST' });
      await eventually(async () => (await openConnections(server, token)) === before + 1, { what: 'the page connected' });
      await setStock(server, token, 1, 42);
      await eventually(async () => (await page.textContent('[data-product="1"]')) === '42', { what: 'stock:update applied by the class' });
      await ok(server.url, '/api/stock/add', { token, body: { additions: [{ productId: 1, quantity: 8 }] } });
      await eventually(async () => (await page.textContent('[data-product="1"]')) === '50', { what: 'stock:add applied by the class' });
      await page.click('[data-add="2"]'); // the page's own REST button; the event comes back
      await eventually(async () => (await page.textContent('[data-product="2"]')) === '10', { what: 'the +10 button' });
      assert.deepEqual(errors, [], `${server === hub ? 'hub' : 'edge'} page errors`);
      await context.close();
    }

    // The SDK at the edge: two register tabs of the manager, one socket, REST changes reach both.
    const context = await browser.newContext();
    const tabs = [await openTab(context, edge, { token: edgeToken }), await openTab(context, edge, { token: edgeToken })];
    await allLive(tabs);
    await eventually(async () => (await openConnections(edge, edgeToken)) === 1, { what: 'one socket at the edge' });
    const changed = await setStock(edge, edgeToken, 9, 90);
    for (const tab of tabs) await eventually(async () => (await info(tab)).ids.includes(changed), { what: 'both register tabs' });
    const ack = await tabs[1].evaluate(() => window.s.send('stock:subtract', [{ productId: 9, quantity: 1 }]));
    assert.equal(ack.data[0].stock, 89);
    for (const tab of tabs) await eventually(async () => (await info(tab)).last === ack.id, { what: 'the subtract in both tabs' });
  } finally {
    await browser?.close().catch(() => {});
    await edge?.dispose();
    await hub.dispose();
  }
});
